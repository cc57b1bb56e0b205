"""Small stage-agnostic modules."""

from bsafusion.layers.cross_attn import SpatialCrossAttention
from bsafusion.layers.restormer import GDFN, MDTA, RestormerBlock
from bsafusion.layers.vit import Mlp, SelfAttention, ViTBlock

__all__ = [
    "GDFN", "MDTA", "Mlp", "RestormerBlock", "SelfAttention", "SpatialCrossAttention", "ViTBlock",
]
