"""The pair table (bsafusion.pairs): every reader of pairs follows it, so a new modality is one
entry (plus its weights and samples)."""

from __future__ import annotations

import dataclasses

import pytest

from bsafusion import pairs
from bsafusion.cli import build_parser, main
from bsafusion.config import TrainConfig
from bsafusion.errors import ConfigError
from bsafusion.samples import sample_pairs
from bsafusion.weights import bundled_name

pytestmark = pytest.mark.usefixtures("one_thread")


def test_spellings_and_entries():
    assert pairs.pair_names() == ("ct", "pet", "spect")
    assert pairs.get_pair("CT-MRI").modality == "CT"
    assert pairs.canonical_pair("Spect") == "spect" and pairs.canonical_pair("xray") is None
    assert [p.color for p in pairs.PAIRS] == [False, True, True]
    with pytest.raises(ConfigError, match="unknown modality pair 'xray'"):
        pairs.get_pair("xray")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pairs.PAIRS[0].name = "x"  # type: ignore[misc]


@pytest.fixture
def fake_modality(monkeypatch):
    """A new modality 'xr' that reuses the bundled CT weights and samples: one table entry."""
    entry = pairs.Pair("xr", "CT", color=False, weights="ct", data_folder="CT-MRI")
    monkeypatch.setattr(pairs, "PAIRS", (*pairs.PAIRS, entry))
    return entry


def test_a_new_modality_is_one_table_entry(fake_modality, tmp_path):
    assert pairs.get_pair("XR-MRI") is fake_modality
    assert TrainConfig(pair="XR").pair == "xr"
    assert bundled_name("xr-mri") == "ct"
    assert sample_pairs("xr") and sample_pairs("xr")[0].moving.parent.name == "CT"
    for command in ("evaluate", "make-testset", "train"):
        args = build_parser().parse_args([command, "--pair", "xr", "-o" if command == "evaluate"
                                          else "--out", str(tmp_path)])
        assert args.pair == "xr"
    code = main(["fuse", "--demo", "--pair", "xr", "--no-panel", "-o", str(tmp_path / "o")])
    assert code == 0 and (tmp_path / "o" / "fused").is_dir()


def test_the_data_folder_comes_from_the_table(monkeypatch, tmp_path):
    from bsafusion.data.pairs import resolve_pair_dir

    monkeypatch.setattr(pairs, "PAIRS", (*pairs.PAIRS, pairs.Pair(
        "us", "US", color=False, weights="us", data_folder="Ultrasound-MRI")))
    for sub in ("MRI", "US"):
        (tmp_path / "Ultrasound-MRI" / sub).mkdir(parents=True)
    assert resolve_pair_dir(tmp_path, "us") == tmp_path / "Ultrasound-MRI"
