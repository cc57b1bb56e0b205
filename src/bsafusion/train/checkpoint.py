"""Training checkpoints (``best.pt`` / ``last.pt``) and their export to inference weights.

A checkpoint is a ``torch.save`` dict: ``format``, ``model`` (state dict), ``optimizer``,
``scheduler``, ``epoch`` (epochs completed), ``p`` (the fusion balance for the next epoch),
``best_metric`` / ``best_epoch``, ``history`` (the log rows so far), ``rng`` (torch CPU, CUDA
and the data generator states) and both configs as plain dicts. It is written atomically and
read with ``weights_only=True``.

Export keeps every tensor of the network, the frozen discriminator included: it is a copy of
the classifier head refreshed at each epoch end, unused at inference (0.86 M of 9.8 M
parameters), and keeping it lets ``BSAFusion.from_pretrained`` load the file strictly with no
special case.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from bsafusion.config import ModelConfig
from bsafusion.errors import InputError
from bsafusion.io.atomic import atomic_write, refuse_overwrite
from bsafusion.model import BSAFusion

__all__ = ["CHECKPOINT_FORMAT", "export_weights", "find_checkpoint", "load_checkpoint",
           "load_network_state", "save_checkpoint"]

CHECKPOINT_FORMAT = "bsafusion-train/1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format tag) atomically with ``torch.save``."""
    payload = {"format": CHECKPOINT_FORMAT, **state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        InputError: missing, unreadable or not a bsafusion training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(path, f"cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, "not a bsafusion training checkpoint")
    return state


def find_checkpoint(run: str | os.PathLike, which: str = "best") -> Path:
    """``run`` itself if it is a file, else ``run/<which>.pt`` (falling back to ``last.pt``)."""
    run = Path(run)
    if run.is_file():
        return run
    for name in (f"{which}.pt", "last.pt"):
        if (run / name).is_file():
            return run / name
    raise InputError(run, f"no {which}.pt or last.pt checkpoint in this run folder")


def load_network_state(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor],
                                                           ModelConfig]:
    """The network of ``source``, to start a new run from (``--init``).

    Args:
        source: a run folder or a training checkpoint (``best.pt`` first), or inference
            weights: a safetensors file (its sha256 checked as for inference) or a bundled
            name such as ``"ct"``.
    Returns:
        (float32 state dict, its ModelConfig).
    Raises:
        InputError / WeightsError: unreadable or foreign file.
    """
    path = Path(source)
    if path.is_dir() or path.suffix in (".pt", ".pth"):
        state = load_checkpoint(find_checkpoint(path))
        return state["model"], ModelConfig.from_dict(state["model_config"])
    from bsafusion.weights import load_weights

    return load_weights(source)


def export_weights(run: str | os.PathLike, out: str | os.PathLike, *, fp16: bool = False,
                   which: str = "best", overwrite: bool = False) -> tuple[Path, str, int]:
    """Write a run's model as safetensors inference weights (config in the metadata).

    Args:
        run: run folder (``best.pt`` by default, else ``last.pt``) or a checkpoint file.
        out: output ``.safetensors`` (a ``.sha256`` sidecar is written beside it).
        fp16: store float16 tensors (loaded back as float32).
        which: ``"best"`` or ``"last"``.
    Returns:
        (checkpoint used, sha256 of the file, epoch of the checkpoint).
    Raises:
        InputError: bad run / checkpoint, or ``out`` exists without ``overwrite``.
    """
    out = Path(out)
    refuse_overwrite(out, overwrite)
    path = find_checkpoint(run, which)
    state = load_checkpoint(path)
    model = BSAFusion.from_state_dict(state["model"], ModelConfig.from_dict(state["model_config"]),
                                      path)
    train_config = state.get("train_config", {})
    epoch, total = int(state.get("epoch", 0)), int(train_config.get("num_epochs", 0) or 0)
    meta = {"source": path.name, "epoch": str(state.get("epoch", "")),
            "train_config": str(train_config.get("pair", "")),
            "pair": str(train_config.get("pair", "")), "num_epochs": str(total or ""),
            "status": "interim" if total and epoch < total else "trained",
            "work_size": str(train_config.get("image_size") or "")}
    digest = model.save_pretrained(out, dtype=torch.float16 if fp16 else torch.float32,
                                   metadata=meta)
    return path, digest, int(state.get("epoch", 0))
