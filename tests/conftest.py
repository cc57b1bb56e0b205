"""Shared fixtures: device, seeded generator, paths to ../shared (data and reference)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BSAFUSION_SHARED", REPO.parent / "shared"))
REFERENCE_DIR = SHARED / "fixtures" / "reference"
AANLIB_DIR = SHARED / "data" / "aanlib"


def require_shared(path: Path) -> Path:
    """Return ``path``; if it is missing, fail under CI (``CI=true``) and skip elsewhere."""
    if not path.exists():
        message = f"{path} is missing (../shared must sit beside the repository)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _restore_package_logger():
    """The CLI, run in-process, gives the ``bsafusion`` logger its own handler and stops its
    propagation (a CLI process owns its logging); put it back so that later tests' ``caplog``
    still sees the package's records whatever the test order."""
    logger = logging.getLogger("bsafusion")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture
def one_thread():
    """One intra-op thread, restored afterwards: on a shared 2-core machine torch's thread
    pool under contention makes small convolutions ~100x slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def device() -> torch.device:
    return torch.device(os.environ.get("BSAFUSION_TEST_DEVICE", "cpu"))


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def reference_checkpoint() -> Path:
    return require_shared(REFERENCE_DIR / "reference_checkpoint.pt")


@pytest.fixture(scope="session")
def reference_outputs() -> dict[str, np.ndarray]:
    with np.load(require_shared(REFERENCE_DIR / "reference_outputs.npz")) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def aanlib_dir() -> Path:
    return require_shared(AANLIB_DIR)
