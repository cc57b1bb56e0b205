"""Command line: ``bsafusion <command> ...``; each command is a thin shell over the API.

Library errors (:class:`~bsafusion.errors.BsafusionError`) become one stderr line
``bsafusion: error: <where>: <problem>`` and exit code 2; anything else propagates.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bsafusion import __version__
from bsafusion.cli import convert, evaluate, export, fuse, make_split, make_testset, register, train
from bsafusion.errors import BsafusionError

__all__ = ["build_parser", "main"]

# Each module offers ``add_parser(subparsers)`` that sets ``handler`` on its parser.
COMMANDS = (fuse, register, convert, make_split, make_testset, train, export, evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bsafusion",
        description="Register and fuse an MRI slice with an unaligned CT, PET or SPECT slice "
        "(BSAFusion, AAAI 2025).",
    )
    parser.add_argument("--version", action="version", version=f"bsafusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 partial failure, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BsafusionError as exc:
        problem = " ".join(exc.problem.split())  # always one line
        print(f"bsafusion: error: {exc.where}: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or `timeout --signal=INT` ending a training budget
        print(f"bsafusion: {args.command}: interrupted", file=sys.stderr)
        return 130
