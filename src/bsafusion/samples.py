"""The sample pairs bundled with the package (three test-split pairs per modality pair)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import NamedTuple

from bsafusion.errors import InputError

__all__ = ["MODALITIES", "SamplePair", "sample_pairs"]

# canonical pair name -> (folder, moving modality folder)
MODALITIES = {"ct": ("CT-MRI", "CT"), "pet": ("PET-MRI", "PET"), "spect": ("SPECT-MRI", "SPECT")}


class SamplePair(NamedTuple):
    name: str  # file stem
    fixed: Path  # the MRI
    moving: Path  # CT (grey) or PET / SPECT (RGB)


def sample_pairs(pair: str = "ct") -> list[SamplePair]:
    """List the bundled sample pairs of one modality pair (``"ct"``, ``"pet"``, ``"spect"``)."""
    key = pair.lower().removesuffix("-mri")
    if key not in MODALITIES:
        raise InputError(pair, f"unknown modality pair (choose from {', '.join(MODALITIES)})")
    folder, modality = MODALITIES[key]
    root = Path(str(resources.files("bsafusion.assets").joinpath("samples", folder)))
    return [
        SamplePair(p.stem, p, root / modality / p.name)
        for p in sorted((root / "MRI").glob("*.png"))
    ]
