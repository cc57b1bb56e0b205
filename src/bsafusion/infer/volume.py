"""3-D volumes (NIfTI) through a 2-D pair function, slice by slice along one axis.

Like MONAI's ``SliceInferer``, which takes a network, :func:`fuse_volume` takes the function
that handles a batch of slices (:meth:`bsafusion.Fuser.fuse_tensors` by default) and never
calls back into a fuser object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from bsafusion.errors import InputError
from bsafusion.infer.fast.cuda import GRAPH_MAX_BATCH
from bsafusion.infer.result import FusionResult
from bsafusion.io.base import MIN_SIDE

__all__ = ["SliceFunction", "fuse_volume"]

# (fixed (B, 1, H, W), moving (B, 1, H, W)) -> FusionResult of (B, C, H, W) tensors
SliceFunction = Callable[[Tensor, Tensor], FusionResult[Tensor]]

log = logging.getLogger(__name__)


def _resample_volume(volume: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    vol = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    out = torch.nn.functional.interpolate(vol, size=shape, mode="trilinear", align_corners=True)
    return out[0, 0].numpy()


def fuse_volume(run: SliceFunction, fixed: np.ndarray, moving: np.ndarray, *,
                device: torch.device | str = "cpu", axis: int = 2, register_only: bool = False,
                batch_size: int | None = None) -> FusionResult[np.ndarray]:
    """Fuse (or register) two grey volumes (X, Y, Z) in [0, 1] slice by slice.

    Args:
        run: registers and fuses a batch of slices, e.g. :meth:`bsafusion.Fuser.fuse_tensors`
            (its working size and pre-alignment then apply to every slice).
        fixed, moving: (X, Y, Z) float in [0, 1]; ``moving`` is resampled (trilinear) to the
            fixed shape with a warning when they differ.
        axis: the slicing axis (0, 1 or 2).
        register_only: leave ``fused`` None.
        device: where the slices go (``run``'s device).
        batch_size: slices per forward pass (None: 1 on a CPU, where bigger batches run
            slower per slice; on a GPU ``GRAPH_MAX_BATCH``, 16, the largest batch
            that replays a CUDA graph).
    Returns:
        :class:`~bsafusion.infer.result.FusionResult`: ``fused``/``aligned`` (X, Y, Z); ``flow``
        (2, X, Y, Z) px, channel 0 along the slice's columns (the later in-plane axis),
        channel 1 along its rows (the earlier one). Slices where either image is constant
        (outside the body) are passed through: zero flow, ``aligned`` = moving,
        ``fused`` = fixed. ``meta["slices"]`` counts the slices the network saw.
    """
    for name, vol in (("fixed", fixed), ("moving", moving)):
        if vol.ndim != 3:
            raise InputError(name, f"expected a 3-D volume, got shape {vol.shape}")
    if axis not in (0, 1, 2):
        raise InputError("axis", f"must be 0, 1 or 2, got {axis}")
    if moving.shape != fixed.shape:
        log.warning("moving: volume shape %s differs from the fixed %s; resampled to the fixed "
                    "grid", moving.shape, fixed.shape)
        moving = _resample_volume(moving, fixed.shape)
    f = np.moveaxis(np.asarray(fixed, dtype=np.float32), axis, 0)
    m = np.moveaxis(np.asarray(moving, dtype=np.float32), axis, 0)
    if min(f.shape[1:]) < MIN_SIDE:
        h, w = f.shape[1:]
        raise InputError("fixed", f"slices along axis {axis} are {w}x{h}, too small (at least "
                                  f"{MIN_SIDE}x{MIN_SIDE})")
    fused, aligned = f.copy(), m.copy()
    flow = np.zeros((f.shape[0], 2, *f.shape[1:]), dtype=np.float32)
    spread = lambda v: v.max(axis=(1, 2)) - v.min(axis=(1, 2))  # noqa: E731
    active = np.flatnonzero((spread(f) > 1e-6) & (spread(m) > 1e-6))
    work = None
    if batch_size is None:
        batch_size = 1 if torch.device(device).type == "cpu" else GRAPH_MAX_BATCH
    if batch_size < 1:
        raise InputError("batch_size", f"must be >= 1, got {batch_size}")
    for start in range(0, len(active), batch_size):
        idx = active[start:start + batch_size]
        fixed_t = torch.from_numpy(f[idx][:, None]).to(device)
        moving_t = torch.from_numpy(m[idx][:, None]).to(device)
        out = run(fixed_t, moving_t)
        fused[idx] = out.fused[:, 0].float().cpu().numpy()
        aligned[idx] = out.aligned[:, 0].float().cpu().numpy()
        flow[idx] = out.flow.float().cpu().numpy()
        work = (out.meta or {}).get("work_size")
    log.info("volume: %d of %d slices along axis %d through the network", len(active), len(f), axis)
    meta = {"work_size": work, "slices": int(len(active)), "axis": axis}
    return FusionResult(
        None if register_only else np.moveaxis(fused, 0, axis),
        np.moveaxis(aligned, 0, axis),
        np.moveaxis(flow, 0, axis + 1) if axis else flow.transpose(1, 0, 2, 3),
        meta,
    )
