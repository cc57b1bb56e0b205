"""Paired dataset over split.csv, make-split and paired augmentation (architecture.md §5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bsafusion.data.pairs import augment_pairs, load_pairs, make_split, read_split
from bsafusion.errors import InputError
from bsafusion.ops.color import rgb_to_ycbcr


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def tiny_pet(tmp_path):
    """4 PET-MRI pairs of 32x32 plus one MRI and one PET without partner."""
    rng = np.random.default_rng(0)
    for i in range(4):
        _png(tmp_path / "MRI" / f"{i}.png", rng.integers(10, 200, (32, 32), dtype=np.uint8))
        _png(tmp_path / "PET" / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    _png(tmp_path / "MRI" / "lonely.png", np.zeros((32, 32), np.uint8) + 5)
    _png(tmp_path / "PET" / "alone.png", np.zeros((32, 32, 3), np.uint8) + 5)
    return tmp_path


def test_make_split_lists_unpaired(tiny_pet):
    report = make_split(tiny_pet, val=0.25, test=0.25, seed=0)
    assert report.counts == {"train": 2, "val": 1, "test": 1, "unpaired": 2}
    assert report.unpaired == ("alone.png", "lonely.png")
    rows = read_split(tiny_pet)
    assert ("alone.png", "unpaired") in rows and len(rows) == 6
    with pytest.raises(InputError, match="overwrite"):
        make_split(tiny_pet)
    again = make_split(tiny_pet, val=0.25, test=0.25, seed=0, overwrite=True)
    assert read_split(tiny_pet) == rows and again.counts == report.counts


def test_make_split_cli(tiny_pet):
    cmd = [sys.executable, "-m", "bsafusion", "make-split", str(tiny_pet), "--val", "0.25",
           "--test", "0.25"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "unpaired (no partner): lonely.png" in proc.stdout


def test_load_normalises_and_converts_colour(tiny_pet):
    make_split(tiny_pet, val=0.0, test=0.0)
    pairs = load_pairs(tiny_pet, "pet", "train")
    assert len(pairs.names) == 4 and pairs.fixed.shape == (4, 1, 32, 32)
    assert pairs.chroma is not None and pairs.chroma.shape == (4, 2, 32, 32)
    assert torch.all(pairs.fixed.amin(dim=(1, 2, 3)) == 0) and torch.all(pairs.fixed.amax() == 1)
    rgb = np.asarray(Image.open(tiny_pet / "PET" / pairs.names[0]), np.float32) / 255
    rgb = (rgb - rgb.min()) / (rgb.max() - rgb.min())
    ycc = rgb_to_ycbcr(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    torch.testing.assert_close(pairs.moving[:1], ycc[:, :1], rtol=0, atol=1e-6)
    torch.testing.assert_close(pairs.chroma[:1], ycc[:, 1:], rtol=0, atol=1e-6)


def test_bad_file_is_named(tiny_pet):
    make_split(tiny_pet, val=0.0, test=0.0)
    (tiny_pet / "PET" / "2.png").write_bytes(b"not a png")
    with pytest.raises(InputError) as exc:
        load_pairs(tiny_pet, "PET", "train")
    assert exc.value.where.endswith("2.png")
    with pytest.raises(InputError, match="no pairs"):
        load_pairs(tiny_pet, "PET", "test")


def test_real_split_counts(aanlib_dir):
    rows = read_split(aanlib_dir / "CT-MRI")
    assert sum(s == "train" for _, s in rows) == 144
    pairs = load_pairs(aanlib_dir, "ct", "val", image_size=32)
    assert pairs.fixed.shape == (20, 1, 32, 32) and pairs.chroma is None


def test_augment_is_paired(generator):
    x = torch.rand(16, 1, 8, 8, generator=generator)
    y = torch.cat((x, 2 * x), dim=1)
    ax, ay = augment_pairs((x, y), generator=generator)
    torch.testing.assert_close(ay[:, :1], ax, rtol=0, atol=0)
    torch.testing.assert_close(ay[:, 1:], 2 * ax, rtol=0, atol=0)
    changed = (ax != x).flatten(1).any(dim=1)
    assert 0 < int(changed.sum()) < 16  # some samples transformed, some not (8 symmetries)


def test_the_default_data_are_found_from_any_directory(aanlib_dir, tmp_path, monkeypatch):
    """README: $BSAFUSION_DATA, else .cache/aanlib or ../shared/data/aanlib, in the working
    directory and then in the repository (an editable install)."""
    from bsafusion.data.pairs import default_data_dir

    monkeypatch.delenv("BSAFUSION_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    found = default_data_dir()
    assert found.is_dir() and (found / "CT-MRI").is_dir()
    (tmp_path / ".cache" / "aanlib").mkdir(parents=True)
    assert default_data_dir() == Path(".cache/aanlib")  # the working directory's come first
