"""``bsafusion make-testset``: a deterministic deformed benchmark set with ground truth."""

from __future__ import annotations

import argparse

from bsafusion.cli.common import (
    DEVICE_HELP,
    add_device_argument,
    add_out_argument,
    add_pair_argument,
    multiple_of_16,
    resolve_device,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-testset", help="deform a split with a seed; write fixed/moving/label/flow",
        description="Deform every moving image of a split with a seeded random field "
        "(architecture.md §6; default: the published test level) and write OUT/fixed/, "
        "OUT/moving/ (deformed), OUT/label/ (undeformed), OUT/flow/ (ground truth, .npy, "
        "warp(moving, flow) = label) and OUT/meta.json. Same seed, same set.",
    )
    add_pair_argument(p, required=True)
    add_out_argument(p, "output folder")
    p.add_argument("--data", help="pair folder or its parent (default: $BSAFUSION_DATA, "
                   ".cache/aanlib or ../shared/data/aanlib)")
    p.add_argument("--split", default="test", help="split to deform")
    p.add_argument("--seed", type=int, default=0, help="deformation seed")
    p.add_argument("--elastic-px", type=float, default=10.0,
                   help="maximum displacement of the elastic part in px")
    p.add_argument("--translation", type=float, default=0.01,
                   help="maximum translation per axis, fraction of the size")
    p.add_argument("--rotation-deg", type=float, default=0.0, help="maximum rotation in degrees")
    p.add_argument("--image-size", type=multiple_of_16, help="resize to this square size "
                   "first, a multiple of 16 (default: the data's size)")
    add_device_argument(p, DEVICE_HELP + " (default cpu, unlike other commands: the set "
                        "depends on the generator's device type, and cpu matches the sets "
                        "evaluate builds)", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="replace an existing set")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bsafusion.config import DeformConfig
    from bsafusion.data.pairs import default_data_dir
    from bsafusion.evaluation.testset import make_testset
    from bsafusion.pairs import get_pair

    config = DeformConfig(elastic_px=(args.elastic_px, args.elastic_px),
                          translation=args.translation, rotation_deg=args.rotation_deg)
    from bsafusion.io.atomic import check_out_dir

    device = resolve_device(args.device)
    check_out_dir(args.out)
    report = make_testset(args.data or default_data_dir(), get_pair(args.pair).modality, args.out,
                          split=args.split, seed=args.seed, config=config,
                          image_size=args.image_size, device=device,
                          overwrite=args.overwrite)
    print(f"wrote {report.num_pairs} pairs to {report.out_dir}: mean foreground displacement "
          f"{report.mean_displacement:.2f} px (p95 {report.p95_displacement:.2f}), mean "
          f"intensity change {report.mean_intensity_change:.1f}/255")
    return 0
