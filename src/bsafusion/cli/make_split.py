"""``bsafusion make-split``: write ``split.csv`` for a folder of paired slices."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-split", help="write split.csv (train/val/test) for DIR/MRI + DIR/<MODALITY>",
        description="Assign each pair (a file name present in DIR/MRI/ and DIR/<MODALITY>/) "
        "to train, val or test at random (seeded) and write DIR/split.csv. Files without a "
        "partner are listed with split 'unpaired', never dropped silently.",
    )
    p.add_argument("dir", help="folder holding MRI/ and one modality folder (CT/, PET/, ...)")
    p.add_argument("--val", type=float, default=0.1, help="fraction for validation")
    p.add_argument("--test", type=float, default=0.1, help="fraction for test")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed")
    p.add_argument("--modality", help="moving-modality folder (default: the one beside MRI/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing split.csv")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bsafusion.data.pairs import make_split

    report = make_split(args.dir, val=args.val, test=args.test, seed=args.seed,
                        modality=args.modality, overwrite=args.overwrite)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    print(f"wrote {report.path}: {counts}")
    for name in report.unpaired:
        print(f"unpaired (no partner): {name}")
    return 0
