"""torchrun environment -> process group; one code path for 1 or N processes.

Without ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (plain ``python -m bsafusion train``) the
run is world size 1 with no process group. Under ``torchrun`` the group uses nccl on CUDA
and gloo on CPU; each process drives ``cuda:LOCAL_RANK`` when CUDA is available. Only rank 0
logs and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DistInfo", "all_reduce_sum", "barrier", "init_distributed", "teardown"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Read torchrun's environment, pick the device and start the process group if needed.

    Args:
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available). Under torchrun a CUDA
            run uses ``cuda:LOCAL_RANK``.
    """
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(kind)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, local_rank, world_size, dev)


def teardown() -> None:
    """Destroy the process group if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum ``x`` over all processes (in place); a no-op without a process group."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def barrier() -> None:
    """Wait for every process; a no-op without a process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
