"""What every reader shares: the :class:`ImageData` record, size limits, value normalization.

The readers (:mod:`bsafusion.io.raster`, :mod:`~bsafusion.io.dicom`, :mod:`~bsafusion.io.nifti`)
build on this module and :mod:`bsafusion.io.image` dispatches to them, so nothing imports back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bsafusion.errors import InputError

__all__ = [
    "DICOM_SUFFIXES", "IMAGE_SUFFIXES", "MAX_PIXELS", "MIN_SIDE", "NIFTI_SUFFIXES",
    "RASTER_SUFFIXES", "ImageData", "check_size", "normalize_values",
]

MIN_SIDE = 16  # the network's patch size: smaller images carry no usable structure
MAX_PIXELS = 1 << 28  # 268 M pixels (16384 x 16384): refuse larger images before decoding

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGE_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES


@dataclass
class ImageData:
    """An image and what is needed to write results back like it.

    Attributes:
        array: float32 in [0, 1]; (H, W) grey, (H, W, 3) RGB, or (X, Y, Z) for a NIfTI volume.
        meta: ``format`` (png, tiff, dicom, nifti, ...), ``bits`` (8, 16 or 32), ``range``
            ((lo, hi) of the stored values that map to 0 and 1), ``path``; NIfTI adds
            ``affine`` and ``header``.
    """

    array: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def is_volume(self) -> bool:
        return self.meta.get("format") == "nifti" and self.array.ndim == 3


def check_size(where: object, height: int, width: int) -> None:
    """Refuse images under ``MIN_SIDE`` pixels a side or over ``MAX_PIXELS`` pixels."""
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InputError(where, f"is too small ({width}x{height} pixels; at least "
                                f"{MIN_SIDE}x{MIN_SIDE} needed)")
    if height * width > MAX_PIXELS:
        raise InputError(where, f"is too large ({width}x{height} = {height * width / 1e6:.0f} M "
                                f"pixels, limit {MAX_PIXELS / 1e6:.0f} M): crop or downsample it")


def normalize_values(where: object, values: np.ndarray, meta: dict) -> np.ndarray:
    """Check finiteness and map ``values`` to [0, 1] by bit depth (integers) or min-max (floats).

    Sets ``meta["bits"]`` and ``meta["range"]``.
    """
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise InputError(where, f"contains {bad} NaN or infinite value(s)")
    if values.dtype == np.bool_:
        values = values.astype(np.uint8) * 255
    if values.dtype == np.uint8:
        meta.update(bits=8, range=(0.0, 255.0))
        return values.astype(np.float32) / np.float32(255.0)
    if values.dtype == np.uint16:
        meta.update(bits=16, range=(0.0, 65535.0))
        return values.astype(np.float32) / np.float32(65535.0)
    is_float = values.dtype.kind == "f"
    values = values.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if is_float and lo >= 0.0 and hi <= 1.0 and meta.get("float_is_unit", True):
        lo, hi = 0.0, 1.0
    meta.update(bits=meta.get("bits", 32), range=(lo, hi))
    return ((values - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
