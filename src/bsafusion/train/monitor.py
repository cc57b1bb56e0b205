"""What a run reports: ``log.csv``, TensorBoard (if installed), ``loss.png`` (if matplotlib
is installed) and progress: a tqdm bar if tqdm is installed, else a log line per epoch with
``k/N`` and an ETA (without progress, a log line per validation).

Only rank 0 creates a :class:`RunMonitor`; optional packages are imported lazily and their
absence is never an error.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from bsafusion.io.atomic import atomic_write
from bsafusion.losses import PLOTTED_TERMS
from bsafusion.progress import Eta

__all__ = ["RunMonitor"]

log = logging.getLogger(__name__)

PLOTTED = PLOTTED_TERMS  # named in bsafusion.losses


class RunMonitor:
    """CSV + TensorBoard + loss curve + progress for one run folder.

    Args:
        out_dir: the run folder.
        total_epochs: length of the schedule (for the progress bar).
        start_epoch: epochs already done (on resume).
        progress: show a progress bar (tqdm) when available, else a line per epoch.
    """

    def __init__(self, out_dir: str | Path, total_epochs: int, start_epoch: int = 0,
                 progress: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.tb = _tensorboard(self.out_dir / "tb")
        self.bar = _tqdm(total_epochs, start_epoch) if progress else None
        self.eta = Eta(total_epochs, start_epoch) if progress and self.bar is None else None
        self.last_epe = float("nan")  # latest validation EPE, shown between validations

    def set_total(self, total_epochs: int) -> None:
        """The schedule's length changed (a time budget was fitted)."""
        if self.eta is not None:
            self.eta.total = total_epochs
        if self.bar is not None and hasattr(self.bar, "total"):
            self.bar.total = total_epochs
            self.bar.refresh()

    def write_config(self, config: dict[str, Any]) -> None:
        """Write ``config.json``: the run's TrainConfig (with its ModelConfig and deformations)."""
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        atomic_write(self.out_dir / "config.json", lambda tmp: tmp.write_text(text))

    def write_history(self, history: list[dict[str, Any]]) -> None:
        """Rewrite ``log.csv`` from the rows so far (columns: union of keys, in order)."""
        columns: list[str] = []
        for row in history:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        text = buf.getvalue()
        atomic_write(self.out_dir / "log.csv", lambda tmp: tmp.write_text(text))

    def epoch_done(self, row: dict[str, Any]) -> None:
        """Report one epoch's row (scalars) to TensorBoard and the progress bar."""
        epoch = int(row["epoch"])
        if self.tb is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    tag = key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key
                    self.tb.add_scalar(tag, value, epoch)
        self.last_epe = row.get("val_epe_mean", self.last_epe)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{row.get('train_total', float('nan')):.4f}",
                                 val_epe=f"{self.last_epe:.3f}", refresh=False)
        elif self.eta is not None:
            val = (f", val EPE {row['val_epe_mean']:.3f} px, val SSIM "
                   f"{row.get('val_ssim', float('nan')):.4f}" if "val_epe_mean" in row else "")
            log.info("epoch %s: train loss %.4f%s", self.eta.text(epoch),
                     row.get("train_total", float("nan")), val)
        elif "val_epe_mean" in row:
            log.info("epoch %d: train loss %.4f, val EPE %.3f px, val SSIM %.4f", epoch,
                     row.get("train_total", float("nan")), row["val_epe_mean"],
                     row.get("val_ssim", float("nan")))

    def plot(self, history: list[dict[str, Any]]) -> None:
        """Write ``loss.png``: the training loss terms and the validation EPE per epoch."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        fig, (ax, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
        epochs = [r["epoch"] for r in history]
        for term in PLOTTED:
            values = [r.get(f"train_{term}", float("nan")) for r in history]
            ax.plot(epochs, values, label=term)
        ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss terms")
        ax.legend(fontsize=8)
        val = [(r["epoch"], r["val_epe_mean"]) for r in history if "val_epe_mean" in r]
        if val:
            ax_val.plot(*zip(*val, strict=True), marker="o", label="model")
            ident = [r["val_epe_identity"] for r in history if "val_epe_identity" in r]
            if ident:
                ax_val.axhline(ident[0], color="grey", linestyle="--", label="zero field")
            ax_val.legend(fontsize=8)
        ax_val.set(xlabel="epoch", ylabel="px", title="validation end-point error")
        fig.tight_layout()
        atomic_write(self.out_dir / "loss.png", lambda tmp: fig.savefig(tmp, dpi=100))
        plt.close(fig)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


def _tqdm(total: int, initial: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="epoch", dynamic_ncols=True)
