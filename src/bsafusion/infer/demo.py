"""The offline demo: a bundled sample pair whose moving image is really misaligned.

The bundled pairs are aligned, so the demo deforms the moving image with a fixed, smooth
field (no randomness): a translation of (+3, -2) px plus a sinusoidal elastic part of up to
4 px, ``d(x, y) = (3 + 4 sin(2 pi y / H), -2 + 4 sin(2 pi x / W))`` in pixels, applied as
``moving_demo = warp(moving, d)``. A network that registers well predicts a flow close to the
inverse of ``d``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bsafusion.infer.outputs import check_outputs_free, write_result
from bsafusion.infer.result import FusionResult
from bsafusion.io.image import ImageData, load_image
from bsafusion.ops.grid import pixel_grid
from bsafusion.ops.warp import warp
from bsafusion.samples import sample_pairs

__all__ = ["demo_deformation", "demo_pair", "run_demo"]


def demo_deformation(height: int, width: int) -> torch.Tensor:
    """The demo's fixed smooth field: (1, 2, H, W) px, channel 0 = x (see module docstring)."""
    grid = pixel_grid(height, width)
    x, y = grid[:, 0], grid[:, 1]
    dx = 3.0 + 4.0 * torch.sin(2 * math.pi * y / height)
    dy = -2.0 + 4.0 * torch.sin(2 * math.pi * x / width)
    return torch.stack((dx, dy), dim=1)


def demo_pair(pair: str = "ct") -> tuple[str, ImageData, ImageData]:
    """(stem, fixed MRI, moving image deformed by :func:`demo_deformation`)."""
    sample = sample_pairs(pair)[0]
    fixed, moving = load_image(sample.fixed), load_image(sample.moving)
    arr = moving.array
    t = torch.from_numpy(arr[None, None] if arr.ndim == 2 else arr.transpose(2, 0, 1)[None])
    deformed = warp(t, demo_deformation(*arr.shape[:2]))[0].numpy()
    deformed = deformed[0] if arr.ndim == 2 else deformed.transpose(1, 2, 0)
    moving.array = np.ascontiguousarray(deformed)
    return sample.name, fixed, moving


def run_demo(run: Callable[[np.ndarray, np.ndarray], FusionResult[np.ndarray]], pair: str,
             out_dir: str | os.PathLike, *, panel: bool = True, overwrite: bool = False,
             register_only: bool = False) -> list[Path]:
    """Run ``run`` (e.g. :meth:`bsafusion.Fuser.fuse`, or ``register`` with
    ``register_only``) on the demo pair of ``pair`` and write the output layout."""
    check_outputs_free(out_dir, sample_pairs(pair)[0].name, register_only=register_only,
                       panel=panel, overwrite=overwrite)
    stem, fixed, moving = demo_pair(pair)
    result = run(fixed.array, moving.array)
    return write_result(out_dir, stem, result, fixed=fixed.array, moving=moving.array,
                        fixed_meta=fixed.meta, moving_meta=moving.meta, fmt="png",
                        panel=panel and not register_only, overwrite=overwrite,
                        inputs={"demo": pair})
