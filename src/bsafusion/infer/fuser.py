"""The Python API: :class:`Fuser` turns user arrays (numpy or torch) into results (style.md §7).

``Fuser`` owns every step between user arrays and the network: layout (grey, colour, batches),
scale and sanity checks, resampling a moving image onto the fixed grid, the working resolution
and colour path (:mod:`bsafusion.infer.procedure`), the optional MI pre-alignment
(:mod:`bsafusion.infer.prealign`), NIfTI volumes slice by slice
(:mod:`bsafusion.infer.volume`), and writing files (:mod:`bsafusion.infer.outputs`). It runs
under ``torch.inference_mode()``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from bsafusion.errors import InputError
from bsafusion.infer import outputs
from bsafusion.infer.fast import fast_network
from bsafusion.infer.fast.onnx import ExportedNetwork
from bsafusion.infer.fast.precision import PRECISIONS, native_bf16, precision_context
from bsafusion.infer.procedure import (
    DEFAULT_WORK_SIZE,
    align_and_fuse,
    resize_image,
    to_luma,
    work_shape,
)
from bsafusion.infer.result import FusionResult
from bsafusion.infer.volume import fuse_volume
from bsafusion.io.base import MIN_SIDE
from bsafusion.io.image import ImageData
from bsafusion.model.bsafusion import BSAFusion
from bsafusion.ops.checks import check_shape

__all__ = ["Fuser", "FusionResult", "available_memory", "check_images", "check_memory"]

log = logging.getLogger(__name__)
BYTES_PER_PIXEL = 160  # native-resolution float32 buffers per pixel (inputs, grids, outputs)
# the network's peak memory per pixel of the working size: 2.0-2.1 KiB measured on a CPU
# (fp32, fast network, 256² to 768²), plus a margin
WORK_BYTES_PER_PIXEL = 2304


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
        fast: run :func:`bsafusion.infer.fast.fast_network`: the folded network of
            :func:`~bsafusion.infer.fast.optimize_for_inference` (same outputs within 1e-3;
            1.5-1.9x faster on a 2-core CPU), on a GPU also with padded conv inputs,
            channels-last weights and CUDA graphs up to batch 16
            (:mod:`bsafusion.infer.fast.cuda`).
            ``False`` runs ``model`` as is.
        amp: ``precision="bf16"`` on CUDA (with ``fast``, on an H200: 7 ms per 256² pair at
            batch 1, 931 pairs/s at batch 256, vs 30 ms and 523 for eager fp32). Ignored on CPU.
        precision: ``"fp32"`` (default) or ``"bf16"``: bf16 autocast on a GPU or a CPU
            (:mod:`bsafusion.infer.fast.precision`). On CPUs without AVX512-BF16 / AMX it is
            far slower than fp32 (a warning says so). It is outside issue 19's accuracy
            bounds (bundled CT weights: fused max 0.15-0.17, flow EPE mean 0.10 px against
            fp32; ``benchmarks/RESULTS.md``), so fp32 stays the default.
        cuda_graphs: with ``fast`` on a GPU, replay CUDA graphs for batches of up to 16
            (:class:`bsafusion.infer.fast.CudaGraphNetwork`); ``False`` runs the network directly.
        backend: ``"torch"`` (default), or on a CPU ``"onnxruntime"`` / ``"openvino"``: the
            folded network exported to ONNX (per input shape, on first use) and run by that
            runtime, fp32 (:mod:`bsafusion.infer.fast.onnx`; extras ``onnx`` / ``openvino``).

    Example:
        >>> fuser = Fuser.from_pretrained("ct", device="cpu")  # doctest: +SKIP
        >>> res = fuser(mri, ct)  # (H, W) arrays in [0, 1]  # doctest: +SKIP
        >>> res.fused, res.aligned, res.flow  # (H, W), (H, W), (2, H, W)  # doctest: +SKIP
    """

    def __init__(self, model: BSAFusion, device=None, *, work_size: int | None = DEFAULT_WORK_SIZE,
                 prealign: str | None = None, fast: bool = True, amp: bool = False,
                 cuda_graphs: bool = True, precision: str = "fp32", backend: str = "torch"
                 ) -> None:
        default = next(model.parameters()).device
        self.device = torch.device(device) if device is not None else default
        if precision not in PRECISIONS:
            raise InputError("precision", f"unknown precision {precision!r} (choose "
                                          f"{' or '.join(PRECISIONS)})")
        self.precision = "bf16" if amp and self.device.type == "cuda" else precision
        if self.precision == "bf16" and self.device.type == "cpu" and not native_bf16():
            log.warning("precision bf16: this CPU has no native bf16 kernels (AVX512-BF16 or "
                        "AMX), so the network runs much slower than in fp32 (~50x measured)")
        self.model = model.eval().to(self.device)
        if backend != "torch" and (self.device.type != "cpu" or self.precision != "fp32"):
            raise InputError("backend", f"{backend} runs on the CPU in fp32 only")
        if backend != "torch":
            self.network = ExportedNetwork(self.model, backend)
        else:
            self.network = fast_network(self.model, cuda_graphs=cuda_graphs) if fast else self.model
        if work_size is not None and (work_size < 16 or work_size % 16):
            raise InputError("work_size", f"must be a positive multiple of 16, got {work_size}")
        if prealign not in (None, "rigid", "affine"):
            raise InputError("prealign", f"unknown kind {prealign!r} (choose rigid or affine)")
        self.work_size, self.prealign = work_size, prealign

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device=None, **kwargs) -> Fuser:
        """Load bundled weights by pair name (``"ct"``, ``"pet"``, ``"spect"``, sha256-checked),
        our safetensors file, or a release ``.pt`` checkpoint; ``kwargs`` go to the constructor.
        Without ``work_size``, the network runs at the size its weights were trained at when
        they record it (:func:`bsafusion.weights.weights_info`), else at 256."""
        from bsafusion.model.build import build_bsafusion
        from bsafusion.weights import weights_info

        if "work_size" not in kwargs:
            kwargs["work_size"] = weights_info(name_or_path).work_size or DEFAULT_WORK_SIZE
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

    def fuse_tensors(self, fixed: Tensor, moving: Tensor) -> FusionResult[Tensor]:
        """The torch twin of :meth:`fuse` on (B, 1, H, W) / (B, C, H, W) tensors already on
        the fixed grid; returns (B, C, H, W) tensors on the fuser's device (no numpy)."""
        check_shape(fixed, "B 1 H W", "fixed")
        check_shape(moving, f"{fixed.shape[0]} * {fixed.shape[2]} {fixed.shape[3]}", "moving")
        return self._infer(fixed.to(self.device, torch.float32),
                           moving.to(self.device, torch.float32))

    def _infer(self, fixed: Tensor, moving: Tensor) -> FusionResult[Tensor]:
        with torch.inference_mode():
            pairs = self._prealign(fixed, moving)
            prealign = None if pairs is None else tuple(
                torch.as_tensor(np.stack(part), dtype=torch.float32, device=self.device)
                for part in zip(*pairs, strict=True))
            with precision_context(self.device, self.precision):
                out = align_and_fuse(self.network, fixed, moving, work_size=self.work_size,
                                     prealign=prealign)
            if self.precision != "fp32":
                out = out._replace(**{k: v.float() for k, v in out._asdict().items()
                                      if isinstance(v, Tensor)})
        return out._replace(meta={**out.meta, "prealign": pairs})

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
            (mh, mw), (fh, fw) = moving_t.shape[-2:], f.tensor.shape[-2:]
            log.warning("moving: size %dx%d differs from the fixed image's %dx%d; resampled to "
                        "the fixed grid", mw, mh, fw, fh)
            moving_t = resize_image(moving_t, tuple(f.tensor.shape[-2:]))
        check_memory(*moving_t.shape, where="moving", work_size=self.work_size,
                     device=self.device)
        out = self._infer(f.tensor, moving_t)
        image = lambda x: None if x is None else _restore(x, m)  # noqa: E731
        flow = lambda x: None if x is None else _restore_flow(x, m)  # noqa: E731
        return FusionResult(None if register_only else image(out.fused), image(out.aligned),
                            flow(out.flow), out.meta,
                            None if register_only else image(out.fused_y),
                            image(out.aligned_y), flow(out.reverse))

    def _prealign(self, fixed: Tensor, moving: Tensor) -> list | None:
        """Per item (A (2, 2), t (2,)) from :func:`bsafusion.infer.prealign.estimate_prealign`."""
        if self.prealign is None:
            return None
        from bsafusion.infer.prealign import estimate_prealign

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
        return fuse_volume(self.fuse_tensors, fixed, moving, device=self.device, axis=axis,
                           register_only=register_only, batch_size=batch_size)

    def image_runner(self, *, register_only: bool = False, axis: int = 2
                     ) -> Callable[[ImageData, ImageData], FusionResult[np.ndarray]]:
        """The function :mod:`bsafusion.infer.outputs` runs on two loaded files: 2-D images
        through :meth:`fuse` / :meth:`register`, volumes through :meth:`fuse_volume`."""
        def run(fixed: ImageData, moving: ImageData) -> FusionResult[np.ndarray]:
            if fixed.is_volume:
                return self.fuse_volume(fixed.array, moving.array, axis=axis,
                                        register_only=register_only)
            return (self.register if register_only else self.fuse)(fixed.array, moving.array)

        return run

    def fuse_files(self, fixed: str | os.PathLike, moving: str | os.PathLike,
                   out_dir: str | os.PathLike, *, register_only: bool = False, axis: int = 2,
                   **kwargs) -> list[Path]:
        """Read a pair of files, fuse (or register) them and write the output layout.

        See :func:`bsafusion.infer.outputs.fuse_files` for the keyword arguments and layout.
        """
        run = self.image_runner(register_only=register_only, axis=axis)
        return outputs.fuse_files(run, fixed, moving, out_dir, register_only=register_only,
                                  **kwargs)

    def fuse_folder(self, fixed_dir: str | os.PathLike, moving_dir: str | os.PathLike,
                    out_dir: str | os.PathLike, *, register_only: bool = False, axis: int = 2,
                    **kwargs) -> outputs.BatchSummary:
        """Fuse every pair of two folders matched by file stem, going on past bad pairs.

        See :func:`bsafusion.infer.outputs.fuse_folder` for the keyword arguments.
        """
        run = self.image_runner(register_only=register_only, axis=axis)
        return outputs.fuse_folder(run, fixed_dir, moving_dir, out_dir,
                                   register_only=register_only, **kwargs)


def check_memory(batch: int, channels: int, height: int, width: int, *, where: object,
                 work_size: int | None = DEFAULT_WORK_SIZE, device=None) -> None:
    """Raise :class:`InputError` if processing would not fit in the available memory.

    Counts the native-resolution buffers (``BYTES_PER_PIXEL`` per pixel) and the network at
    the working size (``WORK_BYTES_PER_PIXEL`` per working pixel), before anything is
    allocated. The error names ``work_size`` when the working size is the larger part, else
    ``where`` (the image).
    """
    native = batch * height * width * (BYTES_PER_PIXEL + 16 * channels)
    wh, ww = work_shape(height, width, work_size)
    work = batch * wh * ww * WORK_BYTES_PER_PIXEL
    avail = available_memory(device) if device is not None else available_memory()
    if avail is None or native + work <= 0.8 * avail:
        return
    need, have = (native + work) / 2**30, avail / 2**30
    if work >= native:
        raise InputError("work_size", f"a {ww}x{wh} working size needs about {need:.1f} GiB "
                                      f"but only {have:.1f} GiB of memory is available; "
                                      "lower it (the network was trained at 256)")
    raise InputError(where, f"{width}x{height} needs about {need:.1f} GiB to process at native "
                            f"size but only {have:.1f} GiB is available; crop or downsample it")


def available_memory(device=None) -> int | None:
    """Bytes of memory available now on ``device`` (a GPU's free memory; for the CPU, Linux
    ``MemAvailable``), or None if unknown."""
    if device is not None and torch.device(device).type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_images(fixed: ImageData, moving: ImageData, *,
                 work_size: int | None = DEFAULT_WORK_SIZE, axis: int = 2,
                 device=None) -> None:
    """Check a loaded pair as :meth:`Fuser.fuse` would, without a model: layout, values
    (NaN, range, constant, size) and memory at ``work_size``.

    Raises:
        InputError: naming ``fixed``, ``moving`` or ``work_size``.
    """
    if work_size is not None and (work_size < 16 or work_size % 16):
        raise InputError("work_size", f"must be a positive multiple of 16, got {work_size}")
    if fixed.is_volume:  # constant slices are fine in a volume: its slices' size and memory
        h, w = [n for i, n in enumerate(fixed.array.shape) if i != axis % 3]
        if min(h, w) < MIN_SIDE:
            raise InputError("fixed", f"slices along axis {axis} are {w}x{h}, too small (at "
                                      f"least {MIN_SIDE}x{MIN_SIDE})")
        check_memory(1, 1, h, w, where="moving", work_size=work_size, device=device)
        return
    f = _as_batch(fixed.array, "fixed", "cpu")
    if f.tensor.shape[1] != 1:
        _grey_or_fail(f.tensor)
    m = _as_batch(moving.array, "moving", "cpu")
    check_memory(1, m.tensor.shape[1], *f.tensor.shape[-2:], where="moving",
                 work_size=work_size, device=device)


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
        color = ndim >= 3 and arr.shape[-1] == 3
        batched = ndim == 4 or (ndim == 3 and not color)
        nchw = {2: lambda a: a[None, None], 4: lambda a: a.transpose(0, 3, 1, 2),
                3: (lambda a: a.transpose(2, 0, 1)[None]) if color else (lambda a: a[:, None])
                }.get(ndim)
        if ndim == 4 and not color:
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
