"""Pure tensor functions: no parameters, no files."""

from bsafusion.ops.checks import check_finite, check_shape, check_spatial_multiple
from bsafusion.ops.color import rgb_to_ycbcr, ycbcr_to_rgb
from bsafusion.ops.filters import spatial_layer_norm
from bsafusion.ops.grid import pixel_grid, pixel_to_normalized, resize_flow, upsample2
from bsafusion.ops.warp import integrate_flows, warp

__all__ = [
    "check_finite",
    "check_shape",
    "check_spatial_multiple",
    "integrate_flows",
    "pixel_grid",
    "pixel_to_normalized",
    "resize_flow",
    "rgb_to_ycbcr",
    "spatial_layer_norm",
    "upsample2",
    "warp",
    "ycbcr_to_rgb",
]
