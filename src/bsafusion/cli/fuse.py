"""``bsafusion fuse``: register and fuse an MRI with a CT / PET / SPECT image."""

from __future__ import annotations

import argparse

PAIRS = ("ct", "pet", "spect")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse", help="align and fuse an image pair (or the bundled demo pair)",
        description="Align MOVING (CT, PET or SPECT) to FIXED (MRI) and fuse them. Writes "
        "OUT/fused/<stem>.png, OUT/aligned/<stem>.png and OUT/flow/<stem>.npy (2xHxW float32, "
        "pixels, channel 0 = x; samples the moving image).",
    )
    p.add_argument("fixed", nargs="?", help="MRI image")
    p.add_argument("moving", nargs="?", help="CT / PET / SPECT image (PET, SPECT in colour)")
    p.add_argument("--pair", choices=PAIRS, default="ct", help="modality pair (default ct)")
    p.add_argument("--weights", help="weights file (.safetensors, or a release .pt); "
                   "default: the bundled weights of --pair")
    p.add_argument("--demo", action="store_true", help="fuse the bundled sample pair of --pair")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from bsafusion.api import Fuser
    from bsafusion.errors import InputError
    from bsafusion.io import read_image
    from bsafusion.outputs import write_result
    from bsafusion.samples import sample_pairs

    if args.demo:
        sample = sample_pairs(args.pair)[0]
        fixed_path, moving_path = sample.fixed, sample.moving
    elif args.fixed and args.moving:
        fixed_path, moving_path = Path(args.fixed), Path(args.moving)
    else:
        raise InputError("fuse", "give FIXED and MOVING images, or --demo")
    fuser = _load_fuser(args, logging.getLogger("bsafusion"))
    result = fuser(read_image(fixed_path), read_image(moving_path))
    paths = write_result(Path(args.out), Path(moving_path).stem, result, overwrite=args.overwrite)
    print(f"fused {fixed_path.name} + {moving_path.name} -> {', '.join(map(str, paths))}")
    return 0


def _load_fuser(args: argparse.Namespace, log):
    import sys

    from bsafusion.api import Fuser
    from bsafusion.weights import available_weights

    if args.weights or args.pair in available_weights():
        return Fuser.from_pretrained(args.weights or args.pair)
    if not args.demo:
        from bsafusion.errors import WeightsError

        raise WeightsError(args.pair, "no bundled weights for this pair yet; pass --weights FILE")
    import torch

    from bsafusion.model import BSAFusion

    print(f"bsafusion: warning: no trained {args.pair} weights are bundled yet; the demo runs an "
          "untrained network (it shows the pipeline, not fusion quality)", file=sys.stderr)
    torch.manual_seed(0)
    return Fuser(BSAFusion())
