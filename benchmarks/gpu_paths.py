"""Time the GPU inference paths side by side, in one run: which layouts and tools pay.

Every path runs the same random network (torch seed 0) on the same inputs; each row gives
the median of --repeats timed runs (CUDA events) after --warmup runs, pairs/s, and the
largest and mean absolute difference of fused / aligned / flow from the plain eager fp32
path at the same batch. Rows print as they finish, so a run stopped by its time limit
(--deadline) keeps what it measured. --profile adds the top CUDA kernels of one path.

    python benchmarks/gpu_paths.py --batches 1 256 --size 256 --compile --profile
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference import timed  # noqa: E402  (benchmarks/inference.py)

from bsafusion import BSAFusion  # noqa: E402
from bsafusion.infer.fast import (  # noqa: E402
    CudaGraphNetwork,
    optimize_for_inference,
    pad_input_channels,
    to_channels_last,
)

# name -> how to build it: fast (folded network), amp (bf16 autocast), bf16 (bf16 weights
# and inputs, no autocast), cl (channels-last weights), pad (3x3 conv inputs padded to
# multiples of 8 channels), graph (CUDA graph), compile (torch.compile, static shapes)
PATHS = {
    "eager fp32": {},
    "fast fp32": {"fast": True},
    "fast bf16-autocast": {"fast": True, "amp": True},
    "fast bf16-autocast channels-last": {"fast": True, "amp": True, "cl": True},
    "fast bf16-autocast channels-last padded": {"fast": True, "amp": True, "cl": True,
                                                "pad": True},
    "fast bf16-weights channels-last padded": {"fast": True, "bf16": True, "cl": True,
                                               "pad": True},
    "fast bf16-autocast channels-last padded graph": {"fast": True, "amp": True, "cl": True,
                                                      "pad": True, "graph": True},
    "fast bf16-weights channels-last padded graph": {"fast": True, "bf16": True, "cl": True,
                                                     "pad": True, "graph": True},
    "fast bf16-autocast channels-last padded compile": {"fast": True, "amp": True, "cl": True,
                                                        "pad": True, "compile": True},
}


def build(spec: dict, device: str, max_batch: int):
    """Return ``run(fixed, moving) -> (fused, aligned, flow)`` in float32 for one path."""
    torch.manual_seed(0)
    net = BSAFusion().eval().to(device)
    if spec.get("fast"):
        net = optimize_for_inference(net)
    if spec.get("pad"):
        net = pad_input_channels(net)
    if spec.get("cl"):
        net = to_channels_last(net)
    dtype = torch.bfloat16 if spec.get("bf16") else torch.float32
    net = net.to(dtype)
    if spec.get("graph"):
        net = CudaGraphNetwork(net, max_batch=max_batch)
    if spec.get("compile"):
        net = torch.compile(net, dynamic=False)
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if spec.get("amp")
           else contextlib.nullcontext())
    grad = torch.inference_mode() if spec.get("fast") else torch.no_grad()

    def run(fixed, moving):
        with grad, amp:
            out = net(fixed.to(dtype), moving.to(dtype))
        return out.fused, out.aligned, out.flow
    return run


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def profile(run, fixed, moving, rows: int = 25) -> None:
    """Print the top kernels of one call, then the top operators by input shape (which
    tensors the time goes to)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = fixed.is_cuda
    run(fixed, moving)
    sync(fixed.device.type)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities, record_shapes=True) as prof:
        run(fixed, moving)
        sync(fixed.device.type)
    key = "cuda_time_total" if cuda else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key if cuda else "self_cpu_time_total",
                                    row_limit=rows), flush=True)
    by_shape = [e for e in prof.key_averages(group_by_input_shape=True)
                if e.key.startswith("aten::") and e.input_shapes]
    by_shape.sort(key=lambda e: -(e.self_device_time_total if cuda else e.self_cpu_time_total))
    print("| operator | calls | self ms | input shapes |\n|---|---|---|---|")
    for e in by_shape[:rows]:
        ms = (e.self_device_time_total if cuda else e.self_cpu_time_total) / 1e3
        print(f"| {e.key} | {e.count} | {ms:.2f} | {str(e.input_shapes)[:120]} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--compile", action="store_true",
                        help="include the torch.compile paths (minutes of compilation)")
    parser.add_argument("--profile", default=None, choices=list(PATHS),
                        help="print the top CUDA kernels of this path at the largest batch")
    parser.add_argument("--deadline", type=float, default=1e9,
                        help="seconds after which no new path is started")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of the script")
    args = parser.parse_args()
    t_start = time.monotonic()
    device = args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor()
    print(f"# {platform.node()} | {name} | torch {torch.__version__}"
          f" | {args.size}² | median of {args.repeats} after {args.warmup} warm-ups", flush=True)
    gen = torch.Generator().manual_seed(0)
    inputs = {b: (torch.rand(b, 1, args.size, args.size, generator=gen).to(device),
                  torch.rand(b, 1, args.size, args.size, generator=gen).to(device))
              for b in args.batches}
    print("| path | batch | ms/batch | pairs/s | max/mean |d fused| | max/mean |d aligned| | "
          "max/mean |d flow| px | setup s |\n|---|---|---|---|---|---|---|---|", flush=True)
    reference = {}
    for name in args.paths:
        spec = PATHS[name]
        if spec.get("compile") and not args.compile:
            continue
        if time.monotonic() - t_start > args.deadline:
            print(f"# deadline: {name} and later paths skipped", flush=True)
            break
        try:
            run = build(spec, device, max(args.batches))
            for batch in args.batches:
                fixed, moving = inputs[batch]
                t0 = time.monotonic()
                out = run(fixed, moving)
                sync(device)
                setup = time.monotonic() - t0
                if name == "eager fp32":
                    reference[batch] = [x.float() for x in out]
                diffs = [(x.float() - r).abs() for x, r in zip(out, reference[batch],
                                                               strict=True)]
                del out
                sec = timed(run, fixed, moving, device, args.warmup, args.repeats)
                print(f"| {name} | {batch} | {sec * 1e3:.2f} | {batch / sec:.0f} | "
                      + " | ".join(f"{d.max():.1e} / {d.mean():.1e}" for d in diffs)
                      + f" | {setup:.1f} |", flush=True)
            if name == args.profile:
                profile(run, *inputs[max(args.batches)])
        except Exception as exc:  # one failing path must not cost the others' numbers
            print(f"| {name} | failed: {type(exc).__name__}: {str(exc)[:300]} |", flush=True)
        finally:
            run = None
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    peak = (f"max allocated {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, "
            if device.startswith("cuda") else "")
    print(f"# {peak}{time.monotonic() - t_start:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
