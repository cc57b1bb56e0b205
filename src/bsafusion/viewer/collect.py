"""Read an output folder of ``bsafusion fuse`` / ``register`` as :class:`PairImages`.

The folder's layout is :mod:`bsafusion.infer.outputs`'s: ``aligned/``, ``fused/``, ``flow/`` and
``inputs/<stem>.json``, which says where the fixed and moving images are (the demo pair is
rebuilt from the bundled sample). NIfTI volumes are shown slice by slice along the axis they
were processed on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bsafusion.errors import BsafusionError, InputError
from bsafusion.infer.demo import demo_pair
from bsafusion.infer.outputs import moving_on_fixed_grid, read_inputs
from bsafusion.io.image import IMAGE_SUFFIXES, file_stem, load_image
from bsafusion.viewer.page import PairImages, build_view

__all__ = ["iter_output_pairs", "output_stems", "view_outputs"]

FOLDERS = ("fused", "aligned", "flow")


def _listing(out: Path) -> dict[str, dict[str, Path]]:
    """folder -> {stem: file} for the output folders of ``out``."""
    found = {}
    for folder in FOLDERS:
        suffixes = (".npy",) if folder == "flow" else IMAGE_SUFFIXES
        files = sorted((out / folder).iterdir()) if (out / folder).is_dir() else []
        found[folder] = {file_stem(p): p for p in files if p.is_file() and not
                         p.name.startswith(".") and p.name.lower().endswith(suffixes)}
    return found


def output_stems(out_dir: str | os.PathLike) -> list[str]:
    """The stems of an output folder (sorted), from ``aligned/``, ``fused/`` and ``flow/``.

    Raises:
        InputError: ``out_dir`` is missing or holds no outputs of fuse / register.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(out, "is not a folder")
    stems = sorted(set().union(*_listing(out).values()))
    if not stems:
        raise InputError(out, "holds no outputs of 'bsafusion fuse' or 'register' (no "
                              "aligned/, fused/ or flow/ files)")
    return stems


def _slices(array: np.ndarray | None, axis: int | None) -> np.ndarray | None:
    """A 2-D image -> (1, H, W[, 3]); a volume -> its slices along ``axis``, (S, H, W)."""
    if array is None:
        return None
    return array[None] if axis is None else np.moveaxis(array, axis, 0)


def _inputs(out: Path, stem: str, notes: list[str]) -> tuple[np.ndarray | None, ...]:
    record = read_inputs(out, stem)
    if "demo" in record:
        _, fixed, moving = demo_pair(record["demo"])
        return fixed.array, moving.array
    if not record:
        notes.append(f"no inputs/{stem}.json: the fixed and moving images are unknown")
    images = []
    for side in ("fixed", "moving"):
        try:
            images.append(load_image(record[side]).array if side in record else None)
        except BsafusionError as exc:
            notes.append(f"{side}: {exc.where}: {exc.problem}")
            images.append(None)
    return tuple(images)


def _load_pair(out: Path, stem: str, files: dict[str, dict[str, Path]]) -> PairImages:
    """One stem of an output folder (``files``: :func:`_listing`); what cannot be read is
    left out and said in ``note``."""
    notes: list[str] = []
    shown: dict[str, np.ndarray | None] = {}
    for kind in ("aligned", "fused"):
        path = files[kind].get(stem)
        try:
            shown[kind] = load_image(path).array if path else None
        except BsafusionError as exc:
            notes.append(f"{kind}: {exc.where}: {exc.problem}")
            shown[kind] = None
    flow = np.load(files["flow"][stem]) if stem in files["flow"] else None
    fixed, moving = _inputs(out, stem, notes)
    axis = int(read_inputs(out, stem).get("axis", 2)) if flow is not None and flow.ndim == 4 \
        else None
    ref = next((a for a in (fixed, shown["aligned"], shown["fused"]) if a is not None), None)
    if moving is not None and ref is not None and moving.shape[:2] != ref.shape[:2]:
        if axis is None:
            moving = moving_on_fixed_grid(moving, ref.shape[:2])
        else:
            notes.append(f"moving: volume of shape {moving.shape}, not the fixed {ref.shape}")
            moving = None
    if flow is not None:
        flow = flow[None] if axis is None else np.moveaxis(flow, axis + 1, 0)
    return PairImages(stem, _slices(fixed, axis), _slices(moving, axis),
                      _slices(shown["aligned"], axis), _slices(shown["fused"], axis), flow,
                      note="; ".join(notes))


def iter_output_pairs(out_dir: str | os.PathLike) -> Iterator[PairImages]:
    """Every pair of an output folder, read one at a time (see :func:`output_stems`)."""
    out = Path(out_dir)
    stems = output_stems(out)
    files = _listing(out)
    for stem in stems:
        yield _load_pair(out, stem, files)


def view_outputs(out_dir: str | os.PathLike, view_dir: str | os.PathLike | None = None
                 ) -> Path:
    """Write the viewer of an output folder (default ``OUT/view/``); returns its index.html.

    Raises:
        InputError: no outputs in ``out_dir``, or ``view_dir`` is not a viewer folder.
    """
    out = Path(out_dir)
    return build_view(iter_output_pairs(out), view_dir or out / "view",
                      title=f"bsafusion: {out.resolve().name}")
