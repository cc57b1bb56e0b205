"""Training: the loop of architecture.md §5, checkpoints, export and torchrun support."""

from bsafusion.train.checkpoint import export_weights, load_checkpoint, save_checkpoint
from bsafusion.train.distributed import DistInfo, init_distributed
from bsafusion.train.trainer import Trainer, TrainResult, train

__all__ = [
    "DistInfo",
    "TrainResult",
    "Trainer",
    "export_weights",
    "init_distributed",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]
