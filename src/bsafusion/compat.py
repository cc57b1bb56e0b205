"""Everything about the authors' release checkpoints, and nothing else (architecture.md §8).

Three mechanisms:

1. names (§8.4): a declarative table of ``(regex, replacement)`` rules applied once by
   :func:`convert_release_state_dict`; unused release tensors are dropped through an explicit
   allow-list (:data:`UNUSED_RELEASE_KEYS`), never via ``strict=False``;
2. weight layout (§8.1): the release's ``norm_layer2`` feeds both norms of a ViT block, so it
   is copied to ``norm1`` and ``norm2``;
3. behaviour (§8.2 token order, §8.3 feature warp, §8.5 colour): enum fields of
   :class:`~bsafusion.config.ModelConfig`, whose ``RELEASE`` kernels live here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from bsafusion.config import ColorConvention, FeatureWarp, ModelConfig, TokenOrder
from bsafusion.errors import WeightsError
from bsafusion.ops.warp import sampling_dtype

__all__ = [
    "RELEASE_CONFIG",
    "RELEASE_SECTIONS",
    "RELEASE_Y_GREEN",
    "UNUSED_RELEASE_KEYS",
    "convert_release_checkpoint",
    "convert_release_state_dict",
    "load_release_checkpoint",
    "release_token_sequence",
    "release_warp",
]

RELEASE_CONFIG = ModelConfig(
    token_order=TokenOrder.RELEASE, feature_warp=FeatureWarp.RELEASE, color=ColorConvention.RELEASE
)
RELEASE_Y_GREEN = 0.564  # §8.5: the release's G weight in Y (BT.601 says 0.504)

# Release sub-dicts and the namespace their keys get before renaming.
RELEASE_SECTIONS = {
    "encoder_state_dict": "encoder.",
    "transfer_state_dict": "",
    "reg_net_state_dict": "reg.",
    "fusion_net_state_dict": "fusion.",
}

# Present in the release, used by no computation (§8.4, §9 "Counts"); the last level's state
# projection (D^5, "computed but unused", §9) is not built in our network at all.
UNUSED_RELEASE_KEYS = re.compile(
    r"(\.norm_layer1\.|^classifier\.norm\.|^modal_dis\.norm\.|^modal_dis\.embedding\."
    r"|^reg\.f[12]_FR5\.up1\.)"
)


def _level(prefix: str, suffix: str = "") -> Callable[[re.Match], str]:
    """Replacement for a 1-based release index -> our 0-based list index."""
    return lambda m: f"{prefix}.{int(m[1]) - 1}.{suffix}"


_Rule = tuple[str, str | Callable[[re.Match], str]]
# Applied in order, each with re.sub, to every (namespaced) release key.
RENAME_RULES: tuple[_Rule, ...] = (
    # stage prefixes
    (r"^encoder\.rb1\.", "encoder.shallow_block."),
    (r"^encoder\.rb2\.", "encoder.enc_block."),
    (r"^classifier\.cls_token$", "classifier.stack.cls_token"),
    (r"^classifier\.embedding\.position_embedding$", "classifier.patch_embed.pos_map"),
    (r"^classifier\.embedding\.patch_embedding\.", "classifier.patch_embed.proj."),
    (r"^classifier\.vit_blks\.vit(\d+)\.", r"classifier.stack.blocks.\1."),
    (r"^classifier\.head\.", "classifier.stack.head."),
    (r"^modal_dis\.vit_blks\.vit(\d+)\.", r"discriminator.blocks.\1."),
    (r"^modal_dis\.", "discriminator."),
    (r"^transfer\.cls1$", "transfer_a.token"),
    (r"^transfer\.cls2$", "transfer_b.token"),
    (r"^transfer\.VitBLK1\.vit(\d+)\.", r"transfer_a.blocks.\1."),
    (r"^transfer\.VitBLK2\.vit(\d+)\.", r"transfer_b.blocks.\1."),
    (r"^reg\.f1_FR(\d+)\.", _level("bsfa.forward_layers")),
    (r"^reg\.f2_FR(\d+)\.", _level("bsfa.reverse_layers")),
    (r"^reg\.D\.up(\d+)\.up_sample\.1\.", _level("bsfa.level_ups", "proj.")),
    (r"^reg\.D\.up(\d+)\.conv1\.", _level("bsfa.level_ups", "conv.")),
    (r"^fusion\.F(\d+)\.", _level("decoder.levels")),
    (r"^fusion\.up_sample(\d+)\.up1\.1\.", _level("decoder.token_ups")),
    (r"^fusion\.up_sample(\d+)\.up3\.1\.", _level("decoder.feat_ups")),
    (r"^fusion\.outLayer\.(\d+)\.", r"decoder.out_blocks.\1."),
    # Restormer block internals
    (r"\.mlp\.(weight|bias)$", r".proj_in.\1"),
    (r"\.mdta\.conv1\.", ".attn.to_q."),
    (r"\.mdta\.conv2\.", ".attn.to_k."),
    (r"\.mdta\.conv3\.", ".attn.to_v."),
    (r"\.mdta\.conv4\.", ".attn.proj."),
    (r"\.gdfn\.Dconv1\.", ".ffn.gate."),
    (r"\.gdfn\.Dconv2\.", ".ffn.value."),
    (r"\.gdfn\.conv\.", ".ffn.proj."),
    # ViT block internals (norm1 is filled from norm_layer2 by the layout fix-up, §8.1)
    (r"\.norm_layer2\.", ".norm2."),
    (r"\.attention\.qkv\.", ".attn.qkv."),
    (r"\.attention\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.linear1\.", ".mlp.fc1."),
    (r"\.mlp\.linear2\.", ".mlp.fc2."),
    # BSFA registration layer internals
    (r"\.conv1x1\.0\.", ".squeeze."),
    (r"\.crossAtt1\.conv1\.0\.", ".cross_attn.to_query.0."),
    (r"\.crossAtt1\.conv2\.0\.", ".cross_attn.to_key.0."),
    (r"\.feature_output\.0\.feature_output\.0\.", ".refine."),
    (r"\.flow_output\.0\.", ".flow_head."),
    (r"(_layers\.\d+)\.up1\.1\.", r"\1.state_proj."),
)
_COMPILED_RULES = tuple((re.compile(p), r) for p, r in RENAME_RULES)
_VIT_NORM2 = re.compile(r"\.blocks\.\d+\.norm2\.(weight|bias)$")


def rename_release_key(key: str) -> str:
    """Map one namespaced release key (e.g. ``reg.f1_FR1.flow_output.0.weight``) to ours."""
    for pattern, repl in _COMPILED_RULES:
        key = pattern.sub(repl, key)
    return key


def convert_release_state_dict(checkpoint: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Turn the release's four state dicts into one state dict of :class:`BSAFusion`.

    Args:
        checkpoint: ``{"encoder_state_dict": ..., "transfer_state_dict": ...,
            "reg_net_state_dict": ..., "fusion_net_state_dict": ...}``.
    Returns:
        Our keys -> float32 tensors, ready for ``load_state_dict(strict=True)``.
    Raises:
        WeightsError: a section is missing or holds something that is not a tensor.
    """
    out: dict[str, Tensor] = {}
    for section, namespace in RELEASE_SECTIONS.items():
        if section not in checkpoint:
            raise WeightsError(section, "missing from the release checkpoint")
        for key, value in checkpoint[section].items():
            if not isinstance(value, Tensor):
                raise WeightsError(f"{section}/{key}", "is not a tensor")
            full = namespace + key
            if UNUSED_RELEASE_KEYS.search(full):
                continue
            value = value.detach().to(torch.float32)
            key = rename_release_key(full)
            out[key] = value
            if _VIT_NORM2.search(key):  # §8.1: norm_layer2 is applied before both sub-layers
                out[key.replace(".norm2.", ".norm1.")] = value.clone()
    return out


def load_release_checkpoint(path: str | os.PathLike) -> dict[str, dict[str, Tensor]]:
    """Open a release ``.pt`` safely (``weights_only=True``) and check its layout."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "no such file")
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # neither torch's zip nor a pickle
        raise WeightsError(path, "not a loadable release checkpoint (not a PyTorch file: "
                                 "neither a zip archive nor a pickle)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors all mean "not a checkpoint"
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [""]
        reason = next((ln for ln in lines if ln.startswith("WeightsUnpickler error")), lines[0])
        raise WeightsError(
            path, f"not a loadable release checkpoint ({type(exc).__name__}: {reason[:200]})"
        ) from None
    if not isinstance(checkpoint, Mapping) or not all(s in checkpoint for s in RELEASE_SECTIONS):
        raise WeightsError(path, f"expected a dict with {', '.join(RELEASE_SECTIONS)}")
    return checkpoint


def convert_release_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], ModelConfig]:
    """Load a release checkpoint and return our state dict with the quirk-enabled config."""
    checkpoint = load_release_checkpoint(path)
    try:
        return convert_release_state_dict(checkpoint), RELEASE_CONFIG
    except WeightsError as exc:
        raise WeightsError(path, exc.problem if exc.where == str(path) else str(exc)) from None


def release_token_sequence(patches: Tensor, token: Tensor) -> Tensor:
    """§8.2: the release appends the learned token; outputs 1..N are then passed on.

    Args:
        patches: (B, N, D) injected patch tokens.
        token: (B, 1, D) the transfer stack's learned token.
    Returns:
        (B, N + 1, D) = [patch 1, ..., patch N, token].
    """
    return torch.cat((patches, token), dim=1)


def release_warp(image: Tensor, flow: Tensor) -> Tensor:
    """§8.3: the release's warp: coordinates normalised as for ``align_corners=True`` but
    sampled with ``align_corners=False`` and zero padding (a half-pixel distortion even at
    zero flow).

    Args:
        image: (B, C, H, W).
        flow: (B, 2, H, W) in pixels; channel 0 = x, 1 = y.
    Returns:
        (B, C, H, W).
    """
    h, w = flow.shape[-2:]
    dtype = sampling_dtype(image, flow)
    with torch.autocast(device_type=image.device.type, enabled=False):
        flow = flow.to(dtype)
        ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
        xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
        gx = 2.0 * (xs + flow[:, 0]) / (w - 1) - 1.0
        gy = 2.0 * (ys + flow[:, 1]) / (h - 1) - 1.0
        grid = torch.stack((gx, gy), dim=-1)
        out = F.grid_sample(image.to(dtype), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    return out.to(image.dtype)
