"""Per-sample, vectorised metrics; never imports the model.

``bsafusion.metrics.registration``: NCC, MSE, SSIM, end-point error, Jacobian / folding.
``bsafusion.metrics.fusion``: fusion-quality metrics (imported on its own, not from here, so
that the training path does not load it).
"""

from bsafusion.metrics import registration
from bsafusion.metrics.registration import *  # noqa: F403  (the names in registration.__all__)

__all__ = list(registration.__all__)
