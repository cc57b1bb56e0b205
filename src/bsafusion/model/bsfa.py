"""BSFA: bidirectional stepwise feature alignment (architecture.md §3.4).

Five levels, coarse to fine (0-based here: level 0 is the paper's k = 1 at H/16). Each level
predicts a flow of at most 1 px (tanh) for each side; both sides move toward the middle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bsafusion.layers.cross_attn import SpatialCrossAttention
from bsafusion.ops.correlation import local_correlation
from bsafusion.ops.grid import upsample2

__all__ = ["BSFA", "LevelUp", "RegistrationLayer"]

WarpFn = Callable[[Tensor, Tensor], Tensor]
_SLOPE = 0.01


class RegistrationLayer(nn.Module):
    """FRL (side A) / RRL (side B) of one level.

    Args:
        dim: c_k, the width of each side's features at this level.
        next_dim: c_{k+1}, the width of the state passed to the next level; ``None`` for the
            last level, whose state would be unused.
    """

    def __init__(self, dim: int, next_dim: int | None) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(2 * dim, dim, 1)
        self.cross_attn = SpatialCrossAttention(dim)
        self.refine = nn.Conv2d(dim, dim, 3, padding=1)
        self.flow_head = nn.Conv2d(dim, 2, 3, padding=1)
        self.state_proj = nn.Conv2d(dim, next_dim, 1) if next_dim is not None else None

    def forward(self, fcat: Tensor, state: Tensor) -> tuple[Tensor, Tensor | None]:
        """Predict this side's level flow and the next state.

        Args:
            fcat: (B, 2c, h, w) concat(F_A, F_B) at this level.
            state: (B, c, h, w) D from the previous level (F itself at level 0).
        Returns:
            flow: (B, 2, h, w) in pixels of this level, |flow| < 1; channel 0 = x, 1 = y.
            state: (B, c_next, 2h, 2w), or None at the last level.
        """
        g = F.leaky_relu(self.squeeze(fcat), _SLOPE)
        h = self.cross_attn(state, g) + self.cross_attn(g, state)
        h = h + F.relu(self.refine(h))
        flow = torch.tanh(self.flow_head(h))
        if self.state_proj is None:
            return flow, None
        state = F.leaky_relu(self.state_proj(upsample2(h, align_corners=True)), _SLOPE)
        return flow, state


class LevelUp(nn.Module):
    """``U_k``: Up2(ac) -> Conv1x1 -> Conv3x3 -> InstanceNorm -> LeakyReLU (shared by A and B)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 1)
        self.conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, c_k, h, w). Returns: (B, c_{k+1}, 2h, 2w)."""
        x = self.conv(self.proj(upsample2(x, align_corners=True)))
        return F.leaky_relu(F.instance_norm(x, eps=1e-5), _SLOPE)


class BSFA(nn.Module):
    """The five registration levels with their shared level-up blocks.

    Args:
        widths: c_1..c_5 (coarse to fine), e.g. (256, 64, 32, 16, 8).
        warp_fn: the feature warp (exact by default; the release's in compat mode, §8.3).
        flow_init_std: std of the flow heads' initial weights (biases zero).
        corr_radius: with image pyramids (``ModelConfig.reg_pyramid``), also add a local
            correlation of the two sides' warped pyramid features (offsets up to this radius,
            projected to each level's width) to each side's features; 0 = none.
    """

    def __init__(self, *, widths: tuple[int, ...], warp_fn: WarpFn,
                 flow_init_std: float = 1e-5, corr_radius: int = 0) -> None:
        super().__init__()
        # (c_k, c_{k+1}) per level; the last level passes no state on
        pairs = list(zip(widths, (*widths[1:], None), strict=True))
        self.forward_layers = nn.ModuleList(RegistrationLayer(c, n) for c, n in pairs)
        self.reverse_layers = nn.ModuleList(RegistrationLayer(c, n) for c, n in pairs)
        self.level_ups = nn.ModuleList(LevelUp(c, n) for c, n in pairs[:-1])
        self.warp_fn = warp_fn
        self.flow_init_std = flow_init_std
        self.corr_radius = corr_radius
        self.corr_proj = (nn.ModuleList(nn.Conv2d((2 * corr_radius + 1) ** 2, c, 1)
                                        for c in widths[1:]) if corr_radius else None)
        self.init_weights()

    def init_weights(self) -> None:
        """Start at the identity: flow heads ~ N(0, flow_init_std), biases 0 (spec §6).

        A randomly initialised head predicts ~16 px end-point error; near-zero heads let
        training start from the zero field instead of first undoing random flows.
        """
        for layer in (*self.forward_layers, *self.reverse_layers):
            nn.init.normal_(layer.flow_head.weight, std=self.flow_init_std)
            nn.init.zeros_(layer.flow_head.bias)

    def forward(self, feat_a: Tensor, feat_b: Tensor,
                pyramid_a: list[Tensor] | None = None, pyramid_b: list[Tensor] | None = None,
                ) -> tuple[list[Tensor], list[Tensor]]:
        """Align the two token maps step by step.

        Args:
            feat_a: (B, D, h, w) transferred tokens of A as a map (h, w = H/16, W/16).
            feat_b: (B, D, h, w) the same for B.
            pyramid_a, pyramid_b: optional image features for levels 1..4 (0-based), coarse
                to fine, level i of shape (B, c_i, 2^i h, 2^i w) (``ModelConfig.reg_pyramid``):
                each is warped by its side's flow so far and added to that side's features.
                ``pyramid_b`` None: ``pyramid_a`` holds joint features of both images
                (``reg_pyramid="joint"``), added unwarped to both sides.
        Returns:
            flows_a, flows_b: 5 level flows each, 0-based coarse to fine, level i of shape
            (B, 2, 2^i h, 2^i w) in pixels of that level; channel 0 = x, 1 = y.
        """
        state_a, state_b = feat_a, feat_b
        flows_a: list[Tensor] = []
        flows_b: list[Tensor] = []
        so_far: Tensor | None = None  # both sides' summed flows, on the current level's grid
        num_levels = len(self.forward_layers)
        for i in range(num_levels):
            fcat = torch.cat((feat_a, feat_b), dim=1)
            flow_a, state_a = self.forward_layers[i](fcat, state_a)
            flow_b, state_b = self.reverse_layers[i](fcat, state_b)
            flows_a.append(flow_a)
            flows_b.append(flow_b)
            if i + 1 < num_levels:  # the warped features only feed the next level
                # U_k is shared and per-sample: warp and lift both sides as one batch
                level = torch.cat((flow_a, flow_b))
                both = self.warp_fn(torch.cat((feat_a, feat_b)), level)
                feat_a, feat_b = self.level_ups[i](both).chunk(2)
                if pyramid_a is not None and pyramid_b is None:  # joint: one map for both
                    feat_a, feat_b = feat_a + pyramid_a[i], feat_b + pyramid_a[i]
                elif pyramid_a is not None and pyramid_b is not None:
                    so_far = level if so_far is None else so_far + level
                    so_far = 2.0 * upsample2(so_far, align_corners=True)
                    image_a, image_b = self.warp_fn(torch.cat((pyramid_a[i], pyramid_b[i])),
                                                    so_far).chunk(2)
                    feat_a, feat_b = feat_a + image_a, feat_b + image_b
                    if self.corr_proj is not None:
                        corr = torch.cat((local_correlation(image_a, image_b, self.corr_radius),
                                          local_correlation(image_b, image_a, self.corr_radius)))
                        corr_a, corr_b = F.leaky_relu(self.corr_proj[i](corr), _SLOPE).chunk(2)
                        feat_a, feat_b = feat_a + corr_a, feat_b + corr_b
        return flows_a, flows_b
