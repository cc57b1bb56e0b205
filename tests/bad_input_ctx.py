"""The context of ``tests/test_bad_inputs.py``: a case's folder, good inputs, writers of bad
ones, a full disk, no GPU, little memory."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bsafusion.cli import main
from bsafusion.samples import sample_pairs
from bsafusion.weights import resolve_weights

CT = sample_pairs("ct")
BUNDLED = resolve_weights("ct")[0]  # the bundled CT weights (interim: the manifest says)


# --------------------------------------------------------------------------- the context
class Ctx:
    """A case's folder, good inputs, and helpers that write bad ones."""

    def __init__(self, tmp: Path, monkeypatch, untrained: Path) -> None:
        self.tmp, self.mp, self.untrained = tmp, monkeypatch, untrained
        self.fixed, self.moving = CT[0].fixed, CT[0].moving
        self.out = tmp / "out"
        self.rng = np.random.default_rng(0)

    def png(self, name: str, array: np.ndarray) -> Path:
        Image.fromarray(array).save(self.tmp / name)
        return self.tmp / name

    def tif(self, name: str, array: np.ndarray) -> Path:
        tifffile.imwrite(self.tmp / name, array, photometric="minisblack"
                         if array.ndim == 2 or array.shape[-1] not in (3, 4) else "rgb")
        return self.tmp / name

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return path

    def nifti(self, name: str, array: np.ndarray) -> Path:
        nib = pytest.importorskip("nibabel")
        nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)), self.tmp / name)
        return self.tmp / name

    def folders(self, names=("16010", "2005", "2015"), src=CT) -> tuple[Path, Path]:
        """Batch folders A (MRI) and B (CT) holding the sample pairs under ``names``."""
        a, b = self.tmp / "A", self.tmp / "B"
        a.mkdir(exist_ok=True), b.mkdir(exist_ok=True)
        for name, s in zip(names, src, strict=False):
            (a / f"{name}.png").write_bytes(s.fixed.read_bytes())
            (b / f"{name}.png").write_bytes(s.moving.read_bytes())
        return a, b

    def fuse(self, *args, moving=None, fixed=None, out=None, cmd="fuse") -> list:
        """A single-pair run with the good pair unless told otherwise."""
        return [cmd, fixed or self.fixed, moving or self.moving, "--work-size", "32",
                "-o", self.out if out is None else out, *args]

    def batch(self, a: Path, b: Path, *args) -> list:
        return ["fuse", "--fixed-dir", a, "--moving-dir", b, "--work-size", "32", "--no-panel",
                "-o", self.out, *args]

    def without_bundled(self, name: str) -> None:
        """As if no weights were bundled for ``name`` (the manifest without its entry)."""
        import bsafusion.weights as weights

        entries = {k: v for k, v in weights.available_weights().items() if k != name}
        self.mp.setattr(weights, "_manifest", lambda: entries)

    def disk_full_after(self, n_files: int) -> None:
        """Every image / array writer fails with ENOSPC once ``n_files`` were written,
        leaving a partial file behind as a real full disk does."""
        written = [0]

        def wrap(real):
            def writer(obj, target, *args, **kwargs):
                if written[0] >= n_files:
                    name = getattr(target, "name", target)
                    with open(name, "wb") as fh:
                        fh.write(b"\x89PNG partial")
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(name))
                written[0] += 1
                return real(obj, target, *args, **kwargs)
            return writer

        self.mp.setattr(Image.Image, "save", wrap(Image.Image.save))
        real_save = np.save
        self.mp.setattr(np, "save", lambda fh, arr, *a, **k: wrap(
            lambda _, f, *x, **y: real_save(f, arr, *x, **y))(None, fh, *a, **k))

    def no_gpu(self, count: int = 0) -> None:
        import torch

        self.mp.setattr(torch.cuda, "is_available", lambda: count > 0)
        self.mp.setattr(torch.cuda, "device_count", lambda: count)

    def low_memory(self, gib: float) -> None:
        import bsafusion.infer.fuser as fuser

        self.mp.setattr(fuser, "available_memory", lambda device=None: int(gib * 2**30))


def outputs(*stems: str, panel: bool = False, fused: bool = True) -> list[str]:
    kinds = (["fused"] if fused else []) + ["aligned"] + (["panel"] if panel else [])
    files = [f"{k}/{s}.png" for s in stems for k in kinds] + [f"flow/{s}.npy" for s in stems]
    return sorted(files + [f"inputs/{s}.json" for s in stems])


# --------------------------------------------------------------------------- the table
@dataclass
class Case:
    """``argv(ctx)`` -> exit ``code``; the one error line names ``where`` (a flag, or the
    end of a path) and contains ``problem``; OUT then holds exactly ``files`` (None: OUT
    does not exist)."""

    id: str
    argv: Callable[[Ctx], list]
    code: int = 2
    where: str | None = None
    problem: str = ""
    files: list[str] | None = None
    stdout: str = ""  # expected in the last stdout line
    errors: int = 1  # error lines expected on stderr (a batch prints one per failed pair)
    warn: str = ""  # expected in a warning line
    setup: Callable[[Ctx], None] = field(default=lambda ctx: None)


def with_moving(path_fn, **kw):
    return lambda c: c.fuse(moving=path_fn(c), **kw)


def big_image(c: Ctx) -> Path:
    if not (c.tmp / "big.png").exists():
        c.png("big.png", c.rng.integers(0, 255, (2000, 2000), dtype=np.uint8))
    return c.tmp / "big.png"


def strip_image(c: Ctx, name: str) -> Path:
    return c.png(name, c.rng.integers(0, 255, (16, 4000), dtype=np.uint8))


def full_disk_then_free(c: Ctx) -> None:
    c.disk_full_after(4)
    main([str(a) for a in c.batch(*c.folders())])
    c.mp.undo()


def foreign_safetensors(c: Ctx) -> Path:
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, str(c.tmp / "f.safetensors"))
    return c.tmp / "f.safetensors"


def folders_one_bad(c: Ctx) -> tuple[Path, Path]:
    a, b = c.folders()
    (b / "2005.png").write_bytes(CT[1].moving.read_bytes()[:300])
    return a, b


def folders_two_formats(c: Ctx) -> tuple[Path, Path]:
    a, b = c.folders()
    Image.open(a / "2005.png").save(a / "2005.tif")
    return a, b


def folders_unpartnered(c: Ctx) -> tuple[Path, Path]:
    a, b = c.folders()
    (b / "2015.png").unlink()
    return a, b


def files_in(folder: Path) -> list[str] | None:
    if not folder.exists():
        return None
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
