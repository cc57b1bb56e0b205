"""Fusion metrics: hand-computed values on tiny inputs, known properties, and slow literal
(per-pixel loop) implementations of Qabf and VIF written after the reference MATLAB code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bsafusion.errors import InputError
from bsafusion.metrics import fusion as fm


@pytest.fixture(scope="module")
def images():
    """Three smooth-ish random 'images' in [0, 1] (64x64), quantised to 8 bits."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(3):
        x = rng.random((8, 8))
        x = np.kron(x, np.ones((8, 8))) * 0.7 + rng.random((64, 64)) * 0.3
        out.append(np.round(x * 255) / 255)
    return out


# --------------------------------------------------------------------------- hand values
def test_entropy_two_and_four_levels():
    two = np.zeros((4, 4))
    two[:2] = 1.0
    assert fm.entropy(two) == pytest.approx(1.0, abs=1e-12)
    four = np.repeat(np.array([0, 1, 2, 3])[None] / 255, 4, axis=0)
    assert fm.entropy(four) == pytest.approx(2.0, abs=1e-12)
    assert fm.entropy(np.full((4, 4), 0.3)) == 0.0


def test_sd_sf_ag_hand_values():
    img = np.array([[0.0, 1.0], [0.0, 1.0]])  # 0 and 255 in grey levels
    assert fm.std_dev(img) == pytest.approx(127.5)
    # RF^2 = 2 * 255^2 / 4, CF^2 = 0
    assert fm.spatial_frequency(img) == pytest.approx(math.sqrt(2 * 255**2 / 4))
    # MATLAB gradient: Gx = 255 everywhere (one-sided), Gy = 0; 4 * sqrt(255^2/2) / (1 * 1)
    assert fm.avg_gradient(img) == pytest.approx(4 * 255 / math.sqrt(2))


def test_mi_and_fmi_hand_values():
    a = np.zeros((4, 4))
    a[:, :2] = 1.0
    const = np.full((4, 4), 0.5)
    assert fm.mutual_information(a, const, a) == pytest.approx(1.0)  # I(A;A)=H(A)=1, I(B;F)=0
    assert fm.mutual_information(a, a, a) == pytest.approx(2.0)


def test_psnr_cc_scd_hand_values():
    zeros = np.zeros((4, 4))
    f = np.full((4, 4), 3 / 255)
    assert fm.psnr(zeros, zeros, f) == pytest.approx(10 * math.log10(255**2 / 9))
    rng = np.random.default_rng(1)
    a = rng.random((6, 6))
    assert fm.correlation(a, 1 - a, a * 0.5 + 0.1) == pytest.approx(0.0, abs=1e-12)
    b = rng.random((6, 6))
    # F - B = A and F - A = B: both correlations are 1
    assert fm.scd(a, b, a + b) == pytest.approx(2.0)


def test_ssim_and_ms_ssim_of_constant_images():
    c1 = (0.01 * 255) ** 2
    x, f = 0.5 * 255, 0.25 * 255
    luminance = (2 * x * f + c1) / (x * x + f * f + c1)  # contrast-structure term is c2/c2 = 1
    a = np.full((16, 16), 0.5)
    assert fm.ssim(a, a, np.full((16, 16), 0.25)) == pytest.approx(luminance)
    big = np.full((176, 176), 0.5)
    assert fm.ms_ssim(big, big, np.full((176, 176), 0.25)) == pytest.approx(
        luminance ** fm.MS_SSIM_WEIGHTS[-1])


def test_qcv_of_a_constant_offset():
    """F = A - c with A = B: the CSF keeps 2.6 * 0.0192 of the DC, so Qcv = (0.04992 c)^2."""
    rng = np.random.default_rng(2)
    a = rng.random((32, 32)) * 0.5 + 0.25
    c = 10 / 255
    assert fm.qcv(a, a, a - c) == pytest.approx((2.6 * 0.0192 * 10) ** 2, rel=1e-9)


def test_qabf_of_a_flat_fused_image():
    """F = 0: g_F = 0 (zero padding too), so G = 0 and α_F = π/2 everywhere."""
    a = np.zeros((8, 8))
    a[:, 4:] = 1.0
    const = np.zeros((8, 8))
    ga, aa = (t.numpy() for t in fm._sobel(torch.tensor(a * 255)))
    q_g = 0.9994 / (1 + math.exp(-15 * (0 - 0.5)))
    q_a = 0.9879 / (1 + np.exp(-22 * (1 - np.abs(aa - np.pi / 2) / (np.pi / 2) - 0.8)))
    expected = (q_g * q_a * ga).sum() / ga.sum()
    # B = A contributes the same terms as A
    assert fm.qabf(a, a, const) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------- known properties
QABF_MAX = 0.9994 * 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))


def test_properties_of_identical_sources(images):
    a = images[0]
    m = fm.fusion_metrics(a, a, a)
    assert m["Qabf"] == pytest.approx(QABF_MAX, abs=2e-3)  # VIFB's constants: 0.9753, not 1
    assert m["FMI"] == pytest.approx(1.0)
    assert m["SSIM"] == pytest.approx(1.0)
    assert math.isnan(m["MS-SSIM"])  # too small for 5 scales: NaN in the table, not an error
    assert m["VIF"] == pytest.approx(2.0, abs=1e-9)
    assert m["CC"] == pytest.approx(1.0)
    assert m["Qcb"] == pytest.approx(1.0)
    assert m["Qcv"] == pytest.approx(0.0, abs=1e-12)
    assert m["PSNR"] == math.inf


def test_qabf_is_largest_for_the_source_and_symmetric(images):
    a, b, noise = images
    perfect = fm.qabf(a, a, a)
    assert fm.qabf(a, a, 0.7 * a + 0.3 * noise) < perfect
    assert fm.qabf(a, b, (a + b) / 2) == pytest.approx(fm.qabf(b, a, (a + b) / 2))
    assert 0.0 <= fm.qabf(a, b, noise) <= 1.0


def test_metrics_are_symmetric_in_the_sources(images):
    a, b, _ = images
    f = (a + b) / 2
    for name in ("MI", "FMI", "SSIM", "VIF", "PSNR", "CC", "SCD", "Qcb", "Qcv"):
        fn = fm.FUSION_METRICS[name]
        assert fn(a, b, f) == pytest.approx(fn(b, a, f), rel=1e-9), name


def test_vif_drops_with_blur_and_noise(images):
    a, b, noise = images
    assert fm.vif(a, b, a) > fm.vif(a, b, 0.5 * a + 0.5 * noise)
    assert fm.vif(a, a, np.full_like(a, 0.5)) == pytest.approx(0.0)


def test_ms_ssim_on_real_size():
    rng = np.random.default_rng(3)
    a = rng.random((192, 192))
    assert fm.ms_ssim(a, a, a) == pytest.approx(1.0)
    assert 0.0 < fm.ms_ssim(a, a, np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)) < 1.0


def test_inputs_accept_tensors_and_batched_singletons(images):
    a, b, f = images
    t = [torch.from_numpy(x).float()[None, None] for x in images]
    assert fm.psnr(*t) == pytest.approx(fm.psnr(a, b, f), rel=1e-5)


@pytest.mark.parametrize(
    ("args", "where"),
    [
        ((np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 9))), "fused"),
        ((np.zeros((8, 8, 3)), np.zeros((8, 8)), np.zeros((8, 8))), "a"),
        ((np.zeros((8, 8)), np.full((8, 8), np.nan), np.zeros((8, 8))), "b"),
    ],
)
def test_bad_inputs_raise_input_error(args, where):
    with pytest.raises(InputError) as err:
        fm.qabf(*args)
    assert err.value.where == where


def test_small_images_and_unknown_names_raise():
    x = np.zeros((32, 32))
    with pytest.raises(InputError):
        fm.ms_ssim(x, x, x)
    with pytest.raises(InputError):
        fm.fusion_metrics(x, x, x, names=("nope",))


# ------------------------------------------------------------------- slow literal twins
def _qabf_literal(img_a, img_b, img_f):
    """Pixel-by-pixel transcription of VIFB's metricsQabf.m (0-255 grey levels)."""
    h1 = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    h3 = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]

    def conv_same(img, k):  # conv2(img, k, 'same'): true convolution, zero padding
        m, n = img.shape
        out = np.zeros((m, n))
        for i in range(m):
            for j in range(n):
                s = 0.0
                for u in range(3):
                    for v in range(3):
                        ii, jj = i + 1 - u, j + 1 - v
                        if 0 <= ii < m and 0 <= jj < n:
                            s += img[ii, jj] * k[u][v]
                out[i, j] = s
        return out

    def strength_angle(img):
        sx, sy = conv_same(img, h3), conv_same(img, h1)
        g = np.sqrt(sx * sx + sy * sy)
        ang = np.zeros_like(g)
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                ang[i, j] = math.pi / 2 if sx[i, j] == 0 else math.atan(sy[i, j] / sx[i, j])
        return g, ang

    def q_map(g_s, a_s, g_f, a_f):
        q = np.zeros_like(g_s)
        for i in range(q.shape[0]):
            for j in range(q.shape[1]):
                if g_s[i, j] > g_f[i, j]:
                    gg = g_f[i, j] / g_s[i, j]
                elif g_s[i, j] == g_f[i, j]:
                    gg = g_f[i, j]
                else:
                    gg = g_s[i, j] / g_f[i, j]
                aa = 1 - abs(a_s[i, j] - a_f[i, j]) / (math.pi / 2)
                q[i, j] = (0.9994 / (1 + math.exp(-15 * (gg - 0.5)))) * (
                    0.9879 / (1 + math.exp(-22 * (aa - 0.8))))
        return q

    ga, aa = strength_angle(img_a * 255.0)
    gb, ab = strength_angle(img_b * 255.0)
    gf, af = strength_angle(img_f * 255.0)
    num = (q_map(ga, aa, gf, af) * ga + q_map(gb, ab, gf, af) * gb).sum()
    return num / (ga + gb).sum()


def _vifp_literal(ref, dist):
    """Loop transcription of vifp_mscale.m (Sheikh & Bovik), 0-255 grey levels."""

    def fspecial(n, sd):
        r = np.arange(n) - (n - 1) / 2
        g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sd * sd))
        return g / g.sum()

    def filter2_valid(win, img):
        n = win.shape[0]
        m0, n0 = img.shape[0] - n + 1, img.shape[1] - n + 1
        out = np.zeros((max(m0, 0), max(n0, 0)))
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = np.sum(win * img[i:i + n, j:j + n])
        return out

    ref, dist = ref * 255.0, dist * 255.0
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = fspecial(n, n / 5)
        if scale > 1:
            ref = filter2_valid(win, ref)[::2, ::2]
            dist = filter2_valid(win, dist)[::2, ::2]
        mu1, mu2 = filter2_valid(win, ref), filter2_valid(win, dist)
        s1 = filter2_valid(win, ref * ref) - mu1 * mu1
        s2 = filter2_valid(win, dist * dist) - mu2 * mu2
        s12 = filter2_valid(win, ref * dist) - mu1 * mu2
        for i in range(mu1.shape[0]):
            for j in range(mu1.shape[1]):
                v1, v2, v12 = max(s1[i, j], 0.0), max(s2[i, j], 0.0), s12[i, j]
                g = v12 / (v1 + 1e-10)
                sv = v2 - g * v12
                if v1 < 1e-10:
                    g, sv, v1 = 0.0, v2, 0.0
                if v2 < 1e-10:
                    g, sv = 0.0, 0.0
                if g < 0:
                    sv, g = v2, 0.0
                sv = max(sv, 1e-10)
                num += math.log10(1 + g * g * v1 / (sv + 2.0))
                den += math.log10(1 + v1 / 2.0)
    return num / den


def test_qabf_matches_the_literal_implementation(images):
    a, b, f = (x[20:36, 20:36] for x in images)
    fused = np.round((a + f) / 2 * 255) / 255  # integer grey levels: exact Sobel sums
    assert fm.qabf(a, b, fused) == pytest.approx(_qabf_literal(a, b, fused), rel=1e-10)
    assert fm.qabf(a, a, a) == pytest.approx(_qabf_literal(a, a, a), rel=1e-10)


def test_vif_matches_the_literal_implementation(images):
    a, b, noise = (x[:48, :48] for x in images)
    fused = np.clip(0.6 * a + 0.3 * b + 0.1 * noise, 0, 1)
    expected = _vifp_literal(a, fused) + _vifp_literal(b, fused)
    assert fm.vif(a, b, fused) == pytest.approx(expected, rel=1e-9)
