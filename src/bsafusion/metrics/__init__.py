"""Per-sample, vectorised metrics; never imports the model.

``bsafusion.metrics.registration``: NCC, MSE, SSIM, end-point error, Jacobian / folding.
``bsafusion.metrics.fusion``: fusion-quality metrics (imported on its own, not from here, so
that the training path does not load it).
"""

from bsafusion.metrics.registration import (
    endpoint_error,
    endpoint_error_stats,
    folding_percent,
    inverse_consistency,
    jacobian_determinant,
    landmark_tre,
    mse,
    ncc,
    registration_metrics,
    ssim,
)

__all__ = [
    "endpoint_error",
    "endpoint_error_stats",
    "folding_percent",
    "inverse_consistency",
    "jacobian_determinant",
    "landmark_tre",
    "mse",
    "ncc",
    "registration_metrics",
    "ssim",
]
