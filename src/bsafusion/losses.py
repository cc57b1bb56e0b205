"""Training losses of BSAFusion (architecture.md §4); intensities in [0, 1].

Symbols: I_A the fixed MRI, I_B the deformed moving image, I_B* the undeformed one (the
label), B~ = warp(I_B, flow_ab) the aligned moving image, F the fused image.

SSIM, Sobel and Gaussian filters come from :mod:`bsafusion.ops.filters` (plain torch, pinned
to ``kornia.metrics.ssim`` / ``kornia.filters.spatial_gradient`` in the tests, so training
does not need kornia). Note that ``kornia.losses.ssim_loss`` is ``(1 - SSIM) / 2``; the
losses here use ``1 - SSIM`` as §4 writes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bsafusion.config import EPE_REGIONS, FUSION_TARGETS
from bsafusion.ops.filters import gradient_l1, ssim_map
from bsafusion.ops.grid import affine_basis

__all__ = [
    "FOREGROUND",
    "LEVEL_WEIGHTS",
    "LOSS_TERMS",
    "PLOTTED_TERMS",
    "BSAFusionLoss",
    "affine_error_loss",
    "affine_part",
    "classification_loss",
    "endpoint_loss",
    "fusion_loss",
    "head_mask",
    "registration_loss",
    "smoothness",
    "smoothness_loss",
    "ssim_loss",
    "transfer_loss",
]

FOREGROUND = 0.05  # intensity above the black level at which a pixel of the moving image is "head"
MRI_CLASS = 1  # logits index of the MRI class (§4: L_cls targets [0, 1] for A)
LEVEL_WEIGHTS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # coarse to fine (§4)
# the named terms BSAFusionLoss returns when given flow_gt (the trainer logs each, in order)
LOSS_TERMS = ("total", "cls", "tr", "reg", "smooth", "fus", "ssim_a", "ssim_b", "epe",
              "epe_affine")
PLOTTED_TERMS = ("total", "reg", "fus", "smooth", "cls", "tr")  # the loss curve's


def head_mask(image: Tensor) -> Tensor:
    """Where an undeformed moving image shows the head: more than :data:`FOREGROUND` above
    its own black level (0 for grey CT; 16/255 for BT.601 Y of PET/SPECT, §7).

    Args:
        image: (B, 1, H, W) in [0, 1].
    Returns:
        (B, 1, H, W) bool.
    """
    return image > image.amin(dim=(-2, -1), keepdim=True) + FOREGROUND


def ssim_loss(x: Tensor, y: Tensor) -> Tensor:
    """``1 - mean SSIM`` over the batch (11x11 Gaussian window, sigma 1.5; scalar)."""
    return 1.0 - ssim_map(x, y).mean()


def classification_loss(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """``L_cls = CE(logits_A, MRI) + CE(logits_B, other)``, batch means.

    Args:
        logits_a, logits_b: (B, 2) modality logits of the fixed (MRI) and moving images.
    """
    b = logits_a.shape[0]
    target_a = torch.full((b,), MRI_CLASS, dtype=torch.long, device=logits_a.device)
    return F.cross_entropy(logits_a, target_a) + F.cross_entropy(logits_b, 1 - target_a)


def transfer_loss(transfer_logits_a: Tensor, transfer_logits_b: Tensor) -> Tensor:
    """``L_tr = CE(disc(F_A), [1/2, 1/2]) + CE(disc(F_B), [1/2, 1/2])`` (soft targets).

    Each term is ``-sum_c 0.5 * log_softmax(z)_c``, batch-mean; its minimum is ``log 2``,
    reached when the discriminator cannot tell the modality.

    Args:
        transfer_logits_a, transfer_logits_b: (B, 2) discriminator logits.
    """
    def soft_ce(z: Tensor) -> Tensor:
        return -(0.5 * F.log_softmax(z, dim=1)).sum(dim=1).mean()

    return soft_ce(transfer_logits_a) + soft_ce(transfer_logits_b)


def registration_loss(aligned: Tensor, label: Tensor) -> Tensor:
    """``L_reg = (1 - SSIM(I_B*, B~)) + L1(I_B*, B~)`` (monomodal, via the known deformation).

    Args:
        aligned: (B, 1, H, W) B~. label: (B, 1, H, W) I_B*.
    """
    return ssim_loss(label, aligned) + F.l1_loss(aligned, label)


def endpoint_loss(flow: Tensor, flow_gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean end-point error ``mean_p |flow(p) - flow_gt(p)|_2`` in pixels (ours, not the
    paper's: the synthetic deformation gives the exact field, issue 14).

    Args:
        flow, flow_gt: (B, 2, H, W) px.
        mask: optional (B, 1, H, W) bool, the pixels to average over (e.g. the head, where
            the images show the displacement); None: every pixel. An empty mask gives 0.
    """
    epe = (flow - flow_gt).square().sum(dim=1, keepdim=True).add(1e-12).sqrt()
    if mask is None:
        return epe.mean()
    weight = mask.to(epe.dtype)
    return (epe * weight).sum() / weight.sum().clamp_min(1.0)


def affine_part(error: Tensor, mask: Tensor | None = None) -> Tensor:
    """The affine part of an error field: its per-sample weighted least-squares fit on
    ``a + b x + c y`` (x, y in [-1, 1]) over ``mask``.

    Args:
        error: (B, 2, H, W) px, e.g. ``flow - flow_gt``.
        mask: optional (B, 1, H, W) bool, the pixels to fit; None: every pixel. An empty
            mask gives 0.
    Returns:
        (B, 2, H, W) px.
    """
    b, _, h, w = error.shape
    basis = affine_basis(h, w, device=error.device, dtype=error.dtype).flatten(1)  # (3, N)
    weight = (mask.to(error.dtype).reshape(b, -1) if mask is not None
              else error.new_ones(b, h * w))
    gram = torch.einsum("kn,bn,ln->bkl", basis, weight, basis)
    gram = gram + 1e-6 * torch.eye(3, device=error.device, dtype=error.dtype)
    coef = torch.linalg.solve(gram, torch.einsum("kn,bn,bcn->bkc", basis, weight,
                                                 error.flatten(2)))
    return torch.einsum("kn,bkc->bcn", basis, coef).view(b, 2, h, w)


def affine_error_loss(flow: Tensor, flow_gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean end-point error of the affine part of ``flow - flow_gt`` (ours, issue 14).

    The error field is projected by :func:`affine_part` over ``mask``; the term is the mean
    norm of that projection over the mask. It is the global shift, scaling and shear the
    network gets wrong: with the per-pixel :func:`endpoint_loss` alone, whose gradient on a
    common offset is weak where the per-pixel errors are larger and point every way, the
    shipped CT weights recovered only half of the mean displacement over the head (slope
    0.4-0.6 on val).

    Args:
        flow, flow_gt: (B, 2, H, W) px.
        mask: optional (B, 1, H, W) bool, the pixels to fit and average over; None: every
            pixel. An empty mask gives 0.
    """
    return endpoint_loss(affine_part(flow - flow_gt, mask), torch.zeros_like(flow), mask)


def smoothness(flow: Tensor) -> Tensor:
    """``R(flow) = (mean((d/dx flow)^2) + mean((d/dy flow)^2)) / 3`` (forward differences).

    Args:
        flow: (B, 2, H, W) px.
    """
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    return (dx.square().mean() + dy.square().mean()) / 3.0


def smoothness_loss(flows_a: Sequence[Tensor], flows_b: Sequence[Tensor], flow_ab: Tensor,
                    weights: Sequence[float] = LEVEL_WEIGHTS) -> Tensor:
    """``L_smooth = sum_k w_k (R(flow_A^k) + R(flow_B^k)) + R(flow_AB)`` (intended form, §4).

    Args:
        flows_a, flows_b: K level flows of each side, coarse to fine (0-based).
        flow_ab: (B, 2, H, W) the integrated field.
        weights: K level weights, coarse to fine.
    """
    if not len(flows_a) == len(flows_b) == len(weights):
        raise ValueError(f"{len(flows_a)}/{len(flows_b)} level flows for {len(weights)} weights")
    total = smoothness(flow_ab)
    for w, fa, fb in zip(weights, flows_a, flows_b, strict=True):
        total = total + w * (smoothness(fa) + smoothness(fb))
    return total


def fusion_loss(fused: Tensor, fixed: Tensor, aligned: Tensor, p: float | Tensor = 1.0
                ) -> tuple[Tensor, Tensor, Tensor]:
    """``L_fus = (1-SSIM(F, I_A)) + p (1-SSIM(F, B~)) + L1(F, max(I_A, B~))/2
    + L1(|grad F|, max(|grad I_A|, |grad B~|))`` with ``|grad| = |Sobel_x| + |Sobel_y|``.

    Args:
        fused: (B, 1, H, W) F. fixed: (B, 1, H, W) I_A. aligned: (B, 1, H, W) B~.
        p: balance of the two SSIM terms (the previous epoch's ratio, §4).
    Returns:
        (L_fus, 1 - SSIM(F, I_A), 1 - SSIM(F, B~)); the last two feed the next epoch's p.
    """
    ssim_a = ssim_loss(fused, fixed)
    ssim_b = ssim_loss(fused, aligned)
    intensity = F.l1_loss(fused, torch.maximum(fixed, aligned))
    gradient = F.l1_loss(gradient_l1(fused),
                         torch.maximum(gradient_l1(fixed), gradient_l1(aligned)))
    return ssim_a + p * ssim_b + 0.5 * intensity + gradient, ssim_a, ssim_b


class BSAFusionLoss(nn.Module):
    """``L = L_cls + L_tr + L_smooth + L_fus + L_reg [+ w L_epe + w_a L_aff]``, named (§4).

    Args:
        level_weights: smoothness weights of the K levels, coarse to fine.
        fusion_target: what ``L_fus`` compares the fused image with on the moving side:
            ``"aligned"`` (the paper: B~, the network's own warp of the deformed image, so
            ``L_fus`` also pulls on the flow) or ``"label"`` (ours, optional: the undeformed
            image I_B*, which a correct B~ equals, so ``L_fus`` rewards correct alignment).
        epe_weight: weight of the supervised end-point-error term (ours; 0 = the paper).
        epe_region: where that term counts: ``"all"`` pixels, or the ``"head"`` only
            (:func:`head_mask` of label, as ``bsafusion evaluate`` scores it): the
            background shows no displacement, so its error only adds noise to the gradient.
        affine_weight: weight of :func:`affine_error_loss` (same region; ours, 0 = none).

    Registration-only stage: when ``out.fused`` is None (the network ran without its fusion
    decoder) the total is ``L_reg + L_smooth + w L_epe + w_a L_aff`` and ``cls``, ``tr``, ``fus``,
    ``ssim_a``, ``ssim_b`` are reported as 0.

    ``forward(out, fixed, label, p, flow_gt=None)`` takes the network's output (``flow``,
    ``aligned``, ``fused``, ``flows_a/b``, ``logits_a/b``, ``transfer_logits_a/b``), the fixed image
    (B, 1, H, W) and the undeformed moving image (B, 1, H, W), and returns a dict of scalars:
    ``cls``, ``tr``, ``reg``, ``smooth``, ``fus``, ``total``, plus ``ssim_a`` and ``ssim_b``
    (the two ``1 - SSIM`` terms of ``fus``, for p) and ``epe``, ``epe_affine`` when
    ``flow_gt`` (B, 2, H, W) is given. Terms are computed in float32 even under autocast.
    """

    def __init__(self, level_weights: Sequence[float] = LEVEL_WEIGHTS,
                 fusion_target: str = "aligned", epe_weight: float = 0.0,
                 epe_region: str = "all", affine_weight: float = 0.0) -> None:
        super().__init__()
        if fusion_target not in FUSION_TARGETS:
            raise ValueError(f"fusion_target {fusion_target!r} is not one of {FUSION_TARGETS}")
        if epe_region not in EPE_REGIONS:
            raise ValueError(f"epe_region {epe_region!r} is not one of {EPE_REGIONS}")
        self.epe_region = epe_region
        self.level_weights = tuple(float(w) for w in level_weights)
        self.fusion_target = fusion_target
        self.epe_weight = float(epe_weight)
        self.affine_weight = float(affine_weight)

    def forward(self, out, fixed: Tensor, label: Tensor, p: float | Tensor = 1.0,
                flow_gt: Tensor | None = None) -> dict[str, Tensor]:
        f32 = _float32
        aligned, fixed, label = f32(out.aligned), f32(fixed), f32(label)
        terms = {"reg": registration_loss(aligned, label),
                 "smooth": smoothness_loss([f32(f) for f in out.flows_a],
                                           [f32(f) for f in out.flows_b], f32(out.flow),
                                           self.level_weights)}
        supervised = aligned.new_zeros(())
        if flow_gt is not None:
            head = head_mask(label) if self.epe_region == "head" else None
            terms["epe"] = endpoint_loss(f32(out.flow), f32(flow_gt), head)
            terms["epe_affine"] = affine_error_loss(f32(out.flow), f32(flow_gt), head)
            supervised = self.epe_weight * terms["epe"] + self.affine_weight * terms[
                "epe_affine"]
        if out.fused is None:  # registration-only stage
            zero = aligned.new_zeros(())
            terms.update(cls=zero, tr=zero, fus=zero, ssim_a=zero, ssim_b=zero,
                         total=terms["reg"] + terms["smooth"] + supervised)
            return terms
        fused = f32(out.fused)
        terms["cls"] = classification_loss(f32(out.logits_a), f32(out.logits_b))
        if out.transfer_logits_a is not None:
            terms["tr"] = transfer_loss(f32(out.transfer_logits_a), f32(out.transfer_logits_b))
        else:
            terms["tr"] = aligned.new_zeros(())
        target = aligned if self.fusion_target == "aligned" else label
        terms["fus"], terms["ssim_a"], terms["ssim_b"] = fusion_loss(fused, fixed, target, p)
        terms["total"] = (terms["cls"] + terms["tr"] + terms["smooth"] + terms["fus"]
                          + terms["reg"]) + supervised  # the paper's order, then ours
        return terms


def _float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype != torch.float32 else x
