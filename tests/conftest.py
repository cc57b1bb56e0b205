"""Shared fixtures: device, seeded generator, paths to ../shared (data and reference)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BSAFUSION_SHARED", REPO.parent / "shared"))
REFERENCE_DIR = SHARED / "fixtures" / "reference"
AANLIB_DIR = SHARED / "data" / "aanlib"
ARTIFACTS = REPO / "test-artifacts"  # screenshots kept after a run (ignored by git)

# Headless Chromium in a closed network: without the background-networking flags its
# connections are refused and it stalls; --no-sandbox because CI runs as root.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--window-size=1400,1000", "--force-device-scale-factor=1")


def require_shared(path: Path) -> Path:
    """Return ``path``; if it is missing, fail under CI (``CI=true``) and skip elsewhere."""
    if not path.exists():
        message = f"{path} is missing (../shared must sit beside the repository)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


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


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """A headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by selenium,
    one for the session. Skips, naming what is missing, where they are not installed
    (``.ci/run`` installs them where apt-get works)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver)")
    if driver_path is None:
        pytest.skip("chromedriver is not installed (apt-get install chromium-driver)")
    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/`` beside ``tests/``: files a run keeps for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
