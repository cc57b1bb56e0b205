"""Training throughput: pairs per second per optimisation step, and peak memory.

One step = paired augmentation + synthetic deformation with exact inversion (§6) + forward
+ the full loss (§4) + backward + Adam step, exactly ``bsafusion.train.trainer.training_step``.
Inputs are random images of the given size (throughput does not depend on their content).
On CUDA the step runs with bf16 autocast and, side by side, without it (fp32 + TF32).

    python benchmarks/train_throughput.py --batch-sizes 1 2 4 --size 256       # this device
    python benchmarks/train_throughput.py --device cuda --batch-sizes 8 16 32 64
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import torch

from bsafusion.config import ModelConfig, TrainConfig
from bsafusion.losses import BSAFusionLoss
from bsafusion.model import BSAFusion
from bsafusion.train.step import training_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(batch: int, size: int, device: torch.device, *, amp: bool, steps: int, warmup: int,
          model_config: ModelConfig) -> tuple[float, float]:
    """Return (pairs per second, peak memory in MiB: CUDA allocated or process max RSS)."""
    torch.manual_seed(0)
    model = BSAFusion(model_config).to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    criterion = BSAFusionLoss()
    config = dataclasses.replace(TrainConfig(), amp=amp, model=model_config)
    gen = torch.Generator(device=device).manual_seed(0)
    fixed = torch.rand(batch, 1, size, size, device=device)
    label = torch.rand(batch, 1, size, size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        training_step(model, criterion, optimizer, fixed, label, config=config, generator=gen)
    _sync(device)
    if device.type == "cuda":
        start_ev, end_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
            enable_timing=True)
        start_ev.record()
        for _ in range(steps):
            training_step(model, criterion, optimizer, fixed, label, config=config, generator=gen)
        end_ev.record()
        _sync(device)
        seconds = start_ev.elapsed_time(end_ev) / 1000
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        start = time.perf_counter()
        for _ in range(steps):
            training_step(model, criterion, optimizer, fixed, label, config=config, generator=gen)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return batch * steps / seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    print(f"# torch {torch.__version__}, {name}, {args.size}x{args.size}, "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    modes = (True, False) if device.type == "cuda" else (False,)
    print("| batch | precision | pairs/s | s/step | peak MiB |")
    print("|---|---|---|---|---|")
    for batch in args.batch_sizes:
        results = {}
        for amp in modes:
            rate, peak = bench(batch, args.size, device, amp=amp, steps=args.steps,
                               warmup=args.warmup, model_config=ModelConfig())
            results[amp] = rate
            label = "bf16 autocast" if amp else ("fp32 + TF32" if device.type == "cuda"
                                                 else "fp32")
            print(f"| {batch} | {label} | {rate:.2f} | {batch / rate:.3f} | {peak:.0f} |",
                  flush=True)
        if len(results) == 2:
            print(f"|   | bf16 / fp32 ratio | {results[True] / results[False]:.2f}x | | |")


if __name__ == "__main__":
    main()
