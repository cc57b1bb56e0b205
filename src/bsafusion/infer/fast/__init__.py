"""Exact inference rewrites of a trained network and the GPU helpers (CUDA graphs, layout).

:mod:`~bsafusion.infer.fast.folding` holds the folding rewrites (same outputs, fewer operations),
:mod:`~bsafusion.infer.fast.cuda` CUDA graph replay and channels-last, and
:func:`fast_network` the combination :class:`bsafusion.Fuser` runs by default.
"""

from bsafusion.infer.fast.allocator import tune_cpu_allocator
from bsafusion.infer.fast.cuda import (
    GRAPH_MAX_BATCH,
    CudaGraphNetwork,
    PadInputChannels,
    pad_input_channels,
    to_channels_last,
)
from bsafusion.infer.fast.folding import (
    FastLevelUp,
    FastRegistrationLayer,
    FastRestormerBlock,
    FoldedConv3x3,
    optimize_for_inference,
)
from bsafusion.infer.fast.network import fast_network

__all__ = [
    "GRAPH_MAX_BATCH", "CudaGraphNetwork", "FastLevelUp", "FastRegistrationLayer",
    "FastRestormerBlock", "FoldedConv3x3", "PadInputChannels", "fast_network",
    "optimize_for_inference", "pad_input_channels", "to_channels_last", "tune_cpu_allocator",
]
