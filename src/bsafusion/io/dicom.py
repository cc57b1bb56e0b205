"""DICOM through pydicom (optional extra ``dicom``): modality LUT (rescale slope/intercept)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bsafusion.errors import InputError
from bsafusion.io.base import ImageData, normalize_values

__all__ = ["read_dicom"]


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise InputError("pydicom", "is needed for DICOM: pip install 'bsafusion[dicom]'") from None
    return pydicom


def read_dicom(path: Path) -> ImageData:
    """Read a single-frame DICOM image, apply its modality LUT, min-max scale to [0, 1].

    ``meta["range"]`` holds the rescaled (e.g. Hounsfield) values that map to 0 and 1.
    MONOCHROME1 images are inverted so that high values are bright.
    """
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path)
        raw = ds.pixel_array
    except Exception as exc:  # InvalidDicomError, missing pixel data, codec errors...
        raise InputError(path, f"is not a readable DICOM image ({type(exc).__name__}: {exc})"
                         ) from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if frames > 1:
        raise InputError(path, f"is a {frames}-frame DICOM; give one 2-D slice per file")
    meta = {"format": "dicom", "bits": 16, "float_is_unit": False}
    if photometric.startswith("MONOCHROME"):
        try:
            from pydicom.pixels import apply_modality_lut
        except ImportError:  # pydicom < 3
            from pydicom.pixel_data_handlers.util import apply_modality_lut
        values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
        if photometric == "MONOCHROME1":
            values = values.max() - values
        return ImageData(normalize_values(path, values, meta), meta)
    if raw.ndim == 3 and raw.shape[-1] == 3 and raw.dtype == np.uint8:
        return ImageData(normalize_values(path, raw, meta), meta)
    raise InputError(path, f"has unsupported photometric interpretation {photometric}")
