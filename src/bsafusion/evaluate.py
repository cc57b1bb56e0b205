"""``bsafusion evaluate``: score the network and the baselines on a deterministic test set.

For every pair of the synthetic test set (``bsafusion make-testset``: fixed MRI, deformed
moving image, undeformed ``label`` and the ground-truth field) each method yields an aligned
moving image, a fused image and, when it has one, a field. They are scored as follows:

- **registration**: NCC, MSE, SSIM of aligned vs ``label`` (Y for PET/SPECT), end-point error
  vs the ground truth over the head (``label`` > 0.05; mean and 95th percentile, px), % of
  pixels whose Jacobian determinant is ≤ 0, inverse consistency where a reverse field exists
  (the network: φ_BA = φ_A − φ_B), and TRE (px) when ``--landmarks`` is given;
- **fusion**: :mod:`bsafusion.metrics.fusion` with A = the MRI, B = the *undeformed* moving
  image (so a misregistered fusion is penalised), F = the fused image, all in A's frame,
  scored on the 0-255 grey scale; colour images on their BT.601 Y (G weight 0.504). Fused and
  aligned images are quantised to 8 bits first, exactly as the PNGs of an external method are.

Wall time per pair is measured around each method (registration + fusion, not scoring).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from bsafusion import baselines
from bsafusion.errors import ConfigError, InputError
from bsafusion.infer.procedure import luma_to_rgb
from bsafusion.io.image import read_image
from bsafusion.metrics import fusion as fusion_metrics_mod
from bsafusion.metrics import registration as reg
from bsafusion.ops.color import rgb_to_ycbcr
from bsafusion.ops.warp import warp
from bsafusion.pairs import get_pair

__all__ = [
    "DEFAULT_METHODS", "METHODS", "EvalConfig", "EvalResult", "MethodOutput", "Testset",
    "evaluate", "load_landmarks", "load_testset",
]

log = logging.getLogger(__name__)
METHODS = ("bsafusion", "identity-net", "identity-avg", "identity-max", "identity-lap",
           "elastix-lap")
DEFAULT_METHODS = METHODS
FOREGROUND = 0.05  # label intensity above which a pixel counts for the end-point error


@dataclass(frozen=True)
class EvalConfig:
    """Options of :func:`evaluate` (the CLI's flags, one to one)."""

    out_dir: Path
    pair: str = "ct"
    split: str = "test"
    seed: int = 0
    weights: str | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    testset: Path | None = None  # default: .cache/testsets/<PAIR>-<split>-seed<seed>[-<N>px]
    data: Path | None = None
    image_size: int | None = None
    limit: int | None = None
    fused_dir: Path | None = None
    aligned_dir: Path | None = None
    flow_dir: Path | None = None
    name: str | None = None
    landmarks: Path | None = None
    elastix_iterations: int = 256


class Testset(NamedTuple):
    """A loaded test set: N pairs, (N, C, H, W) tensors in [0, 1]."""

    root: Path
    names: tuple[str, ...]  # file stems
    fixed: Tensor  # (N, 1, H, W) MRI
    moving: Tensor  # (N, 1, H, W) deformed moving image (Y for colour)
    chroma: Tensor | None  # (N, 2, H, W) Cb, Cr of the deformed colour image
    label: Tensor  # (N, 1, H, W) undeformed moving image (Y)
    flow: Tensor  # (N, 2, H, W) ground truth, px, warp(moving, flow) ≈ label


class MethodOutput(NamedTuple):
    """What one method gives for one pair, (1, C, H, W) tensors in [0, 1]."""

    aligned: Tensor  # (1, 1, H, W) Y
    fused: Tensor  # (1, 1, H, W) Y
    flow: Tensor | None  # (1, 2, H, W) px, samples the moving image
    reverse: Tensor | None  # (1, 2, H, W) px, φ_BA, when the method has one
    fused_rgb: Tensor | None  # (1, 3, H, W) for colour pairs (display)
    seconds: float


class EvalResult(NamedTuple):
    """Rows of the metric table (one per pair and method) and what was written."""

    rows: list[dict]
    methods: tuple[str, ...]
    weights_label: str
    testset: Path
    files: dict[str, Path]


# ---------------------------------------------------------------------------- test set
def default_testset_dir(cfg: EvalConfig) -> Path:
    size = f"-{cfg.image_size}px" if cfg.image_size else ""
    return Path(".cache/testsets") / f"{cfg.pair.upper()}-{cfg.split}-seed{cfg.seed}{size}"


def ensure_testset(cfg: EvalConfig) -> Path:
    """Reuse the test set of (pair, split, seed, size) or build it with ``make_testset``."""
    import json

    root = cfg.testset or default_testset_dir(cfg)
    meta_path = root / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        want = (cfg.pair.upper(), cfg.split, cfg.seed, cfg.image_size)
        have = (meta.get("pair"), meta.get("split"), meta.get("seed"), meta.get("image_size"))
        if want != have:
            raise InputError(root, f"holds a test set for {have}, not {want}")
        log.info("reusing the test set in %s", root)
        return root
    from bsafusion.data.pairs import default_data_dir
    from bsafusion.data.testset import make_testset

    report = make_testset(cfg.data or default_data_dir(), cfg.pair, root, split=cfg.split,
                          seed=cfg.seed, image_size=cfg.image_size)
    log.info("built %d pairs in %s (mean displacement %.2f px)", report.num_pairs, root,
             report.mean_displacement)
    return root


def _grey_and_chroma(path: Path) -> tuple[Tensor, Tensor | None]:
    arr = torch.from_numpy(np.ascontiguousarray(read_image(path), dtype=np.float32))
    if arr.dim() == 2:
        return arr[None, None], None
    ycbcr = rgb_to_ycbcr(arr.permute(2, 0, 1)[None])
    return ycbcr[:, :1], ycbcr[:, 1:]


def load_testset(root: str | Path, limit: int | None = None) -> Testset:
    """Read ``fixed/``, ``moving/``, ``label/`` (PNG) and ``flow/`` (.npy) of a test set."""
    root = Path(root)
    stems = sorted(p.stem for p in (root / "flow").glob("*.npy"))[:limit]
    if not stems:
        raise InputError(root / "flow", "no ground-truth fields (.npy) in this test set")
    fixed, moving, chroma, label, flow = [], [], [], [], []
    for stem in stems:
        fixed.append(_grey_and_chroma(root / "fixed" / f"{stem}.png")[0])
        y, c = _grey_and_chroma(root / "moving" / f"{stem}.png")
        moving.append(y)
        chroma.append(c)
        label.append(_grey_and_chroma(root / "label" / f"{stem}.png")[0])
        flow.append(torch.from_numpy(np.load(root / "flow" / f"{stem}.npy"))[None].float())
    has_colour = chroma[0] is not None
    return Testset(root, tuple(stems), torch.cat(fixed), torch.cat(moving),
                   torch.cat(chroma) if has_colour else None, torch.cat(label), torch.cat(flow))


# ---------------------------------------------------------------------------- landmarks
def load_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``pair,fixed_x,fixed_y,moving_x,moving_y`` rows (px, moving = deformed image).

    Returns:
        {pair stem: (K, 4) float64 array of fixed_x, fixed_y, moving_x, moving_y}.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    cols = ("fixed_x", "fixed_y", "moving_x", "moving_y")
    out: dict[str, list] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"pair", *cols} <= set(reader.fieldnames):
            raise InputError(path, f"expected the header pair,{','.join(cols)}")
        for i, row in enumerate(reader, start=2):
            try:
                out.setdefault(Path(row["pair"]).stem, []).append([float(row[c]) for c in cols])
            except (TypeError, ValueError):
                raise InputError(path, f"line {i}: expected numbers in {', '.join(cols)}") from None
    return {k: np.asarray(v) for k, v in out.items()}


# ---------------------------------------------------------------------------- methods
def _quantise(x: Tensor) -> Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def _colour(fused: Tensor, chroma: Tensor | None, flow: Tensor | None) -> Tensor | None:
    return None if chroma is None else luma_to_rgb(fused, chroma, flow)


def _timed(fn: Callable[[], tuple]) -> tuple[tuple, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def build_model(cfg: EvalConfig):
    """The network to score and an honest label for the report's header."""
    from bsafusion.model.bsafusion import BSAFusion
    from bsafusion.model.build import build_bsafusion
    from bsafusion.weights import available_weights, bundled_name

    if cfg.weights:
        return build_bsafusion(weights=cfg.weights), f"weights file {cfg.weights}"
    name = bundled_name(cfg.pair)
    bundled = available_weights().get(name)
    if bundled:
        note = f" ({bundled['note']})" if bundled.get("note") else ""
        return build_bsafusion(weights=name), f"bundled `{name}` weights{note}"
    log.warning("no trained %s weights are bundled: scoring an UNTRAINED network (seed %d)",
                cfg.pair, cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = BSAFusion().eval()
    return model, (f"UNTRAINED network (random initialisation, torch seed {cfg.seed}): no "
                   "trained weights exist yet, so its rows measure the pipeline, not BSAFusion")


def run_method(method: str, ts: Testset, i: int, model=None,
               elastix: baselines.ElastixSettings | None = None) -> MethodOutput:
    """Run one built-in method on pair ``i`` of ``ts``."""
    fixed, moving = ts.fixed[i:i + 1], ts.moving[i:i + 1]
    chroma = ts.chroma[i:i + 1] if ts.chroma is not None else None
    if method == "bsafusion":
        with torch.inference_mode():
            out, secs = _timed(lambda: (model(fixed, moving),))
            out = out[0]
        return MethodOutput(out.aligned, out.fused, out.flow, out.flow_a - out.flow_b,
                            _colour(out.fused, chroma, out.flow), secs)
    if method == "identity-net":
        (fused,), secs = _timed(lambda: (baselines.fuse_network_zero_flow(model, fixed, moving),))
        return MethodOutput(moving, fused, torch.zeros_like(ts.flow[i:i + 1]), None,
                            _colour(fused, chroma, None), secs)
    rule = {"avg": baselines.fuse_average, "max": baselines.fuse_max,
            "lap": baselines.fuse_laplacian}[method.split("-")[1]]
    if method.startswith("identity-"):
        (fused,), secs = _timed(lambda: (rule(fixed, moving),))
        return MethodOutput(moving, fused, torch.zeros_like(ts.flow[i:i + 1]), None,
                            _colour(fused, chroma, None), secs)

    def register_and_fuse():
        flow = torch.from_numpy(baselines.elastix_register(fixed[0, 0].numpy(),
                                                           moving[0, 0].numpy(), elastix))[None]
        aligned = warp(moving, flow)
        return flow, aligned, rule(fixed, aligned)

    (flow, aligned, fused), secs = _timed(register_and_fuse)
    return MethodOutput(aligned, fused, flow, None, _colour(fused, chroma, flow), secs)


def external_output(ts: Testset, i: int, cfg: EvalConfig) -> MethodOutput:
    """Read another method's fused / aligned images (and field) for pair ``i``."""
    stem = ts.names[i]

    def find(folder: Path, suffixes: tuple[str, ...]) -> Path:
        for suffix in suffixes:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
        raise InputError(folder, f"no output for pair {stem} ({'/'.join(suffixes)})")

    images = (".png", ".tif", ".tiff", ".jpg", ".bmp")
    fused, fused_chroma = _grey_and_chroma(find(cfg.fused_dir, images))
    aligned = _grey_and_chroma(find(cfg.aligned_dir, images))[0] if cfg.aligned_dir else None
    flow = (torch.from_numpy(np.load(find(cfg.flow_dir, (".npy",))))[None].float()
            if cfg.flow_dir else None)
    if flow is not None and (flow.dim() != 4 or flow.shape[1] != 2):
        raise InputError(cfg.flow_dir, f"{stem}.npy: expected a (2, H, W) field, got "
                         f"{tuple(flow.shape[1:])}")
    if flow is not None and aligned is None:
        aligned = warp(ts.moving[i:i + 1], flow)
    size = tuple(ts.fixed.shape[-2:])
    for what, t in (("fused", fused), ("aligned", aligned), ("flow", flow)):
        if t is not None and tuple(t.shape[-2:]) != size:
            raise InputError(f"{what} of {stem}", f"size {tuple(t.shape[-2:])} != {size}")
    rgb = _colour(fused, fused_chroma, None)
    return MethodOutput(aligned if aligned is not None else torch.full_like(fused, math.nan),
                        fused, flow, None, rgb, math.nan)


# ---------------------------------------------------------------------------- scoring
def score(ts: Testset, i: int, out: MethodOutput, landmarks: np.ndarray | None) -> dict:
    """Registration and fusion metrics of one method on pair ``i`` (see the module doc)."""
    label, fixed = ts.label[i:i + 1], ts.fixed[i:i + 1]
    row: dict[str, float] = {}
    aligned = _quantise(out.aligned) if bool(torch.isfinite(out.aligned).all()) else None
    if aligned is not None:
        row["NCC"] = float(reg.ncc(aligned, label)[0])
        row["MSE"] = float(reg.mse(aligned, label)[0])
        row["SSIM_reg"] = float(reg.ssim(aligned, label)[0])
    if out.flow is not None:
        head = label > FOREGROUND
        mean, p95 = reg.endpoint_error_stats(out.flow, ts.flow[i:i + 1], head)
        row["EPE"], row["EPE_p95"] = float(mean[0]), float(p95[0])
        row["fold_pct"] = float(reg.folding_percent(out.flow)[0])
        if out.reverse is not None:
            row["inv_cons"] = float(reg.inverse_consistency(out.flow, out.reverse)[0])
        if landmarks is not None:
            row["TRE"] = float(reg.landmark_tre(out.flow, torch.from_numpy(landmarks)).mean())
    row.update(fusion_metrics_mod.fusion_metrics(fixed[0, 0], label[0, 0],
                                                 _quantise(out.fused)[0, 0]))
    row["time_s"] = out.seconds
    return row


def iter_outputs(cfg: EvalConfig, ts: Testset, methods: tuple[str, ...], model
                 ) -> Iterator[tuple[int, str, MethodOutput]]:
    """Yield (pair index, method, output) for every pair and method."""
    elastix = baselines.ElastixSettings(
        transform=get_pair(cfg.pair).elastix_transform,
        iterations=cfg.elastix_iterations)
    for i in range(len(ts.names)):
        for method in methods:
            if method == cfg.name:
                yield i, method, external_output(ts, i, cfg)
            else:
                yield i, method, run_method(method, ts, i, model, elastix)


def evaluate(cfg: EvalConfig) -> EvalResult:
    """Build or reuse the test set, run every method, score it and write the report.

    Returns:
        :class:`EvalResult` with the rows and the written files (``metrics.csv``,
        ``summary.md``, ``index.html``, panels).
    Raises:
        InputError / ConfigError: bad options, missing outputs of an external method.
    """
    from bsafusion import report

    if cfg.fused_dir is not None:
        cfg = replace(cfg, name=cfg.name or Path(cfg.fused_dir).name)
    methods = _check_methods(cfg)
    ts = load_testset(ensure_testset(cfg), cfg.limit)
    landmarks = load_landmarks(cfg.landmarks) if cfg.landmarks else {}
    model, weights_label = (build_model(cfg) if {"bsafusion", "identity-net"} & set(methods)
                            else (None, "none (no network method run)"))
    _warm_up(methods, ts, model)
    rows, shown = [], {}
    for i, method, out in iter_outputs(cfg, ts, methods, model):
        row = {"pair": ts.names[i], "method": method,
               **score(ts, i, out, landmarks.get(ts.names[i]))}
        rows.append(row)
        shown[(i, method)] = report.display_images(ts, i, out)
        log.info("%s %-13s NCC %.4f Qabf %.4f %.2fs", ts.names[i], method,
                 row.get("NCC", math.nan), row["Qabf"], out.seconds)
    files = report.write_report(cfg, ts, rows, methods, shown, weights_label)
    return EvalResult(rows, methods, weights_label, ts.root, files)


def _warm_up(methods: tuple[str, ...], ts: Testset, model) -> None:
    """One untimed call of the network and of elastix (the itk import and elastix's lazy
    loading take seconds once), so that per-pair times are steady-state times."""
    start = time.perf_counter()
    if model is not None:
        with torch.inference_mode():
            model(ts.fixed[:1], ts.moving[:1])
    if "elastix-lap" in methods:
        tiny = np.zeros((32, 32), np.float32)
        tiny[8:24, 8:24] = 1.0
        baselines.elastix_register(tiny, tiny, baselines.ElastixSettings(iterations=1,
                                                                         use_mask=False))
    log.info("warm-up (network forward, itk import) took %.1f s", time.perf_counter() - start)


def _check_methods(cfg: EvalConfig) -> tuple[str, ...]:
    methods = tuple(m for m in cfg.methods if m != "none")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError("methods", f"unknown {unknown}; choose from {', '.join(METHODS)}")
    if cfg.fused_dir is not None:
        if not Path(cfg.fused_dir).is_dir():
            raise InputError(cfg.fused_dir, "no such folder")
        if cfg.name in METHODS:
            raise ConfigError("name", f"{cfg.name!r} is a built-in method; choose another name")
        methods = (*methods, cfg.name)
    elif cfg.aligned_dir or cfg.flow_dir:
        raise ConfigError("fused_dir", "is needed too: an external method is named by its fused "
                                        "images")
    if not methods:
        raise ConfigError("methods", "nothing to evaluate")
    return methods
