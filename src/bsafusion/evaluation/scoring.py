"""Scoring one method's result on one pair of the test set (see :mod:`bsafusion.evaluation`).

- **registration**: NCC, MSE, SSIM of aligned vs ``label`` (Y for PET/SPECT), end-point error
  vs the ground truth over the head (:func:`bsafusion.losses.head_mask` of ``label``:
  mean and 95th percentile, px), % of pixels whose Jacobian determinant is ≤ 0, inverse
  consistency where a reverse field exists (the network: φ_BA = φ_A − φ_B), and TRE (px) when
  landmarks are given;
- **fusion**: :mod:`bsafusion.metrics.fusion` with A = the MRI, B = the *undeformed* moving
  image (so a misregistered fusion is penalised), F = the fused image, all in A's frame,
  scored on the 0-255 grey scale; colour images on their BT.601 Y. Fused and aligned images
  are quantised to 8 bits first, exactly as the PNGs of an external method are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bsafusion.errors import InputError
from bsafusion.evaluation.testset import Testset
from bsafusion.infer.result import FusionResult
from bsafusion.losses import head_mask
from bsafusion.metrics import fusion as fusion_metrics
from bsafusion.metrics import registration as reg

__all__ = ["load_landmarks", "score"]


def _quantize(x: Tensor) -> Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def score(ts: Testset, i: int, result: FusionResult[Tensor], landmarks: np.ndarray | None
          ) -> dict[str, float]:
    """Registration and fusion metrics of one result on pair ``i`` (see the module doc)."""
    label, fixed = ts.label[i:i + 1], ts.fixed[i:i + 1]
    row: dict[str, float] = {}
    aligned = result.aligned_grey
    aligned = _quantize(aligned) if bool(torch.isfinite(aligned).all()) else None
    if aligned is not None:
        row["NCC"] = float(reg.ncc(aligned, label)[0])
        row["MSE"] = float(reg.mse(aligned, label)[0])
        row["SSIM_reg"] = float(reg.ssim(aligned, label)[0])
    if result.flow is not None:
        head = head_mask(label)
        mean, p95 = reg.endpoint_error_stats(result.flow, ts.flow[i:i + 1], head)
        row["EPE"], row["EPE_p95"] = float(mean[0]), float(p95[0])
        row["fold_pct"] = float(reg.folding_percent(result.flow)[0])
        if result.reverse is not None:
            row["inv_cons"] = float(reg.inverse_consistency(result.flow, result.reverse)[0])
        if landmarks is not None:
            row["TRE"] = float(reg.landmark_tre(result.flow, torch.from_numpy(landmarks)).mean())
    row.update(fusion_metrics.fusion_metrics(fixed[0, 0], label[0, 0],
                                             _quantize(result.fused_grey)[0, 0]))
    return row


def load_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``pair,fixed_x,fixed_y,moving_x,moving_y`` rows (px, moving = deformed image).

    Returns:
        {pair stem: (K, 4) float64 array of fixed_x, fixed_y, moving_x, moving_y}.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    cols = ("fixed_x", "fixed_y", "moving_x", "moving_y")
    out: dict[str, list] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"pair", *cols} <= set(reader.fieldnames):
            raise InputError(path, f"expected the header pair,{','.join(cols)}")
        for i, row in enumerate(reader, start=2):
            try:
                out.setdefault(Path(row["pair"]).stem, []).append([float(row[c]) for c in cols])
            except (TypeError, ValueError):
                raise InputError(path, f"line {i}: expected numbers in {', '.join(cols)}") from None
    return {k: np.asarray(v) for k, v in out.items()}
