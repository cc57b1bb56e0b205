"""Baselines for ``bsafusion evaluate``: no registration, classic fusion rules, elastix.

Every function works on the fixed MRI and the moving image's luma in [0, 1] (PET/SPECT: the
BT.601 Y, architecture.md §7); colour is recombined by the caller. Flows follow the network's
convention: (B, 2, H, W) in pixels, channel 0 = x (columns), 1 = y (rows), and
``aligned = warp(moving, flow)`` samples the moving image.

- :func:`fuse_average`, :func:`fuse_max`, :func:`fuse_laplacian`: pixel-level fusion rules.
- :func:`fuse_network_zero_flow`: the network's fusion decoder fed a zero field, i.e. the
  learned fusion without its registration (the "identity" row of the report).
- :func:`elastix_register`: the classical registration, set up as ``shared/docs/baselines.md``
  says makes it fair (fixed-image foreground mask, B-spline only on a 32 px grid, 2
  resolutions, bending-energy penalty 1e3, 256 iterations, 2048 samples; rigid only for
  SPECT). Needs the optional extra ``pip install 'bsafusion[elastix]'`` (itk-elastix, scipy).
"""

from __future__ import annotations

import logging
import tempfile
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bsafusion.errors import ConfigError
from bsafusion.model.bsafusion import BSAFusion
from bsafusion.model.mdffr import tokens_to_map
from bsafusion.ops.checks import check_shape

__all__ = [
    "ElastixSettings", "elastix_register", "foreground_mask", "fuse_average", "fuse_laplacian",
    "fuse_max", "fuse_network_zero_flow",
]

log = logging.getLogger(__name__)
ELASTIX_HINT = "needs itk-elastix and scipy: pip install 'bsafusion[elastix]'"


# ------------------------------------------------------------------------ fusion rules
def fuse_average(fixed: Tensor, moving: Tensor) -> Tensor:
    """Pixel average ``(A + B) / 2``. fixed, moving: (B, 1, H, W) in [0, 1] -> (B, 1, H, W)."""
    return (fixed + moving) / 2


def fuse_max(fixed: Tensor, moving: Tensor) -> Tensor:
    """Pixel maximum ``max(A, B)``. fixed, moving: (B, 1, H, W) in [0, 1] -> (B, 1, H, W)."""
    return torch.maximum(fixed, moving)


_BURT = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # Burt & Adelson's 5-tap generating kernel


def _blur(x: Tensor) -> Tensor:
    k = _BURT.to(x)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))


def _expand(x: Tensor, size: tuple[int, int]) -> Tensor:
    up = torch.zeros(*x.shape[:2], 2 * x.shape[-2], 2 * x.shape[-1], dtype=x.dtype,
                     device=x.device)
    up[..., ::2, ::2] = x * 4
    return _blur(up)[..., : size[0], : size[1]]


def _laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    pyramid = []
    for _ in range(levels):
        down = _blur(x)[..., ::2, ::2]
        pyramid.append(x - _expand(down, x.shape[-2:]))
        x = down
    return [*pyramid, x]


def fuse_laplacian(fixed: Tensor, moving: Tensor, levels: int = 4) -> Tensor:
    """Laplacian-pyramid fusion (Burt & Adelson 1983; Burt & Kolczynski 1993 selection).

    Band-pass levels take the coefficient of larger magnitude, the low-pass residual the
    average; the pyramid (5-tap Burt kernel, replicate borders) is then collapsed.

    Args:
        fixed, moving: (B, 1, H, W) in [0, 1].
        levels: band-pass levels (the residual is at H / 2^levels).
    Returns:
        (B, 1, H, W) clamped to [0, 1].
    """
    if levels < 0 or min(fixed.shape[-2:]) < 2**levels:
        raise ConfigError("levels", f"{levels} levels do not fit a {tuple(fixed.shape[-2:])} image")
    pa, pb = _laplacian_pyramid(fixed, levels), _laplacian_pyramid(moving, levels)
    out = (pa[-1] + pb[-1]) / 2
    for la, lb in zip(reversed(pa[:-1]), reversed(pb[:-1]), strict=True):
        out = _expand(out, la.shape[-2:]) + torch.where(la.abs() >= lb.abs(), la, lb)
    return out.clamp(0.0, 1.0)


@torch.inference_mode()
def fuse_network_zero_flow(model: BSAFusion, fixed: Tensor, moving: Tensor) -> Tensor:
    """The network's fusion of A and B *without* registration: the decoder gets a zero field.

    Runs the encoder and the classifier on both images, then the fusion decoder with
    ``flow = 0`` (the transfer stacks and BSFA are skipped: they only produce the field).

    Args:
        model: a :class:`BSAFusion` network.
        fixed, moving: (B, 1, H, W) in [0, 1], H, W multiples of 16.
    Returns:
        (B, 1, H, W) fused image in (0, 1).
    """
    size = check_shape(fixed, "B 1 H W", "fixed")
    check_shape(moving, f"{size['B']} 1 {size['H']} {size['W']}", "moving")
    p = model.config.patch_size
    grid = (size["H"] // p, size["W"] // p)
    # as in BSAFusion.forward: the shared encoder and classifier see A and B as one batch
    shallow, enc = model.encoder(torch.cat((fixed, moving)))
    shallow_a, shallow_b = shallow.chunk(2)
    tokens_a, tokens_b = model.classifier(enc)[2].chunk(2)
    zero = fixed.new_zeros(size["B"], 2, size["H"], size["W"])
    return model.decoder(shallow_a, shallow_b, tokens_to_map(tokens_a, grid),
                         tokens_to_map(tokens_b, grid), zero)


# ------------------------------------------------------------------------------ elastix
class ElastixSettings(NamedTuple):
    """elastix set-up (defaults from ``shared/docs/baselines.md``; see the module docstring).

    ``transform``: ``"bspline"`` (B-spline only, no affine stage) or ``"rigid"``.
    """

    transform: str = "bspline"
    grid_px: float = 32.0
    resolutions: int = 2
    bending_weight: float = 1e3
    iterations: int = 256
    samples: int = 2048
    use_mask: bool = True
    seed: int = 0
    threads: int = 1


def _require_elastix():
    try:
        import itk  # noqa: F401  (the first import takes several seconds)
        from scipy import ndimage
    except ImportError:
        raise ConfigError("elastix", ELASTIX_HINT) from None
    return itk, ndimage


def foreground_mask(fixed: np.ndarray, threshold: float = 0.04, dilate_px: int = 5) -> np.ndarray:
    """Head mask of a fixed MRI: threshold, close, fill holes, largest component, dilate.

    Args:
        fixed: (H, W) in [0, 1].
        threshold: fraction of the intensity range above the minimum.
        dilate_px: dilation radius in pixels.
    Returns:
        (H, W) uint8 mask (1 = foreground); all ones if nothing passes the threshold.
    """
    _, ndimage = _require_elastix()
    lo, hi = float(fixed.min()), float(fixed.max())
    mask = fixed > lo + threshold * (hi - lo)
    mask = ndimage.binary_closing(mask, structure=np.ones((5, 5)), iterations=1)
    mask = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.ones_like(fixed, dtype=np.uint8)
    largest = 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, count + 1))))
    yy, xx = np.mgrid[-dilate_px:dilate_px + 1, -dilate_px:dilate_px + 1]
    disk = xx**2 + yy**2 <= dilate_px**2
    return ndimage.binary_dilation(labels == largest, structure=disk).astype(np.uint8)


def _parameter_map(itk, settings: ElastixSettings, background: float):
    params = itk.ParameterObject.New()
    pmap = params.GetDefaultParameterMap(settings.transform, settings.resolutions)
    pmap["MaximumNumberOfIterations"] = [str(settings.iterations)]
    pmap["NumberOfSpatialSamples"] = [str(settings.samples)]
    pmap["DefaultPixelValue"] = [repr(float(background))]
    pmap["RandomSeed"] = [str(settings.seed)]
    pmap["WriteResultImage"] = ["false"]
    pmap["ErodeMask"] = ["false"]
    if settings.transform == "bspline":
        pmap["FinalGridSpacingInPhysicalUnits"] = [repr(float(settings.grid_px))]
        pmap["Metric1Weight"] = [repr(float(settings.bending_weight))]
    params.AddParameterMap(pmap)
    return params


def elastix_register(fixed: np.ndarray, moving: np.ndarray,
                     settings: ElastixSettings | None = None) -> np.ndarray:
    """Register ``moving`` to ``fixed`` with elastix (Mattes MI) and return the dense field.

    Args:
        fixed: (H, W) MRI in [0, 1].
        moving: (H, W) CT or PET/SPECT Y in [0, 1], in the same pixel grid.
        settings: :class:`ElastixSettings` (default: B-spline as in baselines.md).
    Returns:
        (2, H, W) float32 flow in pixels, channel 0 = x, 1 = y, sampling the moving image
        (``aligned = warp(moving, flow)``), from ``transformix``'s deformation field (unit
        spacing, zero origin: physical units are pixels).
    Raises:
        ConfigError: itk-elastix (or scipy) is not installed, or ``settings`` is invalid.
    """
    settings = settings or ElastixSettings()
    if settings.transform not in ("bspline", "rigid"):
        raise ConfigError("transform", f"expected 'bspline' or 'rigid', got {settings.transform!r}")
    itk, _ = _require_elastix()
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(settings.threads)
    fixed_img = itk.image_from_array(np.ascontiguousarray(fixed, dtype=np.float32))
    moving_img = itk.image_from_array(np.ascontiguousarray(moving, dtype=np.float32))
    border = np.concatenate([moving[0], moving[-1], moving[:, 0], moving[:, -1]])
    params = _parameter_map(itk, settings, float(np.median(border)))
    kwargs = {"parameter_object": params, "log_to_console": False}
    if settings.use_mask:
        mask = itk.image_from_array(foreground_mask(np.asarray(fixed, np.float32)))
        kwargs["fixed_mask"] = mask
    with tempfile.TemporaryDirectory(prefix="bsafusion-elastix-") as tmp:
        # elastix / transformix write their logs and the field file there, not into the cwd
        _, transform = itk.elastix_registration_method(fixed_img, moving_img,
                                                       output_directory=tmp, **kwargs)
        field = itk.transformix_deformation_field(moving_img, transform, output_directory=tmp,
                                                  log_to_console=False)
        flow = np.array(itk.array_from_image(field), dtype=np.float32)  # (H, W, 2): x, y
    return np.ascontiguousarray(flow.transpose(2, 0, 1))
