"""Write the viewer: a folder with ``index.html``, the script, the style and each pair's images.

The page works offline, from a ``file://`` URL or over HTTP (:mod:`bsafusion.viewer.serve`):
no CDN, no fetch. ``data.js`` lists the pairs (names, sizes, the |φ| scale); each pair's
images are written once as 8-bit PNG atlases (the slices of a volume side by side in a grid,
one PNG per kind), a thumbnail for the pair list, and ``flow.js``, the field sampled on a
coarse grid for drawing it as a warped grid. The page loads a pair's files only when the pair
is shown, and thumbnails lazily, so a batch of hundreds of pairs opens at once.

Layout of ``view/``::

    index.html  viewer.js  viewer.css  data.js
    pairs/<n>/fixed.png moving.png aligned.png fused.png heat.png thumb.png flow.js
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from bsafusion.errors import InputError
from bsafusion.viz import HEAT_COLOURS, flow_heat

__all__ = ["IMAGE_KINDS", "MARKER", "PairImages", "build_view", "pair_id"]

IMAGE_KINDS = ("fixed", "moving", "aligned", "fused")
MARKER = '<meta name="generator" content="bsafusion view">'  # what makes a folder ours
FLOW_SAMPLES = 64  # the field is sampled on about this many points along the longer side
FLOW_UNIT = 32  # flow.js stores int16 in 1/32 px (range +-1024 px)
THUMB_SIDE = 64


@dataclass
class PairImages:
    """One pair (or one method's result on a pair) as the viewer shows it.

    Images are (S, H, W) grey or (S, H, W, 3) RGB, float in [0, 1] or uint8, S slices (1 for
    a 2-D image), all on the fixed grid. ``flow`` is (S, 2, H, W) px, channel 0 = x
    (columns), 1 = y (rows), sampling the moving image: aligned(p) = moving(p + flow(p)).
    A missing image is None (``note`` may say why).
    """

    name: str
    fixed: np.ndarray | None = None
    moving: np.ndarray | None = None
    aligned: np.ndarray | None = None
    fused: np.ndarray | None = None
    flow: np.ndarray | None = None
    group: str = ""  # e.g. the method, for evaluate's pages
    note: str = ""
    id: str = ""  # the URL fragment that selects the pair (default: from name and group)


def pair_id(name: str, group: str = "") -> str:
    """The page's id (URL fragment, ``index.html#<id>``) of a pair and optional group."""
    text = f"{name}--{group}" if group else name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _u8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(np.nan_to_num(image.astype(np.float32)), 0, 1) * 255).astype(np.uint8)


def _atlas(slices: np.ndarray, cols: int) -> np.ndarray:
    """(S, H, W[, 3]) -> one image of ``cols`` slices per row, row-major."""
    s, h, w = slices.shape[:3]
    rows = math.ceil(s / cols)
    out = np.zeros((rows * h, cols * w, *slices.shape[3:]), np.uint8)
    for k in range(s):
        r, c = divmod(k, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = slices[k]
    return out


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _flow_samples(flow: np.ndarray) -> dict:
    """``flow`` (S, 2, H, W) px, channel 0 = x, every ``step`` px of the fixed grid, as base64
    little-endian int16 in 1/FLOW_UNIT px: ``x`` and ``y`` each (S, rows, cols), C order."""
    step = max(1, math.ceil(max(flow.shape[-2:]) / FLOW_SAMPLES))
    sub = flow[:, :, ::step, ::step]
    q = np.clip(np.round(np.nan_to_num(sub) * FLOW_UNIT), -32767, 32767).astype("<i2")
    return {"step": step, "rows": sub.shape[2], "cols": sub.shape[3], "unit": FLOW_UNIT,
            "x": base64.b64encode(q[:, 0].tobytes()).decode(),
            "y": base64.b64encode(q[:, 1].tobytes()).decode()}


def _write_pair(folder: Path, pair: PairImages, pid: str) -> dict:
    """Write one pair's files into ``folder``; returns its entry of ``data.js``."""
    folder.mkdir(parents=True, exist_ok=True)
    present = {k: _u8(getattr(pair, k)) for k in IMAGE_KINDS if getattr(pair, k) is not None}
    if not present and pair.flow is None:
        raise InputError(pair.name, "has nothing to show")
    ref = next(iter(present.values()), None)
    s, h, w = ref.shape[:3] if ref is not None else (pair.flow.shape[0], *pair.flow.shape[2:])
    cols = math.ceil(math.sqrt(s))
    entry = {"id": pid, "name": pair.name, "group": pair.group, "note": pair.note,
             "dir": folder.parent.name + "/" + folder.name, "w": w, "h": h, "slices": s,
             "cols": cols, "kinds": list(present), "colour": any(a.ndim == 4 for a in
                                                                 present.values())}
    for kind, arr in present.items():
        if arr.shape[:3] != (s, h, w):
            raise InputError(pair.name, f"{kind} has shape {arr.shape[:3]}, not {(s, h, w)}")
        _save_png(folder / f"{kind}.png", _atlas(arr, cols))
    if pair.flow is not None:
        heat, peak = flow_heat(np.moveaxis(pair.flow, 1, 0))  # one scale for every slice
        _save_png(folder / "heat.png", _atlas(heat, cols))
        entry.update(flow=True, peak=round(peak, 3), top=round(max(peak, 1.0), 3))
        data = json.dumps(_flow_samples(pair.flow))
        (folder / "flow.js").write_text(f"BSAView.flowLoaded({json.dumps(pid)}, {data});\n")
    thumb = present.get("fused", present.get("aligned", ref))
    if thumb is not None:
        img = Image.fromarray(thumb[s // 2])
        img.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.BILINEAR)
        img.save(folder / "thumb.png", format="PNG")
        entry["thumb"] = [img.width, img.height]
    return entry


def _static(name: str) -> str:
    return resources.files("bsafusion.viewer").joinpath("static", name).read_text("utf-8")


def _check_target(out: Path) -> None:
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (
            (out / "index.html").is_file() and MARKER in (out / "index.html").read_text(
                encoding="utf-8", errors="replace"))):
        raise InputError(out, "exists and is not a viewer folder (choose another -o)")


def build_view(pairs: Iterable[PairImages], out_dir: str | os.PathLike, *, title: str,
               notes: Iterable[str] = ()) -> Path:
    """Write the viewer for ``pairs`` into ``out_dir`` (replacing an earlier viewer there).

    The folder is built beside ``out_dir`` and renamed into place, so a failure leaves any
    earlier viewer as it was.

    Args:
        pairs: what to show, in list order (consumed one at a time: a batch of any size
            needs the memory of one pair).
        out_dir: the viewer folder (created; an existing folder must be an earlier viewer).
        title: the page title.
        notes: lines shown above every pair (e.g. what is missing).
    Returns:
        The path of ``index.html``.
    Raises:
        InputError: ``out_dir`` is something else, or a pair is empty or inconsistent.
    """
    out = Path(out_dir)
    _check_target(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        entries, seen = [], set()
        for n, pair in enumerate(pairs):
            pid = pair.id or pair_id(pair.name, pair.group)
            pid = pid if pid not in seen else f"{pid}_{n}"
            seen.add(pid)
            entries.append(_write_pair(tmp / "pairs" / f"{n:04d}", pair, pid))
        if not entries:
            raise InputError(out, "no pairs to show")
        data = {"title": title, "notes": list(notes), "pairs": entries,
                "heat": [[int(c) for c in rgb] for rgb in HEAT_COLOURS]}
        (tmp / "data.js").write_text(f"window.BSAVIEW_DATA = {json.dumps(data)};\n")
        for name in ("viewer.js", "viewer.css"):
            (tmp / name).write_text(_static(name), encoding="utf-8")
        page = _static("viewer.html").replace("{{MARKER}}", MARKER)
        page = page.replace("{{TITLE}}", html.escape(title))
        (tmp / "index.html").write_text(page, encoding="utf-8")
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"
