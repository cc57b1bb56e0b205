"""The methods ``bsafusion evaluate`` scores, behind one small interface (:class:`Method`).

A method takes one pair as tensors, the fixed MRI (1, 1, H, W) and the deformed moving image
(1, C, H, W) as stored (grey CT, RGB PET/SPECT), and returns a
:class:`~bsafusion.infer.result.FusionResult` of tensors in the fixed frame. Colour is split
and recombined by :mod:`bsafusion.infer.procedure` for every method, so all of them are
scored on the same Y.

- :class:`NetworkMethod`: the network through :meth:`bsafusion.Fuser.fuse_tensors`, the very
  path ``bsafusion fuse`` runs (fast network, working resolution, colour).
- :class:`ZeroFlowNetwork`: the network's fusion without its registration.
- :class:`RuleMethod`: a pixel fusion rule, with no registration or after elastix.
- :func:`read_external`: another method's files (``--fused-dir`` etc.).

Another method plugs in by being a callable with a ``name``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from bsafusion.errors import InputError
from bsafusion.evaluation import baselines
from bsafusion.evaluation.testset import Testset, read_grey_and_chroma
from bsafusion.infer import Fuser
from bsafusion.infer.procedure import recombine_color, split_color, to_luma
from bsafusion.infer.result import FusionResult
from bsafusion.ops.warp import warp

__all__ = ["Method", "NetworkMethod", "RuleMethod", "ZeroFlowNetwork", "read_external"]

Rule = Callable[[Tensor, Tensor], Tensor]  # (fixed Y, aligned moving Y) -> fused Y


class Method(Protocol):
    """What ``evaluate`` runs: ``name`` (the report's row) and a call on one pair."""

    name: str

    def __call__(self, fixed: Tensor, moving: Tensor) -> FusionResult[Tensor]:
        """fixed: (1, 1, H, W); moving: (1, C, H, W) in [0, 1], as stored."""
        ...


def _zero_flow(fixed: Tensor) -> Tensor:
    return fixed.new_zeros(fixed.shape[0], 2, *fixed.shape[-2:])


def _result(fused_y: Tensor, aligned_y: Tensor, flow: Tensor | None, chroma: Tensor | None,
            *, registered: bool = True) -> FusionResult[Tensor]:
    """Recombine colour (:func:`recombine_color`; Cb/Cr warped only after a registration)."""
    if chroma is None:
        return FusionResult(fused_y, aligned_y, flow)
    fused, aligned = recombine_color(fused_y, aligned_y, chroma, flow if registered else None)
    return FusionResult(fused, aligned, flow, None, fused_y, aligned_y)


class NetworkMethod:
    """The network, through :meth:`bsafusion.Fuser.fuse_tensors` (what users run)."""

    name = "bsafusion"

    def __init__(self, fuser: Fuser) -> None:
        self.fuser = fuser

    def __call__(self, fixed: Tensor, moving: Tensor) -> FusionResult[Tensor]:
        return _to(self.fuser.fuse_tensors(fixed, moving), fixed.device)


class ZeroFlowNetwork:
    """The network's fusion decoder fed a zero field (:func:`baselines.fuse_network_zero_flow`)."""

    name = "identity-net"

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, fixed: Tensor, moving: Tensor) -> FusionResult[Tensor]:
        device = next(self.model.parameters()).device
        fixed, moving, back = fixed.to(device), moving.to(device), fixed.device
        luma, chroma = to_luma(self.model, moving)
        fused = baselines.fuse_network_zero_flow(self.model, fixed, luma)
        return _to(_result(fused, luma, _zero_flow(fixed), chroma, registered=False), back)


def _to(result: FusionResult[Tensor], device) -> FusionResult[Tensor]:
    """``result`` with its tensors on ``device`` (the test set's)."""
    return result._replace(**{k: v.to(device) for k, v in result._asdict().items()
                              if isinstance(v, Tensor)})


class RuleMethod:
    """A fusion rule on the Y of both images, without registration (``identity-*``) or after
    elastix (``elastix-*``)."""

    RULES: dict[str, Rule] = {"avg": baselines.fuse_average, "max": baselines.fuse_max,
                              "lap": baselines.fuse_laplacian}

    def __init__(self, name: str, elastix: baselines.ElastixSettings | None = None) -> None:
        self.name = name
        self.rule = self.RULES[name.split("-")[1]]
        self.register = name.startswith("elastix-")
        self.elastix = elastix

    def __call__(self, fixed: Tensor, moving: Tensor) -> FusionResult[Tensor]:
        luma, chroma = split_color(moving)
        if not self.register:
            return _result(self.rule(fixed, luma), luma, _zero_flow(fixed), chroma,
                           registered=False)
        flow = torch.from_numpy(baselines.elastix_register(
            fixed[0, 0].numpy(), luma[0, 0].numpy(), self.elastix))[None]
        aligned = warp(luma, flow)
        return _result(self.rule(fixed, aligned), aligned, flow, chroma)


def read_external(ts: Testset, i: int, fused_dir: Path, aligned_dir: Path | None = None,
                  flow_dir: Path | None = None) -> FusionResult[Tensor]:
    """Another method's fused / aligned images (and field) for pair ``i`` of ``ts``.

    A missing aligned image is NaN (its registration rows stay empty); with a field and no
    aligned image, the aligned image is the moving one warped by the field.
    """
    stem = ts.names[i]

    def find(folder: Path, suffixes: tuple[str, ...]) -> Path:
        for suffix in suffixes:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
        raise InputError(folder, f"no output for pair {stem} ({'/'.join(suffixes)})")

    images = (".png", ".tif", ".tiff", ".jpg", ".bmp")
    fused_y, _, fused = read_grey_and_chroma(find(fused_dir, images))
    aligned = read_grey_and_chroma(find(aligned_dir, images))[0] if aligned_dir else None
    flow = (torch.from_numpy(np.load(find(flow_dir, (".npy",))))[None].float()
            if flow_dir else None)
    if flow is not None and (flow.dim() != 4 or flow.shape[1] != 2):
        raise InputError(flow_dir, f"{stem}.npy: expected a (2, H, W) field, got "
                         f"{tuple(flow.shape[1:])}")
    if flow is not None and aligned is None:
        aligned = warp(ts.moving[i:i + 1], flow)
    size = tuple(ts.fixed.shape[-2:])
    for what, t in (("fused", fused), ("aligned", aligned), ("flow", flow)):
        if t is not None and tuple(t.shape[-2:]) != size:
            raise InputError(f"{what} of {stem}", f"size {tuple(t.shape[-2:])} != {size}")
    aligned = aligned if aligned is not None else torch.full_like(fused_y, math.nan)
    color = fused.shape[1] == 3
    return FusionResult(fused, aligned, flow, None, fused_y if color else None)
