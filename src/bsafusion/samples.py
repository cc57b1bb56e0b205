"""The sample pairs bundled with the package (three test-split pairs per modality pair)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import NamedTuple

from bsafusion.errors import BsafusionError, InputError
from bsafusion.pairs import get_pair

__all__ = ["SamplePair", "sample_pairs"]


class SamplePair(NamedTuple):
    name: str  # file stem
    fixed: Path  # the MRI
    moving: Path  # CT (grey) or PET / SPECT (RGB)


def sample_pairs(pair: str = "ct") -> list[SamplePair]:
    """List the bundled sample pairs of one modality pair (a name of :data:`bsafusion.pairs.PAIRS`).

    Samples live in ``assets/samples/<data_folder>/MRI`` and ``.../<modality>``.
    """
    try:
        entry = get_pair(pair, where=pair)
    except BsafusionError as exc:
        raise InputError(exc.where, exc.problem) from None
    root = Path(str(resources.files("bsafusion.assets").joinpath("samples", entry.data_folder)))
    return [
        SamplePair(p.stem, p, root / entry.modality / p.name)
        for p in sorted((root / "MRI").glob("*.png"))
    ]
