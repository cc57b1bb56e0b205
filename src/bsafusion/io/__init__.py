"""Files <-> numpy arrays (+ metadata). No torch here."""

from bsafusion.io.atomic import atomic_write
from bsafusion.io.image import (
    IMAGE_SUFFIXES,
    ImageData,
    file_stem,
    load_image,
    read_image,
    write_image,
    write_png,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageData",
    "atomic_write",
    "file_stem",
    "load_image",
    "read_image",
    "write_image",
    "write_png",
]
