"""Filters in plain torch: spatial layer norm (§2), Gaussian blur, Sobel, SSIM map (§4, §6).

Written here rather than taken from kornia so that training runs where kornia is not
installed; ``tests/ops/test_filters.py`` pins each function to its kornia counterpart:

- :func:`ssim_map` == ``kornia.metrics.ssim(x, y, window_size, max_val=1.0, eps=eps)``:
  an 11-tap sampled Gaussian (sigma 1.5, normalised to sum 1), ``'same'`` output with
  **reflect** padding, ``c1 = 0.01**2``, ``c2 = 0.03**2``, ``eps`` added to the denominator.
  (The widely copied ``pytorch-ssim`` pads with zeros instead; on AANLIB's black borders the
  two agree except within 5 px of the edge.)
- :func:`sobel_xy` == ``kornia.filters.spatial_gradient(x, 'sobel', normalized=False)``:
  the unnormalised 3x3 Sobel kernels with **replicate** padding.
- :func:`gaussian_blur` with ``padding="reflect"`` ==
  ``kornia.filters.gaussian_blur2d(x, (k, k), (s, s), border_type='reflect')``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "gaussian_blur", "gaussian_kernel1d", "gradient_l1", "sobel_xy", "spatial_layer_norm",
    "ssim_map",
]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def gaussian_kernel1d(size: int, sigma: float, *, device=None, dtype=torch.float32) -> Tensor:
    """Sampled Gaussian of ``size`` taps (odd) centred on the middle tap, summing to 1.

    Returns:
        (size,).
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    x = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2.0 * float(sigma) ** 2))
    return (kernel / kernel.sum()).to(dtype)


def gaussian_blur(x: Tensor, size: int, sigma: float, *, padding: str = "reflect") -> Tensor:
    """Separable Gaussian blur of each channel, same output size.

    Args:
        x: (B, C, H, W).
        size: odd number of taps per axis.
        sigma: standard deviation in pixels.
        padding: ``"reflect"``, ``"replicate"`` or ``"zeros"`` (zeros also works when the
            kernel is wider than the image, as the 101-tap kernel of §6 on small tests).
    Returns:
        (B, C, H, W).
    """
    b, c, h, w = x.shape
    kernel = gaussian_kernel1d(size, sigma, device=x.device, dtype=x.dtype)
    r = size // 2
    y = x.reshape(b * c, 1, h, w)
    if padding == "zeros":
        y = F.conv2d(y, kernel.view(1, 1, 1, size), padding=(0, r))
        y = F.conv2d(y, kernel.view(1, 1, size, 1), padding=(r, 0))
    else:
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=padding), kernel.view(1, 1, 1, size))
        y = F.conv2d(F.pad(y, (0, 0, r, r), mode=padding), kernel.view(1, 1, size, 1))
    return y.view(b, c, h, w)


def _blur_same(x: Tensor, kernel: Tensor) -> Tensor:
    """Reflect-padded separable blur of (B, C, H, W) by a 1-D kernel (used by SSIM)."""
    b, c, h, w = x.shape
    r = kernel.numel() // 2
    y = F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, kernel.view(1, 1, 1, -1))
    y = F.conv2d(y, kernel.view(1, 1, -1, 1))
    return y.view(b, c, h, w)


def ssim_map(x: Tensor, y: Tensor, *, window_size: int = SSIM_WINDOW,
             sigma: float = SSIM_SIGMA, eps: float = 1e-12) -> Tensor:
    """Per-pixel SSIM of two images in [0, 1] (Wang et al. 2004, Gaussian window).

    ``SSIM = (2 mu_x mu_y + c1)(2 s_xy + c2) / ((mu_x^2 + mu_y^2 + c1)(s_x^2 + s_y^2 + c2) + eps)``
    with local moments from an 11x11 Gaussian window (sigma 1.5), reflect padding,
    ``c1 = 0.01^2``, ``c2 = 0.03^2`` (data range 1). Equals ``kornia.metrics.ssim``.

    Args:
        x, y: (B, C, H, W), H and W > ``window_size // 2``.
    Returns:
        (B, C, H, W) SSIM map in [-1, 1].
    """
    kernel = gaussian_kernel1d(window_size, sigma, device=x.device, dtype=x.dtype)
    # one blur call over the five moment images (batched: no Python loop per image)
    stacked = torch.cat((x, y, x * x, y * y, x * y), dim=1)
    mu_x, mu_y, xx, yy, xy = _blur_same(stacked, kernel).chunk(5, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    num = (2.0 * mu_xy + SSIM_C1) * (2.0 * (xy - mu_xy) + SSIM_C2)
    den = (mu_xx + mu_yy + SSIM_C1) * ((xx - mu_xx) + (yy - mu_yy) + SSIM_C2)
    return num / (den + eps)


_SOBEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def sobel_xy(x: Tensor) -> Tensor:
    """Unnormalised 3x3 Sobel derivatives of each channel, replicate padding.

    Args:
        x: (B, C, H, W).
    Returns:
        (B, C, 2, H, W): index 0 = d/dx (columns), 1 = d/dy (rows), as kornia's
        ``spatial_gradient(x, 'sobel', normalized=False)``.
    """
    b, c, h, w = x.shape
    kx = torch.tensor(_SOBEL, device=x.device, dtype=x.dtype)
    kernels = torch.stack((kx, kx.t())).unsqueeze(1)  # (2, 1, 3, 3)
    y = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(y, kernels).view(b, c, 2, h, w)


def gradient_l1(x: Tensor) -> Tensor:
    """``|Sobel_x| + |Sobel_y|`` per channel (the gradient magnitude of the fusion loss, §4).

    Args:
        x: (B, C, H, W).
    Returns:
        (B, C, H, W), non-negative.
    """
    return sobel_xy(x).abs().sum(dim=2)


def spatial_layer_norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalise each H x W map to zero mean and unit (population) variance, no affine.

    Args:
        x: (B, C, H, W).
    Returns:
        (B, C, H, W).
    """
    return F.layer_norm(x, x.shape[-2:], eps=eps)
