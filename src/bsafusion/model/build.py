"""Builder: construct, optionally load, return in eval()."""

from __future__ import annotations

import os

from bsafusion.config import ModelConfig
from bsafusion.model.bsafusion import BSAFusion

__all__ = ["build_bsafusion"]


def build_bsafusion(config: ModelConfig | None = None, *,
                    weights: str | os.PathLike | None = None, device=None) -> BSAFusion:
    """Build a BSAFusion network.

    Args:
        config: hyper-parameters (ignored when ``weights`` is given: the file carries its own).
        weights: our safetensors file or a bundled name (``"ct"``, ``"pet"``, ``"spect"``), or
            a release ``.pt`` checkpoint (loaded with the §8 quirks on).
        device: where to put the model.
    Returns:
        The model in eval().
    """
    if weights is None:
        return BSAFusion(config).eval().to(device)
    if str(weights).endswith((".pt", ".pth", ".pkl")):
        return BSAFusion.from_release_checkpoint(weights, device=device)
    return BSAFusion.from_pretrained(weights, device=device)
