"""Fusion quality metrics: fused image F against its sources A (MRI) and B (CT / PET / SPECT).

Definitions follow VIFB (Zhang et al., "VIFB: A Visible and Infrared Image Fusion Benchmark",
CVPRW 2020, MATLAB code ``metrics*.m``), the benchmark the BSAFusion authors used, wherever VIFB
has the metric (EN, SD, SF, AG, MI, Qabf, SSIM, PSNR, Qcb, Qcv). The others cite their papers.

Conventions (published numbers disagree mostly through these, so they are fixed here):

- **Grey-level scale.** Inputs are grey images in [0, 1]; every metric works on 0-255 grey
  levels (``x * 255``), the scale of VIFB's 8-bit inputs, so SD, SF, AG, PSNR, Qcv and the VIF
  noise variance (2) mean what they mean there. Histogram metrics (EN, MI, FMI) bin at the 256
  integer levels ``round(x * 255)``.
- **Colour.** PET / SPECT (and a colour fused image) are scored on their luma Y, ITU-R BT.601
  studio range: ``Y = 0.257 R + 0.504 G + 0.098 B + 0.0625`` (architecture.md §7); the caller
  converts (see :func:`bsafusion.ops.color.rgb_to_ycbcr`).
- Two-source metrics average or sum over A and B exactly as their reference code does (said
  per metric). Every function takes (H, W) numpy arrays or tensors and returns a float.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bsafusion.errors import InputError

__all__ = [
    "FUSION_METRICS", "HIGHER_IS_BETTER", "avg_gradient", "correlation", "entropy",
    "feature_mutual_information", "fusion_metrics", "ms_ssim", "mutual_information", "psnr",
    "qabf", "qcb", "qcv", "scd", "spatial_frequency", "ssim", "std_dev", "vif",
]

GREY_MAX = 255.0
_SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))  # VIFB's h1
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))  # VIFB's h3
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ------------------------------------------------------------------------------ helpers
def _grey(x, name: str) -> Tensor:
    """(H, W) array/tensor in [0, 1] -> float64 tensor on the 0-255 scale."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach()
    t = t.squeeze() if t.dim() > 2 else t
    if t.dim() != 2 or min(t.shape) < 2:
        raise InputError(name, f"expected a grey (H, W) image, got shape {tuple(t.shape)}")
    t = t.to("cpu", torch.float64) * GREY_MAX
    if not bool(torch.isfinite(t).all()):
        raise InputError(name, "contains NaN or infinite values")
    return t


def _sources(a, b, fused) -> tuple[Tensor, Tensor, Tensor]:
    ta, tb, tf = _grey(a, "a"), _grey(b, "b"), _grey(fused, "fused")
    if ta.shape != tf.shape or tb.shape != tf.shape:
        raise InputError("fused", f"sizes differ: a {tuple(ta.shape)}, b {tuple(tb.shape)}, "
                         f"fused {tuple(tf.shape)}")
    return ta, tb, tf


def _filter2(img: Tensor, kernel: Tensor, mode: str = "same") -> Tensor:
    """MATLAB ``filter2(kernel, img, mode)``: correlation, zero padding for ``'same'``."""
    kh, kw = kernel.shape
    pad = (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2) if mode == "same" else (0, 0, 0, 0)
    x = F.pad(img[None, None], pad) if mode == "same" else img[None, None]
    return F.conv2d(x, kernel.to(img)[None, None])[0, 0]


def _gauss1d(size: int, sigma: float) -> Tensor:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)``: outer(g, g) is the 2-D one."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _sep_filter(stack: Tensor, g: Tensor, mode: str = "valid") -> Tensor:
    """Separable correlation of each (H, W) map of ``stack`` (N, H, W) with outer(g, g).

    ``mode='valid'`` keeps full windows only; ``'same'`` zero-pads (MATLAB ``filter2``).
    Done as two banded matrix products (float64 BLAS is much faster than float64 conv2d).
    """
    rows, cols = stack.shape[-2:]
    taps = tuple(g.tolist())
    return _band(rows, taps, mode).to(stack) @ stack @ _band(cols, taps, mode).to(stack).T


@functools.lru_cache(maxsize=64)
def _band(size: int, taps: tuple[float, ...], mode: str) -> Tensor:
    """(out, size) matrix M with (M @ x)[i] = Σ_k g[k] x[i + k - offset] (zero outside)."""
    n = len(taps)
    g = torch.tensor(taps, dtype=torch.float64)
    out, offset = (size - n + 1, 0) if mode == "valid" else (size, n // 2)
    k = torch.arange(size)[None, :] - torch.arange(max(out, 0))[:, None] + offset
    inside = (k >= 0) & (k < n)
    return torch.where(inside, g[k.clamp(0, n - 1)], 0.0)


def _levels(t: Tensor) -> Tensor:
    return t.round().clamp(0, GREY_MAX).long()


def _hist_entropy(p: Tensor) -> float:
    p = p[p > 0]
    return float(-(p * torch.log2(p)).sum())


def _mi_levels(x: Tensor, y: Tensor, bins: int = 256) -> tuple[float, float, float]:
    """(I(x; y), H(x), H(y)) in bits from the joint histogram of integer levels."""
    joint = torch.bincount((x * bins + y).flatten(), minlength=bins * bins).to(torch.float64)
    joint = joint.view(bins, bins) / x.numel()
    hx, hy = _hist_entropy(joint.sum(1)), _hist_entropy(joint.sum(0))
    return hx + hy - _hist_entropy(joint.flatten()), hx, hy


def _pearson(x: Tensor, y: Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = torch.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


# ------------------------------------------------------------------------ no-reference
def entropy(fused) -> float:
    """EN: Shannon entropy (bits) of F's 256-level histogram (VIFB ``metricsEntropy``).

    A two-level image with equal counts has EN = 1; a constant image 0.
    """
    f = _levels(_grey(fused, "fused"))
    return _hist_entropy(torch.bincount(f.flatten(), minlength=256).double() / f.numel())


def std_dev(fused) -> float:
    """SD: population standard deviation of F in grey levels (VIFB ``metricsSD``)."""
    f = _grey(fused, "fused")
    return float(torch.sqrt(((f - f.mean()) ** 2).mean()))


def spatial_frequency(fused) -> float:
    """SF = sqrt(RF² + CF²) (Eskicioglu & Fisher 1995; VIFB ``metricsSpatial_frequency``).

    RF² and CF² are the sums of squared horizontal / vertical neighbour differences, each
    divided by M·N (VIFB's normalisation, not by the number of differences).
    """
    f = _grey(fused, "fused")
    rf = ((f[:, 1:] - f[:, :-1]) ** 2).sum() / f.numel()
    cf = ((f[1:, :] - f[:-1, :]) ** 2).sum() / f.numel()
    return float(torch.sqrt(rf + cf))


def avg_gradient(fused) -> float:
    """AG = Σ sqrt((Gx² + Gy²) / 2) / ((M-1)(N-1)) (VIFB ``metricsAvg_gradient``).

    Gx, Gy are MATLAB ``gradient``: central differences inside, one-sided at the edges.
    """
    f = _grey(fused, "fused")
    gy, gx = torch.gradient(f, edge_order=1)
    m, n = f.shape
    return float(torch.sqrt((gx**2 + gy**2) / 2).sum() / ((m - 1) * (n - 1)))


# ------------------------------------------------------------------------- with sources
def mutual_information(a, b, fused) -> float:
    """MI = I(A; F) + I(B; F) in bits, 256×256 joint histograms (VIFB ``metricsMutinf``)."""
    ta, tb, tf = (_levels(t) for t in _sources(a, b, fused))
    return _mi_levels(ta, tf)[0] + _mi_levels(tb, tf)[0]


def feature_mutual_information(a, b, fused) -> float:
    """FMI on gradient features (Haghighat, Aghagolzadeh & Seyedarabi 2011), whole-image form.

    Features are Sobel gradient magnitudes, each min-max quantised to 256 levels;
    ``FMI = mean over X in {A, B} of 2 I(X; F) / (H(X) + H(F))``, so FMI(A, A, A) = 1.
    This is the global normalised form; the authors' ``fmi.m`` averages the same ratio over
    3×3 sliding windows with a copula estimate, and gives different absolute values.
    """
    feats = []
    for t in _sources(a, b, fused):
        g = _sobel(t)[0]
        span = float(g.max() - g.min())
        feats.append(((g - g.min()) / span * GREY_MAX).round().long() if span > 0
                     else torch.zeros_like(g, dtype=torch.long))
    ratios = []
    for src in feats[:2]:
        mi, hs, hf = _mi_levels(src, feats[2])
        ratios.append(2 * mi / (hs + hf) if hs + hf > 0 else 1.0)
    return float(np.mean(ratios))


def _sobel(t: Tensor) -> tuple[Tensor, Tensor]:
    """(magnitude, angle) as in VIFB's Qabf: zero-padded Sobel, angle = atan(Sy/Sx), π/2 at Sx=0."""
    sx = _filter2(t, torch.tensor(_SOBEL_X))
    sy = _filter2(t, torch.tensor(_SOBEL_Y))
    angle = torch.where(sx == 0, torch.full_like(sx, math.pi / 2), torch.atan(sy / sx))
    return torch.sqrt(sx * sx + sy * sy), angle


def _edge_preservation(g_s: Tensor, a_s: Tensor, g_f: Tensor, a_f: Tensor) -> Tensor:
    """Q^{SF} map of Xydeas & Petrović with VIFB's constants and its ``gA == gF`` branch."""
    ratio = torch.where(g_s > g_f, g_f / g_s.clamp_min(1e-300),
                        torch.where(g_s == g_f, g_f, g_s / g_f.clamp_min(1e-300)))
    orient = 1 - (a_s - a_f).abs() / (math.pi / 2)
    q_g = 0.9994 / (1 + torch.exp(-15 * (ratio - 0.5)))
    q_a = 0.9879 / (1 + torch.exp(-22 * (orient - 0.8)))
    return q_g * q_a


def qabf(a, b, fused) -> float:
    """Q^{AB/F}: gradient-based edge preservation (Xydeas & Petrović 2000; VIFB ``metricsQabf``).

    Sobel strength g and orientation α = atan(Sy/Sx) per image; G = min(g_X, g_F)/max(...),
    A = 1 - |α_X - α_F|/(π/2); Q^{XF} = Γg/(1+e^{κg(G-σg)}) · Γa/(1+e^{κa(A-σa)}) with VIFB's
    Γg=0.9994, κg=-15, σg=0.5, Γa=0.9879, κa=-22, σa=0.8; Q = Σ(Q^{AF} g_A + Q^{BF} g_B) /
    Σ(g_A + g_B) (L = 1). Kept as VIFB has it, including ``G = g_F`` where ``g_X == g_F``; so
    Qabf(A, A, A) is 0.9994 · 0.9879/(1+e^{-4.4}) = 0.9753 (not 1) wherever edges exceed ~1
    grey level: numbers stay comparable with published VIFB tables.
    """
    ta, tb, tf = _sources(a, b, fused)
    (ga, aa), (gb, ab), (gf, af) = _sobel(ta), _sobel(tb), _sobel(tf)
    num = (_edge_preservation(ga, aa, gf, af) * ga + _edge_preservation(gb, ab, gf, af) * gb).sum()
    den = (ga + gb).sum()
    return float(num / den) if den > 0 else 0.0


def _ssim_parts(x: Tensor, y: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
    """(SSIM map, contrast-structure map), 'valid' windows, K = (0.01, 0.03), L = 255."""
    c1, c2 = (0.01 * GREY_MAX) ** 2, (0.03 * GREY_MAX) ** 2
    mx, my, sxx, syy, sxy = _sep_filter(torch.stack((x, y, x * x, y * y, x * y)), window)
    vx, vy, cov = sxx - mx * mx, syy - my * my, sxy - mx * my
    cs = (2 * cov + c2) / (vx + vy + c2)
    return (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs, cs


def ssim(a, b, fused) -> float:
    """SSIM = (SSIM(A, F) + SSIM(B, F)) / 2 (Wang, Bovik, Sheikh & Simoncelli 2004).

    Wang's reference ``ssim_index``: 11×11 Gaussian window σ = 1.5, 'valid' region,
    K = (0.01, 0.03), L = 255, mean of the SSIM map.
    """
    ta, tb, tf = _sources(a, b, fused)
    window = _gauss1d(11, 1.5)
    return float((_ssim_parts(ta, tf, window)[0].mean() + _ssim_parts(tb, tf, window)[0].mean())
                 / 2)


def ms_ssim(a, b, fused) -> float:
    """MS-SSIM = mean over A, B of MS-SSIM(X, F) (Wang, Simoncelli & Bovik 2003, ``msssim.m``).

    Five scales, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2×2 average downsampling,
    the SSIM of :func:`ssim` per scale; negative contrast-structure terms are clamped to 0
    (a fractional power of a negative number is undefined). Needs H, W ≥ 176.
    """
    ta, tb, tf = _sources(a, b, fused)
    if min(tf.shape) < 11 * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        raise InputError("fused", f"MS-SSIM needs at least 176×176 pixels, got {tuple(tf.shape)}")
    window = _gauss1d(11, 1.5)
    scores = []
    for src in (ta, tb):
        x, y, value = src[None, None], tf[None, None], 1.0
        for i, weight in enumerate(MS_SSIM_WEIGHTS):
            full, cs = _ssim_parts(x[0, 0], y[0, 0], window)
            last = i == len(MS_SSIM_WEIGHTS) - 1
            value *= float((full if last else cs).mean().clamp_min(0)) ** weight
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        scores.append(value)
    return float(np.mean(scores))


def _vifp(ref: Tensor, dist: Tensor, sigma_nsq: float = 2.0) -> float:
    """Pixel-domain VIF of ``dist`` against ``ref`` (Sheikh & Bovik 2006, ``vifp_mscale.m``)."""
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = _gauss1d(n, n / 5)
        if min(ref.shape) < n:
            break
        if scale > 1:
            ref, dist = _sep_filter(torch.stack((ref, dist)), win)[:, ::2, ::2]
        if min(ref.shape) < n:
            break
        stack = torch.stack((ref, dist, ref * ref, dist * dist, ref * dist))
        mu1, mu2, s11, s22, s12 = _sep_filter(stack, win)
        s1 = (s11 - mu1 * mu1).clamp_min(0)
        s2 = (s22 - mu2 * mu2).clamp_min(0)
        s12 = s12 - mu1 * mu2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        low1, low2 = s1 < 1e-10, s2 < 1e-10
        g = torch.where(low1, 0.0, g)
        sv = torch.where(low1, s2, sv)
        s1 = torch.where(low1, 0.0, s1)
        g = torch.where(low2, 0.0, g)
        sv = torch.where(low2, 0.0, sv)
        sv = torch.where(g < 0, s2, sv)
        g = g.clamp_min(0)
        sv = sv.clamp_min(1e-10)
        num += float(torch.log10(1 + g * g * s1 / (sv + sigma_nsq)).sum())
        den += float(torch.log10(1 + s1 / sigma_nsq).sum())
    return num / den if den > 0 else 0.0


def vif(a, b, fused) -> float:
    """VIF = VIFp(A, F) + VIFp(B, F) (Sheikh & Bovik 2006, pixel domain, 4 scales).

    As in ``vifp_mscale.m``: Gaussian windows of 17, 9, 5, 3 px (σ = N/5), 'valid' filtering,
    decimation by 2 after filtering, noise variance σ_n² = 2 on the 0-255 scale. Summed over
    the two sources as in the common fusion evaluators (e.g. CDDFuse's), so VIF(A, A, A) = 2.
    """
    ta, tb, tf = _sources(a, b, fused)
    return _vifp(ta, tf) + _vifp(tb, tf)


def psnr(a, b, fused) -> float:
    """PSNR = 10 log10(255² / MSE), MSE = (MSE(A, F) + MSE(B, F)) / 2 (VIFB ``metricsPsnr``)."""
    ta, tb, tf = _sources(a, b, fused)
    mse = float((((ta - tf) ** 2).mean() + ((tb - tf) ** 2).mean()) / 2)
    return 10 * math.log10(GREY_MAX**2 / mse) if mse > 0 else math.inf


def correlation(a, b, fused) -> float:
    """CC = (r(A, F) + r(B, F)) / 2, Pearson correlation coefficients (0 for a constant image)."""
    ta, tb, tf = _sources(a, b, fused)
    return (_pearson(ta, tf) + _pearson(tb, tf)) / 2


def scd(a, b, fused) -> float:
    """SCD = r(F - B, A) + r(F - A, B): sum of correlations of differences (Aslantas & Bendes
    2015)."""
    ta, tb, tf = _sources(a, b, fused)
    return _pearson(tf - tb, ta) + _pearson(tf - ta, tb)


def _csf_filter(t: Tensor) -> Tensor:
    """Mannos-Sakrison contrast sensitivity filter in the frequency domain (VIFB Qcb / Qcv).

    ``t``: (..., H, W); frequencies as MATLAB ``freqspace`` scaled by size/8 (VIFB).
    """
    rows, cols = t.shape[-2:]
    fv = (torch.arange(rows, dtype=torch.float64) - rows // 2) * (2 / rows) * rows / 8
    fu = (torch.arange(cols, dtype=torch.float64) - cols // 2) * (2 / cols) * cols / 8
    r = torch.sqrt(fu[None, :] ** 2 + fv[:, None] ** 2)
    theta = 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))
    return torch.fft.ifft2(torch.fft.fft2(t) * torch.fft.ifftshift(theta)).real


def _minmax_255(t: Tensor) -> Tensor:
    lo, hi = t.min(), t.max()
    return t if hi == lo else torch.round((t - lo) / (hi - lo) * GREY_MAX)


def qcb(a, b, fused) -> float:
    """Qcb: Chen-Blum human-perception metric (Chen & Blum 2009; VIFB ``metricsQcb``).

    Each image min-max rescaled to 0-255; CSF (Mannos-Sakrison) filtering; local contrast
    ``C = (G₂ ⋆ I)/(G₄ ⋆ I) - 1`` with 31×31 Gaussians σ = 2, 4; masked contrast
    ``C' = C³/(C² + 1e-4)``; contrast preservation Q_XF = min/max of C'_X, C'_F; saliency
    weights λ_X = C'_X² / (C'_A² + C'_B²); Qcb = mean(λ_A Q_AF + λ_B Q_BF), over finite entries.
    """
    ta, tb, tf = (_minmax_255(t) for t in _sources(a, b, fused))
    r = torch.arange(-15, 16, dtype=torch.float64)
    # VIFB's 31x31 kernels exp(-(x²+y²)/2s²)/(2πs²) = outer(g, g) with g below (not renormalised).
    g1, g2 = (torch.exp(-(r**2) / (2 * s * s)) / math.sqrt(2 * math.pi * s * s) for s in (2.0, 4.0))
    d = _csf_filter(torch.stack((ta, tb, tf)))
    c = (_sep_filter(d, g1, "same") / _sep_filter(d, g2, "same") - 1).abs()
    ca, cb, cf = c**3 / (c**2 + 1e-4)
    q_af = torch.where(ca < cf, ca / cf, cf / ca)
    q_bf = torch.where(cb < cf, cb / cf, cf / cb)
    lam_a = ca**2 / (ca**2 + cb**2)
    q = lam_a * q_af + (1 - lam_a) * q_bf
    q = q[torch.isfinite(q)]
    return float(q.mean()) if q.numel() else 0.0


def qcv(a, b, fused, *, window: int = 16, alpha: float = 5.0) -> float:
    """Qcv: Chen-Varshney metric, lower is better (Chen & Varshney 2007; VIFB ``metricsQcv``).

    Sobel edge strength g per source; saliency λ_X = Σ g_X^α per 16×16 block (α = 5);
    D_X = block mean of the CSF-filtered (Mannos-Sakrison) difference (X - F)², on 0-255;
    Qcv = Σ(λ_A D_A + λ_B D_B) / Σ(λ_A + λ_B). Pixels beyond whole blocks are ignored.
    """
    ta, tb, tf = _sources(a, b, fused)
    rows, cols = (s // window * window for s in tf.shape)
    if rows == 0 or cols == 0:
        raise InputError("fused", f"Qcv needs at least {window}×{window} pixels")

    def blocks(t: Tensor) -> Tensor:
        return F.avg_pool2d(t[None, None, :rows, :cols], window)[0, 0] * window * window

    sal = [blocks(_sobel(t)[0] ** alpha) for t in (ta, tb)]
    dis = [blocks(_csf_filter(t - tf) ** 2) / window**2 for t in (ta, tb)]
    den = (sal[0] + sal[1]).sum()
    return float((sal[0] * dis[0] + sal[1] * dis[1]).sum() / den) if den > 0 else 0.0


# ---------------------------------------------------------------------------- registry
FUSION_METRICS: dict[str, Callable[..., float]] = {
    "EN": entropy, "SD": std_dev, "SF": spatial_frequency, "AG": avg_gradient,
    "MI": mutual_information, "FMI": feature_mutual_information, "Qabf": qabf, "SSIM": ssim,
    "MS-SSIM": ms_ssim, "VIF": vif, "PSNR": psnr, "CC": correlation, "SCD": scd, "Qcb": qcb,
    "Qcv": qcv,
}
_NO_REFERENCE = ("EN", "SD", "SF", "AG")
HIGHER_IS_BETTER = {name: name != "Qcv" for name in FUSION_METRICS}


def fusion_metrics(a, b, fused, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """All (or the named) fusion metrics of ``fused`` against sources ``a``, ``b``.

    Args:
        a: (H, W) source A (the MRI) in [0, 1].
        b: (H, W) source B in [0, 1] (PET/SPECT: its BT.601 Y), in A's frame.
        fused: (H, W) fused image in [0, 1] (colour: its Y).
        names: a subset of :data:`FUSION_METRICS` (default all).
    Returns:
        {name: value}; MS-SSIM is NaN for images under 176 px (too small for 5 scales).
    """
    ta, tb, tf = (t / GREY_MAX for t in _sources(a, b, fused))
    out = {}
    for name in names or tuple(FUSION_METRICS):
        if name not in FUSION_METRICS:
            raise InputError("names", f"unknown fusion metric {name!r}")
        fn = FUSION_METRICS[name]
        if name == "MS-SSIM" and min(tf.shape) < 11 * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
            out[name] = math.nan  # too small for five scales
            continue
        out[name] = fn(tf) if name in _NO_REFERENCE else fn(ta, tb, tf)
    return out
