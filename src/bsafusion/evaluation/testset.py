"""The deformed test-set format (architecture.md §6): :func:`make_testset` writes it and
:func:`load_testset` reads it; the two sides of one format live here together.

``make_testset`` writes, for every pair of a split::

    OUT/fixed/<stem>.png    the MRI, min-max normalised (8-bit grey)
    OUT/moving/<stem>.png   the moving image deformed (grey, or RGB for PET/SPECT)
    OUT/label/<stem>.png    the moving image undeformed, aligned with the MRI
    OUT/flow/<stem>.npy     the ground truth field, (2, H, W) float32 px, channel 0 = x,
                            in the network's convention: warp(moving, flow) ≈ label
    OUT/meta.json           seed, deformation config and per-pair statistics

Colour images are deformed as Y + CbCr and written back through the BT.601 inverse (§7),
so the Y of ``moving`` is exactly the deformed Y the network sees.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from bsafusion.config import DeformConfig
from bsafusion.data.deform import deform
from bsafusion.data.pairs import load_pairs
from bsafusion.errors import InputError
from bsafusion.infer.procedure import split_color
from bsafusion.io.atomic import atomic_write
from bsafusion.io.image import read_image, write_png
from bsafusion.losses import FOREGROUND, head_mask
from bsafusion.ops.color import ycbcr_to_rgb

__all__ = ["FOREGROUND", "Testset", "TestsetReport", "load_testset", "make_testset"]



class Testset(NamedTuple):
    """A loaded test set: N pairs, (N, C, H, W) tensors in [0, 1] (Y / CbCr: BT.601, §7)."""

    root: Path
    names: tuple[str, ...]  # file stems
    fixed: torch.Tensor  # (N, 1, H, W) MRI
    moving: torch.Tensor  # (N, 1, H, W) deformed moving image (Y for colour)
    chroma: torch.Tensor | None  # (N, 2, H, W) Cb, Cr of the deformed colour image
    label: torch.Tensor  # (N, 1, H, W) undeformed moving image (Y)
    flow: torch.Tensor  # (N, 2, H, W) ground truth, px, warp(moving, flow) ≈ label
    moving_image: torch.Tensor  # (N, C, H, W) the deformed moving image as stored (RGB or grey)


class TestsetReport(NamedTuple):
    """Summary of a written test set (px and grey levels in [0, 255])."""

    out_dir: Path
    num_pairs: int
    mean_displacement: float  # mean |flow| over foreground pixels
    p95_displacement: float
    mean_intensity_change: float  # mean |moving - label| * 255 (Y / grey)


def make_testset(data_dir: str | os.PathLike, modality: str, out_dir: str | os.PathLike, *,
                 split: str = "test", seed: int = 0, config: DeformConfig | None = None,
                 image_size: int | None = None, device=None, overwrite: bool = False
                 ) -> TestsetReport:
    """Deform every pair of ``split`` with a seeded generator and write the set.

    Deterministic for (data, split, seed, config, image_size, device type): one
    ``torch.Generator(device).manual_seed(seed)`` deforms the whole split in one batch.

    Raises:
        InputError: ``out_dir`` holds a previous set (without ``overwrite``), or bad data.
    """
    out = Path(out_dir)
    if (out / "meta.json").exists() and not overwrite:
        raise InputError(out, "already holds a test set (pass --overwrite to replace it)")
    cfg = config or DeformConfig()
    dev = torch.device(device or "cpu")
    pairs = load_pairs(data_dir, modality, split, image_size=image_size, device=dev)
    moving = pairs.moving if pairs.chroma is None else torch.cat((pairs.moving, pairs.chroma), 1)
    gen = torch.Generator(device=dev).manual_seed(seed)
    result = deform(moving, cfg, generator=gen)
    head = head_mask(moving[:, :1])
    disp = result.flow.norm(dim=1, keepdim=True)[head]
    stats = _per_pair_stats(result.deformed[:, :1], moving[:, :1], result.flow, head)
    to_image = _to_rgb if pairs.chroma is not None else _to_grey
    for i, name in enumerate(pairs.names):
        stem = Path(name).stem
        write_png(out / "fixed" / f"{stem}.png", _to_grey(pairs.fixed[i]))
        write_png(out / "moving" / f"{stem}.png", to_image(result.deformed[i]))
        write_png(out / "label" / f"{stem}.png", to_image(moving[i]))
        flow = result.flow[i].float().cpu().numpy()
        atomic_write(out / "flow" / f"{stem}.npy", lambda tmp, f=flow: np.save(tmp, f))
    report = TestsetReport(out, len(pairs.names), float(disp.mean()),
                           float(disp.float().quantile(0.95)) if disp.numel() else 0.0,
                           float((result.deformed[:, :1] - moving[:, :1]).abs().mean() * 255))
    meta = {
        "pair": modality.upper(), "split": split, "seed": seed, "image_size": image_size,
        "device": dev.type, "deform": cfg.to_dict(), "convention":
        "warp(moving, flow)(p) = moving(p + flow(p)) ~ label; flow (2,H,W) px, channel 0 = x",
        "mean_displacement_px": report.mean_displacement,
        "p95_displacement_px": report.p95_displacement,
        "mean_intensity_change_255": report.mean_intensity_change,
        "pairs": {name: s for name, s in zip(pairs.names, stats, strict=True)},
    }
    text = json.dumps(meta, indent=1)
    atomic_write(out / "meta.json", lambda tmp: tmp.write_text(text))
    return report


def _per_pair_stats(deformed: torch.Tensor, label: torch.Tensor, flow: torch.Tensor,
                    head: torch.Tensor) -> list[dict[str, float]]:
    mag = flow.norm(dim=1, keepdim=True)
    fg = head.float()
    mean_disp = (mag * fg).flatten(1).sum(1) / fg.flatten(1).sum(1).clamp_min(1)
    change = (deformed - label).abs().flatten(1).mean(1) * 255
    return [{"mean_displacement_px": round(float(d), 4),
             "intensity_change_255": round(float(c), 4)}
            for d, c in zip(mean_disp, change, strict=True)]


def _to_grey(x: torch.Tensor) -> np.ndarray:
    return x[0].float().clamp(0, 1).cpu().numpy()


def _to_rgb(x: torch.Tensor) -> np.ndarray:
    rgb = ycbcr_to_rgb(x[None].float(), clamp=True)[0]
    return rgb.permute(1, 2, 0).cpu().numpy()


# ---------------------------------------------------------------------------- reading
def read_grey_and_chroma(path: Path) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(Y (1, 1, H, W), CbCr (1, 2, H, W) or None, the image (1, C, H, W)) of an image file."""
    arr = torch.from_numpy(np.ascontiguousarray(read_image(path), dtype=np.float32))
    image = arr[None, None] if arr.dim() == 2 else arr.permute(2, 0, 1)[None]
    return (*split_color(image), image)


def load_testset(root: str | os.PathLike, limit: int | None = None) -> Testset:
    """Read ``fixed/``, ``moving/``, ``label/`` (PNG) and ``flow/`` (.npy) of a test set."""
    root = Path(root)
    stems = sorted(p.stem for p in (root / "flow").glob("*.npy"))[:limit]
    if not stems:
        raise InputError(root / "flow", "no ground-truth fields (.npy) in this test set")
    fixed, moving, chroma, label, flow, images = [], [], [], [], [], []
    for stem in stems:
        fixed.append(read_grey_and_chroma(root / "fixed" / f"{stem}.png")[0])
        y, c, image = read_grey_and_chroma(root / "moving" / f"{stem}.png")
        moving.append(y)
        chroma.append(c)
        images.append(image)
        label.append(read_grey_and_chroma(root / "label" / f"{stem}.png")[0])
        flow.append(torch.from_numpy(np.load(root / "flow" / f"{stem}.npy"))[None].float())
    has_color = chroma[0] is not None
    return Testset(root, tuple(stems), torch.cat(fixed), torch.cat(moving),
                   torch.cat(chroma) if has_color else None, torch.cat(label), torch.cat(flow),
                   torch.cat(images))
