"""``bsafusion evaluate``: score the network and the baselines on a deterministic test set.

For every pair of the synthetic test set (:mod:`bsafusion.evaluation.testset`: fixed MRI,
deformed moving image, undeformed ``label`` and the ground-truth field) each method
(:mod:`bsafusion.evaluation.methods`) yields an aligned moving image, a fused image and,
when it has one, a field; :mod:`bsafusion.evaluation.scoring` scores them and
:mod:`bsafusion.evaluation.report` writes the tables. The network runs through
:meth:`bsafusion.Fuser.fuse_tensors`, the path ``bsafusion fuse`` runs: at the size its
weights were trained at when they record it (as ``fuse`` does by default), else at the test
set's native size.

Wall time per pair is measured around each method (registration + fusion, not scoring).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from bsafusion.errors import ConfigError, InputError
from bsafusion.evaluation import baselines, report
from bsafusion.evaluation.methods import (
    Method,
    NetworkMethod,
    RuleMethod,
    ZeroFlowNetwork,
    read_external,
)
from bsafusion.evaluation.scoring import load_landmarks, score
from bsafusion.evaluation.testset import Testset, load_testset, make_testset
from bsafusion.infer import Fuser
from bsafusion.infer.result import FusionResult
from bsafusion.pairs import get_pair
from bsafusion.progress import Eta

__all__ = [
    "DEFAULT_METHODS", "METHODS", "EvalConfig", "EvalResult", "build_methods", "build_model",
    "evaluate",
]

log = logging.getLogger(__name__)
METHODS = ("bsafusion", "identity-net", "identity-avg", "identity-max", "identity-lap",
           "elastix-lap")
DEFAULT_METHODS = METHODS


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
    device: str = "cpu"  # where the network methods run
    precision: str = "fp32"  # the network's arithmetic (bsafusion.Fuser's ``precision``)


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
    if root.exists() and not root.is_dir():
        raise InputError(root, "is a file, not a test set folder")
    meta_path = root / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        want = (get_pair(cfg.pair).modality.upper(), cfg.split, cfg.seed, cfg.image_size)
        have = (meta.get("pair"), meta.get("split"), meta.get("seed"), meta.get("image_size"))
        if want != have:
            raise InputError(root, f"holds a test set for {have}, not {want}")
        log.info("reusing the test set in %s", root)
        return root
    from bsafusion.data.pairs import default_data_dir

    built = make_testset(cfg.data or default_data_dir(), get_pair(cfg.pair).modality, root,
                         split=cfg.split, seed=cfg.seed, image_size=cfg.image_size)
    log.info("built %d pairs in %s (mean displacement %.2f px)", built.num_pairs, root,
             built.mean_displacement)
    return root


# ---------------------------------------------------------------------------- methods
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


def trained_size(cfg: EvalConfig) -> int | None:
    """The working size the scored weights were trained at, None when unrecorded (or no
    weights: an untrained network), i.e. the test set's native size."""
    from bsafusion.weights import available_weights, bundled_name, weights_info

    name = cfg.weights or bundled_name(cfg.pair)
    if not cfg.weights and name not in available_weights():
        return None
    return weights_info(name).work_size


def build_methods(cfg: EvalConfig, methods: tuple[str, ...], model,
                  work_size: int | None = None) -> dict[str, Method]:
    """The built-in methods named in ``methods`` (the network ones need ``model``; the
    network runs at ``work_size``, None = the test set's native size)."""
    elastix = baselines.ElastixSettings(transform=get_pair(cfg.pair).elastix_transform,
                                        iterations=cfg.elastix_iterations)
    built: dict[str, Method] = {}
    for name in methods:
        if name == "bsafusion":
            built[name] = NetworkMethod(Fuser(model, device=cfg.device,
                                              work_size=work_size,
                                              precision=cfg.precision))
        elif name == "identity-net":
            built[name] = ZeroFlowNetwork(model)
        elif name in METHODS:
            built[name] = RuleMethod(name, elastix)
    return built


def iter_outputs(cfg: EvalConfig, ts: Testset, methods: tuple[str, ...], built: dict[str, Method]
                 ) -> Iterator[tuple[int, str, FusionResult[Tensor], float]]:
    """Yield (pair index, method, result, seconds) for every pair and method."""
    for i in range(len(ts.names)):
        for name in methods:
            if name == cfg.name:
                yield i, name, read_external(ts, i, cfg.fused_dir, cfg.aligned_dir,
                                             cfg.flow_dir), math.nan
                continue
            fixed, moving = ts.fixed[i:i + 1], ts.moving_image[i:i + 1]
            start = time.perf_counter()
            with torch.inference_mode():
                result = built[name](fixed, moving)
            yield i, name, result, time.perf_counter() - start


# ---------------------------------------------------------------------------- the run
def evaluate(cfg: EvalConfig, plugins: Sequence[Method] = ()) -> EvalResult:
    """Build or reuse the test set, run every method, score it and write the report.

    Args:
        cfg: the options (the CLI's flags).
        plugins: further methods (:class:`~bsafusion.evaluation.methods.Method`: a ``name``
            and a call on one pair), scored after the built-in ones.

    Returns:
        :class:`EvalResult` with the rows and the written files (``metrics.csv``,
        ``summary.md``, ``index.html``, panels).
    Raises:
        InputError / ConfigError: bad options, missing outputs of an external method.
    """
    if cfg.fused_dir is not None:
        cfg = replace(cfg, name=cfg.name or Path(cfg.fused_dir).name)
    methods = _check_methods(cfg, tuple(m.name for m in plugins))
    ts = load_testset(ensure_testset(cfg), cfg.limit)
    landmarks = load_landmarks(cfg.landmarks) if cfg.landmarks else {}
    model, weights_label = (build_model(cfg) if {"bsafusion", "identity-net"} & set(methods)
                            else (None, "none (no network method run)"))
    size = trained_size(cfg) if "bsafusion" in methods else None  # one read of the weights
    if size:
        weights_label += f"; run at {size} px, the size it was trained at (as `fuse` runs it)"
    built = {**build_methods(cfg, methods, model, size), **{m.name: m for m in plugins}}
    _warm_up(methods, ts, built)
    rows, shown = [], {}
    eta = Eta(len(ts.names) * len(methods))
    for k, (i, method, out, seconds) in enumerate(iter_outputs(cfg, ts, methods, built), 1):
        row = {"pair": ts.names[i], "method": method,
               **score(ts, i, out, landmarks.get(ts.names[i])), "time_s": seconds}
        rows.append(row)
        shown[(i, method)] = report.display_images(ts, i, out)
        log.info("[%s] %s %-13s NCC %.4f Qabf %.4f %.2fs", eta.text(k), ts.names[i], method,
                 row.get("NCC", math.nan), row["Qabf"], seconds)
    files = report.write_report(cfg, ts, rows, methods, shown, weights_label)
    return EvalResult(rows, methods, weights_label, ts.root, files)


def _warm_up(methods: tuple[str, ...], ts: Testset, built: dict[str, Method]) -> None:
    """One untimed call of the network and of elastix (the itk import and elastix's lazy
    loading take seconds once), so that per-pair times are steady-state times."""
    start = time.perf_counter()
    if "bsafusion" in built:
        with torch.inference_mode():
            built["bsafusion"](ts.fixed[:1], ts.moving_image[:1])
    if "elastix-lap" in methods:
        tiny = np.zeros((32, 32), np.float32)
        tiny[8:24, 8:24] = 1.0
        baselines.elastix_register(tiny, tiny, baselines.ElastixSettings(iterations=1,
                                                                         use_mask=False))
    log.info("warm-up (network forward, itk import) took %.1f s", time.perf_counter() - start)


def _check_methods(cfg: EvalConfig, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
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
    clash = [m for m in extra if m in METHODS or m in methods or extra.count(m) > 1]
    if clash:
        raise ConfigError("plugins", f"method names {clash} are taken")
    methods = (*methods, *extra)
    if not methods:
        raise ConfigError("methods", "nothing to evaluate")
    return methods
