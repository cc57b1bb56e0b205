"""Arithmetic precision of inference (issue 19): fp32, or bf16 autocast, and how far a
reduced-precision result may drift from fp32.

``bf16`` runs the network under ``torch.autocast(bfloat16)``: on a GPU (tensor cores) and on
CPUs with native bf16 kernels (AVX512-BF16 or AMX, used by oneDNN). On a CPU without them
PyTorch falls back to a reference kernel: on the AVX2 VM of ``benchmarks/RESULTS.md`` a 256²
pair took 23 s instead of 0.47 s (one thread), so :class:`bsafusion.Fuser` warns there.

:data:`ACCURACY_BOUNDS` are issue 19's limits for a reduced-precision path against fp32 on the
bundled weights and real pairs; :func:`agreement` measures a result against them (the tests
and ``benchmarks/inference.py`` both use it).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["ACCURACY_BOUNDS", "PRECISIONS", "Agreement", "agreement", "native_bf16",
           "precision_context"]

PRECISIONS = ("fp32", "bf16")
ACCURACY_BOUNDS = {"fused_mean": 1 / 255, "fused_max": 4 / 255, "epe_mean": 0.05,
                   "epe_max": 0.5}  # fused grey levels in [0, 1]; flow end-point error in px


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16; Linux flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_context(device: torch.device | str, precision: str):
    """The context a forward pass at ``precision`` runs in on ``device`` (autocast for bf16)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


class Agreement(NamedTuple):
    """How far a result is from the fp32 one (fused in grey levels of [0, 1], flow in px)."""

    fused_mean: float  # mean |fused - fused_fp32|
    fused_max: float  # max |fused - fused_fp32|
    epe_mean: float  # mean end-point difference of the flows
    epe_max: float  # max end-point difference of the flows

    def failures(self, bounds: dict[str, float] | None = None) -> list[str]:
        """The names of the bounds (default :data:`ACCURACY_BOUNDS`) this agreement exceeds."""
        bounds = ACCURACY_BOUNDS if bounds is None else bounds
        return [name for name, limit in bounds.items() if getattr(self, name) > limit]


def agreement(reference, result) -> Agreement:
    """Compare ``result`` with the fp32 ``reference``: both have ``fused`` (B, C, H, W) and
    ``flow`` (B, 2, H, W) px, channel 0 = x (a network output or a ``FusionResult``)."""
    fused = (result.fused.float() - reference.fused.float()).abs()
    epe = _norm(result.flow.float() - reference.flow.float())
    return Agreement(fused.mean().item(), fused.max().item(), epe.mean().item(),
                     epe.max().item())


def _norm(flow: Tensor) -> Tensor:
    return flow.square().sum(dim=1).sqrt()
