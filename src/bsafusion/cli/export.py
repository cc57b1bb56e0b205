"""``bsafusion export``: a training run -> safetensors inference weights."""

from __future__ import annotations

import argparse

from bsafusion.cli.common import add_output_file_argument, output_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a training run's model as safetensors weights",
        description="Write RUN's best (or last) checkpoint as safetensors weights with the "
        "model config in the metadata, loadable by BSAFusion.from_pretrained and "
        "`bsafusion fuse --weights`. The frozen discriminator (a copy of the classifier "
        "head) is kept so the file loads strictly.",
    )
    p.add_argument("run", help="run folder (or a checkpoint .pt file)")
    add_output_file_argument(p, "output .safetensors (a .sha256 sidecar is written too)")
    p.add_argument("--fp16", action="store_true", help="store float16 tensors (half the size)")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="which checkpoint of the run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bsafusion.train.checkpoint import export_weights

    out = output_file(args)
    path, digest, epoch = export_weights(args.run, out, fp16=args.fp16,
                                         which=args.which, overwrite=args.overwrite)
    print(f"exported {path} (epoch {epoch}) -> {out} (sha256 {digest[:12]}...)")
    return 0
