"""Minimal raster I/O (PNG / JPEG / BMP / TIFF through Pillow) for samples and the demo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bsafusion.errors import InputError
from bsafusion.io.atomic import atomic_write

__all__ = ["read_image", "write_png"]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 in [0, 1] scaled by its bit depth.

    Returns:
        (H, W) for grey images, (H, W, 3) for colour ones (alpha is dropped).
    Raises:
        InputError: the file is missing, unreadable or holds NaN.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "P", "LA", "CMYK", "YCbCr"):
                img = img.convert("RGB" if img.mode != "LA" else "L")
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(path, f"cannot read image ({exc})") from None
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype in (np.uint16, np.int32) or img.mode.startswith("I"):
        out = arr.astype(np.float32) / 65535.0
    else:
        out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise InputError(path, "contains NaN or infinite values")
    return out


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a float image in [0, 1] ((H, W) or (H, W, 3)) as an 8-bit PNG, atomically."""
    arr = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    data = np.round(arr * 255.0).astype(np.uint8)
    return atomic_write(path, lambda tmp: Image.fromarray(data).save(tmp, format="PNG"))
