"""PNG / JPEG / BMP through Pillow, TIFF through tifffile (8-, 16- and 32-bit)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from bsafusion.errors import InputError
from bsafusion.io.atomic import atomic_write
from bsafusion.io.base import MAX_PIXELS, ImageData, check_size, normalize_values

__all__ = ["read_raster", "write_raster"]

log = logging.getLogger(__name__)


def read_raster(path: Path) -> ImageData:
    """Read a PNG / JPEG / BMP / TIFF file (see :func:`bsafusion.io.image.load_image`)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        values, meta = _read_tiff(path)
    else:
        values, meta = _read_pillow(path)
    values = _drop_alpha(path, values)
    return ImageData(normalize_values(path, values, meta), meta)


def _read_pillow(path: Path) -> tuple[np.ndarray, dict]:
    try:
        with Image.open(path) as img:
            check_size(path, img.height, img.width)  # before decoding anything
            img.load()
            if img.mode in ("P", "PA"):
                img = img.convert("RGBA")
            elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            values = np.asarray(img)
            fmt = (img.format or path.suffix.lstrip(".")).lower()
    except InputError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow refuses before we see the size
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)) / 1e6:.0f} M pixels" if found else "too many pixels"
        raise InputError(path, f"is too large ({pixels}, limit {MAX_PIXELS / 1e6:.0f} M): crop "
                               "or downsample it") from None
    except UnidentifiedImageError:
        raise InputError(path, "is not an image Pillow can read (PNG, JPEG, BMP, TIFF)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"is truncated or corrupt ({exc})") from None
    if values.dtype == np.int32 and values.size and 0 <= values.min() and values.max() < 65536:
        values = values.astype(np.uint16)  # 16-bit grey that Pillow opened as mode "I"
    return values, {"format": fmt}


def _read_tiff(path: Path) -> tuple[np.ndarray, dict]:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            if axes.endswith("S") or axes.startswith("S"):
                spatial = shape[:-1] if axes.endswith("S") else shape[1:]
            else:
                spatial = shape
            if len(spatial) != 2:
                raise InputError(path, f"holds a {len(spatial)}-D stack {tuple(shape)} "
                                       f"(axes {axes}); give one 2-D image (NIfTI for volumes)")
            if spatial[0] * spatial[1] > MAX_PIXELS:
                check_size(path, *spatial)
            values = series.asarray()
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types on malformed files
        raise InputError(path, f"is not a readable TIFF ({type(exc).__name__}: {exc})") from None
    if axes.startswith("S") and values.ndim == 3:
        values = np.moveaxis(values, 0, -1)
    if values.dtype == np.int16 and values.min() >= 0:
        values = values.astype(np.uint16)
    return values, {"format": "tiff", "bits": 8 * values.dtype.itemsize}


def _drop_alpha(path: Path, values: np.ndarray) -> np.ndarray:
    """Keep grey or RGB; drop a fully opaque alpha channel (warning); refuse anything else."""
    if values.ndim == 2 or (values.ndim == 3 and values.shape[-1] == 3):
        return values
    channels = values.shape[-1] if values.ndim == 3 else 0
    if channels in (2, 4):
        alpha = values[..., -1]
        full = np.iinfo(values.dtype).max if values.dtype.kind in "ui" else 1.0
        if np.all(alpha == full):
            log.warning("%s: dropped its fully opaque alpha channel", path)
            return values[..., 0] if channels == 2 else values[..., :3]
        raise InputError(path, f"has {channels} channels and the last is not an opaque alpha; "
                               "expected grey or RGB (flatten it first)")
    raise InputError(path, f"has shape {values.shape}; expected grey (H, W) or RGB (H, W, 3)")


def write_raster(path: str | os.PathLike, image: np.ndarray, *, bits: int = 8,
                 value_range: tuple[float, float] | None = None) -> Path:
    """Write a float image in [0, 1] as PNG (8/16 bits) or TIFF (8/16 bits, 32 = float32).

    A 32-bit TIFF stores ``value_range`` units when given (lo + x * (hi - lo)).
    """
    path = Path(path)
    arr = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    tiff = path.suffix.lower() in (".tif", ".tiff")
    if bits == 32 and not tiff:
        bits = 16
    if bits == 16 and not tiff and arr.ndim == 3:
        log.info("%s: Pillow writes colour PNG at 8 bits only", path)
        bits = 8
    if bits == 32:
        lo, hi = value_range or (0.0, 1.0)
        data = (lo + arr.astype(np.float64) * (hi - lo)).astype(np.float32)
    elif bits == 16:
        data = np.round(arr * 65535.0).astype(np.uint16)
    else:
        data = np.round(arr * 255.0).astype(np.uint8)
    if tiff:
        photometric = "rgb" if data.ndim == 3 else "minisblack"
        return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, data, photometric=photometric))
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else path.suffix.lstrip(".").upper()
    return atomic_write(path, lambda tmp: Image.fromarray(data).save(tmp, format=fmt))
