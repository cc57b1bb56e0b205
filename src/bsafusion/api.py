"""The Python API: :class:`Fuser` turns user arrays (numpy or torch) into results (style.md §7).

``Fuser`` owns every step between user arrays and the network: layout (grey, colour, batches),
scale and sanity checks, resampling a moving image onto the fixed grid, the working resolution
and colour path (:mod:`bsafusion.pipeline`), the optional MI pre-alignment
(:mod:`bsafusion.prealign`), NIfTI volumes slice by slice, and writing files
(:mod:`bsafusion.outputs`). It runs under ``torch.inference_mode()``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from bsafusion.config import FeatureWarp
from bsafusion.errors import InputError
from bsafusion.inference import fast_network
from bsafusion.io.image import MIN_SIDE
from bsafusion.model.bsafusion import BSAFusion, BSAFusionOutput
from bsafusion.ops.checks import check_shape
from bsafusion.ops.warp import warp
from bsafusion.pipeline import (
    DEFAULT_WORK_SIZE,
    align_and_fuse,
    recombine_color,
    resize_image,
    to_luma,
)

__all__ = ["ColorFusion", "Fuser", "FusionResult", "fuse_color"]

log = logging.getLogger(__name__)
BYTES_PER_PIXEL = 160  # native-resolution float32 buffers per pixel (inputs, grids, outputs)


class ColorFusion(NamedTuple):
    """Result of :func:`fuse_color`."""

    fused_rgb: Tensor  # (B, 3, H, W) fused Y recombined with the aligned Cb/Cr
    aligned_rgb: Tensor  # (B, 3, H, W) the colour moving image in the fixed frame
    output: BSAFusionOutput  # the network's output on (fixed, Y of moving)


def fuse_color(model: BSAFusion, fixed: Tensor, moving_rgb: Tensor, *,
               clamp: bool = True) -> ColorFusion:
    """Fuse an MRI with a pseudo-colour PET/SPECT image (architecture.md §1, §7).

    The moving image goes to YCbCr; only Y enters the network. Cb/Cr are warped by the
    predicted flow with the exact warp (border padding, so the margin keeps neutral chroma
    where the image had it) and recombined with the fused Y.

    Args:
        model: the network; ``model.config.color`` picks the Y weights (§8.5).
        fixed: (B, 1, H, W) in [0, 1].
        moving_rgb: (B, 3, H, W) in [0, 1].
        clamp: clamp the RGB results to [0, 1] (the release does not).
    Returns:
        :class:`ColorFusion`.
    """
    check_shape(moving_rgb, "B 3 H W", "moving_rgb")
    luma, chroma = to_luma(model, moving_rgb)
    out = model(fixed, luma)
    exact = model.config.feature_warp is FeatureWarp.EXACT
    aligned_luma = out.aligned if exact else warp(luma, out.flow)
    fused_rgb, aligned_rgb = recombine_color(out.fused, aligned_luma, chroma, out.flow,
                                             clamp=clamp)
    return ColorFusion(fused_rgb=fused_rgb, aligned_rgb=aligned_rgb, output=out)


class FusionResult(NamedTuple):
    """What :class:`Fuser` returns, in the fixed image's frame and size.

    Layouts follow the input: numpy (H, W) / (H, W, 3) / (B, H, W) / (B, H, W, 3), or torch
    (H, W) / (C, H, W) / (B, C, H, W) on the input's device; volumes are (X, Y, Z).
    """

    fused: Any  # fused image in [0, 1] (RGB for a colour moving image); None from register()
    aligned: Any  # the moving image warped into the fixed frame, same layout
    flow: Any  # float32 px, (2, H, W) or (B, 2, H, W); channel 0 = x; samples the moving image
    meta: dict | None = None  # work_size, prealign (A, t) per item, warnings


class _Batch(NamedTuple):
    tensor: Tensor  # (B, C, H, W) float32 in [0, 1] on the fuser's device
    numpy: bool
    batched: bool
    ndim: int
    device: Any


class Fuser:
    """Register and fuse MRI / CT-PET-SPECT pairs given as numpy arrays or torch tensors.

    Args:
        model: a :class:`BSAFusion` network.
        device: where to run it (default: the model's device).
        work_size: the network's working resolution (longer side, multiple of 16);
            ``None`` runs at the native size rounded to multiples of 16.
        prealign: ``None``, ``"rigid"`` or ``"affine"``: estimate a global transform by
            mutual information first (needs SimpleITK, extra ``prealign``).
        fast: run :func:`bsafusion.inference.fast_network`: the folded network of
            :func:`~bsafusion.inference.optimize_for_inference` (same outputs within 1e-3;
            1.5-1.9x faster on a 2-core CPU), on a GPU also with padded conv inputs,
            channels-last weights and CUDA graphs up to batch 16 (:mod:`bsafusion.cuda`).
            ``False`` runs ``model`` as is.
        amp: bf16 autocast on CUDA (with ``fast``, on an H200: 7 ms per 256² pair at batch 1,
            931 pairs/s at batch 256, vs 30 ms and 523 for eager fp32; fused differs from fp32
            by ~2e-3 on average, up to ~0.2 at single pixels). Ignored on CPU.
        cuda_graphs: with ``fast`` on a GPU, replay CUDA graphs for batches of up to 16
            (:class:`bsafusion.cuda.CudaGraphNetwork`); ``False`` runs the network directly.

    Example:
        >>> fuser = Fuser.from_pretrained("ct", device="cpu")  # doctest: +SKIP
        >>> res = fuser(mri, ct)  # (H, W) arrays in [0, 1]  # doctest: +SKIP
        >>> res.fused, res.aligned, res.flow  # (H, W), (H, W), (2, H, W)  # doctest: +SKIP
    """

    def __init__(self, model: BSAFusion, device=None, *, work_size: int | None = DEFAULT_WORK_SIZE,
                 prealign: str | None = None, fast: bool = True, amp: bool = False,
                 cuda_graphs: bool = True) -> None:
        default = next(model.parameters()).device
        self.device = torch.device(device) if device is not None else default
        self.model = model.eval().to(self.device)
        self.network = fast_network(self.model, cuda_graphs=cuda_graphs) if fast else self.model
        self.amp = amp and self.device.type == "cuda"
        if work_size is not None and (work_size < 16 or work_size % 16):
            raise InputError("work_size", f"must be a positive multiple of 16, got {work_size}")
        if prealign not in (None, "rigid", "affine"):
            raise InputError("prealign", f"unknown kind {prealign!r} (choose rigid or affine)")
        self.work_size, self.prealign = work_size, prealign

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device=None, **kwargs) -> Fuser:
        """Load bundled weights by pair name (``"ct"``, ``"pet"``, ``"spect"``, sha256-checked),
        our safetensors file, or a release ``.pt`` checkpoint; ``kwargs`` go to the constructor."""
        from bsafusion.model.build import build_bsafusion

        return cls(build_bsafusion(weights=name_or_path), device, **kwargs)

    @classmethod
    def from_release(cls, path: str | os.PathLike, device=None, **kwargs) -> Fuser:
        """Load an authors' release checkpoint (§8 quirks on)."""
        return cls(BSAFusion.from_release_checkpoint(path), device, **kwargs)

    # ------------------------------------------------------------------ arrays
    def __call__(self, fixed, moving) -> FusionResult:
        """Same as :meth:`fuse`."""
        return self.fuse(fixed, moving)

    def fuse(self, fixed, moving) -> FusionResult:
        """Register ``moving`` to ``fixed`` and fuse them.

        Args:
            fixed: MRI, grey: numpy (H, W) / (B, H, W) or torch (H, W) / (1, H, W) /
                (B, 1, H, W); float in [0, 1], or uint8 / uint16 (scaled by bit depth).
            moving: CT (grey) or PET / SPECT (RGB: numpy (..., H, W, 3), torch (..., 3, H, W)),
                any size (resampled to the fixed grid with a warning if it differs).
        Returns:
            :class:`FusionResult` (numpy for numpy input, tensors for tensor input).
        Raises:
            InputError: bad layout, NaN/Inf, values outside [0, 1], a constant image, too
                small, or too large for the available memory.
        """
        return self._run(fixed, moving, register_only=False)

    def register(self, fixed, moving) -> FusionResult:
        """Like :meth:`fuse` but for registration only: ``fused`` is None."""
        return self._run(fixed, moving, register_only=True)

    def fuse_tensors(self, fixed: Tensor, moving: Tensor):
        """The torch twin of :meth:`fuse` on (B, 1, H, W) / (B, C, H, W) tensors already on
        the fixed grid; returns :class:`bsafusion.pipeline.PairOutput` (no copies to numpy)."""
        check_shape(fixed, "B 1 H W", "fixed")
        check_shape(moving, f"{fixed.shape[0]} * {fixed.shape[2]} {fixed.shape[3]}", "moving")
        return self._infer(fixed.to(self.device, torch.float32),
                           moving.to(self.device, torch.float32))[0]

    def _infer(self, fixed: Tensor, moving: Tensor) -> tuple[Any, list | None]:
        with torch.inference_mode():
            pairs = self._prealign(fixed, moving)
            prealign = None if pairs is None else tuple(
                torch.as_tensor(np.stack(part), dtype=torch.float32, device=self.device)
                for part in zip(*pairs, strict=True))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                out = align_and_fuse(self.network, fixed, moving, work_size=self.work_size,
                                     prealign=prealign)
            if self.amp:
                out = out._replace(**{k: getattr(out, k).float() for k in ("fused", "aligned",
                                                                           "flow")})
        return out, pairs

    def _run(self, fixed, moving, *, register_only: bool) -> FusionResult:
        f = _as_batch(fixed, "fixed", self.device)
        m = _as_batch(moving, "moving", self.device)
        if f.tensor.shape[1] != 1:
            f = f._replace(tensor=_grey_or_fail(f.tensor))
        if f.tensor.shape[0] != m.tensor.shape[0]:
            raise InputError("moving", f"batch of {m.tensor.shape[0]} != fixed batch of "
                                       f"{f.tensor.shape[0]}")
        moving_t = m.tensor
        if moving_t.shape[-2:] != f.tensor.shape[-2:]:
            log.warning("moving: size %s differs from the fixed image's %s; resampled to the "
                        "fixed grid", tuple(moving_t.shape[-2:]), tuple(f.tensor.shape[-2:]))
            moving_t = resize_image(moving_t, tuple(f.tensor.shape[-2:]))
        check_memory(*moving_t.shape, where="moving")
        out, pairs = self._infer(f.tensor, moving_t)
        meta = {"work_size": out.work_size, "prealign": pairs}
        fused = None if register_only else _restore(out.fused, m)
        return FusionResult(fused, _restore(out.aligned, m), _restore_flow(out.flow, m), meta)

    def _prealign(self, fixed: Tensor, moving: Tensor) -> list | None:
        """Per item (A (2, 2), t (2,)) from :func:`bsafusion.prealign.estimate_prealign`."""
        if self.prealign is None:
            return None
        from bsafusion.prealign import estimate_prealign

        luma, _ = to_luma(self.model, moving)
        return [estimate_prealign(f[0].cpu().numpy(), m[0].cpu().numpy(), self.prealign)
                for f, m in zip(fixed, luma, strict=True)]

    # ------------------------------------------------------------------ volumes, files
    def fuse_volume(self, fixed: np.ndarray, moving: np.ndarray, *, axis: int = 2,
                    register_only: bool = False, batch_size: int | None = None
                    ) -> FusionResult:
        """Fuse two grey volumes (X, Y, Z) in [0, 1] slice by slice along ``axis``.

        ``batch_size`` slices go through the network at once; by default 1 on a CPU (where
        larger batches are slower per slice: 0.21 s per 256² slice at 1, 0.41 s at 16, on
        2 cores) and 16 on a GPU.

        Slices where either image is constant (outside the body) are passed through with a
        zero flow (``aligned`` = moving, ``fused`` = fixed). Returns volumes in the fixed
        volume's shape; ``flow`` is (2, X, Y, Z) px with channel 0 along the slice's columns
        (the later in-plane axis) and channel 1 along its rows (the earlier one); no motion
        along ``axis``.
        """
        from bsafusion.volume import fuse_volume

        return fuse_volume(self, fixed, moving, axis=axis, register_only=register_only,
                           batch_size=batch_size)

    def fuse_files(self, fixed: str | os.PathLike, moving: str | os.PathLike,
                   out_dir: str | os.PathLike, **kwargs) -> list[Path]:
        """Read a pair of files, fuse (or register) them and write the output layout.

        See :func:`bsafusion.outputs.fuse_files` for the keyword arguments and layout.
        """
        from bsafusion.outputs import fuse_files

        return fuse_files(self, fixed, moving, out_dir, **kwargs)


def check_memory(batch: int, channels: int, height: int, width: int, *, where: object) -> None:
    """Raise :class:`InputError` if native-resolution processing would not fit in memory."""
    need = batch * height * width * (BYTES_PER_PIXEL + 16 * channels)
    avail = available_memory()
    if avail is not None and need > 0.8 * avail:
        raise InputError(where, f"{width}x{height} needs about {need / 2**30:.1f} GiB to process "
                                f"at native size but only {avail / 2**30:.1f} GiB is available; "
                                "crop or downsample it")


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _as_batch(image, name: str, device) -> _Batch:
    is_tensor = isinstance(image, Tensor)
    src_device = image.device if is_tensor else None
    arr = image.detach().cpu().numpy() if is_tensor else np.asarray(image)
    ndim = arr.ndim
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif arr.dtype.kind not in "fb":
        raise InputError(name, f"unsupported dtype {arr.dtype} (use float in [0, 1], uint8 or "
                               "uint16)")
    arr = arr.astype(np.float32, copy=False)
    if is_tensor:  # (H, W), (C, H, W), (B, C, H, W)
        batched = ndim == 4
        nchw = {2: lambda a: a[None, None], 3: lambda a: a[None], 4: lambda a: a}.get(ndim)
    else:  # (H, W), (H, W, 3), (B, H, W), (B, H, W, 3)
        colour = ndim >= 3 and arr.shape[-1] == 3
        batched = ndim == 4 or (ndim == 3 and not colour)
        nchw = {2: lambda a: a[None, None], 4: lambda a: a.transpose(0, 3, 1, 2),
                3: (lambda a: a.transpose(2, 0, 1)[None]) if colour else (lambda a: a[:, None])
                }.get(ndim)
        if ndim == 4 and not colour:
            nchw = None
    if nchw is None:
        raise InputError(name, f"unsupported shape {arr.shape}; expected grey or RGB, optionally "
                               "batched")
    arr = np.ascontiguousarray(nchw(arr))
    if arr.shape[1] not in (1, 3):
        raise InputError(name, f"has {arr.shape[1]} channels; expected 1 (grey) or 3 (RGB)")
    _check_values(name, arr)
    return _Batch(torch.from_numpy(arr).to(device), not is_tensor, batched, ndim, src_device)


def _check_values(name: str, arr: np.ndarray) -> None:
    h, w = arr.shape[-2:]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InputError(name, f"is too small ({w}x{h}; at least {MIN_SIDE}x{MIN_SIDE} needed)")
    if not np.isfinite(arr).all():
        raise InputError(name, "contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise InputError(name, f"values span [{lo:.4g}, {hi:.4g}]; expected [0, 1] (scale it first,"
                               " as bsafusion.io.load_image does)")
    for i, item in enumerate(arr):
        if float(item.max()) - float(item.min()) <= 1e-6:
            where = f"{name}[{i}]" if len(arr) > 1 else name
            raise InputError(where, f"is constant (every pixel is {float(item.flat[0]):.4g}): "
                                    "there is nothing to register")


def _grey_or_fail(fixed: Tensor) -> Tensor:
    spread = (fixed - fixed.mean(dim=1, keepdim=True)).abs().amax()
    if fixed.shape[1] == 3 and float(spread) <= 1.0 / 255.0:
        return fixed.mean(dim=1, keepdim=True)  # an RGB file holding a grey MRI
    raise InputError("fixed", "the MRI must be grey (single channel), got a colour image")


def _restore(image: Tensor, like: _Batch):
    image = image.float()
    if like.numpy:
        arr = image.cpu().numpy().transpose(0, 2, 3, 1)
        arr = arr[..., 0] if arr.shape[-1] == 1 else arr
        return arr if like.batched else arr[0]
    image = image.to(like.device)
    if like.ndim == 4:
        return image
    return image[0] if like.ndim == 3 else image[0, 0]


def _restore_flow(flow: Tensor, like: _Batch):
    flow = flow.float()
    if like.numpy:
        arr = np.ascontiguousarray(flow.cpu().numpy())
        return arr if like.batched else arr[0]
    return flow.to(like.device) if like.batched else flow[0].to(like.device)
