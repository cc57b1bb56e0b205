"""Loss terms of architecture.md §4 against values computed by hand on tiny inputs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from bsafusion.losses import (
    LEVEL_WEIGHTS,
    BSAFusionLoss,
    affine_error_loss,
    affine_part,
    classification_loss,
    endpoint_loss,
    fusion_loss,
    head_mask,
    registration_loss,
    smoothness,
    smoothness_loss,
    ssim_loss,
    transfer_loss,
)

C1 = 1e-4  # (0.01 * 1)^2
LUMA = lambda a, b: (2 * a * b + C1) / (a * a + b * b + C1)  # noqa: E731  SSIM of flat images


def flat(value: float, size: int = 12) -> torch.Tensor:
    return torch.full((1, 1, size, size), value, dtype=torch.float64)


def test_classification_hand_values():
    zeros = torch.zeros(3, 2)
    torch.testing.assert_close(classification_loss(zeros, zeros),
                               torch.tensor(2 * math.log(2)), rtol=0, atol=1e-6)
    # MRI is class 1: confident right answers cost log(1 + e^-5) each
    a, b = torch.tensor([[0.0, 5.0]]), torch.tensor([[5.0, 0.0]])
    expected = 2 * math.log1p(math.exp(-5))
    torch.testing.assert_close(classification_loss(a, b), torch.tensor(expected),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(classification_loss(b, a), torch.tensor(2 * math.log1p(
        math.exp(5))), rtol=0, atol=1e-5)


def test_transfer_soft_targets_hand_values():
    zeros = torch.zeros(2, 2)
    torch.testing.assert_close(transfer_loss(zeros, zeros), torch.tensor(2 * math.log(2)),
                               rtol=0, atol=1e-6)
    # softmax [1/4, 3/4]: -(log(1/4) + log(3/4)) / 2
    z = torch.tensor([[0.0, math.log(3.0)]])
    term = -(math.log(0.25) + math.log(0.75)) / 2
    torch.testing.assert_close(transfer_loss(z, zeros[:1]), torch.tensor(term + math.log(2)),
                               rtol=0, atol=1e-6)


def test_registration_hand_values():
    label, aligned = flat(0.5), flat(0.6)
    expected = (1 - LUMA(0.5, 0.6)) + 0.1
    torch.testing.assert_close(registration_loss(aligned, label),
                               torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-7)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(registration_loss(x, x), torch.tensor(0.0), rtol=0, atol=1e-5)


def test_smoothness_hand_values():
    h, w = 4, 5
    ramp = torch.arange(w, dtype=torch.float32).expand(h, w)
    flow = torch.stack((ramp, torch.zeros(h, w)))[None]  # d/dx of channel 0 = 1
    # mean over (1, 2, 4, 4) x-differences: half are 1, half 0 -> 0.5; no y change
    torch.testing.assert_close(smoothness(flow), torch.tensor(0.5 / 3), rtol=0, atol=1e-7)
    flows = [flow * (k + 1) for k in range(5)]  # R = (k + 1)^2 * 0.5 / 3
    expected = sum(wk * 2 * (k + 1) ** 2 * 0.5 / 3 for k, wk in enumerate(LEVEL_WEIGHTS))
    expected += 0.5 / 3  # R(flow_ab) with flow_ab = flow
    torch.testing.assert_close(smoothness_loss(flows, flows, flow),
                               torch.tensor(expected), rtol=1e-6, atol=0)
    with pytest.raises(ValueError):
        smoothness_loss(flows[:4], flows, flow)


def test_fusion_hand_values_on_flat_images():
    fused, fixed, aligned = flat(0.5), flat(0.2), flat(0.4)
    total, ssim_a, ssim_b = fusion_loss(fused, fixed, aligned, p=2.0)
    # flat images: no gradients; L1(F, max(I_A, B~)) = |0.5 - 0.4| = 0.1, halved
    expected_a, expected_b = 1 - LUMA(0.5, 0.2), 1 - LUMA(0.5, 0.4)
    torch.testing.assert_close(ssim_a, torch.tensor(expected_a, dtype=torch.float64),
                               rtol=0, atol=1e-7)
    torch.testing.assert_close(ssim_b, torch.tensor(expected_b, dtype=torch.float64),
                               rtol=0, atol=1e-7)
    torch.testing.assert_close(total, torch.tensor(expected_a + 2 * expected_b + 0.05,
                                                   dtype=torch.float64), rtol=0, atol=1e-7)


def test_fusion_gradient_term_hand_value():
    # F = a ramp (Sobel_x = 8 inside, 4 on the two edge columns), I_A = B~ = 0
    ramp = torch.arange(12, dtype=torch.float64).expand(1, 1, 12, 12) / 20
    zero = torch.zeros_like(ramp)
    total, ssim_a, ssim_b = fusion_loss(ramp, zero, zero, p=1.0)
    grad_term = (8 * 10 + 4 * 2) / 12 / 20
    intensity = 0.5 * float(ramp.mean())
    expected = float(ssim_a + ssim_b) + intensity + grad_term
    torch.testing.assert_close(total, torch.tensor(expected, dtype=torch.float64),
                               rtol=0, atol=1e-7)


def test_ssim_loss_is_one_minus_ssim_not_kornias_half():
    x, y = flat(0.5), flat(0.3)
    torch.testing.assert_close(ssim_loss(x, y), torch.tensor(1 - LUMA(0.5, 0.3),
                                                             dtype=torch.float64),
                               rtol=0, atol=1e-7)


def _fake_output(b=2, size=32, dtype=torch.float32, transfer=True):
    gen = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.rand(*s, generator=gen).to(dtype)  # noqa: E731
    flows = [rand(b, 2, size >> (4 - k), size >> (4 - k)) for k in range(5)]
    return SimpleNamespace(
        flow=rand(b, 2, size, size), aligned=rand(b, 1, size, size),
        fused=rand(b, 1, size, size), flows_a=flows, flows_b=flows,
        logits_a=rand(b, 2), logits_b=rand(b, 2),
        transfer_logits_a=rand(b, 2) if transfer else None,
        transfer_logits_b=rand(b, 2) if transfer else None)


def test_module_total_is_the_sum_of_terms_and_float32_under_bf16():
    out = _fake_output()
    fixed, label = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    terms = BSAFusionLoss()(out, fixed, label, p=1.5)
    assert set(terms) == {"cls", "tr", "reg", "smooth", "fus", "ssim_a", "ssim_b", "total"}
    parts = terms["cls"] + terms["tr"] + terms["reg"] + terms["smooth"] + terms["fus"]
    torch.testing.assert_close(terms["total"], parts, rtol=0, atol=0)
    fus, _, _ = fusion_loss(out.fused, fixed, out.aligned, 1.5)
    torch.testing.assert_close(terms["fus"], fus, rtol=0, atol=0)
    half = BSAFusionLoss()(_fake_output(dtype=torch.bfloat16), fixed, label)
    assert all(v.dtype == torch.float32 for v in half.values())
    no_tr = BSAFusionLoss()(_fake_output(transfer=False), fixed, label)
    assert float(no_tr["tr"]) == 0.0


def test_fusion_target_label_fuses_toward_the_undeformed_image():
    out = _fake_output()
    out.aligned.requires_grad_(True)
    fixed, label = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    terms = BSAFusionLoss(fusion_target="label")(out, fixed, label, p=1.5)
    fus, _, _ = fusion_loss(out.fused, fixed, label, 1.5)
    torch.testing.assert_close(terms["fus"], fus, rtol=0, atol=0)
    # B~ then reaches the loss only through L_reg
    grad_label, = torch.autograd.grad(terms["total"], out.aligned)
    grad_reg, = torch.autograd.grad(registration_loss(out.aligned, label), out.aligned)
    torch.testing.assert_close(grad_label, grad_reg)
    with pytest.raises(ValueError, match="fusion_target"):
        BSAFusionLoss(fusion_target="fixed")


def test_loss_gradcheck():
    gen = torch.Generator().manual_seed(1)
    fixed = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    aligned = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    fused = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: registration_loss(f, fixed) + ssim_loss(f, aligned),
                                    (fused,), eps=1e-6, atol=1e-5)


def test_endpoint_loss_hand_value():
    flow = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    gt = torch.zeros_like(flow)
    gt[:, 0], gt[:, 1] = 3.0, 4.0  # |(3, 4)| = 5 px everywhere
    assert float(endpoint_loss(flow, gt)) == pytest.approx(5.0)
    gt[..., :2, :] = 0.0  # half the pixels exact
    assert float(endpoint_loss(flow, gt)) == pytest.approx(2.5)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., 1:3, :] = True  # row 1 exact, row 2 at 5 px: 20 px over 8 pixels
    mask[..., 3, 0] = True  # and one more 5 px pixel: 25 / 9
    assert float(endpoint_loss(flow, gt, mask)) == pytest.approx(25.0 / 9.0)
    assert float(endpoint_loss(flow, gt, torch.zeros_like(mask))) == 0.0


def test_affine_error_is_the_error_fields_shift_scale_and_shear_part():
    gt = torch.randn(2, 2, 5, 5)
    shifted = gt + torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # a common offset: all of it
    assert float(affine_error_loss(shifted, gt)) == pytest.approx(5.0, rel=1e-5)
    # an x-scaling error u = 2x on x = -1, -0.5, 0, 0.5, 1: mean |u| = 2 * 0.6 = 1.2 px
    scaled = gt.clone()
    scaled[:, 0] += 2 * torch.linspace(-1, 1, 5)
    assert float(affine_error_loss(scaled, gt)) == pytest.approx(1.2, rel=1e-5)
    # a zero-mean checkerboard error has no affine part, though its end-point error is 1
    checker = (torch.arange(5).view(-1, 1) + torch.arange(5)) % 2 * 2.0 - 1.0
    mask = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    mask[..., :4, :4] = True  # 8 pixels of +1 and 8 of -1
    noisy = gt + checker.expand(2, 2, 5, 5)
    assert float(endpoint_loss(noisy, gt, mask)) == pytest.approx(math.sqrt(2), rel=1e-5)
    assert float(affine_error_loss(noisy, gt, mask)) == pytest.approx(0.0, abs=1e-5)
    # the fit counts only the mask: the same offset off the mask does not show
    assert float(affine_error_loss(shifted * ~mask + gt * mask, gt, mask)) == pytest.approx(
        0.0, abs=1e-5)
    assert float(affine_error_loss(shifted, gt, torch.zeros_like(mask))) == 0.0


def test_affine_part_recovers_an_affine_field_and_ignores_pixels_off_the_mask():
    from bsafusion.model.affine import affine_field

    field = affine_field(torch.tensor([[1.0, -2.0, 0.5, 0.0, 0.25, -1.0]]), 12, 16)
    mask = torch.zeros(1, 1, 12, 16, dtype=torch.bool)
    mask[..., 2:9, 3:12] = True
    noisy = field.clone()
    noisy[~mask.expand_as(noisy)] += 100.0  # off the mask: not fitted
    torch.testing.assert_close(affine_part(noisy, mask), field, atol=1e-4, rtol=0)


def test_epe_region_head_counts_only_the_moving_images_head():
    out = _fake_output()
    fixed, label = torch.rand(2, 1, 32, 32), torch.zeros(2, 1, 32, 32)
    label[..., :8, :] = 0.5  # the "head": a quarter of the image (head_mask)
    gt = out.flow.clone()
    gt[..., 8:, :] += torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # wrong off the head only
    every = BSAFusionLoss(epe_region="all")(out, fixed, label, flow_gt=gt)["epe"]
    head = BSAFusionLoss(epe_region="head")(out, fixed, label, flow_gt=gt)["epe"]
    assert float(every) == pytest.approx(0.75 * 5.0, rel=1e-5)
    assert float(head) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="epe_region"):
        BSAFusionLoss(epe_region="brain")


def test_epe_weight_adds_to_total_and_registration_only_stage():
    out = _fake_output()
    fixed, label = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    gt = out.flow + torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    plain = BSAFusionLoss()(out, fixed, label, flow_gt=gt)
    weighted = BSAFusionLoss(epe_weight=0.5)(out, fixed, label, flow_gt=gt)
    assert float(plain["epe"]) == pytest.approx(5.0, rel=1e-5)
    assert float(plain["epe_affine"]) == pytest.approx(5.0, rel=1e-5)  # logged, weight 0
    torch.testing.assert_close(weighted["total"], plain["total"] + 2.5)
    both = BSAFusionLoss(epe_weight=0.5, affine_weight=2.0)(out, fixed, label, flow_gt=gt)
    torch.testing.assert_close(both["total"], plain["total"] + 2.5 + 10.0)
    reg_only = BSAFusionLoss(epe_weight=0.5)(SimpleNamespace(**{**vars(out), "fused": None}),
                                            fixed, label, flow_gt=gt)
    torch.testing.assert_close(reg_only["total"],
                               reg_only["reg"] + reg_only["smooth"] + 0.5 * reg_only["epe"])
    assert all(float(reg_only[t]) == 0.0 for t in ("cls", "tr", "fus", "ssim_a", "ssim_b"))


def test_head_mask_is_relative_to_the_black_level():
    # grey (black 0) and BT.601 Y (black 16/255): the same 2x3 head in both, and only it
    grey = torch.zeros(2, 1, 6, 6)
    grey[..., 1:3, 2:5] = 0.4
    y = grey * (219 / 255) + 16 / 255
    assert int(head_mask(grey).sum()) == int(head_mask(y).sum()) == 2 * 6
    assert torch.equal(head_mask(grey), head_mask(y))
    y[0, 0, 0, 0] = 16 / 255 + 0.04  # faint background noise stays background
    assert not head_mask(y)[0, 0, 0, 0]
