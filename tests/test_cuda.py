"""GPU helpers of the fast path: channels-last weights and CUDA graph replay (infer.fast.cuda).

The graph tests need a GPU and are skipped without one; the device session runs them
(`python -m pytest tests/test_cuda.py`, see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import pytest
import torch

from bsafusion import BSAFusion
from bsafusion.infer.fast import (
    CudaGraphNetwork,
    PadInputChannels,
    fast_network,
    optimize_for_inference,
    pad_input_channels,
    to_channels_last,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def _net(device="cpu") -> BSAFusion:
    torch.manual_seed(0)
    return BSAFusion().eval().to(device)


def test_channels_last_weights_give_the_same_outputs(generator):
    fast = optimize_for_inference(_net())
    fixed, moving = torch.rand(2, 2, 1, 32, 48, generator=generator)
    with torch.inference_mode():
        ref = fast(fixed, moving)
        out = to_channels_last(fast)(fixed, moving)
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for name in ("fused", "aligned", "flow"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=0, atol=1e-4)


def test_padding_conv_inputs_to_multiples_of_8_channels_changes_nothing(generator):
    fast = optimize_for_inference(_net())
    fixed, moving = torch.rand(2, 1, 1, 32, 48, generator=generator)
    with torch.inference_mode():
        ref = fast(fixed, moving)
        padded = to_channels_last(pad_input_channels(fast))
        out = padded(fixed, moving)
    wrapped = [m for m in padded.modules() if isinstance(m, PadInputChannels)]
    assert {m.conv.weight.shape[1] for m in wrapped} == {16}  # the decoder's 12-channel convs
    assert wrapped and all(m.conv.weight.shape[1] % 8 == 0 for m in wrapped)
    for name in ("fused", "aligned", "flow"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=0, atol=1e-4)


def test_graph_wrapper_runs_the_network_directly_on_a_cpu(generator):
    fast = optimize_for_inference(_net())
    graphed = CudaGraphNetwork(fast)
    fixed, moving = torch.rand(2, 1, 1, 32, 32, generator=generator)
    with torch.inference_mode():
        torch.testing.assert_close(graphed(fixed, moving).fused, fast(fixed, moving).fused,
                                   rtol=0, atol=0)
    assert not graphed._graphs
    assert not isinstance(fast_network(_net()), CudaGraphNetwork)  # CPU: no wrapper


def test_fuser_runs_through_the_graph_wrapper(generator):
    """On a GPU Fuser's network is a CudaGraphNetwork; the pipeline reads its ``config``."""
    from bsafusion import Fuser

    fuser = Fuser(_net(), work_size=32)
    reference = fuser.fuse(*torch.rand(2, 40, 40, generator=generator).numpy())
    fuser.network = CudaGraphNetwork(fuser.network)
    assert fuser.network.config == fuser.model.config
    fixed, moving = torch.rand(2, 40, 40, generator=torch.Generator().manual_seed(0)).numpy()
    out = fuser.fuse(fixed, moving)
    assert out.fused.shape == (40, 40) and abs(out.fused - reference.fused).max() == 0


@cuda
@pytest.mark.parametrize("amp", [False, True])
def test_graph_replay_matches_direct_calls_and_does_not_alias(amp):
    fast = to_channels_last(optimize_for_inference(_net("cuda")))
    graphed = CudaGraphNetwork(fast, max_batch=2, max_graphs=2)
    gen = torch.Generator(device="cuda").manual_seed(0)
    inputs = [torch.rand(2, b, 1, 64, 64, device="cuda", generator=gen) for b in (1, 2, 1)]
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        outs = [graphed(*pair) for pair in inputs]
        refs = [fast(*pair) for pair in inputs]
    assert len(graphed._graphs) == 2  # batch 1 and batch 2; the second batch-1 call replays
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        graphed(*torch.rand(2, 1, 1, 32, 32, device="cuda"))  # a third shape: run directly
    assert len(graphed._graphs) == 2
    for out, ref in zip(outs, refs, strict=True):
        for name in ("fused", "aligned", "flow"):
            torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=0,
                                       atol=1e-2 if amp else 1e-5)
    # the first result was not overwritten by the third call (same graph, other inputs)
    assert not torch.equal(outs[0].fused, outs[2].fused)


@cuda
def test_graph_wrapper_skips_batches_above_its_limit():
    graphed = CudaGraphNetwork(optimize_for_inference(_net("cuda")), max_batch=1)
    x = torch.rand(2, 1, 32, 32, device="cuda")
    with torch.inference_mode():
        graphed(x, x)
    assert not graphed._graphs


@cuda
@pytest.mark.parametrize("amp", [False, True])
def test_fuser_on_a_gpu_captures_a_graph_and_matches_the_plain_network(amp):
    from bsafusion import Fuser

    gen = torch.Generator().manual_seed(0)
    fixed, moving = torch.rand(2, 64, 64, generator=gen).numpy()
    fuser = Fuser(_net("cuda"), work_size=64, amp=amp)
    plain = Fuser(fuser.model, work_size=64, fast=False, amp=amp)
    first, second = fuser.fuse(fixed, moving), fuser.fuse(fixed, moving)
    assert isinstance(fuser.network, CudaGraphNetwork) and len(fuser.network._graphs) == 1
    assert (first.fused == second.fused).all()  # the replay gives the captured run's result
    ref = plain.fuse(fixed, moving)
    assert abs(first.fused - ref.fused).mean() < 1e-2
    ungraphed = Fuser(fuser.model, work_size=64, amp=amp, cuda_graphs=False)
    assert not isinstance(ungraphed.network, CudaGraphNetwork)
    assert abs(ungraphed.fuse(fixed, moving).fused - first.fused).mean() < 1e-2
    assert abs(first.flow - ref.flow).max() < 0.05
