"""bsafusion: one-pass registration and fusion of unaligned MRI / CT, PET, SPECT slices.

An implementation of BSAFusion (Li et al., AAAI 2025). The public names below are imported
lazily (PEP 562), so ``import bsafusion`` and ``bsafusion --help`` do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "BSAFusion": "bsafusion.model",
    "BSAFusionOutput": "bsafusion.model",
    "build_bsafusion": "bsafusion.model",
    "Fuser": "bsafusion.infer",
    "FusionResult": "bsafusion.infer",
    "ModelConfig": "bsafusion.config",
}
__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from bsafusion.config import ModelConfig  # noqa: F401
    from bsafusion.infer import Fuser, FusionResult  # noqa: F401
    from bsafusion.model import BSAFusion, BSAFusionOutput, build_bsafusion  # noqa: F401


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bsafusion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
