"""Time the authors' code path, our fp32 paths and each reduced-precision path side by side.

One process runs every path on the same inputs (the bundled CT sample pairs, deformed by the
demo field, resized to each size and repeated to each batch), interleaving the timed runs
(median of --repeats after --warmup), and prints the time per batch, the speed-up over the
authors' path and the agreement of each result with our eager fp32 (issue 19's bounds:
fused mean <= 1/255, max <= 4/255; flow end-point difference mean <= 0.05 px, max <= 0.5
px). Paths:

* ``authors``: the network with the release quirks (§8 token order and feature warp), eager
  fp32 under ``torch.no_grad()``, as a user of the authors' repository runs it;
* ``eager``: our network, eager fp32 under ``torch.no_grad()``;
* ``fast``: ``bsafusion.infer.fast.fast_network`` under ``inference_mode`` (what ``Fuser``
  and ``bsafusion fuse`` run by default);
* ``bf16``: ``fast`` under bf16 autocast (``Fuser(precision="bf16")``); on a CPU only where
  it has native bf16 (AVX512-BF16 / AMX), unless named in --paths;
* ``int8``: ``fast`` with every ``nn.Conv2d`` dynamically quantised to int8 (CPU);
* ``onnxruntime``, ``openvino``: ``Fuser(backend=...)``: the folded network of ``fast``
  exported to ONNX (fp32) and run by that runtime (CPU; extras ``onnx`` / ``openvino``).

On CPU (Linux) a child process then times ``fast`` with the allocator setting of
``bsafusion fuse`` (``tune_cpu_allocator``). Peak memory of one pair per path and size is
measured in a fresh process (peak RSS on CPU, max allocated on CUDA).

    python benchmarks/inference.py --quick       # 256², batch 1, 3 repeats (< 3 min)
    python benchmarks/inference.py               # 256² and 512², batch 1 and 16, 10 repeats
    python benchmarks/inference.py --device cuda --paths authors eager fast bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bsafusion import BSAFusion  # noqa: E402
from bsafusion.config import FeatureWarp, TokenOrder  # noqa: E402
from bsafusion.infer.fast import fast_network, tune_cpu_allocator  # noqa: E402
from bsafusion.infer.fast.onnx import ExportedNetwork  # noqa: E402
from bsafusion.infer.fast.precision import (  # noqa: E402
    agreement,
    native_bf16,
    precision_context,
)
from bsafusion.model.build import build_bsafusion  # noqa: E402

PATHS = ("authors", "eager", "fast", "bf16", "int8", "onnxruntime", "openvino")
CPU_ONLY = ("int8", "onnxruntime", "openvino")


class Out(NamedTuple):
    fused: torch.Tensor
    aligned: torch.Tensor
    flow: torch.Tensor


def load_model(weights: str, device: str) -> BSAFusion:
    """The network with ``weights`` (a bundled name or a file); ``"random"``: torch seed 0."""
    if weights == "random":
        torch.manual_seed(0)
        return BSAFusion().eval().to(device)
    return build_bsafusion(weights=weights, device=device)


def build(path: str, model: BSAFusion, device: str):
    """Return ``run(fixed, moving) -> Out`` for one path of :data:`PATHS`."""
    if path in ("authors", "eager"):
        if path == "authors":  # the release's behaviour: §8.2 token order, §8.3 feature warp
            cfg = dataclasses.replace(model.config, token_order=TokenOrder.RELEASE,
                                      feature_warp=FeatureWarp.RELEASE)
            authors = BSAFusion(cfg).eval().to(device)
            authors.load_state_dict(model.state_dict())
            model = authors
        net, context = model, torch.no_grad
    elif path in ("onnxruntime", "openvino"):  # Fuser(backend=path); exports on first call
        net, context = ExportedNetwork(model, path), torch.no_grad
    else:
        net, context = fast_network(model), torch.inference_mode
        net = quantize_convs(net) if path == "int8" else net
    precision = "bf16" if path == "bf16" else "fp32"

    def run(fixed, moving):
        with context(), precision_context(device, precision):  # as Fuser runs it
            out = net(fixed, moving)
        return Out(out.fused.float(), out.aligned.float(), out.flow.float())
    return run


def quantize_convs(network: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``nn.Conv2d`` of ``network`` by a dynamically quantised int8 conv (per
    output channel weights, per call activation scale; fbgemm / x86 engine)."""
    from torch.ao.nn.quantized.dynamic import Conv2d as DynamicConv2d

    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Conv2d:
                child.qconfig = torch.ao.quantization.default_dynamic_qconfig
                setattr(module, name, DynamicConv2d.from_float(child))
    return network


def inputs(size: int, batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled CT pairs (moving deformed by the demo field) at ``size``², ``batch`` of them."""
    from bsafusion.infer.demo import demo_deformation
    from bsafusion.io import load_image
    from bsafusion.ops.warp import warp
    from bsafusion.samples import sample_pairs

    pairs = sample_pairs("ct")
    load = lambda p: torch.from_numpy(load_image(p).array).float()[None, None]  # noqa: E731
    fixed = torch.cat([load(p.fixed) for p in pairs])
    moving = torch.cat([load(p.moving) for p in pairs])
    moving = warp(moving, demo_deformation(*moving.shape[-2:]).expand(len(pairs), -1, -1, -1))
    resize = lambda x: F.interpolate(x, size=(size, size), mode="bilinear",  # noqa: E731
                                     align_corners=True)
    pick = torch.arange(batch) % len(pairs)
    return resize(fixed)[pick].to(device), resize(moving)[pick].to(device)


def seconds(run, fixed, moving, device: str) -> float:
    """Wall time of one ``run`` (the GPU synchronised before and after)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    run(fixed, moving)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def timed(run, fixed, moving, device: str, warmup: int, repeats: int) -> float:
    """Median of ``repeats`` runs after ``warmup`` (one path alone; ``gpu_paths.py``)."""
    for _ in range(warmup):
        run(fixed, moving)
    return statistics.median(seconds(run, fixed, moving, device) for _ in range(repeats))


def measure(args, model: BSAFusion) -> list[dict]:
    """Per (size, batch): agreement with eager fp32 and the median time of every path."""
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            fixed, moving = inputs(size, batch, args.device)
            row = {"batch": batch, "size": size, "time": {}, "agree": {}, "failed": {}}
            runs, outs = {}, {}
            for path in args.paths:
                try:  # the first call: ONNX paths export and compile here
                    run = build(path, model, args.device)
                    outs[path] = run(fixed, moving)
                    runs[path] = run
                except Exception as exc:  # noqa: BLE001 (report it, time the others)
                    row["failed"][path] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            for path, run in runs.items():
                if "eager" in outs and path != "authors":
                    row["agree"][path] = agreement(outs["eager"], outs[path])
                for _ in range(args.warmup - 1):
                    run(fixed, moving)
            times = {path: [] for path in runs}
            for _ in range(args.repeats):  # interleaved: drifts of a shared machine hit all
                for path, run in runs.items():
                    times[path].append(seconds(run, fixed, moving, args.device))
            row["time"] = {path: statistics.median(ts) for path, ts in times.items()}
            rows.append(row)
    return rows


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


def child(args, *flags: str, check: bool = True):
    """Run this script in a fresh process with ``flags`` and return the JSON it prints
    (None if it failed and not ``check``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *flags, "--device", args.device,
           "--weights", args.weights, "--warmup", str(args.warmup), "--repeats",
           str(args.repeats), "--threads", str(torch.get_num_threads())]
    out = subprocess.run(cmd, capture_output=True, text=True, check=check)
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def child_main(args) -> None:
    """``--child-memory PATH SIZE``: one pair, print peak memory; ``--child-tuned``: time
    ``fast`` with ``bsafusion fuse``'s allocator setting."""
    if args.child_tuned:
        tune_cpu_allocator()
    model = load_model(args.weights, args.device)
    if args.child_tuned:
        print(json.dumps([row["time"]["fast"] for row in measure(args, model)]))
        return
    path, size = args.child_memory[0], int(args.child_memory[1])
    fixed, moving = inputs(size, 1, args.device)
    build(path, model, args.device)(fixed, moving)
    cuda = args.device.startswith("cuda")
    print(json.dumps(torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()))


def report(args, rows: list[dict], tuned: list[float] | None) -> None:
    """Print one table per (size, batch): a row per path."""
    print("| batch | size | path | s/batch | pairs/s | vs authors | fused mean / max (x255) "
          "| flow EPE mean / max px | bounds |")
    print("|---" * 9 + "|")
    for i, row in enumerate(rows):
        base = row["time"].get("authors")
        times = dict(row["time"])
        if tuned is not None:
            times["fast + tuned allocator (`fuse`, child)"] = tuned[i]
        for path, sec in times.items():
            agree = row["agree"].get(path)
            ratio = f"{base / sec:.2f}x" if base else "–"
            acc, ok = "– | –", "–"
            if agree:
                acc = (f"{agree.fused_mean * 255:.3f} / {agree.fused_max * 255:.2f} | "
                       f"{agree.epe_mean:.4f} / {agree.epe_max:.3f}")
                failed = agree.failures()
                ok = "met" if not failed else "FAILED: " + ", ".join(failed)
            print(f"| {row['batch']} | {row['size']}² | {path} | {sec:.3f} | "
                  f"{row['batch'] / sec:.1f} | {ratio} | {acc} | {ok} |", flush=True)
        for path, why in row["failed"].items():
            print(f"| {row['batch']} | {row['size']}² | {path} | failed: {why[:120]} |")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true",
                        help="256², batch 1, 1 warm-up + 3 repeats (a check in < 3 min)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, help="default: every path this "
                        "device runs (bf16 on a CPU only with native bf16)")
    parser.add_argument("--weights", default="ct", help="bundled name, file, or 'random'")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--no-tuned", dest="tuned", action="store_false",
                        help="CPU: skip the child process with the tuned allocator")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the peak-memory processes")
    parser.add_argument("--amp", action="store_true", help="no effect (older commands): "
                        "bf16 is among the default paths on a GPU")
    parser.add_argument("--child-tuned", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-memory", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.warmup, args.repeats = [256], [1], 1, 3
    cpu = args.device == "cpu"
    skipped = {}
    if args.paths is None:
        args.paths = [p for p in PATHS if cpu or p not in CPU_ONLY]
        if cpu and not native_bf16():
            skipped["bf16"] = "no AVX512-BF16 / AMX on this CPU (~50x slower than fp32)"
        for path in ("onnxruntime", "openvino"):
            if cpu and not (_has(path) and _has("onnx")):
                skipped[path] = f"{path} or onnx is not installed"
        args.paths = [p for p in args.paths if p not in skipped]
    return args, skipped


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv=None) -> None:
    args, skipped = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_tuned or args.child_memory:
        child_main(args)
        return
    print(f"# {platform.node()} | {platform.processor() or platform.machine()} | torch "
          f"{torch.__version__} ({torch.backends.cpu.get_cpu_capability()}) | threads "
          f"{torch.get_num_threads()} | device {args.device} | weights {args.weights} | median "
          f"of {args.repeats} after {args.warmup} warm-up(s)")
    for path, why in skipped.items():
        print(f"# skipped {path}: {why}; name it in --paths to time it anyway")
    rows = measure(args, load_model(args.weights, args.device))
    tuned = None
    if args.tuned and args.device == "cpu" and sys.platform == "linux" and "fast" in args.paths:
        flags = ["--child-tuned", "--paths", "fast", "--batches", *map(str, args.batches),
                 "--sizes", *map(str, args.sizes)]
        tuned = child(args, *flags)
    report(args, rows, tuned)
    if not args.memory:
        return
    kind = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS"
    for size in args.sizes:
        mem = {p: child(args, "--child-memory", p, str(size), check=False) for p in args.paths}
        print(f"{kind}, one {size}² pair (fresh process): " + ", ".join(
            f"{p} {'failed' if mb is None else f'{mb:.0f} MiB'}" for p, mb in mem.items()))


if __name__ == "__main__":
    main()
