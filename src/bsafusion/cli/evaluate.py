"""``bsafusion evaluate``: metric table of the network and the baselines on a test set."""

from __future__ import annotations

import argparse
import logging

from bsafusion.cli.common import (
    add_device_argument,
    add_out_argument,
    add_pair_argument,
    comma_list,
    multiple_of_16,
    positive_int,
    resolve_device,
)

METHODS = ("bsafusion", "identity-net", "identity-avg", "identity-max", "identity-lap",
           "elastix-lap")  # = bsafusion.evaluation.METHODS (not imported: keeps --help instant)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score the network and baselines on the synthetic test set",
        description="Build (or reuse) the deterministic deformed test set of --pair/--split/"
        "--seed, run the network and the baselines on it and write OUT/metrics.csv (one row "
        "per pair and method), OUT/summary.md (mean ± std, best in bold), panels of the best "
        "and worst pairs and OUT/index.html. Without --weights and bundled weights, an "
        "untrained seeded network is scored and the report says so.",
    )
    add_pair_argument(p, default="ct")
    p.add_argument("--split", default="test", help="split of split.csv")
    p.add_argument("--seed", type=int, default=0, help="deformation (and untrained-net) seed")
    p.add_argument("--weights", help="weights file (.safetensors or release .pt) of --pair "
                   "(default: the bundled weights of --pair)")
    add_out_argument(p, "report folder")
    p.add_argument("--methods", nargs="+", metavar="M", type=comma_list((*METHODS, "none")),
                   default=[list(METHODS)],
                   help=f"methods to run, space- or comma-separated (default: all, "
                   f"{','.join(METHODS)}; 'none' with --fused-dir scores only that)")
    p.add_argument("--testset", help="test set folder (default .cache/testsets/<PAIR>-<split>-"
                   "seed<seed>[-<N>px]); built there if missing")
    p.add_argument("--data", help="AANLIB folder for building the test set (default: "
                   "$BSAFUSION_DATA, .cache/aanlib or ../shared/data/aanlib)")
    p.add_argument("--image-size", type=multiple_of_16, help="resize the test set to this "
                   "square size, a multiple of 16 (default: the data's size)")
    p.add_argument("--limit", type=positive_int, help="score only the first N pairs (default: all)")
    p.add_argument("--fused-dir", help="fused images of another method (<stem>.png)")
    p.add_argument("--aligned-dir", help="its aligned moving images (<stem>.png)")
    p.add_argument("--flow-dir", help="its fields (<stem>.npy, 2xHxW px, channel 0 = x)")
    p.add_argument("--name", help="row name of that method (default: the folder name)")
    p.add_argument("--landmarks", help="CSV pair,fixed_x,fixed_y,moving_x,moving_y -> TRE")
    p.add_argument("--elastix-iterations", type=positive_int, default=256,
                   help="elastix iterations per resolution")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch threads (1: on a shared or busy CPU one thread per process is "
                   "several times faster than oversubscribed ones; the report records it)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="arithmetic of the network (as `fuse --precision`)")
    add_device_argument(p)
    p.set_defaults(handler=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from bsafusion.evaluation import EvalConfig, evaluate
    from bsafusion.io.atomic import check_out_dir
    from bsafusion.weights import check_weights_pair, weights_info

    device = resolve_device(args.device)
    check_out_dir(args.out)
    if args.weights:
        check_weights_pair(weights_info(args.weights), args.pair)
    torch.set_num_threads(max(1, args.threads))
    opt = {k: (Path(v) if v is not None else None) for k, v in (
        ("testset", args.testset), ("data", args.data), ("fused_dir", args.fused_dir),
        ("aligned_dir", args.aligned_dir), ("flow_dir", args.flow_dir),
        ("landmarks", args.landmarks))}
    methods = tuple(dict.fromkeys(m for group in args.methods for m in group))
    result = evaluate(EvalConfig(
        out_dir=Path(args.out), pair=args.pair, split=args.split, seed=args.seed,
        weights=args.weights, methods=methods, image_size=args.image_size,
        limit=args.limit, name=args.name, elastix_iterations=args.elastix_iterations,
        device=device, precision=args.precision, **opt))
    print(f"scored {len(result.methods)} methods on {len({r['pair'] for r in result.rows})} "
          f"pairs ({result.weights_label.split(':')[0]}) -> {result.files['index.html']}")
    return 0
