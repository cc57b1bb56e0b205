"""Typed configuration of the network (architecture.md §3, §8).

``ModelConfig`` is frozen: variants come from :func:`dataclasses.replace`. Its defaults are
the clean design of the paper; the ``*_RELEASE`` enum values reproduce the authors' release
(architecture.md §8) and are set only by :mod:`bsafusion.compat` when a release checkpoint is
loaded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from bsafusion.errors import ConfigError

__all__ = ["ColorConvention", "FeatureWarp", "ModelConfig", "TokenOrder"]


class TokenOrder(str, Enum):
    """Where a transfer stack attaches its learned token (architecture.md §8.2)."""

    CLEAN = "clean"  # prepended; the N patch outputs are passed on in order
    RELEASE = "release"  # appended; outputs 1..N passed on (shifted by one place)


class FeatureWarp(str, Enum):
    """Which bilinear warp the network uses internally (architecture.md §2, §8.3)."""

    EXACT = "exact"  # align_corners=True sampling, border padding
    RELEASE = "release"  # align_corners=True coordinates, align_corners=False sampling, zeros


class ColorConvention(str, Enum):
    """Green weight of Y in RGB -> YCbCr (architecture.md §7, §8.5)."""

    BT601 = "bt601"  # Y = 0.257 R + 0.504 G + 0.098 B + 0.0625
    RELEASE = "release"  # the release's slip: 0.564 instead of 0.504


_ENUM_FIELDS = {"token_order": TokenOrder, "feature_warp": FeatureWarp, "color": ColorConvention}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of :class:`bsafusion.model.BSAFusion`; defaults are the paper's §3.

    Attributes:
        shallow_channels: channels of the shallow features F^s (encoder block 1).
        enc_channels: channels of Fe, the encoder output fed to the patch embedding.
        embed_dim: token width D.
        patch_size: patch-embedding stride; inputs must be multiples of ``16``.
        num_heads: attention heads of every ViT block.
        num_blocks: ViT blocks in the classifier, each transfer stack and the discriminator.
        num_classes: modality classes (MRI is class 1).
        pos_size: side of the learned positional map (resized to H x W per call).
        classifier_attn_drop: attention dropout of the classifier while training.
        reg_channels: BSFA widths c_1..c_5 followed by the width of the unused last state.
        fusion_channels: widths of the four MMFF Restormer levels.
        flow_init_std: std of the flow heads' initial weights (near-identity start, §6).
        token_order: §8.2 quirk switch.
        feature_warp: §8.3 quirk switch.
        color: §8.5 quirk switch (used by the colour path, not by the network).
    """

    shallow_channels: int = 8
    enc_channels: int = 3
    embed_dim: int = 256
    patch_size: int = 16
    num_heads: int = 4
    num_blocks: int = 2
    num_classes: int = 2
    pos_size: int = 256
    classifier_attn_drop: float = 0.1
    reg_channels: tuple[int, ...] = (256, 64, 32, 16, 8, 1)
    fusion_channels: tuple[int, ...] = (64, 32, 16, 12)
    flow_init_std: float = 1e-5
    token_order: TokenOrder = TokenOrder.CLEAN
    feature_warp: FeatureWarp = FeatureWarp.EXACT
    color: ColorConvention = ColorConvention.BT601

    def __post_init__(self) -> None:
        for name, enum in _ENUM_FIELDS.items():
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                choices = ", ".join(e.value for e in enum)
                raise ConfigError(name, f"{value!r} is not one of {choices}") from None
        for name in ("reg_channels", "fusion_channels"):
            object.__setattr__(self, name, tuple(int(c) for c in getattr(self, name)))
        if len(self.reg_channels) != 6:
            raise ConfigError("reg_channels", "needs 6 widths (5 levels + final state)")
        if len(self.fusion_channels) != 4:
            raise ConfigError("fusion_channels", "needs 4 widths (4 decoder levels)")
        if self.reg_channels[0] != self.embed_dim:
            raise ConfigError("reg_channels", "the first width must equal embed_dim")
        if self.embed_dim % self.num_heads:
            raise ConfigError("num_heads", f"must divide embed_dim={self.embed_dim}")
        if self.patch_size != 16:
            raise ConfigError("patch_size", "BSFA's five levels need a patch size of 16")

    @property
    def is_release(self) -> bool:
        """True when any quirk of the authors' release is switched on."""
        return (
            self.token_order is TokenOrder.RELEASE
            or self.feature_warp is FeatureWarp.RELEASE
            or self.color is ColorConvention.RELEASE
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their values, tuples as lists)."""
        out = dataclasses.asdict(self)
        for name in _ENUM_FIELDS:
            out[name] = out[name].value
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown fields raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], "unknown ModelConfig field")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", f"not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ConfigError("config", "must be a JSON object")
        return cls.from_dict(data)
