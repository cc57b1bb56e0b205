"""Training and test data: paired slices from ``split.csv`` and synthetic deformation."""

from bsafusion.data.deform import Deformation, deform, inverse_residual, invert_flow, random_flow
from bsafusion.data.pairs import (
    PairTensors,
    augment_pairs,
    load_pairs,
    make_split,
    read_split,
    resolve_pair_dir,
)

__all__ = [
    "Deformation",
    "PairTensors",
    "augment_pairs",
    "deform",
    "inverse_residual",
    "invert_flow",
    "load_pairs",
    "make_split",
    "random_flow",
    "read_split",
    "resolve_pair_dir",
]
