"""Paired MRI + CT/PET/SPECT slices from a folder with ``split.csv`` (architecture.md §5, §7).

Layout (the AANLIB sets of ``../shared/data/aanlib/<PAIR>/`` or any folder like them)::

    DIR/MRI/<name>          the fixed image (grey)
    DIR/<MODALITY>/<name>   the moving image of the same anatomy (grey CT, RGB PET/SPECT)
    DIR/split.csv           ``name,split`` with split in train / val / test (/ unpaired)

Each image is min-max normalised to [0, 1] (colour images jointly over R, G, B, which keeps
the hue); a colour moving image is then converted to BT.601 YCbCr (§7, Y green weight 0.504)
and its Y goes to the network while Cb/Cr are kept. The whole split is loaded once as
tensors (AANLIB fits easily on a GPU), so training indexes device memory and never waits on
a data loader.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bsafusion import pairs
from bsafusion.errors import InputError
from bsafusion.io.atomic import atomic_write, refuse_overwrite
from bsafusion.io.image import read_image
from bsafusion.ops.color import rgb_to_ycbcr

__all__ = [
    "IMAGE_SUFFIXES", "PairTensors", "SplitReport", "augment_pairs", "default_data_dir",
    "find_moving_modality",
    "load_pairs", "make_split", "normalize_image", "read_split", "resolve_pair_dir",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")


class PairTensors(NamedTuple):
    """One split, preloaded. N pairs of H x W images, all in [0, 1] (chroma: BT.601 Cb/Cr).

    ``names``: N file names. ``fixed``: (N, 1, H, W) MRI. ``moving``: (N, 1, H, W) CT or the
    Y of PET/SPECT. ``chroma``: (N, 2, H, W) Cb, Cr of a colour moving image, else None.
    """

    names: tuple[str, ...]
    fixed: Tensor
    moving: Tensor
    chroma: Tensor | None


class SplitReport(NamedTuple):
    """What :func:`make_split` wrote: pairs per split and the files without a partner."""

    path: Path
    counts: dict[str, int]
    unpaired: tuple[str, ...]


DATA_CANDIDATES = (".cache/aanlib", "../shared/data/aanlib", "data/aanlib")


def default_data_dir() -> Path:
    """Where the data live when ``--data`` is not given.

    ``$BSAFUSION_DATA`` if set, else the first existing of ``.cache/aanlib``,
    ``../shared/data/aanlib`` and ``data/aanlib``, relative to the working directory, then
    to the repository of a source checkout (an editable install), so that the commands
    find the data from any working directory.

    Raises:
        InputError: none of them exists.
    """
    env = os.environ.get("BSAFUSION_DATA")
    if env:
        return Path(env)
    roots = [Path(".")]
    repo = Path(__file__).resolve().parents[3]  # src/bsafusion/data/pairs.py -> the checkout
    if (repo / "pyproject.toml").is_file() and repo != Path.cwd().resolve():
        roots.append(repo)
    for root in roots:
        for candidate in DATA_CANDIDATES:
            if (root / candidate).is_dir():
                return root / candidate
    raise InputError("data_dir", f"not given, $BSAFUSION_DATA unset and none of "
                               f"{', '.join(DATA_CANDIDATES)} exists here or in {roots[-1]}")


def resolve_pair_dir(data_dir: str | os.PathLike, modality: str) -> Path:
    """Return the pair folder: ``data_dir`` itself or ``data_dir/<data folder>``, the data
    folder of the pair table (:data:`bsafusion.pairs.PAIRS`) whose moving modality is
    ``modality`` (``<MODALITY>-MRI`` for a modality the table does not know).

    Raises:
        InputError: neither holds ``MRI/`` and ``<MODALITY>/``.
    """
    root = Path(data_dir)
    mod = modality.upper()
    folder = next((p.data_folder for p in pairs.PAIRS if p.modality.upper() == mod),
                  f"{mod}-MRI")
    for candidate in (root, root / folder):
        if (candidate / "MRI").is_dir() and (candidate / mod).is_dir():
            return candidate
    raise InputError(root, f"no MRI/ and {mod}/ folders here or in {folder}/")


def find_moving_modality(pair_dir: str | os.PathLike) -> str:
    """The one folder of ``pair_dir`` beside ``MRI/`` (e.g. ``CT``)."""
    root = Path(pair_dir)
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "MRI"
                    and not p.name.startswith("."))
    if not (root / "MRI").is_dir() or len(others) != 1:
        raise InputError(root, f"expected MRI/ and one modality folder, found {others}")
    return others[0]


def read_split(pair_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """Read ``split.csv`` as (name, split) rows.

    Raises:
        InputError: missing file, wrong header or an empty name.
    """
    path = Path(pair_dir) / "split.csv"
    if not path.is_file():
        raise InputError(path, "no such file (write one with `bsafusion make-split`)")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip() for c in rows[0][:2]] != ["name", "split"]:
        raise InputError(path, "expected a header line 'name,split'")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[0].strip():
            raise InputError(path, f"line {i}: expected 'name,split'")
        out.append((row[0].strip(), row[1].strip()))
    return out


def normalize_image(image: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Min-max normalise to [0, 1] (jointly over the channels of a colour image).

    Raises:
        InputError: naming ``path`` when the image is constant.
    """
    lo, hi = float(image.min()), float(image.max())
    if hi - lo <= 1e-8:
        raise InputError(path, "the image is constant; it cannot be normalised")
    return (image - lo) / (hi - lo)


def _load_one(path: Path, *, grey: bool) -> np.ndarray:
    """One normalised image: (H, W) grey, or (3, H, W) RGB unless ``grey`` (then its luma)."""
    image = normalize_image(read_image(path), path).astype(np.float32)
    if image.ndim == 2:
        return image
    rgb = np.ascontiguousarray(image[..., :3].transpose(2, 0, 1))
    if grey:  # a colour MRI file: use its BT.601 luma, renormalised
        return normalize_image(rgb_to_ycbcr(torch.from_numpy(rgb))[0].numpy(), path)
    return rgb


def load_pairs(data_dir: str | os.PathLike, modality: str, split: str, *,
               image_size: int | None = None, max_pairs: int | None = None,
               device=None) -> PairTensors:
    """Load every pair of one split as tensors.

    Args:
        data_dir: pair folder or its parent (see :func:`resolve_pair_dir`).
        modality: ``CT``, ``PET`` or ``SPECT`` (any folder name beside ``MRI/``).
        split: ``train``, ``val`` or ``test``.
        image_size: resize every image to this square size (antialiased bilinear).
        max_pairs: keep only the first N pairs of the split (in ``split.csv`` order).
        device: where to put the tensors.
    Returns:
        :class:`PairTensors`.
    Raises:
        InputError: naming the file at fault (missing, unreadable, constant, size mismatch),
            or the split file when the split is empty.
    """
    pair_dir = resolve_pair_dir(data_dir, modality)
    mod = modality.upper()
    names = [n for n, s in read_split(pair_dir) if s == split][:max_pairs]
    if not names:
        raise InputError(pair_dir / "split.csv", f"no pairs in split {split!r}")
    fixed, moving = [], []
    for name in names:
        f_path, m_path = pair_dir / "MRI" / name, pair_dir / mod / name
        f_img, m_img = _load_one(f_path, grey=True), _load_one(m_path, grey=False)
        shape = fixed[0].shape if fixed else f_img.shape
        if f_img.shape != shape:
            raise InputError(f_path, f"size {f_img.shape} differs from the first pair's {shape}")
        if m_img.shape[-2:] != shape:
            raise InputError(m_path, f"size {m_img.shape[-2:]} differs from the MRI's {shape}")
        if moving and m_img.ndim != moving[0].ndim:
            raise InputError(m_path, "colour and grey moving images are mixed in this split")
        fixed.append(f_img)
        moving.append(m_img)
    fix_t = torch.from_numpy(np.stack(fixed))[:, None]
    mov_t = torch.from_numpy(np.stack(moving))
    chroma_t = None
    if mov_t.dim() == 4:  # colour: one batched conversion to Y + CbCr (§7)
        ycbcr = rgb_to_ycbcr(mov_t)
        mov_t, chroma_t = ycbcr[:, :1].contiguous(), ycbcr[:, 1:].contiguous()
    else:
        mov_t = mov_t[:, None]
    if image_size is not None and tuple(fix_t.shape[-2:]) != (image_size, image_size):
        size = (image_size, image_size)
        fix_t, mov_t = (_resize(t, size) for t in (fix_t, mov_t))
        chroma_t = _resize(chroma_t, size) if chroma_t is not None else None
    return PairTensors(tuple(names), fix_t.to(device), mov_t.to(device),
                       chroma_t.to(device) if chroma_t is not None else None)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


def augment_pairs(tensors: tuple[Tensor, ...], *, generator: torch.Generator
                  ) -> tuple[Tensor, ...]:
    """Apply the same random flip / 90-degree rotation to each sample of every tensor.

    One of the 8 symmetries of the square is drawn per sample (the transpose only when
    H == W) and applied alike to all ``tensors``, batched with masks (no per-sample loop).

    Args:
        tensors: (B, C_i, H, W) each, same B, H, W, on the generator's device.
        generator: explicit torch RNG.
    Returns:
        The transformed tensors, same shapes.
    """
    b = tensors[0].shape[0]
    draws = torch.rand((3, b), generator=generator, device=generator.device) < 0.5
    square = tensors[0].shape[-1] == tensors[0].shape[-2]
    out = []
    for x in tensors:
        masks = draws.to(x.device).view(3, b, 1, 1, 1)
        x = torch.where(masks[0], x.flip(-1), x)
        x = torch.where(masks[1], x.flip(-2), x)
        if square:
            x = torch.where(masks[2], x.transpose(-1, -2), x)
        out.append(x)
    return tuple(out)


def make_split(pair_dir: str | os.PathLike, *, val: float = 0.1, test: float = 0.1,
               seed: int = 0, modality: str | None = None, overwrite: bool = False
               ) -> SplitReport:
    """Write ``pair_dir/split.csv`` assigning each MRI + partner pair to train / val / test.

    Files present on one side only are written with split ``unpaired`` (and returned), so
    nothing is dropped silently. Assignment: names sorted, shuffled with ``random.Random(seed)``,
    the first ``round(test * N)`` to test, the next ``round(val * N)`` to val.

    Raises:
        InputError: bad fractions, no pairs, or an existing ``split.csv`` without ``overwrite``.
    """
    root = Path(pair_dir)
    if not root.is_dir():
        raise InputError(root, "is not a folder" if root.exists() else "no such folder")
    mod = modality or find_moving_modality(root)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise InputError("val/test", f"fractions must be in [0, 1) with sum < 1, got "
                                     f"{val} and {test}")
    path = root / "split.csv"
    refuse_overwrite(path, overwrite)
    sides = {}
    for folder in ("MRI", mod):
        if not (root / folder).is_dir():
            raise InputError(root / folder, "no such folder")
        sides[folder] = {p.name for p in (root / folder).iterdir()
                         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    paired = sorted(sides["MRI"] & sides[mod])
    unpaired = tuple(sorted(sides["MRI"] ^ sides[mod]))
    if not paired:
        raise InputError(root, f"no file name is present in both MRI/ and {mod}/")
    order = list(paired)
    random.Random(seed).shuffle(order)
    n_test, n_val = round(test * len(order)), round(val * len(order))
    split_of = {n: "test" for n in order[:n_test]}
    split_of.update({n: "val" for n in order[n_test:n_test + n_val]})
    rows = [(n, split_of.get(n, "train")) for n in paired] + [(n, "unpaired") for n in unpaired]
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows([("name", "split"), *rows])

    atomic_write(path, write)
    counts = {s: sum(1 for _, r in rows if r == s) for s in (*SPLITS, "unpaired")}
    return SplitReport(path, counts, unpaired)
