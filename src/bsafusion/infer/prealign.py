"""Global pre-alignment by mutual information (SimpleITK, optional extra ``prealign``).

The network corrects small non-rigid offsets only; a rotation of tens of degrees or a shift of
tens of pixels is outside what it learned. :func:`estimate_prealign` first finds a rigid
(rotation + translation) or affine transform by Mattes mutual information, multi-resolution;
:func:`bsafusion.infer.procedure.align_and_fuse` resamples the moving image with it, runs the
network, and composes both into the one returned flow.

Convention: the transform maps a pixel ``p = (x, y)`` of the fixed grid to the moving image,
``T(p) = A p + t`` (pixel units, x = column), as SimpleITK's registration transforms do when
both images have origin 0 and spacing 1. No torch here.
"""

from __future__ import annotations

import logging

import numpy as np

from bsafusion.errors import InputError

__all__ = ["PREALIGN_KINDS", "estimate_prealign", "require_simpleitk"]

log = logging.getLogger(__name__)

PREALIGN_KINDS = ("rigid", "affine")


def require_simpleitk() -> None:
    """Raise :class:`InputError` (naming ``prealign``, with the extra to install) now rather
    than after the network has loaded, if SimpleITK is missing."""
    _simpleitk()


def _simpleitk():
    try:
        import SimpleITK
    except ImportError:
        raise InputError("prealign", "needs SimpleITK: pip install 'bsafusion[prealign]'"
                         ) from None
    return SimpleITK


def _register(sitk, fixed, moving, initial, *, iterations: int, rate: float = 2.0,
              shrink: tuple[int, ...] = (4, 2, 1), mask=None):
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    if mask is not None:
        reg.SetMetricFixedMask(mask)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.3, 1234)  # fixed seed: deterministic
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=rate, minStep=1e-4, numberOfIterations=iterations,
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel([s / 2.0 if s > 1 else 0.0 for s in shrink])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    transform = reg.Execute(fixed, moving)
    final = _metric(sitk, fixed, moving, transform, mask)
    log.debug("prealign: %s, metric %.4f after %d iterations (%s)", initial.GetName(),
              final, reg.GetOptimizerIteration(), reg.GetOptimizerStopConditionDescription())
    return transform, final


def _metric(sitk, fixed, moving, transform, mask=None) -> float:
    """Mattes MI (negated: lower is better) of ``transform`` on the full grid (or ``mask``)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    if mask is not None:
        reg.SetMetricFixedMask(mask)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(transform)
    return float(reg.MetricEvaluate(fixed, moving))


def _coarse_search(sitk, fixed, moving, initial):
    """Exhaustive search of the rigid parameters on a 4x-shrunk grid: rotation +-45 deg in
    5 deg steps, translation +-16 px in 4 px steps around the moments initialisation, so
    gradient descent starts in the right basin (MI is far from convex in the angle)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsExhaustive(numberOfSteps=[9, 4, 4], stepLength=1.0)
    reg.SetOptimizerScales([np.pi / 36.0, 4.0, 4.0])
    reg.SetShrinkFactorsPerLevel([4])
    reg.SetSmoothingSigmasPerLevel([2.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    best = reg.Execute(fixed, moving)
    out = sitk.Euler2DTransform(initial)
    out.SetParameters(best.GetParameters())
    return out


def _as_matrix(transform) -> tuple[np.ndarray, np.ndarray]:
    """(A, t) of any 2-D affine-family SimpleITK transform, by probing three points."""
    origin = np.asarray(transform.TransformPoint((0.0, 0.0)))
    ex = np.asarray(transform.TransformPoint((1.0, 0.0))) - origin
    ey = np.asarray(transform.TransformPoint((0.0, 1.0))) - origin
    return np.stack((ex, ey), axis=1), origin


def estimate_prealign(fixed: np.ndarray, moving: np.ndarray, kind: str = "rigid", *,
                      iterations: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Estimate the global transform that carries ``moving`` onto ``fixed``.

    Args:
        fixed: (H, W) grey in [0, 1] (the MRI).
        moving: (H, W) grey in [0, 1] (CT, or the Y of PET/SPECT) on the same grid.
        kind: ``"rigid"`` (rotation + translation; an exhaustive coarse search over +-45 deg
            and +-16 px, then gradient descent) or ``"affine"`` (rigid first, then a full
            affine refinement on the fixed image's foreground, kept only if it improves MI
            there). On CT/MRI slices rigid is the reliable one; affine recovers scale
            differences only partly.
        iterations: optimiser iterations per resolution level.
    Returns:
        (A (2, 2), t (2,)) float64 with ``T(p) = A p + t`` mapping a fixed pixel (x, y) to
        the moving pixel it should be sampled from.
    """
    if kind not in PREALIGN_KINDS:
        raise InputError("kind", f"unknown kind {kind!r} (choose from rigid, affine)")
    sitk = _simpleitk()
    f = sitk.GetImageFromArray(np.ascontiguousarray(fixed, dtype=np.float32))
    m = sitk.GetImageFromArray(np.ascontiguousarray(moving, dtype=np.float32))
    initial = sitk.CenteredTransformInitializer(
        f, m, sitk.Euler2DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
    initial = _coarse_search(sitk, f, m, initial)
    rigid, metric = _register(sitk, f, m, initial, iterations=iterations)
    matrix, offset = _as_matrix(rigid)
    if kind == "affine":
        affine = sitk.AffineTransform(2)
        center = np.array([(fixed.shape[1] - 1) / 2.0, (fixed.shape[0] - 1) / 2.0])
        affine.SetCenter(center.tolist())
        affine.SetMatrix(matrix.ravel().tolist())
        affine.SetTranslation((offset + matrix @ center - center).tolist())
        # MI over the whole square rewards shrinking the moving image; sample it only on
        # the (dilated) foreground of the fixed image for the scale/shear refinement.
        mask = sitk.BinaryDilate(sitk.GetImageFromArray((fixed > 0.03).astype(np.uint8)), [5, 5])
        refined, refined_metric = _register(sitk, f, m, affine, iterations=iterations,
                                            rate=0.5, shrink=(2, 1), mask=mask)
        metric = _metric(sitk, f, m, rigid, mask)
        if refined_metric <= metric:  # MI metrics are negated: lower is better
            matrix, offset = _as_matrix(refined)
        else:
            log.info("prealign: the affine refinement did not improve MI; keeping the rigid one")
    angle = np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))
    log.info("prealign (%s): rotation %.1f deg, translation (%.1f, %.1f) px at the centre",
             kind, angle, *(matrix @ np.array([fixed.shape[1], fixed.shape[0]]) / 2 + offset
                            - np.array([fixed.shape[1], fixed.shape[0]]) / 2))
    return matrix, offset
