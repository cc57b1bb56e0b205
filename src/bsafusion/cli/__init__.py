"""Command line: ``bsafusion <command> ...``; each command is a thin shell over the API.

Every error is one stderr line ``bsafusion: error: <file or flag>: <problem>`` and exit
code 2: library errors (:class:`~bsafusion.errors.BsafusionError`), argparse's usage errors
and operating-system errors (a full disk). The library names the argument at fault
(``work_size``); :func:`flag_for` turns it into the command's flag (``--work-size``).
Anything else is a bug and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from bsafusion import __version__
from bsafusion.cli import (
    convert,
    evaluate,
    export,
    fuse,
    make_split,
    make_testset,
    register,
    train,
    view,
)
from bsafusion.cli.common import Parser, UsageError, setup_logging
from bsafusion.errors import BsafusionError

__all__ = ["build_parser", "flag_for", "main"]

# Each module offers ``add_parser(subparsers)`` that sets ``handler`` on its parser.
COMMANDS = (fuse, register, convert, make_split, make_testset, train, export, evaluate,
            view)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bsafusion",
        description="Register and fuse an MRI slice with an unaligned CT, PET or SPECT slice "
        "(BSAFusion, AAAI 2025).",
    )
    parser.add_argument("--version", action="version", version=f"bsafusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    for p in sub.choices.values():  # options every command has
        if "--verbose" not in p._option_string_actions:
            p.add_argument("-v", "--verbose", action="store_true",
                           help="show more (progress details, info messages)")
    return parser


# library argument -> flag, where the flag's dest is not the argument's name
ARGUMENT_FLAGS = {"fmt": "--format", "data_dir": "--data", "out_dir": "--out",
                  "init_weights": "--init", "time_budget_s": "--time-budget"}


def flag_for(where: str, parser: argparse.ArgumentParser) -> str:
    """The flag of ``parser`` for a library argument name (``work_size`` -> ``--work-size``;
    ``val/test`` -> ``--val/--test``); anything else (a path, ``fixed``) is returned as is."""
    flags = {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings}
    flags.update({k: v for k, v in ARGUMENT_FLAGS.items() if v in flags.values()})
    parts = where.split("/")
    if not all(part in flags for part in parts) or os.path.exists(where):  # a path stays
        return where
    return "/".join(flags[part] for part in parts)


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _error(where: str, problem: str) -> int:
    problem = " ".join(str(problem).split())  # always one line
    print(f"bsafusion: error: {where}: {problem}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 partial failure, 2 error, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        where, _, problem = str(exc).partition(": ")
        return _error(where, problem)
    with setup_logging(args.verbose, getattr(args, "log_level", logging.WARNING)):
        return _run(parser, args)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args) or 0)
    except BsafusionError as exc:
        return _error(flag_for(exc.where, _command_parser(parser, args.command)), exc.problem)
    except OSError as exc:  # the system's (a full disk, a vanished file): not a bug of ours
        where = exc.filename if exc.filename is not None else args.command
        return _error(where, exc.strerror or exc)
    except KeyboardInterrupt:  # Ctrl-C, or `timeout --signal=INT` ending a training budget
        print(f"bsafusion: {args.command}: interrupted", file=sys.stderr)
        return 130
