"""Time the plain eager fp32 path and the fast inference path side by side, in one run.

For each (batch, size) it runs both paths on the same inputs, checks that their outputs agree
(fused / aligned within 1e-3, flow within 0.05 px), takes the median of --repeats timed runs
after --warmup runs, and prints the speed-up. Peak memory of one pair at each size is measured
in a fresh subprocess per path (peak RSS on CPU, max allocated on CUDA).

    python benchmarks/inference.py                       # CPU: batch 1 and 16, 256 and 512
    python benchmarks/inference.py --device cuda --amp   # GPU, bf16 autocast on the fast path
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bsafusion import BSAFusion  # noqa: E402
from bsafusion.inference import optimize_for_inference  # noqa: E402


def build(path: str, device: str, amp: bool):
    """Return ``run(fixed, moving) -> output`` for the 'eager' or 'fast' path."""
    torch.manual_seed(0)
    model = BSAFusion().eval().to(device)
    if path == "eager":  # the straightforward path: eager fp32 under no_grad
        def run(fixed, moving):
            with torch.no_grad():
                return model(fixed, moving)
        return run
    fast = optimize_for_inference(model)
    autocast = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
                if amp else contextlib.nullcontext())

    def run(fixed, moving):
        with torch.inference_mode(), autocast:
            return fast(fixed, moving)
    return run


def timed(run, fixed, moving, device: str, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run(fixed, moving)
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run(fixed, moving)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            run(fixed, moving)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB.

    Reads ``VmHWM`` from /proc (per address space, so it starts afresh in a new process);
    ``ru_maxrss`` is inherited across fork + exec on Linux and would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(path: str, size: int, device: str, amp: bool) -> float:
    """Peak memory of one pair in a fresh process (RSS on CPU, CUDA max allocated on GPU)."""
    code = (
        "import sys, json, torch; sys.path.insert(0, 'benchmarks');"
        "from inference import build, peak_rss_mb;"
        f"run = build({path!r}, {device!r}, {amp!r});"
        f"x = torch.rand(1, 1, {size}, {size}, device={device!r});"
        "run(x, x);"
        "cuda = torch.cuda.is_available() and x.is_cuda;"
        "mb = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb();"
        "print(json.dumps(mb))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on the fast path")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.node()} | {platform.processor() or platform.machine()} | "
          f"torch {torch.__version__} | threads {torch.get_num_threads()} | device {args.device}"
          f"{' | bf16 autocast (fast)' if args.amp else ''}")
    eager, fast = build("eager", args.device, False), build("fast", args.device, args.amp)
    print("| batch | size | eager s/batch | fast s/batch | fast pairs/s | speed-up | "
          "max |d fused| | max |d flow| px |")
    print("|---|---|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    for size in args.sizes:
        for batch in args.batches:
            fixed = torch.rand(batch, 1, size, size, generator=gen).to(args.device)
            moving = torch.rand(batch, 1, size, size, generator=gen).to(args.device)
            ref, out = eager(fixed, moving), fast(fixed, moving)
            d_fused = (out.fused.float() - ref.fused).abs().max().item()
            d_aligned = (out.aligned.float() - ref.aligned).abs().max().item()
            d_flow = (out.flow.float() - ref.flow).abs().max().item()
            ok = d_fused <= 1e-3 and d_aligned <= 1e-3 and d_flow <= 0.05
            t_eager = timed(eager, fixed, moving, args.device, args.warmup, args.repeats)
            t_fast = timed(fast, fixed, moving, args.device, args.warmup, args.repeats)
            print(f"| {batch} | {size}² | {t_eager:.3f} | {t_fast:.3f} | {batch / t_fast:.1f} | "
                  f"{t_eager / t_fast:.2f}x | {d_fused:.1e} | {d_flow:.1e}"
                  f"{'' if ok else ' MISMATCH'} |", flush=True)
    for size in args.sizes:
        mem_e = peak_memory_mb("eager", size, args.device, False)
        mem_f = peak_memory_mb("fast", size, args.device, args.amp)
        kind = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS"
        print(f"{kind}, one {size}² pair: eager {mem_e:.0f} MiB, fast {mem_f:.0f} MiB")


if __name__ == "__main__":
    main()
