"""Tiny training configurations for fast CPU tests."""

from __future__ import annotations

import pytest
import torch

from bsafusion.config import ModelConfig, TrainConfig

TINY_MODEL = {"embed_dim": 32, "num_heads": 2, "reg_channels": [32, 16, 16, 8, 8],
              "fusion_channels": [8, 8, 8, 4]}


def pytest_configure(config):
    config.addinivalue_line("markers", "ddp: 2-process gloo torchrun run on CPU")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a shared 2-core box
    OpenMP spinning across concurrent processes slows a step 20-50x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config(aanlib_dir, tmp_path) -> TrainConfig:
    """4 epochs of 8 CT pairs at 32x32 with a ~0.3 M-parameter network (batch 4)."""
    return TrainConfig(pair="ct", data_dir=str(aanlib_dir), out_dir=str(tmp_path / "run"),
                       num_epochs=4, batch_size=4, lr=1e-4, val_every=2, checkpoint_every=1,
                       image_size=32, max_train_pairs=8, model=ModelConfig(**TINY_MODEL))
