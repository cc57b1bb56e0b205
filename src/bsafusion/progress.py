"""``k/N`` and an ETA for long loops (batch fuse, evaluation, training); no dependencies."""

from __future__ import annotations

import time

__all__ = ["Eta", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Eta:
    """Progress of ``total`` steps, from the mean time of those done in this run.

    Args:
        total: number of steps.
        start: steps done before this run (a resumed training): not timed.
    """

    def __init__(self, total: int, start: int = 0) -> None:
        self.total, self.start, self.t0 = total, start, time.perf_counter()

    def text(self, done: int) -> str:
        """``"k/N, ETA m:ss"`` (``"k/N"`` until one step was timed, ``"k/N, done"`` at N)."""
        head = f"{done}/{self.total}"
        timed = done - self.start
        if done >= self.total:
            return f"{head}, took {format_duration(time.perf_counter() - self.t0)}"
        if timed <= 0:
            return head
        rate = (time.perf_counter() - self.t0) / timed
        return f"{head}, ETA {format_duration(rate * (self.total - done))}"
