"""Time the plain eager fp32 path and the fast inference path side by side, in one run.

For each (batch, size) it runs both paths on the same inputs, checks that their outputs agree
(fused / aligned within 1e-3, flow within 0.05 px), takes the median of --repeats timed runs
after --warmup runs, and prints the speed-up. On CPU (Linux) a child process then times both
paths again with the allocator setting that ``bsafusion fuse`` makes
(``bsafusion.infer.fast.tune_cpu_allocator``), and the table adds those columns and the
speed-up of that fast path over the plain eager one. Peak memory of one pair at each size is
measured in a fresh subprocess per path (peak RSS on CPU, max allocated on CUDA).

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
from bsafusion.infer.fast import fast_network, tune_cpu_allocator  # noqa: E402


def build(path: str, device: str, amp: bool):
    """Return ``run(fixed, moving) -> output`` for the 'eager' or 'fast' path."""
    torch.manual_seed(0)
    model = BSAFusion().eval().to(device)
    if path == "eager":  # the straightforward path: eager fp32 under no_grad
        def run(fixed, moving):
            with torch.no_grad():
                return model(fixed, moving)
        return run
    fast = fast_network(model)  # what Fuser runs: on a GPU with channels-last + CUDA graphs
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


def peak_memory_mb(path: str, size: int, device: str, amp: bool, *,
                   tuned: bool = False) -> float:
    """Peak memory of one pair in a fresh process (RSS on CPU, CUDA max allocated on GPU);
    ``tuned``: with the allocator setting of ``bsafusion fuse``."""
    code = (
        "import sys, json, torch; sys.path.insert(0, 'benchmarks');"
        "from inference import build, peak_rss_mb, tune_cpu_allocator;"
        f"{'tune_cpu_allocator();' if tuned else ''}"
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


def measure(args, eager, fast) -> list[dict]:
    """Time both paths and compare their outputs for every (size, batch) of ``args``."""
    rows = []
    gen = torch.Generator().manual_seed(0)
    for size in args.sizes:
        for batch in args.batches:
            fixed = torch.rand(batch, 1, size, size, generator=gen).to(args.device)
            moving = torch.rand(batch, 1, size, size, generator=gen).to(args.device)
            ref, out = eager(fixed, moving), fast(fixed, moving)
            rows.append({
                "batch": batch, "size": size,
                "d_fused": (out.fused.float() - ref.fused).abs().max().item(),
                "d_aligned": (out.aligned.float() - ref.aligned).abs().max().item(),
                "d_flow": (out.flow.float() - ref.flow).abs().max().item(),
                "eager": timed(eager, fixed, moving, args.device, args.warmup, args.repeats),
                "fast": timed(fast, fixed, moving, args.device, args.warmup, args.repeats)})
    return rows


def tuned_rows(args) -> list[dict]:
    """The same measurement in a child process whose allocator is tuned (see
    ``bsafusion.infer.fast.tune_cpu_allocator``, which ``bsafusion fuse`` applies)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-tuned", "--device",
           args.device, "--warmup", str(args.warmup), "--repeats", str(args.repeats),
           "--batches", *map(str, args.batches), "--sizes", *map(str, args.sizes)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
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
    parser.add_argument("--no-tuned", dest="tuned", action="store_false",
                        help="CPU: skip the second pass with the tuned allocator")
    parser.add_argument("--child-tuned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_tuned:  # a fresh process: tune first, then measure, print JSON
        tune_cpu_allocator()
        print(json.dumps(measure(args, build("eager", args.device, False),
                                 build("fast", args.device, args.amp))))
        return
    tuned = args.tuned and args.device == "cpu" and sys.platform == "linux"
    print(f"# {platform.node()} | {platform.processor() or platform.machine()} | "
          f"torch {torch.__version__} | threads {torch.get_num_threads()} | device {args.device}"
          f"{' | bf16 autocast (fast)' if args.amp else ''}")
    rows = measure(args, build("eager", args.device, False), build("fast", args.device, args.amp))
    extra = tuned_rows(args) if tuned else [{} for _ in rows]
    head = "| batch | size | eager s/batch | fast s/batch | fast pairs/s | speed-up |"
    if tuned:
        head += (" eager, tuned alloc. | fast, tuned alloc. (`fuse`) | fast tuned vs plain "
                 "eager |")
    print(head + " max |d fused| | max |d flow| px |")
    print("|---" * (head.count("|") + 1) + "|")
    for row, more in zip(rows, extra, strict=True):
        ok = row["d_fused"] <= 1e-3 and row["d_aligned"] <= 1e-3 and row["d_flow"] <= 0.05
        line = (f"| {row['batch']} | {row['size']}² | {row['eager']:.3f} | {row['fast']:.3f} | "
                f"{row['batch'] / row['fast']:.1f} | {row['eager'] / row['fast']:.2f}x |")
        if tuned:
            line += (f" {more['eager']:.3f} | {more['fast']:.3f} | "
                     f"{row['eager'] / more['fast']:.2f}x |")
        print(f"{line} {row['d_fused']:.1e} | {row['d_flow']:.1e}"
              f"{'' if ok else ' MISMATCH'} |", flush=True)
    for size in args.sizes:
        mem_e = peak_memory_mb("eager", size, args.device, False)
        mem_f = peak_memory_mb("fast", size, args.device, args.amp)
        kind = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS"
        line = f"{kind}, one {size}² pair: eager {mem_e:.0f} MiB, fast {mem_f:.0f} MiB"
        if tuned:
            mem_t = peak_memory_mb("fast", size, args.device, args.amp, tuned=True)
            line += f", fast with the tuned allocator {mem_t:.0f} MiB"
        print(line)


if __name__ == "__main__":
    main()
