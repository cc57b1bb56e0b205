"""NIfTI through nibabel (optional extra ``nifti``): volumes keep their affine and header."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from bsafusion.errors import InputError
from bsafusion.io.atomic import atomic_write
from bsafusion.io.base import ImageData, normalize_values

__all__ = ["read_nifti", "write_nifti"]


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise InputError("nibabel", "is needed for NIfTI: pip install 'bsafusion[nifti]'") from None
    return nibabel


def read_nifti(path: Path) -> ImageData:
    """Read a 2-D or 3-D NIfTI image (scl_slope/inter applied), min-max scaled to [0, 1].

    A 3-D volume stays 3-D (processed slice by slice by the API); (H, W) and (H, W, 1) images
    are 2-D. ``meta`` keeps ``affine``, ``header`` and the value ``range``.
    """
    nib = _nibabel()
    try:
        img = nib.load(str(path))
        values = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # ImageFileError, truncated gzip (EOFError), bad header...
        raise InputError(path, f"is not a readable NIfTI image ({type(exc).__name__}: {exc})"
                         ) from None
    extra = values.shape[3:]
    if any(n != 1 for n in extra):  # a time series or vector image
        shape = "x".join(map(str, values.shape))
        raise InputError(path, f"is a {values.ndim}-D image ({shape}); expected a 2-D image or "
                               "a 3-D volume (extract one volume first)")
    values = values.reshape(values.shape[:3]) if extra else values
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    if values.ndim not in (2, 3):
        raise InputError(path, f"has shape {values.shape}; expected a 2-D image or 3-D volume")
    meta = {"format": "nifti", "bits": 32, "float_is_unit": False,
            "affine": img.affine, "header": img.header}
    return ImageData(normalize_values(path, values, meta), meta)


def write_nifti(path: str | os.PathLike, image: np.ndarray, meta: dict) -> Path:
    """Write ``image`` (float in [0, 1]) as float32 NIfTI with ``meta``'s affine and header.

    ``meta["range"]`` (lo, hi), when given, maps [0, 1] back to stored units.
    """
    nib = _nibabel()
    lo, hi = meta.get("range", (0.0, 1.0))
    data = (lo + np.asarray(image, dtype=np.float64) * (hi - lo)).astype(np.float32)
    header = meta["header"].copy() if meta.get("header") is not None else None
    img = nib.Nifti1Image(data, meta.get("affine", np.eye(4)), header)
    img.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)
    blob = img.to_bytes()
    if str(path).lower().endswith(".gz"):
        blob = gzip.compress(blob, compresslevel=1)
    return atomic_write(path, lambda tmp: tmp.write_bytes(blob))
