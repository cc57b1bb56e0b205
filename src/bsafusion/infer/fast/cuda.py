"""GPU-only helpers of the fast inference path: CUDA graph replay and channels-last layout.

Both are measured side by side with the other GPU paths by ``benchmarks/gpu_paths.py``
(results in ``benchmarks/RESULTS.md``); :class:`bsafusion.Fuser` applies them on a GPU.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GRAPH_MAX_BATCH", "CudaGraphNetwork", "PadInputChannels", "pad_input_channels",
           "to_channels_last"]

GRAPH_MAX_BATCH = 16  # largest batch captured by default; also volumes' batch on a GPU


def to_channels_last(network: nn.Module) -> nn.Module:
    """Store ``network``'s conv weights channels-last (NHWC), in place, and return it.

    cuDNN's bf16 / fp16 tensor-core convolutions work on NHWC; with NCHW weights every conv
    call transposes its input and output. Inputs need no conversion (one channel), the
    layout then propagates from conv to conv.
    """
    return network.to(memory_format=torch.channels_last)


class PadInputChannels(nn.Module):
    """Run ``conv`` on its input with zero channels appended up to a multiple of ``multiple``.

    The appended weights are zero, so the output is the same; cuDNN's NHWC bf16 kernels want
    channel counts that are multiples of 8 and fall back to a slow generic kernel otherwise
    (the 12-channel 3x3 convs of the fusion decoder: ~10 ms each at batch 256, 256², H200).

    Args:
        conv: a module that applies ``conv.weight`` (O, I, k, k) to a (B, I, H, W) input
            (``nn.Conv2d``, :class:`bsafusion.infer.fast.FoldedConv3x3`); its weight is padded
            in place.
    """

    def __init__(self, conv: nn.Module, multiple: int = 8) -> None:
        super().__init__()
        self.extra = -conv.weight.shape[1] % multiple
        with torch.no_grad():
            conv.weight = nn.Parameter(F.pad(conv.weight, (0, 0, 0, 0, 0, self.extra)),
                                       requires_grad=False)
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, I, H, W). Returns: what ``conv`` returns."""
        zeros = torch.empty((x.shape[0], self.extra, *x.shape[2:]), dtype=x.dtype,
                            device=x.device, memory_format=torch.channels_last).zero_()
        return self.conv(torch.cat((x, zeros), dim=1))


def pad_input_channels(network: nn.Module, multiple: int = 8, min_channels: int = 8
                       ) -> nn.Module:
    """Wrap every 3x3 conv of ``network`` with ``min_channels`` or more input channels that
    are not a multiple of ``multiple`` in :class:`PadInputChannels`, in place; returns it."""
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            weight = getattr(child, "weight", None)
            if (isinstance(weight, Tensor) and weight.dim() == 4 and weight.shape[-1] == 3
                    and weight.shape[1] >= min_channels and weight.shape[1] % multiple):
                setattr(module, name, PadInputChannels(child, multiple))
    return network


class _Graph(NamedTuple):
    graph: torch.cuda.CUDAGraph
    fixed: Tensor  # static input buffers, copied into before each replay
    moving: Tensor
    out: NamedTuple  # static outputs, overwritten by each replay


class CudaGraphNetwork(nn.Module):
    """Run ``network(fixed, moving)`` by replaying a CUDA graph captured once per input shape.

    A forward pass of BSAFusion launches ~1,000 small kernels; at batch 1 the GPU waits on
    the CPU that launches them. A graph launches them all at once. Each new (shape, dtype,
    autocast) key captures a graph after two warm-up runs; the first ``max_graphs`` keys get
    one each (sharing one memory pool, none is ever dropped: capturing into a pool after a
    graph of it was freed failed on torch 2.11), later keys, calls on a CPU, with autograd
    on, or with a batch above ``max_batch`` run ``network`` directly.

    Outputs are copies of the graph's static outputs (the next replay overwrites those), so
    results of successive calls do not alias. Inference only: runs under
    ``torch.inference_mode()``; ``network`` must not sync with the host in its forward.

    Args:
        network: a module with ``forward(fixed, moving) -> NamedTuple`` of tensors (or lists
            of tensors, or None), e.g. the output of
            :func:`bsafusion.infer.fast.optimize_for_inference`.
        max_batch: largest batch to capture (a graph keeps its intermediates' memory).
        max_graphs: most graphs captured (e.g. a volume's full batches and its last one).
    """

    def __init__(self, network: nn.Module, *, max_batch: int = GRAPH_MAX_BATCH,
                 max_graphs: int = 4) -> None:
        super().__init__()
        self.network = network
        self.max_batch, self.max_graphs = max_batch, max_graphs
        self._graphs: dict[tuple, _Graph] = {}
        self._pool = None

    def __getattr__(self, name: str):
        """Attributes the wrapper lacks come from ``network`` (e.g. ``config``)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.network, name)

    def forward(self, fixed: Tensor, moving: Tensor):
        """Args: fixed, moving: (B, 1, H, W). Returns: what ``network`` returns (copies)."""
        if (not fixed.is_cuda or fixed.shape[0] > self.max_batch
                or (torch.is_grad_enabled() and not torch.is_inference_mode_enabled())):
            return self.network(fixed, moving)
        amp = torch.is_autocast_enabled("cuda")
        key = (tuple(fixed.shape), tuple(moving.shape), fixed.dtype, moving.dtype, fixed.device,
               amp and torch.get_autocast_dtype("cuda"))
        if key not in self._graphs and len(self._graphs) >= self.max_graphs:
            return self.network(fixed, moving)
        with torch.inference_mode():
            entry = self._graphs.get(key)
            if entry is None:
                entry = self._capture(key, fixed, moving, amp)
            entry.fixed.copy_(fixed)
            entry.moving.copy_(moving)
            entry.graph.replay()
            return type(entry.out)(*(_copy(field) for field in entry.out))

    def _capture(self, key: tuple, fixed: Tensor, moving: Tensor, amp: bool) -> _Graph:
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        static_fixed, static_moving = fixed.clone(), moving.clone()
        # with the autocast cache off: cached weight casts would be freed after the capture
        dtype = torch.get_autocast_dtype("cuda")
        stream = torch.cuda.Stream(fixed.device)
        stream.wait_stream(torch.cuda.current_stream(fixed.device))
        with torch.cuda.stream(stream), torch.autocast("cuda", dtype, enabled=amp,
                                                       cache_enabled=False):
            for _ in range(2):  # warm-up: cuDNN choices, lazily built caches
                self.network(static_fixed, static_moving)
        torch.cuda.current_stream(fixed.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool), torch.autocast(
                "cuda", dtype, enabled=amp, cache_enabled=False):
            out = self.network(static_fixed, static_moving)
        self._graphs[key] = entry = _Graph(graph, static_fixed, static_moving, out)
        return entry


def _copy(field):
    if isinstance(field, Tensor):
        return field.clone()
    if isinstance(field, list):
        return [_copy(item) for item in field]
    return field
