"""Files <-> (float32 array in [0, 1], metadata), dispatched on the file's suffix.

Rasters (PNG / JPEG / BMP / TIFF) are read by :mod:`bsafusion.io.raster`, DICOM by
:mod:`bsafusion.io.dicom` (extra ``dicom``), NIfTI by :mod:`bsafusion.io.nifti` (extra ``nifti``).
Every reader returns an :class:`ImageData` whose ``array`` is float32 in [0, 1]; ``meta`` says
how to go back (``bits``, ``range``) and, for NIfTI, carries the affine and header.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from bsafusion.errors import InputError
from bsafusion.io.base import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    MIN_SIDE,
    NIFTI_SUFFIXES,
    RASTER_SUFFIXES,
    ImageData,
    check_size,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "ImageData",
    "file_stem",
    "load_image",
    "read_image",
    "write_image",
    "write_png",
]


def file_stem(path: str | os.PathLike) -> str:
    """The file name without its image suffix (``a.nii.gz`` -> ``a``)."""
    name = Path(path).name
    for suffix in (".nii.gz",):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if path.suffix.lower() not in RASTER_SUFFIXES:
        with open(path, "rb") as fh:  # DICOM files often have no suffix: look for the magic
            head = fh.read(132)
        if head[128:132] == b"DICM":
            return "dicom"
    return "raster"


def _check_file(path: Path, what: str) -> None:
    """Raise :class:`InputError` unless ``path`` is a readable regular file."""
    if path.is_dir():
        raise InputError(path, f"is a directory, not {what}")
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise InputError(path, "is not readable (permission denied)")
        return
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13: "Symlink loop"
            raise InputError(path, "is a symbolic link loop") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError(path, "is a symbolic link loop") from None
            raise InputError(path, f"is a broken symbolic link (to {os.readlink(path)})") from None
    if path.exists():
        raise InputError(path, "is not a regular file")
    raise InputError(path, "no such file")


def load_image(path: str | os.PathLike) -> ImageData:
    """Read any supported image file.

    Raises:
        InputError: missing, empty, unreadable, truncated, too small / large, NaN or Inf,
            unsupported channels, or a missing optional reader (with the extra to install).
    """
    path = Path(path)
    _check_file(path, "an image file")
    if path.stat().st_size == 0:
        raise InputError(path, "is empty (0 bytes)")
    kind = _kind(path)
    if kind == "nifti":
        from bsafusion.io.nifti import read_nifti

        data = read_nifti(path)
    elif kind == "dicom":
        from bsafusion.io.dicom import read_dicom

        data = read_dicom(path)
    else:
        from bsafusion.io.raster import read_raster

        data = read_raster(path)
    data.meta["path"] = str(path)
    if not data.is_volume:
        check_size(path, *data.array.shape[:2])
    return data


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 in [0, 1]: (H, W) grey or (H, W, 3) RGB (see :func:`load_image`)."""
    return load_image(path).array


def write_image(path: str | os.PathLike, image: np.ndarray, *, bits: int = 8,
                meta: dict | None = None) -> Path:
    """Write a float image in [0, 1] atomically; the format follows the suffix.

    Args:
        path: ``.png`` (8 or 16 bits; 16-bit colour falls back to 8), ``.tif``/``.tiff``
            (8, 16 or 32 = float32), ``.nii``/``.nii.gz`` (float32, needs ``meta`` of a
            NIfTI input for its affine and header).
        image: (H, W), (H, W, 3) or a volume for NIfTI, float in [0, 1].
        bits: 8, 16 or 32.
        meta: for NIfTI, the fixed image's metadata; ``range`` (lo, hi) maps [0, 1] back to
            stored values for float outputs.
    """
    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        from bsafusion.io.nifti import write_nifti

        return write_nifti(path, image, meta or {})
    from bsafusion.io.raster import write_raster

    return write_raster(path, image, bits=bits, value_range=(meta or {}).get("range"))


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a float image in [0, 1] ((H, W) or (H, W, 3)) as an 8-bit PNG, atomically."""
    return write_image(path, image, bits=8)
