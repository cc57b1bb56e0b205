"""The network, one file per paper stage."""

from bsafusion.model.bsafusion import BSAFusion, BSAFusionOutput
from bsafusion.model.build import build_bsafusion

__all__ = ["BSAFusion", "BSAFusionOutput", "build_bsafusion"]
