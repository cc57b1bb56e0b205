"""What several commands share: the parser class (one-line errors, shown defaults), the
``--pair``, ``--device``, ``-o/--out`` and size arguments, logging and progress."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from collections.abc import Iterator

from bsafusion.errors import ConfigError
from bsafusion.pairs import canonical_pair, pair_names

__all__ = ["DEVICE_HELP", "Parser", "Progress", "UsageError", "add_device_argument",
           "add_out_argument", "add_output_file_argument", "add_pair_argument", "comma_list",
           "multiple_of_16", "output_file", "pair_name", "positive_int", "resolve_device",
           "setup_logging", "work_size"]


class UsageError(Exception):
    """A command-line error found by argparse, already in ``<flag>: <problem>`` form."""


class DefaultsFormatter(argparse.HelpFormatter):
    """Help with ``(default: X)`` after every option that has a default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, argparse.SUPPRESS)
                or not action.option_strings):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
        return f"{text} (default: {shown})"


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line ``<flag>: <problem>``, exit code 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(_one_line(message))


def _one_line(message: str) -> str:
    message = " ".join(message.split())
    found = re.match(r"argument ([^:]+): (.*)", message)
    if found:
        return f"{found.group(1).split('/')[-1]}: {found.group(2)}"
    found = re.match(r"the following arguments are required: (.*)", message)
    if found:
        flags = [f.split("/")[-1] for f in found.group(1).split(", ")]
        return f"{', '.join(flags)}: {'is' if len(flags) == 1 else 'are'} required"
    found = re.match(r"unrecognized arguments: (\S+)", message)
    if found:
        return f"{found.group(1)}: unrecognized argument"
    return f"usage: {message}"


def pair_name(text: str) -> str:
    """argparse ``type`` of ``--pair``: any spelling (``CT``, ``ct-mri``) -> the canonical name."""
    name = canonical_pair(text)
    if name is None:
        raise argparse.ArgumentTypeError(f"unknown modality pair {text!r} (choose from "
                                         f"{', '.join(pair_names())})")
    return name


def add_pair_argument(p: argparse.ArgumentParser, **kwargs) -> None:
    """``--pair``, one of the names of :data:`bsafusion.pairs.PAIRS` (any case, ``-mri`` too)."""
    kwargs.setdefault("help", f"modality pair: {', '.join(pair_names())} (any case; "
                              "CT-MRI works too)")
    p.add_argument("--pair", type=pair_name, metavar="PAIR", **kwargs)


def multiple_of_16(text: str) -> int:
    """argparse ``type``: a positive multiple of 16 (an image or working size)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: give a positive multiple "
                                         "of 16") from None
    if value < 16 or value % 16:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 16, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type``: an integer >= 1 (a count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def work_size(text: str) -> int:
    """argparse ``type`` of ``--work-size``: 0 (native) or a positive multiple of 16."""
    return 0 if text.strip() == "0" else multiple_of_16(text)


def comma_list(choices: tuple[str, ...]):
    """argparse ``type``: ``a,b`` -> ``["a", "b"]``, each one of ``choices``."""
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, bad)) or repr(text)} "
                                             f"(choose from {', '.join(choices)})")
        return items
    return parse


def add_out_argument(p: argparse.ArgumentParser, help: str, **kwargs) -> None:
    """``-o/--out``: the output folder (or file) of every command."""
    kwargs.setdefault("required", True)
    p.add_argument("-o", "--out", metavar="OUT", help=help, **kwargs)


def add_output_file_argument(p: argparse.ArgumentParser, help: str) -> None:
    """An output file given as the last positional argument or as ``-o/--out``."""
    p.add_argument("output", nargs="?", help=help)
    p.add_argument("-o", "--out", metavar="OUT", help="the same as the positional OUTPUT")


def output_file(args: argparse.Namespace) -> str:
    """The output file of :func:`add_output_file_argument`."""
    if bool(args.output) == bool(args.out):
        raise ConfigError("out", "give the output file once: OUTPUT or -o OUTPUT")
    return args.output or args.out


DEVICE_HELP = "torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps"


def add_device_argument(p: argparse.ArgumentParser, help: str = DEVICE_HELP,
                        default: str = "auto") -> None:
    """``--device``, the same choices and checks (:func:`resolve_device`) everywhere; the
    default is ``auto`` except where the device changes the result (``make-testset``)."""
    p.add_argument("--device", default=default, help=help)


def resolve_device(text: str | None) -> str:
    """``--device`` -> a device that exists here (``auto`` -> ``cuda`` or ``cpu``).

    Raises:
        ConfigError: naming ``device``, for an unknown device or one this machine lacks.
    """
    import torch

    text = (text or "auto").strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError("device", f"unknown device {text!r} ({DEVICE_HELP.split(': ')[1]})"
                          ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError("device", f"{text}: no CUDA GPU is available here (use cpu)")
        if device.index is not None and device.index >= count:
            raise ConfigError("device", f"{text}: this machine has {count} CUDA GPU(s)")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError("device", "mps: Apple's Metal is not available here (use cpu)")
    elif device.type != "cpu":
        raise ConfigError("device", f"unsupported device {text!r} ({DEVICE_HELP.split(': ')[1]})")
    return str(device)


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return f"bsafusion: {record.levelname.lower()}: {record.getMessage()}"
        return record.getMessage()


@contextlib.contextmanager
def setup_logging(verbose: bool = False, level: int = logging.WARNING) -> Iterator[None]:
    """Within the block, library log records -> stderr (warnings as ``bsafusion: warning:
    ...``; ``-v`` shows one level more); the ``bsafusion`` logger is put back as it was on
    exit, so that ``main()`` called in-process (a notebook, a test) leaves no handler behind."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    root = logging.getLogger("bsafusion")
    saved = root.handlers[:], root.level, root.propagate
    root.handlers[:] = [handler]
    root.setLevel(level - 10 if verbose else level)
    root.propagate = False
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        root.propagate = saved[2]


class Progress:
    """``[k/N] stem: status, ETA`` on stderr: a one-line bar on a terminal, a line per item
    otherwise (logs, pipes)."""

    def __init__(self, verb: str, width: int = 30) -> None:
        import time

        self.verb, self.width, self.tty = verb, width, sys.stderr.isatty()
        self.eta, self.t0 = None, time.perf_counter()

    def __call__(self, done: int, total: int, stem: str, outcome) -> None:
        from bsafusion.progress import Eta

        if self.eta is None or self.eta.total != total:
            self.eta = Eta(total)
            self.eta.t0 = self.t0
        status = self.verb if outcome is None else outcome if isinstance(outcome, str) else "failed"
        text = self.eta.text(done).split(", ", 1)
        tail = f" ({text[1]})" if len(text) > 1 else ""
        if not self.tty:
            print(f"[{done}/{total}] {stem}: {status}{tail}", file=sys.stderr, flush=True)
            return
        fill = round(self.width * done / max(total, 1))
        bar = "#" * fill + "." * (self.width - fill)
        end = "\n" if done == total else ""
        print(f"\r[{bar}] {done}/{total} {stem[:30]:<30}{tail}", end=end, file=sys.stderr,
              flush=True)
