"""THE table of modality pairs: everything that differs between CT-MRI, PET-MRI and SPECT-MRI.

Every CLI command, the weights registry, the bundled samples, the demo, training's config and
evaluation read :data:`PAIRS`; adding a modality is one :class:`Pair` entry here plus its
weights (``assets/manifest.json``) and, for ``--demo``, its sample pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

from bsafusion.errors import ConfigError

__all__ = ["PAIRS", "Pair", "canonical_pair", "find_pair", "get_pair", "pair_names"]


@dataclass(frozen=True)
class Pair:
    """One modality pair: the MRI (fixed) and a moving modality.

    Attributes:
        name: canonical lower-case name (``"ct"``), also accepted as ``"ct-mri"``.
        modality: folder name of the moving modality in a data set (``"CT"``).
        color: the moving image is pseudo-colour RGB (PET, SPECT), else grey.
        weights: name of its bundled weights in ``assets/manifest.json``.
        data_folder: folder of the pair in a data set and in the bundled samples.
        elastix_transform: the transform of the elastix baseline (baselines.md: rigid only
            for SPECT).
    """

    name: str
    modality: str
    color: bool
    weights: str
    data_folder: str
    elastix_transform: str = "bspline"


PAIRS: tuple[Pair, ...] = (
    Pair("ct", "CT", color=False, weights="ct", data_folder="CT-MRI"),
    Pair("pet", "PET", color=True, weights="pet", data_folder="PET-MRI"),
    Pair("spect", "SPECT", color=True, weights="spect", data_folder="SPECT-MRI",
         elastix_transform="rigid"),
)


def pair_names() -> tuple[str, ...]:
    """The canonical names, in table order (``("ct", "pet", "spect")``)."""
    return tuple(p.name for p in PAIRS)


def find_pair(name: str) -> Pair | None:
    """The :class:`Pair` called ``name`` in any accepted spelling (``"CT"``, ``"ct-mri"``,
    ``"CT-MRI"``), or None."""
    key = str(name).lower().removesuffix("-mri")
    return next((p for p in PAIRS if p.name == key), None)


def canonical_pair(name: str) -> str | None:
    """``"CT"``, ``"ct-mri"``, ``"CT-MRI"`` -> ``"ct"``; None for an unknown name."""
    pair = find_pair(name)
    return None if pair is None else pair.name


def get_pair(name: str, where: object = "pair") -> Pair:
    """The :class:`Pair` called ``name`` (any accepted spelling).

    Raises:
        ConfigError: naming ``where``, when no pair is called that.
    """
    pair = find_pair(name)
    if pair is None:
        raise ConfigError(where, f"unknown modality pair {name!r} (choose from "
                                 f"{', '.join(pair_names())})")
    return pair
