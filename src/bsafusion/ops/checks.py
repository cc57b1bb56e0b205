"""Shape and value guards used at public boundaries (never in hot inner blocks)."""

from __future__ import annotations

import torch
from torch import Tensor

from bsafusion.errors import InputError

__all__ = ["check_finite", "check_shape", "check_spatial_multiple"]


def check_shape(x: object, pattern: str, name: str = "input") -> dict[str, int]:
    """Check that ``x`` is a tensor whose shape matches ``pattern``.

    Args:
        x: the value to check.
        pattern: space-separated dims; an integer must match exactly, a letter binds a size
            (the same letter must bind the same size), ``*`` matches anything.
        name: what to call ``x`` in the error.
    Returns:
        The sizes bound to each letter, e.g. ``{"B": 2, "H": 64, "W": 64}``.
    Raises:
        InputError: naming ``name``, the expected pattern and the actual shape.
    """
    if not isinstance(x, Tensor):
        raise InputError(name, f"expected a torch.Tensor, got {type(x).__name__}")
    dims = pattern.split()
    shape = tuple(x.shape)
    bound: dict[str, int] = {}
    ok = len(dims) == len(shape)
    for dim, size in zip(dims, shape, strict=True) if ok else ():
        if dim == "*":
            continue
        if dim.isdigit():
            ok = ok and int(dim) == size
        elif bound.setdefault(dim, size) != size:
            ok = False
    if not ok:
        raise InputError(name, f"expected shape ({', '.join(dims)}), got {shape}")
    return bound


def check_spatial_multiple(x: Tensor, multiple: int, name: str = "input") -> None:
    """Raise :class:`InputError` unless H, W of ``x`` (..., H, W) are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    if h % multiple or w % multiple or h == 0 or w == 0:
        raise InputError(name, f"height and width must be multiples of {multiple}, got {h}x{w}")


def check_finite(x: Tensor, name: str = "input") -> None:
    """Raise :class:`InputError` if ``x`` holds NaN or infinite values."""
    if not bool(torch.isfinite(x).all()):
        raise InputError(name, "contains NaN or infinite values")
