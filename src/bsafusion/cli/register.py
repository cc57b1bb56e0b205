"""``bsafusion register``: registration only; writes the aligned image and the field."""

from __future__ import annotations

import argparse

from bsafusion.cli.fuse import add_io_arguments, run


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "register", help="align an image pair (or folders) without fusing",
        description="Align MOVING (CT, PET or SPECT) to FIXED (MRI) with the BSAFusion network "
        "and write only OUT/aligned/<stem>.png and OUT/flow/<stem>.npy (2xHxW float32, pixels, "
        "channel 0 = x; aligned(p) = moving(p + flow(p))), for fusing with another method. "
        "Same inputs and options as 'bsafusion fuse'.",
    )
    add_io_arguments(p)
    p.set_defaults(handler=run, register_only=True)
