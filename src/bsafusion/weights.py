"""Our weights format: safetensors + the ModelConfig as JSON metadata, sha256-checked.

Names resolve in this order: an existing path, the package's bundled weights
(``assets/manifest.json``), then ``$BSAFUSION_HOME``. A bundled or ``$BSAFUSION_HOME`` file is
checked against the manifest's sha256; an explicit path against its ``<file>.sha256``
sidecar (written by :func:`save_weights`) or the ``sha256`` argument.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from bsafusion.config import ModelConfig
from bsafusion.errors import BsafusionError, WeightsError
from bsafusion.io.atomic import atomic_write
from bsafusion.pairs import find_pair, get_pair

__all__ = [
    "RELEASE_SUFFIXES",
    "WeightsInfo",
    "available_weights",
    "bundled_name",
    "check_weights_pair",
    "load_weights",
    "pair_in_name",
    "resolve_weights",
    "save_weights",
    "sha256_file",
    "weights_info",
]

FORMAT = "bsafusion/1"
RELEASE_SUFFIXES = (".pt", ".pth", ".pkl")
_NORM_WEIGHT = re.compile(r"norm\d?\.weight$")  # LayerNorm scales: exactly 1 until trained


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest() -> dict:
    text = resources.files("bsafusion.assets").joinpath("manifest.json").read_text("utf-8")
    return json.loads(text).get("weights", {})


def available_weights() -> dict[str, dict]:
    """The bundled weights: canonical name -> manifest entry (file, sha256, ...)."""
    return dict(_manifest())


def bundled_name(pair: str) -> str | None:
    """The manifest name of the bundled weights of a pair (any spelling: ``"CT-MRI"``)."""
    found = find_pair(pair)
    return None if found is None else found.weights


def resolve_weights(name_or_path: str | os.PathLike) -> tuple[Path, str | None]:
    """Find a weights file.

    Returns:
        (path, expected sha256 or None when only a sidecar can vouch for it).
    Raises:
        WeightsError: nothing of that name or path exists.
    """
    path = Path(name_or_path)
    if path.is_dir():
        raise WeightsError(path, "is a directory, not a weights file")
    if path.is_file():
        sidecar = path.with_name(path.name + ".sha256")
        expected = sidecar.read_text().split()[0] if sidecar.is_file() else None
        return path, expected
    name = bundled_name(str(name_or_path))
    entry = _manifest().get(name) if name else None
    if entry is None:
        known = ", ".join(sorted(_manifest())) or "none bundled yet"
        raise WeightsError(name_or_path, f"no such file or bundled weights (bundled: {known})")
    bundled = Path(str(resources.files("bsafusion.assets").joinpath(entry["file"])))
    home = os.environ.get("BSAFUSION_HOME")
    candidates = [bundled] + ([Path(home) / entry["file"]] if home else [])
    for candidate in candidates:
        if candidate.is_file():
            return candidate, entry["sha256"]
    raise WeightsError(bundled, f"bundled weights {name!r} are missing from the installation")


def save_weights(state_dict: dict[str, Tensor], config: ModelConfig, path: str | os.PathLike,
                 *, dtype: torch.dtype = torch.float32, metadata: dict[str, str] | None = None
                 ) -> str:
    """Write weights + config as safetensors (atomically) and a ``.sha256`` sidecar.

    Args:
        state_dict: tensors to store (floating ones cast to ``dtype``).
        config: stored as JSON in the file's metadata, so the file describes itself.
        path: output ``.safetensors`` path.
        dtype: storage dtype of floating tensors (``torch.float16`` halves the size).
        metadata: extra string metadata (e.g. provenance).
    Returns:
        The file's sha256.
    """
    tensors = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in state_dict.items()
    }
    meta = {**(metadata or {}), "format": FORMAT, "config": config.to_json()}
    path = atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    digest = sha256_file(path)
    sidecar = path.with_name(path.name + ".sha256")
    atomic_write(sidecar, lambda tmp: tmp.write_text(f"{digest}  {path.name}\n"))
    return digest


def load_weights(name_or_path: str | os.PathLike, *, sha256: str | None = None
                 ) -> tuple[dict[str, Tensor], ModelConfig]:
    """Load weights written by :func:`save_weights` (or bundled), checking their sha256.

    Returns:
        (float32 state dict, the stored ModelConfig).
    Raises:
        WeightsError: missing file, hash mismatch, corrupt or foreign file, bad config.
    """
    path, expected = resolve_weights(name_or_path)
    expected = sha256 or expected
    if expected is not None and sha256_file(path) != expected.lower():
        raise WeightsError(path, "sha256 mismatch: the file is corrupt or not the expected one")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(path, f"not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise WeightsError(path, "not a bsafusion weights file (no bsafusion metadata)")
    try:
        config = ModelConfig.from_json(meta["config"])
    except BsafusionError as exc:
        raise WeightsError(path, f"bad stored config: {exc}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    return state, config


class WeightsInfo(NamedTuple):
    """What a weights file says about itself (:func:`weights_info`)."""

    path: Path
    pair: str | None  # canonical pair name (``"ct"``), None when the file does not say
    status: str  # "trained", "interim", "untrained", "release" or "unknown"
    note: str  # why, for a warning ("" for trained weights)
    work_size: int | None = None  # the resolution it was trained at (None: not recorded)


def weights_info(name_or_path: str | os.PathLike) -> WeightsInfo:
    """The pair and training status of a weights file, whatever its name, without loading it.

    The pair comes from the file's metadata (``pair``; ``train_config`` in exports), or a
    release checkpoint's name (``BSAFusion_CT.pkl``). The status comes from the manifest when
    the file's sha256 is that of bundled weights (``interim``...), else the metadata's
    ``status``, else the weights themselves: a network whose normalisation scales are all
    still exactly 1 was never trained. ``work_size`` is the resolution the network was
    trained at (for bundled weights the manifest's, else the metadata's ``work_size``, which
    ``export`` writes),
    the working size :class:`~bsafusion.infer.Fuser` and the CLI then use by default.

    Raises:
        WeightsError: the file is missing, fails its sha256 check or is not readable.
    """
    path, expected = resolve_weights(name_or_path)
    if path.name.lower().endswith(RELEASE_SUFFIXES):
        return WeightsInfo(path, pair_in_name(path), "release", "")
    digest = sha256_file(path)
    if expected is not None and digest != expected.lower():
        raise WeightsError(path, "sha256 mismatch: the file is corrupt or not the expected one")
    for entry in _manifest().values():
        if entry.get("sha256") == digest:
            found = find_pair(entry.get("pair", ""))
            return WeightsInfo(path, found.name if found else None,
                               entry.get("status", "trained"), entry.get("note", ""),
                               _size(entry.get("work_size")))
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            norms = [fh.get_tensor(k) for k in fh.keys() if _NORM_WEIGHT.search(k)]
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(path, f"not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise WeightsError(path, "not a bsafusion weights file (no bsafusion metadata)")
    found = find_pair(meta.get("pair") or meta.get("train_config") or "")
    pair = found.name if found else None
    status = meta.get("status", "")
    if not status and norms and all(bool((t == 1).all()) for t in norms):
        return WeightsInfo(path, pair, "untrained", "untrained (randomly initialised): the "
                           "outputs show the pipeline, not registration or fusion quality",
                           _size(meta.get("work_size")))
    note = meta.get("note", "")
    if status == "interim" and not note:
        note = f"interim (epoch {meta.get('epoch', '?')} of {meta.get('num_epochs', '?')})"
    return WeightsInfo(path, pair, status or "unknown", note, _size(meta.get("work_size")))



def _size(value) -> int | None:
    """A recorded working size ("128", 128, "" or None) as a positive multiple of 16, else None."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        return None
    return size if size >= 16 and size % 16 == 0 else None


def pair_in_name(path: str | os.PathLike) -> str | None:
    """The pair a file name mentions as a word (``BSAFusion_CT.pkl`` -> ``"ct"``), or None."""
    tokens = re.split(r"[^a-z]+", Path(path).stem.lower())
    return next((find_pair(t).name for t in tokens if find_pair(t)), None)


def check_weights_pair(info: WeightsInfo, pair: str, where: object | None = None) -> None:
    """Raise :class:`WeightsError` (naming ``where``, default the file) if the weights of
    ``info`` are those of another modality pair than ``pair``."""
    want = get_pair(pair).name
    if info.pair is not None and info.pair != want:
        raise WeightsError(where or info.path, f"holds {info.pair.upper()}-MRI weights, not "
                                               f"{want.upper()}-MRI ones (pair {want!r})")
