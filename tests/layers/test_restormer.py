"""Restormer block, spatial layer norm, ViT block and CA against literal definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bsafusion.layers import MDTA, RestormerBlock, SpatialCrossAttention, ViTBlock
from bsafusion.ops.filters import spatial_layer_norm


def test_spatial_layer_norm_normalises_each_map(generator):
    x = torch.rand(2, 3, 8, 5, generator=generator) * 4 + 1
    y = spatial_layer_norm(x)
    torch.testing.assert_close(y.mean(dim=(-2, -1)), torch.zeros(2, 3), rtol=0, atol=1e-5)
    var = y.var(dim=(-2, -1), unbiased=False)
    torch.testing.assert_close(var, torch.ones(2, 3), rtol=0, atol=1e-3)


def test_mdta_matches_literal_loops():
    torch.manual_seed(0)
    mdta = MDTA(3).double()
    x = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    q, k, v = (m(x)[0].flatten(1) for m in (mdta.to_q, mdta.to_k, mdta.to_v))  # C x P
    c, p = q.shape
    a = torch.empty(c, c, dtype=torch.float64)
    for i in range(c):
        for j in range(c):
            a[i, j] = sum(k[i, t] * q[j, t] for t in range(p))
    a = torch.exp(a) / torch.exp(a).sum()  # one softmax over all c^2 entries
    out = torch.zeros(c, p, dtype=torch.float64)
    for j in range(c):
        for t in range(p):
            out[j, t] = sum(v[i, t] * a[i, j] for i in range(c))
    expected = mdta.proj(out.view(1, c, 4, 5))
    torch.testing.assert_close(mdta(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("size", [(16, 16), (24, 40)])
def test_restormer_block_shapes_and_residuals(size):
    block = RestormerBlock(5, 7)
    out = block(torch.rand(2, 5, *size))
    assert out.shape == (2, 7, *size)


def test_vit_block_is_pre_norm_and_matches_manual_attention():
    torch.manual_seed(0)
    blk = ViTBlock(16, num_heads=4).double().eval()
    x = torch.rand(2, 5, 16, dtype=torch.float64)
    y = blk.norm1(x)
    q, k, v = blk.attn.qkv(y).view(2, 5, 3, 4, 4).permute(2, 0, 3, 1, 4)
    att = (q @ k.transpose(-1, -2) / 2.0).softmax(-1)  # scale 1/sqrt(head_dim=4)
    h = x + blk.attn.proj((att @ v).transpose(1, 2).reshape(2, 5, 16))
    expected = h + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(h))))
    torch.testing.assert_close(blk(x), expected, rtol=1e-10, atol=1e-12)


def test_cross_attention_softmax_is_per_channel_over_space():
    torch.manual_seed(0)
    ca = SpatialCrossAttention(4).double()
    u, w = torch.rand(2, 2, 4, 3, 5, dtype=torch.float64)
    r, s = ca.to_query(u), ca.to_key(w)
    weights = torch.exp(r * s) / torch.exp(r * s).sum(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(ca(u, w), r * weights + u, rtol=1e-10, atol=1e-12)


def test_cross_attention_gradcheck():
    torch.manual_seed(0)
    ca = SpatialCrossAttention(2).double()
    u = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ca, (u, w))
