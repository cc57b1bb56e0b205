"""The global affine correction (ModelConfig.reg_affine) against hand-computed fields."""

from __future__ import annotations

import dataclasses

import torch

from bsafusion.config import ModelConfig
from bsafusion.model import BSAFusion
from bsafusion.model.affine import GlobalAffine, affine_field

TINY = ModelConfig(embed_dim=32, reg_channels=(32, 16, 8, 8, 4), fusion_channels=(16, 8, 8, 4),
                   reg_pyramid="joint")


def test_affine_field_by_hand():
    field = affine_field(torch.tensor([[1.0, -2.0, 0.0, 0.0, 0.0, 0.0],
                                       [0.0, 0.0, 2.0, 0.0, 0.0, 0.0],
                                       [0.0, 0.0, 0.0, 1.0, 0.0, 3.0]]), 3, 5)
    assert field.shape == (3, 2, 3, 5)
    torch.testing.assert_close(field[0, 0], torch.full((3, 5), 1.0))  # a shift
    torch.testing.assert_close(field[0, 1], torch.full((3, 5), -2.0))
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])  # u = 2x on x = -1 .. 1
    torch.testing.assert_close(field[1, 0], x.expand(3, 5))
    torch.testing.assert_close(field[1, 1], torch.zeros(3, 5))
    y = torch.tensor([-1.0, 0.0, 1.0]).view(3, 1)  # u = y, v = 3y (a shear and a stretch)
    torch.testing.assert_close(field[2, 0], y.expand(3, 5))
    torch.testing.assert_close(field[2, 1], (3 * y).expand(3, 5))


def test_head_starts_at_the_identity_and_its_correction_is_composed():
    torch.manual_seed(0)
    plain = BSAFusion(TINY).eval()
    for layer in (*plain.bsfa.forward_layers, *plain.bsfa.reverse_layers):
        torch.nn.init.zeros_(layer.flow_head.weight)  # BSFA's flow exactly zero
    with_head = BSAFusion(dataclasses.replace(TINY, reg_affine=True)).eval()
    missing = with_head.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("affine.") for k in missing)
    fixed, moving = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        a, b = plain(fixed, moving), with_head(fixed, moving)
        torch.testing.assert_close(b.flow, a.flow, atol=1e-6, rtol=0)
        torch.testing.assert_close(b.fused, a.fused, atol=1e-5, rtol=0)
        # a pure shift r = (1.5, -0.5): flow'(p) = r + flow(p + r) = r here; the aligned
        # image samples the moving one there
        with_head.affine.votes.bias.copy_(torch.tensor([1.5, -0.5, 0, 0, 0, 0]))
        shifted = with_head(fixed, moving)
    assert float(a.flow.abs().max()) == 0.0
    expected = torch.tensor([1.5, -0.5]).view(1, 2, 1, 1).expand_as(shifted.flow)
    torch.testing.assert_close(shifted.flow, expected, atol=1e-5, rtol=0)
    # warping by (1.5, -0.5) reads moving[y - 0.5, x + 1.5]: rows y-1, y and columns x+1, x+2
    m = moving[..., 0, :, :]
    inner = 0.25 * (m[:, :-1, 1:-1] + m[:, :-1, 2:] + m[:, 1:, 1:-1] + m[:, 1:, 2:])
    torch.testing.assert_close(shifted.aligned[:, 0, 1:, :-2], inner, atol=1e-5, rtol=0)


def test_head_votes_are_weighted_by_confidence():
    head = GlobalAffine(2, widths=(4, 4))
    with torch.no_grad():
        head.votes.bias.copy_(torch.tensor([2.0, 0, 0, 0, 0, 0]))
        out = head(torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16))
    torch.testing.assert_close(out[:, 0], torch.full((1, 16, 16), 2.0))  # softmax sums to 1


def test_fast_inference_path_keeps_the_head():
    from bsafusion.infer.fast import optimize_for_inference

    torch.manual_seed(0)
    model = BSAFusion(dataclasses.replace(TINY, reg_affine=True)).eval()
    with torch.no_grad():
        model.affine.votes.bias.copy_(torch.tensor([0.7, 0.2, 0.1, 0, 0, -0.3]))
        fixed, moving = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
        ref, fast = model(fixed, moving), optimize_for_inference(model)(fixed, moving)
    assert float(ref.flow[:, 0].mean()) > 0.5  # the correction (t_x = 0.7) is there
    torch.testing.assert_close(fast.flow, ref.flow, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.fused, ref.fused, atol=1e-4, rtol=0)


def test_no_reverse_field_from_a_network_with_the_head():
    """BSFA's reverse field (phi_BA) does not undo the affine step, so none is returned."""
    from bsafusion.infer.procedure import align_and_fuse

    fixed, moving = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        plain = align_and_fuse(BSAFusion(TINY).eval(), fixed, moving, work_size=None)
        head = align_and_fuse(BSAFusion(dataclasses.replace(TINY, reg_affine=True)).eval(),
                              fixed, moving, work_size=None)
    assert plain.reverse is not None and head.reverse is None
    assert head.flow.shape == (1, 2, 32, 32)
