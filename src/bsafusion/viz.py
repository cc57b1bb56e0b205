"""Pictures that show at a glance whether a registration worked (Pillow only).

:func:`make_panel` lays out two rows of tiles:

    fixed | moving | aligned | fused
    checkerboard fixed/moving (before) | checkerboard fixed/aligned (after) |
    the deformation as a warped grid | its magnitude (px)

Inputs are numpy arrays in [0, 1] ((H, W) grey or (H, W, 3) RGB) and a flow (2, H, W) in
pixels, channel 0 = x, sampling the moving image (the grid shows where each fixed pixel
samples the moving image).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bsafusion.io.atomic import atomic_write

__all__ = ["HEAT_COLOURS", "checkerboard", "flow_grid", "flow_heat", "make_panel", "save_panel"]

# A dark-to-bright colour map (black, purple, orange, yellow) for flow magnitudes, evenly
# spaced from 0 to the top of the scale.
HEAT_COLOURS = np.array([[0, 0, 4], [120, 28, 109], [237, 105, 37], [252, 255, 164]],
                        dtype=np.float64)


def _rgb(image: np.ndarray) -> np.ndarray:
    arr = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    arr = np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 2 else arr
    return np.round(arr * 255.0).astype(np.uint8)


def checkerboard(a: np.ndarray, b: np.ndarray, *, tiles: int = 8) -> np.ndarray:
    """Alternate ``tiles`` x ``tiles`` squares of ``a`` and ``b`` (same size) as RGB uint8."""
    a, b = _rgb(a), _rgb(b)
    h, w = a.shape[:2]
    rows = (np.arange(h) * tiles // h)[:, None]
    cols = (np.arange(w) * tiles // w)[None, :]
    mask = ((rows + cols) % 2).astype(bool)[..., None]
    return np.where(mask, b, a)


def flow_grid(flow: np.ndarray, background: np.ndarray | None = None, *, step: int = 16,
              size: tuple[int, int] | None = None) -> np.ndarray:
    """Draw the field as a deformed grid: each grid line of the fixed frame bent to where it
    samples the moving image. Returns RGB uint8 of ``size`` (H, W), default the flow's."""
    _, h, w = flow.shape
    out_h, out_w = size or (h, w)
    sx, sy = out_w / w, out_h / h
    base = _rgb(background) // 3 if background is not None else np.zeros((h, w, 3), np.uint8)
    canvas = Image.fromarray(base).resize((out_w, out_h), Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    px, py = (xs + flow[0]) * sx, (ys + flow[1]) * sy
    every = max(1, round(step / min(sx, sy)))
    lines = [np.stack((px[r], py[r]), axis=-1) for r in range(0, h, every)]
    lines += [np.stack((px[:, c], py[:, c]), axis=-1) for c in range(0, w, every)]
    for line in lines:
        draw.line([tuple(point) for point in line.tolist()], fill=(90, 220, 255), width=1)
    return np.asarray(canvas)


def flow_heat(flow: np.ndarray, top: float | None = None) -> tuple[np.ndarray, float]:
    """Colour |flow| with :data:`HEAT_COLOURS` from 0 to ``top`` px.

    Args:
        flow: (2, ...) px, channel 0 = x (columns), 1 = y (rows).
        top: the top of the colour scale in px (default: the peak of |flow|, at least 1 px,
            so that a field under a pixel stays dark).
    Returns:
        (RGB uint8 of shape flow.shape[1:] + (3,), the peak of |flow| in px).
    """
    mag = np.hypot(flow[0], flow[1])
    peak = float(mag.max())
    t = np.clip(mag / (top if top is not None else max(peak, 1.0)), 0.0, 1.0)
    pos = t * (len(HEAT_COLOURS) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(HEAT_COLOURS) - 2)
    frac = (pos - lo)[..., None]
    rgb = HEAT_COLOURS[lo] * (1 - frac) + HEAT_COLOURS[lo + 1] * frac
    return np.round(rgb).astype(np.uint8), peak


def _tile(image: np.ndarray, side: int) -> Image.Image:
    img = Image.fromarray(image)
    scale = side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                      Image.BILINEAR)


def make_panel(fixed: np.ndarray, moving: np.ndarray, aligned: np.ndarray,
               fused: np.ndarray | None, flow: np.ndarray, *, tile: int = 256) -> np.ndarray:
    """The two-row overview described in the module docstring, as RGB uint8.

    ``moving`` must already be on the fixed grid; ``fused`` None (registration only) leaves
    its tile empty. Each tile is scaled so its longer side is ``tile`` pixels.
    """
    heat, peak = flow_heat(flow)
    tiles = [
        ("fixed", _rgb(fixed)), ("moving", _rgb(moving)), ("aligned", _rgb(aligned)),
        ("fused", _rgb(fused) if fused is not None else np.zeros_like(_rgb(fixed))),
        ("before: fixed/moving", checkerboard(fixed, moving)),
        ("after: fixed/aligned", checkerboard(fixed, aligned)),
        ("deformation grid", flow_grid(flow, fixed)),
        (f"|flow|, max {peak:.1f} px", heat),
    ]
    images = [(label, _tile(arr, tile)) for label, arr in tiles]
    tw, th = images[0][1].size
    label_h, gap = 14, 4
    panel = Image.new("RGB", (4 * tw + 3 * gap, 2 * (th + label_h) + gap), (24, 24, 24))
    draw = ImageDraw.Draw(panel)
    for i, (label, img) in enumerate(images):
        x, y = (i % 4) * (tw + gap), (i // 4) * (th + label_h + gap)
        draw.text((x + 3, y + 1), label, fill=(235, 235, 235))
        panel.paste(img.resize((tw, th)), (x, y + label_h))
    return np.asarray(panel)


def save_panel(path: str | os.PathLike, fixed: np.ndarray, moving: np.ndarray,
               aligned: np.ndarray, fused: np.ndarray | None, flow: np.ndarray, *,
               tile: int = 256) -> Path:
    """Write :func:`make_panel` as a PNG, atomically."""
    panel = make_panel(fixed, moving, aligned, fused, flow, tile=tile)
    return atomic_write(path, lambda tmp: Image.fromarray(panel).save(tmp, format="PNG"))
