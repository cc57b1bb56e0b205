"""Files in, the standard output layout out (single pairs, folders, volumes), atomically.

Layout under ``OUT`` (the same for single pairs and batches)::

    fused/<stem>.<ext>    fused image (RGB for PET/SPECT); absent for registration only
    aligned/<stem>.<ext>  the moving image resampled in the fixed frame
    flow/<stem>.npy       float32 (2, H, W) px, channel 0 = x (columns); samples the moving
                          image: aligned(p) = moving(p + flow(p)). Volumes: (2, X, Y, Z).
    panel/<stem>.png      the overview of :func:`bsafusion.viz.make_panel` (unless disabled)
    inputs/<stem>.json    where the inputs are, for ``bsafusion view``: ``{"fixed": path,
                          "moving": path}`` (absolute; ``"axis"`` for volumes), or
                          ``{"demo": pair}`` for the demo pair (see :func:`read_inputs`)

The computation is a function of the two loaded files (:data:`ImageFunction`, e.g.
:meth:`bsafusion.Fuser.image_runner`); this module only reads, checks and writes.

``<ext>`` is ``png`` by default (16-bit when an input has more than 8 bits), ``tif`` on request
(8/16 bits, or float32 for 32-bit inputs) and ``nii.gz`` for NIfTI inputs (the fixed image's
affine and header). Nothing is overwritten unless asked; a pair's outputs are written to
temporary names and renamed together, so a failure (a full disk) leaves none of them, and
the output folder appears with the first output written.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from bsafusion.errors import BsafusionError, InputError, OutputError
from bsafusion.infer.result import FusionResult
from bsafusion.io.atomic import OutputGroup, check_out_dir, refuse_overwrite
from bsafusion.io.base import NIFTI_SUFFIXES
from bsafusion.io.image import IMAGE_SUFFIXES, ImageData, file_stem, load_image, write_image
from bsafusion.viz import save_panel

__all__ = ["FORMATS", "BatchSummary", "ImageFunction", "PairJob", "check_outputs_free",
           "existing_outputs", "fuse_files", "fuse_folder", "match_pairs",
           "moving_on_fixed_grid", "prepare_out_dir", "prepare_pair", "read_inputs",
           "run_pair", "write_result"]

# (fixed file, moving file) -> result in the fixed frame
ImageFunction = Callable[[ImageData, ImageData], FusionResult[np.ndarray]]
# (fixed file, moving file) -> None, or an InputError naming "fixed", "moving" or an argument
InputCheck = Callable[[ImageData, ImageData], None]

log = logging.getLogger(__name__)

FORMATS = {"png": ".png", "tif": ".tif", "nii": ".nii.gz"}


class BatchSummary(NamedTuple):
    """Outcome of :func:`fuse_folder`."""

    fused: list[str]  # stems written
    failed: list[tuple[str, str]]  # (where, problem)
    skipped: list[str] = []  # stems whose outputs all existed (``skip_existing``)
    not_tried: list[str] = []  # stems left when a full disk stopped the batch


class PairJob(NamedTuple):
    """A pair read and checked by :func:`prepare_pair`, ready for :func:`run_pair`."""

    stem: str
    fixed_path: Path
    moving_path: Path
    fixed: ImageData
    moving: ImageData
    fmt: str
    out_dir: Path


def prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    """Check that ``out_dir`` is, or can become, a writable folder (nothing is created:
    the folder appears with the first output written)."""
    return check_out_dir(out_dir)


def _targets(out: Path, stem: str, ext: str, *, fused: bool, panel: bool) -> dict[str, Path]:
    targets = {"fused": out / "fused" / f"{stem}{ext}"} if fused else {}
    targets["aligned"] = out / "aligned" / f"{stem}{ext}"
    targets["flow"] = out / "flow" / f"{stem}.npy"
    targets["inputs"] = out / "inputs" / f"{stem}.json"
    if panel:
        targets["panel"] = out / "panel" / f"{stem}.png"
    return targets


def _check_free(targets: dict[str, Path], overwrite: bool) -> None:
    for path in targets.values():
        refuse_overwrite(path, overwrite)


def existing_outputs(out_dir: str | os.PathLike, stem: str, *, fmt: str = "png",
                     register_only: bool = False, panel: bool = True) -> str:
    """Whether the outputs of ``stem`` exist: ``"all"``, ``"some"`` or ``"none"``."""
    targets = _targets(Path(out_dir), stem, FORMATS[fmt], fused=not register_only,
                       panel=panel and not register_only)
    found = sum(p.exists() for p in targets.values())
    return "all" if found == len(targets) else "some" if found else "none"


def check_outputs_free(out_dir: str | os.PathLike, stem: str, *, fmt: str = "png",
                       register_only: bool = False, panel: bool = True,
                       overwrite: bool = False) -> None:
    """Raise :class:`InputError` if an output of ``stem`` exists and ``overwrite`` is off
    (checked before any work, so a refused run costs nothing)."""
    _check_free(_targets(prepare_out_dir(out_dir), stem, FORMATS[fmt], fused=not register_only,
                         panel=panel and not register_only), overwrite)


def _pick_format(fmt: str | None, fixed: str | os.PathLike) -> str:
    """The output format: ``fmt``, else ``nii`` for a NIfTI fixed file, else ``png``."""
    nifti = str(fixed).lower().endswith(NIFTI_SUFFIXES)
    fmt = fmt or ("nii" if nifti else "png")
    if fmt not in FORMATS:
        raise InputError("fmt", f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "nii" and not nifti:
        raise InputError("fmt", "nii output needs NIfTI inputs (for the affine and header)")
    return fmt


def write_result(out_dir: str | os.PathLike, stem: str, result: FusionResult[np.ndarray], *,
                 fixed: np.ndarray | None = None,
                 moving: np.ndarray | None = None, fixed_meta: dict | None = None,
                 moving_meta: dict | None = None, fmt: str = "png", panel: bool = True,
                 overwrite: bool = False, inputs: dict | None = None) -> list[Path]:
    """Write a :class:`~bsafusion.infer.result.FusionResult` (numpy, 2-D or volume).

    All outputs are written to temporary names first and renamed together at the end
    (:class:`~bsafusion.io.atomic.OutputGroup`): a failure (a full disk) leaves none of them.

    Args:
        out_dir: the output folder (created with the first output).
        stem: file stem of every output.
        result: ``fused`` (None for registration only), ``aligned``, ``flow``.
        fixed, moving: the inputs, for the panel (needed when ``panel``).
        fixed_meta, moving_meta: :class:`~bsafusion.io.ImageData` metadata (bit depth,
            value range, NIfTI affine/header) to write outputs like the inputs.
        fmt: ``png``, ``tif`` or ``nii``.
        inputs: what ``inputs/<stem>.json`` records (default: the ``path`` of each meta).
    Returns:
        The paths written.
    Raises:
        InputError: an output exists and ``overwrite`` is off.
        OutputError: an output could not be written (nothing is left then).
    """
    out = prepare_out_dir(out_dir)
    fixed_meta, moving_meta = fixed_meta or {}, moving_meta or {}
    targets = _targets(out, stem, FORMATS[fmt], fused=result.fused is not None,
                       panel=panel and fixed is not None)
    _check_free(targets, overwrite)
    bits = max(fixed_meta.get("bits", 8), moving_meta.get("bits", 8))
    flow = np.ascontiguousarray(result.flow, dtype=np.float32)
    aligned_meta = {**fixed_meta, "range": moving_meta.get("range", (0.0, 1.0))}
    if fmt == "png" or (fmt == "tif" and bits < 32):
        aligned_meta["range"] = None
    record = inputs or {k: str(Path(m["path"]).resolve()) for k, m in
                        (("fixed", fixed_meta), ("moving", moving_meta)) if m.get("path")}
    if flow.ndim == 4:
        record["axis"] = int((result.meta or {}).get("axis", 2))
    text = json.dumps(record, indent=1)
    with OutputGroup() as group:
        if "fused" in targets:
            write_image(group.path(targets["fused"]), result.fused, bits=bits,
                        meta={**fixed_meta, "range": (0.0, 1.0)})
        write_image(group.path(targets["aligned"]), result.aligned,
                    bits=moving_meta.get("bits", 8), meta=aligned_meta)
        with open(group.path(targets["flow"]), "wb") as fh:
            np.save(fh, flow)
        group.path(targets["inputs"]).write_text(text, encoding="utf-8")
        if "panel" in targets:
            _write_panel(group.path(targets["panel"]), fixed, moving, result)
    return list(targets.values())


def _write_panel(path: Path, fixed: np.ndarray, moving: np.ndarray,
                 result: FusionResult[np.ndarray]) -> None:
    fused, aligned, flow = result.fused, result.aligned, result.flow
    if fixed.ndim == 3 and flow.ndim == 4:  # a volume: its middle slice along the slicing axis
        axis = (result.meta or {}).get("axis", 2)
        k = fixed.shape[axis] // 2
        fixed, moving, aligned = (np.take(v, k, axis=axis) for v in (fixed, moving, aligned))
        fused = np.take(fused, k, axis=axis) if fused is not None else None
        flow = np.take(flow, k, axis=axis + 1)
    save_panel(path, fixed, moving_on_fixed_grid(moving, fixed.shape[:2]), aligned, fused, flow)


def moving_on_fixed_grid(moving: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """For display only: a 2-D moving image ((h, w) or (h, w, 3) in [0, 1]) resized
    (bilinear) to the fixed image's (H, W) when its size differs; else returned as is."""
    if moving.shape[:2] == tuple(shape):
        return moving
    img = Image.fromarray(np.asarray(moving, np.float32) if moving.ndim == 2 else
                          np.round(np.clip(moving, 0, 1) * 255).astype(np.uint8))
    resized = np.asarray(img.resize((shape[1], shape[0]), Image.BILINEAR), np.float32)
    return resized / 255.0 if resized.ndim == 3 else resized


def read_inputs(out_dir: str | os.PathLike, stem: str) -> dict:
    """``inputs/<stem>.json`` of an output folder ({} when absent or unreadable: outputs
    written before it existed, or by other tools)."""
    path = Path(out_dir) / "inputs" / f"{stem}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _name_file(exc: BsafusionError, fixed, moving) -> BsafusionError:
    """``exc`` naming the file rather than ``fixed`` / ``moving``."""
    if exc.where.startswith(("fixed", "moving")):
        return InputError(fixed if exc.where.startswith("fixed") else moving, exc.problem)
    return exc


def prepare_pair(fixed: str | os.PathLike, moving: str | os.PathLike,
                 out_dir: str | os.PathLike, *, stem: str | None = None,
                 register_only: bool = False, panel: bool = True, overwrite: bool = False,
                 skip_existing: bool = False, fmt: str | None = None,
                 check: InputCheck | None = None) -> PairJob | None:
    """Check the output folder, read and check both files; nothing is written.

    Args:
        check: a further check of the loaded pair (values, memory), e.g.
            :func:`bsafusion.infer.fuser.check_images`.
        skip_existing: return None when every output of the pair exists.
        Others: as for :func:`fuse_files`.
    Returns:
        The :class:`PairJob`, or None for a pair skipped by ``skip_existing``.
    Raises:
        InputError: naming the file or argument at fault.
    """
    stem = stem or file_stem(moving)
    out = prepare_out_dir(out_dir)
    fmt = _pick_format(fmt, fixed)
    state = existing_outputs(out, stem, fmt=fmt, register_only=register_only, panel=panel)
    if skip_existing and state == "all" and not overwrite:
        return None
    check_outputs_free(out, stem, fmt=fmt, register_only=register_only, panel=panel,
                       overwrite=overwrite)
    fixed_img, moving_img = load_image(fixed), load_image(moving)
    if fixed_img.is_volume != moving_img.is_volume:
        raise InputError(moving, "one input is a 3-D volume and the other a 2-D image")
    if check is not None:
        try:
            check(fixed_img, moving_img)
        except BsafusionError as exc:
            raise _name_file(exc, fixed, moving) from None
    return PairJob(stem, Path(fixed), Path(moving), fixed_img, moving_img, fmt, out)


def run_pair(run: ImageFunction, job: PairJob, *, register_only: bool = False,
             panel: bool = True, overwrite: bool = False) -> list[Path]:
    """Run ``run`` on a :class:`PairJob` and write its outputs (all or none)."""
    try:
        result = run(job.fixed, job.moving)
    except BsafusionError as exc:  # name the file rather than "fixed" / "moving"
        raise _name_file(exc, job.fixed_path, job.moving_path) from None
    return write_result(job.out_dir, job.stem, result, fixed=job.fixed.array,
                        moving=job.moving.array, fixed_meta=job.fixed.meta,
                        moving_meta=job.moving.meta, fmt=job.fmt,
                        panel=panel and not register_only, overwrite=overwrite)


def fuse_files(run: ImageFunction, fixed: str | os.PathLike, moving: str | os.PathLike,
               out_dir: str | os.PathLike, *, stem: str | None = None,
               register_only: bool = False, panel: bool = True, overwrite: bool = False,
               skip_existing: bool = False, fmt: str | None = None,
               check: InputCheck | None = None) -> list[Path]:
    """Read a pair of image files, fuse (or register) them with ``run``, write the layout.

    Args:
        run: the loaded pair -> its result, e.g. :meth:`bsafusion.Fuser.image_runner`.
        fixed, moving: image files (PNG/JPEG/BMP/TIFF, DICOM, NIfTI 2-D or 3-D).
        out_dir: output folder (created with the first output).
        stem: output file stem (default: the moving file's).
        register_only: write only ``aligned`` and ``flow`` (``run`` registers only).
        panel: also write ``panel/<stem>.png``.
        overwrite: replace existing outputs.
        skip_existing: do nothing (return ``[]``) when every output exists already.
        fmt: ``png``, ``tif`` or ``nii`` (default: ``nii`` for NIfTI inputs, else ``png``).
        check: a further check of the loaded pair before ``run`` (see :func:`prepare_pair`).
    Returns:
        The paths written.
    Raises:
        InputError: naming the file at fault (nothing is written then).
        OutputError: an output could not be written (nothing is left then).
    """
    job = prepare_pair(fixed, moving, out_dir, stem=stem, register_only=register_only,
                       panel=panel, overwrite=overwrite, skip_existing=skip_existing, fmt=fmt,
                       check=check)
    if job is None:
        return []
    return run_pair(run, job, register_only=register_only, panel=panel, overwrite=overwrite)


def match_pairs(fixed_dir: str | os.PathLike, moving_dir: str | os.PathLike
                ) -> tuple[list[tuple[str, Path, Path]], list[tuple[str, str]]]:
    """Pair the image files of two folders by stem.

    Two files of one folder with the same stem (``a.png`` and ``a.tif``) would write the
    same outputs: both are reported and their stem is not processed.

    Returns:
        (pairs as (stem, fixed, moving) sorted by stem, unmatched as (path, problem)).
    Raises:
        InputError: a folder is missing, or neither holds an image file.
    """
    found, problems = [], []
    for folder in (fixed_dir, moving_dir):
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(folder, "no such folder" if not folder.exists() else
                             "is not a folder")
        files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
                 and p.name.lower().endswith(IMAGE_SUFFIXES)]
        by_stem: dict[str, list[Path]] = {}
        for p in files:
            by_stem.setdefault(file_stem(p), []).append(p)
        for s, same in by_stem.items():
            if len(same) > 1:
                names = ", ".join(p.name for p in same)
                problems += [(str(p), f"has the same stem {s!r} as another file here ({names}); "
                                      "rename one") for p in same]
        found.append({s: same[0] for s, same in by_stem.items()})
    fixed_map, moving_map = found
    dup = {file_stem(p) for p, _ in problems}
    pairs = [(s, fixed_map[s], moving_map[s]) for s in sorted(set(fixed_map) & set(moving_map))
             if s not in dup]
    unmatched = [(str(p), f"no file with stem {s!r} in {moving_dir}")
                 for s, p in fixed_map.items() if s not in moving_map and s not in dup]
    unmatched += [(str(p), f"no file with stem {s!r} in {fixed_dir}")
                  for s, p in moving_map.items() if s not in fixed_map and s not in dup]
    if not pairs and not unmatched and not problems:
        raise InputError(fixed_dir, "holds no image files")
    return pairs, problems + unmatched


def fuse_folder(run: ImageFunction, fixed_dir: str | os.PathLike, moving_dir: str | os.PathLike,
                out_dir: str | os.PathLike, *,
                progress: Callable[[int, int, str, object], None] | None = None,
                **kwargs) -> BatchSummary:
    """Fuse every pair of two folders matched by file stem, going on past bad pairs.

    A pair's outputs are all written or none. An output that cannot be written because
    the disk is full (or read-only) ends the batch: the pairs not yet tried are listed in
    ``not_tried``.

    Args:
        run: as for :func:`fuse_files`.
        progress: called after each pair as ``progress(done, total, stem, outcome)`` with
            ``outcome`` None (written), ``"skipped"`` or the error.
        kwargs: passed to :func:`fuse_files` (``register_only``, ``panel``, ``overwrite``,
            ``skip_existing``, ``check``...).
    Returns:
        :class:`BatchSummary`; unmatched files count as failed.
    """
    prepare_out_dir(out_dir)
    pairs, unmatched = match_pairs(fixed_dir, moving_dir)
    summary = BatchSummary([], list(unmatched), [], [])
    for i, (stem, fixed, moving) in enumerate(pairs, 1):
        outcome = None
        try:
            written = fuse_files(run, fixed, moving, out_dir, stem=stem, **kwargs)
        except BsafusionError as exc:
            summary.failed.append((exc.where, exc.problem))
            outcome = exc
        else:
            (summary.fused if written else summary.skipped).append(stem)
            outcome = None if written else "skipped"
        if progress is not None:
            progress(i, len(pairs), stem, outcome)
        if isinstance(outcome, OutputError) and outcome.fatal:
            summary.not_tried.extend(s for s, _, _ in pairs[i:])
            break
    return summary
