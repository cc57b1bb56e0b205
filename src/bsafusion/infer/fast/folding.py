"""The fast inference path: exact algebraic rewrites of a trained :class:`BSAFusion`.

:func:`optimize_for_inference` returns a copy of a model whose Restormer blocks are replaced
by :class:`FastRestormerBlock`, which computes the same function with fewer operations:

* every ``Conv1x1 -> Conv3x3`` pair is folded into one 3x3 conv (``W = W3 . W1``). The 1x1
  conv's bias passes through the 3x3 conv's zero padding, so it is not a constant: inside the
  image it adds ``sum(W3 . b1)``, folded into the conv's bias, and on the one-pixel border ring
  a per-size correction (``conv3x3(ones padded with zeros, W3 . b1)`` minus that constant) is
  added in place, which makes the fold exact at the borders too;
* the q, k, v convs of MDTA become one conv with 3C outputs, and the two GDFN branches one
  conv with 8C outputs. In GDFN this cuts the cost of the dominant 4C -> 4C 3x3 convs by 4x;
* in BSFA (:class:`FastRegistrationLayer`, :class:`FastLevelUp`), the four convs of a
  layer's two cross-attentions (r and s, each on the state and on g) run as one conv on both
  inputs at once, and every 1x1 conv that follows a bilinear x2 upsampling runs before it
  instead (both are linear and the upsampling's weights sum to one, so they commute exactly,
  bias included): a quarter of the pixels, and the upsampling moves the narrower tensor.

The rewrite changes only the order of floating-point operations (max abs difference ~1e-5 on
the outputs, tested). The model's own code stays the readable reference.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bsafusion.layers.restormer import RestormerBlock
from bsafusion.model.bsfa import _SLOPE, LevelUp, RegistrationLayer
from bsafusion.ops.filters import spatial_layer_norm
from bsafusion.ops.grid import upsample2

__all__ = ["FastLevelUp", "FastRegistrationLayer", "FastRestormerBlock", "FoldedConv3x3",
           "optimize_for_inference"]


class FoldedConv3x3(nn.Module):
    """Several ``Conv1x1 -> Conv3x3`` pairs on the same input as one 3x3 conv, exactly.

    Args:
        pairs: ``nn.Sequential(Conv1x1(cin -> c), Conv3x3(c -> c', padding=1))`` modules;
            their outputs are concatenated along channels.
    """

    def __init__(self, pairs: list[nn.Sequential]) -> None:
        super().__init__()
        weights, bias_kernels, biases = [], [], []
        with torch.no_grad():
            for conv1, conv3 in pairs:
                w1 = conv1.weight[:, :, 0, 0]  # c x cin
                w3 = conv3.weight  # c' x c x 3 x 3
                weights.append(torch.einsum("oikl,ij->ojkl", w3, w1))
                bias_kernels.append(torch.einsum("oikl,i->okl", w3, conv1.bias))
                biases.append(conv3.bias)
        self.weight = nn.Parameter(torch.cat(weights), requires_grad=False)
        self.bias_kernel = nn.Parameter(torch.cat(bias_kernels).unsqueeze(1), requires_grad=False)
        self.bias = nn.Parameter(torch.cat(biases), requires_grad=False)
        self._corrections: dict[tuple, Tensor] = {}

    def border_correction(self, height: int, width: int, like: Tensor) -> tuple[Tensor, ...]:
        """What the zero padding changes in the bias, on the one-pixel border ring only (the
        interior bias is the constant ``bias + sum(bias_kernel)``).

        Returns:
            (top (1, C', W), bottom (1, C', W), left (1, C', H-2), right (1, C', H-2)); or
            ``(full (1, C', H, W),)`` when the map has no interior (H or W < 3). Only the ring
            is kept, so the cache stays tiny at any image size.
        """
        key = (height, width, like.device, like.dtype)
        cached = self._corrections.get(key)
        if cached is None:
            ones = torch.ones(1, 1, height, width, device=like.device, dtype=like.dtype)
            kernel = self.bias_kernel.to(like)
            full = F.conv2d(ones, kernel, None, padding=1)
            full = full - kernel.sum(dim=(1, 2, 3)).view(1, -1, 1, 1)
            if height < 3 or width < 3:
                cached = (full,)
            else:
                cached = tuple(part.clone() for part in (
                    full[..., 0, :], full[..., -1, :], full[..., 1:-1, 0], full[..., 1:-1, -1]))
            self._corrections = {key: cached}  # keep one size: inference sizes rarely change
        return cached

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, cin, H, W). Returns: (B, sum of c', H, W)."""
        if torch.onnx.is_in_onnx_export():
            return self.forward_ones_channel(x)
        bias = self.bias + self.bias_kernel.sum(dim=(1, 2, 3))
        y = F.conv2d(x, self.weight, bias, padding=1)
        fix = self.border_correction(*y.shape[-2:], y)
        if len(fix) == 1:  # no interior: the whole map is border
            return y + fix[0]
        top, bottom, left, right = fix
        y[..., 0, :] += top
        y[..., -1, :] += bottom
        y[..., 1:-1, 0] += left
        y[..., 1:-1, -1] += right
        return y


    def forward_ones_channel(self, x: Tensor) -> Tensor:
        """The same function as one conv over ``x`` and a channel of ones, which the conv's
        zero padding turns into the exact border term (no in-place ring update, which an ONNX
        graph would run as slow ScatterND nodes; one more input channel). Used in ONNX export.

        Args: x: (B, cin, H, W). Returns: (B, sum of c', H, W).
        """
        ones = torch.ones_like(x[:, :1])
        weight = torch.cat((self.weight, self.bias_kernel), dim=1)
        return F.conv2d(torch.cat((x, ones), dim=1), weight, self.bias, padding=1)


class FastRestormerBlock(nn.Module):
    """:class:`~bsafusion.layers.restormer.RestormerBlock` with folded, merged convs."""

    def __init__(self, block: RestormerBlock) -> None:
        super().__init__()
        attn, ffn = block.attn, block.ffn
        self.proj_in = block.proj_in
        self.qkv = FoldedConv3x3([attn.to_q, attn.to_k, attn.to_v])
        self.attn_proj = attn.proj
        self.gate_value = FoldedConv3x3([ffn.gate, ffn.value])
        self.ffn_proj = ffn.proj

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, cin, H, W). Returns: (B, cout, H, W)."""
        x = self.proj_in(x)
        b, c, h, w = x.shape
        q, k, v = self.qkv(spatial_layer_norm(x)).flatten(2).chunk(3, dim=1)  # B C HW each
        attn = torch.bmm(k, q.transpose(1, 2)).flatten(1).softmax(dim=-1).view(b, c, c)
        x = x + self.attn_proj(torch.bmm(attn.transpose(1, 2), v).view(b, c, h, w))
        gate, value = self.gate_value(spatial_layer_norm(x)).chunk(2, dim=1)
        return x + self.ffn_proj(F.gelu(gate).mul_(value))  # in place: one 4C map less


class FastRegistrationLayer(nn.Module):
    """:class:`~bsafusion.model.bsfa.RegistrationLayer` with merged cross-attention convs and
    its state projection before the upsampling (see the module doc)."""

    def __init__(self, layer: RegistrationLayer) -> None:
        super().__init__()
        r, s = layer.cross_attn.to_query[0], layer.cross_attn.to_key[0]
        dim = r.in_channels
        self.query_key = nn.Conv2d(dim, 2 * dim, 3, padding=1, device=r.weight.device,
                                   dtype=r.weight.dtype).requires_grad_(False)
        with torch.no_grad():
            self.query_key.weight.copy_(torch.cat((r.weight, s.weight)))
            self.query_key.bias.copy_(torch.cat((r.bias, s.bias)))
        self.squeeze, self.refine = layer.squeeze, layer.refine
        self.flow_head, self.state_proj = layer.flow_head, layer.state_proj

    def forward(self, fcat: Tensor, state: Tensor) -> tuple[Tensor, Tensor | None]:
        """Same contract as :meth:`RegistrationLayer.forward`."""
        g = F.leaky_relu(self.squeeze(fcat), _SLOPE)
        n = state.shape[0]
        r, s = F.relu(self.query_key(torch.cat((state, g)))).chunk(2, dim=1)
        # CA(state, g) + CA(g, state), with CA(u, w) = r(u) * softmax(r(u) * s(w)) + u
        h = (_attend(r[:n], s[n:]) + state) + (_attend(r[n:], s[:n]) + g)
        h = h + F.relu(self.refine(h))
        flow = torch.tanh(self.flow_head(h))
        if self.state_proj is None:
            return flow, None
        return flow, F.leaky_relu(upsample2(self.state_proj(h), align_corners=True), _SLOPE)


def _attend(r: Tensor, s: Tensor) -> Tensor:
    return r * (r * s).flatten(2).softmax(dim=-1).view_as(r)


class FastLevelUp(nn.Module):
    """:class:`~bsafusion.model.bsfa.LevelUp` with its 1x1 conv before the upsampling."""

    def __init__(self, level_up: LevelUp) -> None:
        super().__init__()
        self.proj, self.conv = level_up.proj, level_up.conv

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, c_k, h, w). Returns: (B, c_{k+1}, 2h, 2w)."""
        x = self.conv(upsample2(self.proj(x), align_corners=True))
        return F.leaky_relu(F.instance_norm(x, eps=1e-5), _SLOPE)


_FAST = {RestormerBlock: FastRestormerBlock, RegistrationLayer: FastRegistrationLayer,
         LevelUp: FastLevelUp}


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every Restormer block, BSFA registration
    layer and level-up replaced by its fast twin (see the module doc).

    The copy is for inference only (its folded weights are frozen); the original is untouched.
    """
    fast = copy.deepcopy(model).eval()
    for module in list(fast.modules()):
        for name, child in list(module.named_children()):
            if type(child) in _FAST:
                setattr(module, name, _FAST[type(child)](child))
    return fast.requires_grad_(False)
