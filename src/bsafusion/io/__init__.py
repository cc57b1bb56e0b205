"""Files <-> numpy arrays. No torch here."""

from bsafusion.io.atomic import atomic_write
from bsafusion.io.image import read_image, write_png

__all__ = ["atomic_write", "read_image", "write_png"]
