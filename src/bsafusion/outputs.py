"""Write a :class:`~bsafusion.api.FusionResult` to the standard output layout, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bsafusion.errors import InputError
from bsafusion.io.atomic import atomic_write
from bsafusion.io.image import write_png

__all__ = ["write_result"]


def write_result(out_dir: Path, stem: str, result, *, overwrite: bool = False) -> list[Path]:
    """Write ``fused/<stem>.png``, ``aligned/<stem>.png`` and ``flow/<stem>.npy`` under ``out_dir``.

    Raises:
        InputError: an output exists and ``overwrite`` is False (nothing is written then).
    """
    targets = {
        "fused": out_dir / "fused" / f"{stem}.png",
        "aligned": out_dir / "aligned" / f"{stem}.png",
        "flow": out_dir / "flow" / f"{stem}.npy",
    }
    if not overwrite:
        for path in targets.values():
            if path.exists():
                raise InputError(path, "exists (pass --overwrite to replace it)")
    write_png(targets["fused"], result.fused)
    write_png(targets["aligned"], result.aligned)
    flow = np.ascontiguousarray(result.flow, dtype=np.float32)
    atomic_write(targets["flow"], lambda tmp: np.save(tmp, flow))
    return list(targets.values())
