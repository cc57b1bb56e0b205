"""Write files atomically: to a temporary file beside the target, then rename."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bsafusion.errors import InputError

__all__ = ["atomic_write", "refuse_overwrite"]


def refuse_overwrite(path: str | os.PathLike, overwrite: bool) -> None:
    """Raise :class:`InputError` naming ``path`` if it exists and ``overwrite`` is False."""
    if not overwrite and Path(path).exists():
        raise InputError(path, "exists (pass --overwrite to replace it)")


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    The temporary file keeps ``path``'s suffix (so format detection by suffix works) and is
    removed if ``writer`` raises, so a failed write never leaves a half-written output.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
