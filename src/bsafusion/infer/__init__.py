"""What users run: the :class:`Fuser` API over the inference procedure, volumes, files, and the
fast network (architecture.md §7; style.md §2).

Modules, each importing only those listed before it: ``result`` (the one result type),
``procedure`` (working resolution, colour, pre-alignment composition), ``fast`` (exact
rewrites, CUDA graphs), ``prealign``, ``volume``, ``outputs``, ``fuser``, ``demo``.
"""

from bsafusion.infer.fuser import Fuser
from bsafusion.infer.result import FusionResult

__all__ = ["Fuser", "FusionResult"]
