"""BSAFusion: MDF-FR -> BSFA -> MMFF in one forward pass (architecture.md §3).

Sides: ``_a`` is the fixed image (MRI, the frame of every output), ``_b`` the moving one.
``flow`` carries B into A's frame: ``aligned = warp(moving, flow)``.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bsafusion import compat
from bsafusion.config import FeatureWarp, ModelConfig
from bsafusion.errors import WeightsError
from bsafusion.model.affine import GlobalAffine
from bsafusion.model.bsfa import BSFA
from bsafusion.model.encoder import Encoder
from bsafusion.model.mdffr import (
    ModalityClassifier,
    PatchEmbed,
    TokenClassifier,
    TransferStack,
    tokens_to_map,
)
from bsafusion.model.mmff import FusionDecoder
from bsafusion.model.pyramid import FeaturePyramid
from bsafusion.ops.checks import check_shape, check_spatial_multiple
from bsafusion.ops.warp import integrate_flows, warp
from bsafusion.weights import load_weights, save_weights

__all__ = ["BSAFusion", "BSAFusionOutput"]


class BSAFusionOutput(NamedTuple):
    """Everything one forward pass produces (same fields on every call).

    Shapes: h, w = H/16, W/16; N = h*w; D = 256. Flows are in pixels of their own grid,
    channel 0 = x (columns), 1 = y (rows). Level lists are 0-based, coarse to fine.
    """

    flow: Tensor  # (B, 2, H, W) flow_ab = flow_b - flow_a (then the affine correction, if
    #               any); samples the moving image
    aligned: Tensor  # (B, 1, H, W) warp(moving, flow)
    fused: Tensor | None  # (B, 1, H, W) in (0, 1); None when called with_fusion=False
    flow_a: Tensor  # (B, 2, H, W) integrated flow of side A
    flow_b: Tensor  # (B, 2, H, W) integrated flow of side B
    flows_a: list[Tensor]  # 5 x (B, 2, 2^i h, 2^i w), |.| < 1 px
    flows_b: list[Tensor]  # 5 x (B, 2, 2^i h, 2^i w)
    logits_a: Tensor  # (B, 2) modality logits of A (MRI is class 1)
    logits_b: Tensor  # (B, 2)
    transfer_logits_a: Tensor | None  # (B, 2) discriminator on transferred_a, or None
    transfer_logits_b: Tensor | None  # (B, 2)
    shallow_a: Tensor  # (B, 8, H, W) F^s
    shallow_b: Tensor  # (B, 8, H, W)
    tokens_a: Tensor  # (B, N, D) classifier patch tokens F-hat
    tokens_b: Tensor  # (B, N, D)
    transferred_a: Tensor  # (B, N, D) modality-free tokens F-bar
    transferred_b: Tensor  # (B, N, D)


class BSAFusion(nn.Module):
    """The BSAFusion network.

    Args:
        config: hyper-parameters and release-quirk switches; defaults are the paper's §3.

    Example:
        >>> model = BSAFusion().eval()
        >>> out = model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
        >>> out.flow.shape
        torch.Size([1, 2, 64, 64])
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or ModelConfig()
        dim, heads, blocks = cfg.embed_dim, cfg.num_heads, cfg.num_blocks
        # §8.3: the one place the feature warp is chosen; BSFA, MMFF and `aligned` share it.
        self.warp_fn = compat.release_warp if cfg.feature_warp is FeatureWarp.RELEASE else warp
        self.encoder = Encoder(shallow_channels=cfg.shallow_channels, enc_channels=cfg.enc_channels)
        self.classifier = ModalityClassifier(
            patch_embed=PatchEmbed(in_channels=cfg.enc_channels, dim=dim,
                                   patch_size=cfg.patch_size, pos_size=cfg.pos_size),
            stack=TokenClassifier(dim=dim, num_heads=heads, num_blocks=blocks,
                                  num_classes=cfg.num_classes, attn_drop=cfg.classifier_attn_drop),
        )
        self.transfer_a = TransferStack(dim=dim, num_heads=heads, num_blocks=blocks,
                                        token_order=cfg.token_order)
        self.transfer_b = TransferStack(dim=dim, num_heads=heads, num_blocks=blocks,
                                        token_order=cfg.token_order)
        self.discriminator = TokenClassifier(dim=dim, num_heads=heads, num_blocks=blocks,
                                             num_classes=cfg.num_classes)
        self.bsfa = BSFA(widths=cfg.reg_channels, warp_fn=self.warp_fn,
                         flow_init_std=cfg.flow_init_std, corr_radius=cfg.reg_correlation)
        # ours, off for release checkpoints: image features for BSFA's finer levels
        joint = cfg.reg_pyramid == "joint"
        self.pyramid = (FeaturePyramid(cfg.shallow_channels * (2 if joint else 1),
                                       cfg.reg_channels[1:])
                        if cfg.reg_pyramid != "none" else None)
        # ours, off for release checkpoints: a global affine correction of the flow
        self.affine = GlobalAffine(cfg.shallow_channels) if cfg.reg_affine else None
        self.decoder = FusionDecoder(token_dim=dim, shallow_channels=cfg.shallow_channels,
                                     widths=cfg.fusion_channels, warp_fn=self.warp_fn)
        self.init_weights()

    def init_weights(self) -> None:
        """Tokens and positional map ~ trunc-normal(0.02); flow heads near zero (see BSFA);
        the discriminator starts as a copy of the classifier's head stack."""
        for param in (self.classifier.patch_embed.pos_map, self.classifier.stack.cls_token,
                      self.transfer_a.token, self.transfer_b.token):
            nn.init.trunc_normal_(param, std=0.02)
        self.bsfa.init_weights()
        if self.affine is not None:
            self.affine.init_weights()
        self.refresh_discriminator()

    @torch.no_grad()
    def refresh_discriminator(self) -> None:
        """Copy the classifier's head stack into the frozen discriminator (end of each epoch)."""
        self.discriminator.load_state_dict(self.classifier.stack.state_dict())
        self.discriminator.requires_grad_(False)

    def forward(self, fixed: Tensor, moving: Tensor, *,
                return_transfer_logits: bool | None = None,
                with_fusion: bool = True) -> BSAFusionOutput:
        """Align ``moving`` to ``fixed`` and fuse them.

        Args:
            fixed: (B, 1, H, W) in [0, 1], the MRI (A); H, W multiples of 16.
            moving: (B, 1, H, W) in [0, 1], CT or the Y of PET/SPECT (B), unaligned.
            return_transfer_logits: run the discriminator on the transferred tokens
                (default: only while training, where the transfer loss needs it).
            with_fusion: run the fusion decoder (False: ``fused`` is None; registration-only
                training stages skip its cost).
        Returns:
            :class:`BSAFusionOutput`.
        """
        size = check_shape(fixed, "B 1 H W", "fixed")
        check_shape(moving, f"{size['B']} 1 {size['H']} {size['W']}", "moving")
        check_spatial_multiple(fixed, self.config.patch_size, "fixed")
        grid = (size["H"] // self.config.patch_size, size["W"] // self.config.patch_size)

        # The encoder and classifier are shared and per-sample: run A and B as one batch.
        shallow, enc = self.encoder(torch.cat((fixed, moving)))
        logits, modality, tokens = self.classifier(enc)
        (shallow_a, shallow_b), (logits_a, logits_b) = shallow.chunk(2), logits.chunk(2)
        (modality_a, modality_b), (tokens_a, tokens_b) = modality.chunk(2), tokens.chunk(2)
        transferred_a = self.transfer_a(tokens_a, modality_b)  # inject B's MFRH into A
        transferred_b = self.transfer_b(tokens_b, modality_a)
        pyramid_a = pyramid_b = None
        if self.pyramid is not None and self.config.reg_pyramid == "joint":
            pyramid_a = self.pyramid(torch.cat(shallow.chunk(2), dim=1))
        elif self.pyramid is not None:
            halves = [level.chunk(2) for level in self.pyramid(shallow)]
            pyramid_a, pyramid_b = [a for a, _ in halves], [b for _, b in halves]
        flows_a, flows_b = self.bsfa(tokens_to_map(transferred_a, grid),
                                     tokens_to_map(transferred_b, grid), pyramid_a, pyramid_b)
        flow_a = integrate_flows(flows_a, (size["H"], size["W"]))
        flow_b = integrate_flows(flows_b, (size["H"], size["W"]))
        flow = flow_b - flow_a  # path independence: A -> middle <- B
        if self.affine is not None:  # compose: flow'(p) = r(p) + flow(p + r(p))
            correction = self.affine(shallow_a, self.warp_fn(shallow_b, flow))
            flow = correction + self.warp_fn(flow, correction)
        fused = self.decoder(shallow_a, shallow_b, tokens_to_map(tokens_a, grid),
                             tokens_to_map(tokens_b, grid), flow) if with_fusion else None
        if self.training if return_transfer_logits is None else return_transfer_logits:
            transfer_logits_a = self.discriminator(transferred_a)[0]
            transfer_logits_b = self.discriminator(transferred_b)[0]
        else:
            transfer_logits_a = transfer_logits_b = None
        return BSAFusionOutput(
            flow=flow, aligned=self.warp_fn(moving, flow), fused=fused, flow_a=flow_a,
            flow_b=flow_b, flows_a=flows_a, flows_b=flows_b, logits_a=logits_a,
            logits_b=logits_b, transfer_logits_a=transfer_logits_a,
            transfer_logits_b=transfer_logits_b, shallow_a=shallow_a, shallow_b=shallow_b,
            tokens_a=tokens_a, tokens_b=tokens_b, transferred_a=transferred_a,
            transferred_b=transferred_b,
        )

    # ---------------------------------------------------------------- weights
    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Tensor], config: ModelConfig,
                        source: str | os.PathLike = "state_dict") -> BSAFusion:
        """Build from ``config`` and load ``state_dict`` strictly; returns the model in eval()."""
        model = cls(config)
        missing, unexpected = _key_diff(model, state_dict)
        if missing or unexpected:
            raise WeightsError(source, f"keys do not match the network: missing {missing[:3]}, "
                                       f"unexpected {unexpected[:3]}")
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise WeightsError(source, f"tensor shapes do not match the config: {exc}") from None
        return model.eval()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, device=None,
                        sha256: str | None = None) -> BSAFusion:
        """Load our safetensors weights (a path or a bundled name such as ``"ct"``).

        The file's sha256 is checked against the manifest (bundled), its ``.sha256`` sidecar
        or ``sha256``. Returns the model in eval() on ``device``.
        """
        state_dict, config = load_weights(name_or_path, sha256=sha256)
        return cls.from_state_dict(state_dict, config, name_or_path).to(device)

    @classmethod
    def from_release_checkpoint(cls, path: str | os.PathLike, *, device=None) -> BSAFusion:
        """Load an authors' release ``.pt`` (``weights_only=True``) with the §8 quirks on."""
        state_dict, config = compat.convert_release_checkpoint(path)
        return cls.from_state_dict(state_dict, config, path).to(device)

    def save_pretrained(self, path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                        metadata: dict[str, str] | None = None) -> str:
        """Write safetensors weights with the config embedded; returns the sha256."""
        return save_weights(self.state_dict(), self.config, path, dtype=dtype, metadata=metadata)


def _key_diff(model: nn.Module, state_dict: dict[str, Tensor]) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
