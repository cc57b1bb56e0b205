"""The network :class:`bsafusion.Fuser` runs: the folded rewrite, plus the GPU helpers on a GPU."""

from __future__ import annotations

from torch import nn

from bsafusion.infer.fast.cuda import CudaGraphNetwork, pad_input_channels, to_channels_last
from bsafusion.infer.fast.folding import optimize_for_inference

__all__ = ["fast_network"]


def fast_network(model: nn.Module, *, cuda_graphs: bool = True) -> nn.Module:
    """The network :class:`bsafusion.Fuser` runs by default: :func:`optimize_for_inference`
    of ``model`` and, where ``model`` is on a GPU, 3x3 conv inputs padded to multiples of 8
    channels, channels-last weights and (``cuda_graphs``) CUDA graph replay for batches of up
    to 16 (:mod:`bsafusion.infer.fast.cuda`)."""
    fast = optimize_for_inference(model)
    if next(fast.parameters()).is_cuda:
        fast = to_channels_last(pad_input_channels(fast))
        if cuda_graphs:
            fast = CudaGraphNetwork(fast)
    return fast
