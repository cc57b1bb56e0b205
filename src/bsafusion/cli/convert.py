"""``bsafusion convert``: a release ``.pt`` checkpoint -> our safetensors format."""

from __future__ import annotations

import argparse

from bsafusion.cli.common import add_output_file_argument, add_pair_argument, output_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert an authors' release checkpoint (.pt) to safetensors",
        description="Convert a checkpoint of the authors' BSAFusion release (.pt/.pkl, loaded "
        "with weights_only=True) to bsafusion's safetensors format. The release's quirks "
        "(architecture.md §8) are recorded in the file, so it reproduces the release.",
    )
    p.add_argument("checkpoint", help="release checkpoint (.pt / .pkl)")
    add_output_file_argument(p, "output .safetensors file (a .sha256 sidecar is written too)")
    add_pair_argument(p, help="modality pair of the checkpoint, recorded in the file so that "
                      "fuse refuses it for another pair (default: from the checkpoint's name, "
                      "e.g. BSAFusion_CT.pkl)")
    p.add_argument("--fp16", action="store_true", help="store float16 tensors (half the size)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from bsafusion.io.atomic import check_out_dir, refuse_overwrite
    from bsafusion.model import BSAFusion
    from bsafusion.weights import pair_in_name

    out = Path(output_file(args))
    refuse_overwrite(out, args.overwrite)
    check_out_dir(out.parent if str(out.parent) else ".", "out")
    pair = args.pair or pair_in_name(args.checkpoint)
    model = BSAFusion.from_release_checkpoint(args.checkpoint)
    dtype = torch.float16 if args.fp16 else torch.float32
    source = {"source": Path(args.checkpoint).name, "status": "release",
              **({"pair": pair} if pair else {})}
    digest = model.save_pretrained(out, dtype=dtype, metadata=source)
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {args.checkpoint} -> {out} ({n:,} parameters, sha256 {digest[:12]}...)")
    return 0
