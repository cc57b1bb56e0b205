"""bsafusion: one-pass registration and fusion of unaligned MRI / CT, PET, SPECT slices.

An implementation of BSAFusion (Li et al., AAAI 2025).
"""

from bsafusion.api import Fuser, FusionResult
from bsafusion.config import ModelConfig
from bsafusion.model import BSAFusion, BSAFusionOutput, build_bsafusion

__all__ = [
    "BSAFusion",
    "BSAFusionOutput",
    "Fuser",
    "FusionResult",
    "ModelConfig",
    "__version__",
    "build_bsafusion",
]
__version__ = "0.1.0"
