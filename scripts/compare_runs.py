"""Plot the validation curves of several training runs against the zero field (issue 14).

    python scripts/compare_runs.py runs/ct-cpu-ab-faithful runs/ct-cpu-ab-pyramid -o cmp.png

Each run folder's ``log.csv`` gives, per validated epoch, the end-point error (mean, on
edges and, where the log has it, over the head), NCC of aligned vs undeformed and the mean
|flow|; dashed lines are the zero field's.
The x axis is training steps (epochs x steps per epoch, from ``config.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

PANELS = (("val_epe_mean", "val_epe_identity", "val EPE (px)"),
          ("val_epe_head", "val_epe_head_identity", "val EPE over the head (px)"),
          ("val_epe_edge", "val_epe_edge_identity", "val EPE on edges (px)"),
          ("val_ncc", "val_ncc_identity", "val NCC"),
          ("val_flow_mag", None, "val mean |flow| (px)"))


def load(run: Path) -> tuple[list[float], list[dict]]:
    config = json.loads((run / "config.json").read_text())
    with open(run / "log.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val_epe_mean")]
    pairs = {"ct": 144, "pet": 194, "spect": 260}.get(config.get("pair"), 144)
    pairs = min(pairs, config.get("max_train_pairs") or pairs)
    per_epoch = math.ceil(pairs / config["batch_size"])
    return [float(r["epoch"]) * per_epoch for r in rows], rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
    for i, run in enumerate(args.runs):
        steps, rows = load(run)
        colour = f"C{i}"
        for ax, (key, zero, title) in zip(axes, PANELS, strict=True):
            if rows and key in rows[0]:
                ax.plot(steps, [float(r[key]) for r in rows], color=colour, label=run.name)
            if zero and rows and rows[0].get(zero):
                ax.axhline(float(rows[0][zero]), color="grey", ls="--", lw=0.8)
            ax.set_title(title)
            ax.set_xlabel("training steps")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)


if __name__ == "__main__":
    main()
