"""The one result type of registration + fusion, for numpy and torch alike."""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

__all__ = ["ArrayT", "FusionResult"]

ArrayT = TypeVar("ArrayT")  # numpy.ndarray or torch.Tensor


class FusionResult(NamedTuple, Generic[ArrayT]):
    """Registration and fusion of one pair (or batch, or volume), in the fixed image's frame.

    ``FusionResult[np.ndarray]`` from the numpy entry points (:meth:`bsafusion.Fuser.fuse`,
    ``register``, ``fuse_volume``), ``FusionResult[torch.Tensor]`` from the torch ones
    (:meth:`~bsafusion.Fuser.fuse_tensors`, :func:`bsafusion.infer.procedure.align_and_fuse`).
    Layouts follow the input: numpy (H, W) / (H, W, 3) / (B, H, W) / (B, H, W, 3), torch
    (H, W) / (C, H, W) / (B, C, H, W); volumes (X, Y, Z); flows (2, ...) or (B, 2, ...).

    Attributes:
        fused: fused image in [0, 1]; RGB for a colour (PET/SPECT) moving image, the fused
            Y recombined with the aligned Cb/Cr; None for registration only.
        aligned: the moving image warped into the fixed frame, same layout as the moving one.
        flow: float32 px, channel 0 = x (columns), 1 = y (rows); samples the moving image:
            ``aligned = warp(moving, flow)``.
        meta: ``work_size`` (h, w) the network ran at, ``prealign`` per item, ``slices`` and
            ``axis`` for volumes.
        fused_y: colour pairs only: the network's fused Y (grey), before recombination.
        aligned_y: colour pairs only: the aligned Y (what the network registered).
        reverse: the network's reverse field phi_BA (carries A into B's frame), px, same
            layout as ``flow``; None where it is not defined (pre-alignment, volumes).
    """

    fused: ArrayT | None
    aligned: ArrayT
    flow: ArrayT
    meta: dict | None = None
    fused_y: ArrayT | None = None
    aligned_y: ArrayT | None = None
    reverse: ArrayT | None = None

    @property
    def fused_grey(self) -> ArrayT | None:
        """The fused image as grey / Y: ``fused_y`` for a colour pair, else ``fused``."""
        return self.fused_y if self.fused_y is not None else self.fused

    @property
    def aligned_grey(self) -> ArrayT:
        """The aligned image as grey / Y: ``aligned_y`` for a colour pair, else ``aligned``."""
        return self.aligned_y if self.aligned_y is not None else self.aligned
