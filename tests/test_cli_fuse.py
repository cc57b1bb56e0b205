"""`bsafusion fuse` / `register` on real files: subprocess runs and the bad-input table.

The main paths run ``python -m bsafusion`` as a subprocess. The bad-input table (one case per
row) calls the same entry point, ``bsafusion.cli.main``, in-process to keep the suite fast;
each row checks the exit code, that stderr is one line naming the file and the problem,
and that nothing (half-)written is left in the output folder. Weights are those of an
untrained network (no trained weights exist yet); small working sizes keep the runs fast.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from bsafusion import BSAFusion
from bsafusion.cli import main
from bsafusion.errors import InputError
from bsafusion.samples import sample_pairs

from .io.test_image_io import _huge_png_header

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "untrained.safetensors"
    BSAFusion().save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI installs its own stderr handler on the 'bsafusion' logger; undo it."""
    logger = logging.getLogger("bsafusion")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see _one_thread
    return subprocess.run([sys.executable, "-m", "bsafusion", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=env)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _phantom(h, w, seed=0):
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = ((yy - h / 2) ** 2 / (0.35 * h) ** 2 + (xx - w / 2) ** 2 / (0.3 * w) ** 2 < 1) * 0.6
    img = img + 0.2 * np.sin(xx / 7.0 + seed) * (img > 0) + 0.02 * rng.random((h, w))
    return np.clip(img, 0, 1)


def test_demo_writes_the_four_outputs(tmp_path):
    proc = run_cli("fuse", "--demo", "--out", "demo_out", cwd=tmp_path)  # the README command
    assert proc.returncode == 0, proc.stderr
    assert "interim CPU weights" in proc.stderr  # honest about the bundled CT weights
    out = tmp_path / "demo_out"
    assert _files(out) == ["aligned/16010.png", "flow/16010.npy", "fused/16010.png",
                           "inputs/16010.json", "panel/16010.png"]
    flow = np.load(out / "flow" / "16010.npy")
    assert flow.shape == (2, 256, 256) and flow.dtype == np.float32
    assert Image.open(out / "panel" / "16010.png").size[0] >= 4 * 256
    again = run_cli("fuse", "--demo", "--out", "demo_out", cwd=tmp_path)
    assert again.returncode == 2 and "exists (pass --overwrite" in again.stderr
    # a pair without bundled weights: the demo says it runs an untrained network
    pet = run_cli("fuse", "--demo", "--pair", "pet", "--no-panel", "--out", "pet", cwd=tmp_path)
    assert pet.returncode == 0 and "untrained network" in pet.stderr


def test_single_pair_16bit_non_square(tmp_path, weights):
    for name, seed in (("mri", 0), ("ct", 1)):
        Image.fromarray((_phantom(300, 200, seed) * 65535).astype(np.uint16)).save(
            tmp_path / f"{name}.png")
    proc = run_cli("fuse", "mri.png", "ct.png", "--pair", "ct", "--weights", weights,
                   "--work-size", "32", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fused = Image.open(tmp_path / "out" / "fused" / "ct.png")
    assert fused.size == (200, 300) and fused.mode.startswith("I;16")  # 16-bit in, 16-bit out
    assert np.load(tmp_path / "out" / "flow" / "ct.npy").shape == (2, 300, 200)
    assert (tmp_path / "out" / "panel" / "ct.png").is_file()


def test_batch_goes_on_past_two_broken_files(tmp_path, weights):
    a, b = tmp_path / "mri", tmp_path / "pet"
    a.mkdir(), b.mkdir()
    for s in sample_pairs("pet"):
        (a / f"{s.name}.png").write_bytes(s.fixed.read_bytes())
        (b / f"{s.name}.png").write_bytes(s.moving.read_bytes())
    (a / "zz_text.png").write_text("not an image")
    (b / "zz_text.png").write_bytes(sample_pairs("pet")[0].moving.read_bytes())
    (a / "aa_trunc.png").write_bytes(sample_pairs("pet")[0].fixed.read_bytes())
    (b / "aa_trunc.png").write_bytes(sample_pairs("pet")[0].moving.read_bytes()[:300])
    proc = run_cli("fuse", "--pair", "pet", "--fixed-dir", a, "--moving-dir", b, "--weights",
                   weights, "--work-size", "32", "--no-panel", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "3 fused, 2 failed"
    assert "aa_trunc.png: is truncated or corrupt" in proc.stderr
    assert "zz_text.png: is not an image" in proc.stderr
    assert "[5/5]" in proc.stderr  # progress, one line per pair when not on a terminal
    written = _files(tmp_path / "out")
    assert len(written) == 12 and not any("aa_trunc" in f or "zz_text" in f for f in written)
    rgb = np.asarray(Image.open(tmp_path / "out" / "fused" / "25022.png"))
    assert rgb.shape == (256, 256, 3)  # colour for PET


def test_register_with_prealign(tmp_path, weights):
    pytest.importorskip("SimpleITK")
    s = sample_pairs("ct")[0]
    proc = run_cli("register", s.fixed, s.moving, "--weights", weights, "--work-size", "32",
                   "--prealign", "rigid", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _files(tmp_path / "out") == [f"aligned/{s.name}.png", f"flow/{s.name}.npy",
                                        f"inputs/{s.name}.json"]


def test_nifti_volume_pair(tmp_path, weights):
    """A 181x217x181 pair (the MNI grid). Only 6 slices along axis 2 hold anatomy (the rest are
    empty and passed through) and the working size is 32, to keep the test fast."""
    nib = pytest.importorskip("nibabel")
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (90, -126, -72)
    for name, seed in (("t1", 0), ("ct", 1)):
        vol = np.zeros((181, 217, 181), np.float32)
        vol[:, :, 88:94] = (_phantom(181, 217, seed) * 1000)[..., None]
        nib.save(nib.Nifti1Image(vol, affine), tmp_path / f"{name}.nii.gz")
    proc = run_cli("fuse", "t1.nii.gz", "ct.nii.gz", "--weights", weights, "--work-size", "32",
                   "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert _files(out) == ["aligned/ct.nii.gz", "flow/ct.npy", "fused/ct.nii.gz",
                           "inputs/ct.json", "panel/ct.png"]
    fused, aligned = nib.load(out / "fused" / "ct.nii.gz"), nib.load(out / "aligned" / "ct.nii.gz")
    assert fused.shape == aligned.shape == (181, 217, 181)
    np.testing.assert_allclose(fused.affine, affine)
    assert float(aligned.get_fdata().max()) > 100  # the moving image's units, not [0, 1]
    flow = np.load(out / "flow" / "ct.npy")
    assert flow.shape == (2, 181, 217, 181) and not flow[:, :, :, :88].any()


# --------------------------------------------------------------------------- bad input
def _png(path, array):
    Image.fromarray(array).save(path)
    return path


def _tif(path, array):
    tifffile.imwrite(path, array)
    return path


def _case(name, tmp, good_f, good_m, weights):
    """-> (argv, expected text in the error line, expected exit code)."""
    rng = np.random.default_rng(0)
    bad = tmp / "bad.png"
    base = ["fuse", good_f, good_m, "--weights", weights, "--work-size", "32", "-o", tmp / "out"]

    def with_moving(path):
        return ["fuse", good_f, path, "--weights", weights, "--work-size", "32", "-o",
                tmp / "out"]

    if name == "missing file":
        return with_moving(tmp / "nope.png"), "nope.png: no such file"
    if name == "empty file":
        bad.write_bytes(b"")
        return with_moving(bad), "bad.png: is empty"
    if name == "truncated png":
        bad.write_bytes(good_m.read_bytes()[:400])
        return with_moving(bad), "bad.png: is truncated or corrupt"
    if name == "not an image":
        bad.write_text("hello")
        return with_moving(bad), "bad.png: is not an image"
    if name == "1x1 image":
        return with_moving(_png(bad, np.zeros((1, 1), np.uint8))), "too small (1x1"
    if name == "2-channel image":
        la = np.dstack([rng.integers(0, 255, (32, 32), dtype=np.uint8),
                        rng.integers(0, 255, (32, 32), dtype=np.uint8)])
        return with_moving(_png(bad, la)), "has 2 channels"
    if name == "4-channel image":
        return with_moving(_tif(tmp / "c4.tif", rng.random((32, 32, 4), np.float32))), \
            "c4.tif: has 4 channels"
    if name in ("nan in tiff", "inf in tiff"):
        arr = rng.random((32, 32), np.float32)
        arr[3, 4] = np.nan if name.startswith("nan") else np.inf
        return with_moving(_tif(tmp / "x.tif", arr)), "x.tif: contains 1 NaN or infinite"
    if name == "constant image":
        return with_moving(_png(bad, np.full((64, 64), 7, np.uint8))), "bad.png: is constant"
    if name == "huge image":
        _huge_png_header(bad)
        return with_moving(bad), "bad.png: is too large (1600 M pixels"
    if name == "colour MRI":
        rgb = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        return ["fuse", _png(bad, rgb), good_m, "--weights", weights, "-o", tmp / "out"], \
            "bad.png: the MRI must be grey"
    if name == "directory as input":
        return with_moving(tmp), "is a directory"
    if name == "unknown --pair":
        return base + ["--pair", "xray"], "--pair: unknown modality pair 'xray'"
    if name == "output is a file":
        (tmp / "file").write_text("x")
        return base[:-1] + [tmp / "file"], "file: is a file, not an output folder"
    if name == "output under a file":
        (tmp / "file").write_text("x")
        return base[:-1] + [tmp / "file" / "out"], "cannot write the output folder"
    if name == "corrupt weights":
        (tmp / "w.safetensors").write_bytes(rng.bytes(1000))
        return [*base[:3], "--weights", tmp / "w.safetensors", *base[5:]], \
            "w.safetensors: not a readable safetensors file"
    if name == "weights fail sha256":
        (tmp / "w.safetensors").write_bytes(weights.read_bytes())
        (tmp / "w.safetensors.sha256").write_text("0" * 64 + "  w.safetensors\n")
        return [*base[:3], "--weights", tmp / "w.safetensors", *base[5:]], "sha256 mismatch"
    if name == "missing weights":
        return [*base[:3], "--weights", tmp / "none.safetensors", *base[5:]], \
            "none.safetensors: no such file"
    if name == "no bundled weights":
        return [*base[:3], *base[5:], "--pair", "pet"], "pet: no trained weights are bundled"
    if name == "truncated nifti":
        nib = pytest.importorskip("nibabel")
        nib.save(nib.Nifti1Image(np.ones((20, 20, 5), np.float32), np.eye(4)), tmp / "v.nii.gz")
        (tmp / "v.nii.gz").write_bytes((tmp / "v.nii.gz").read_bytes()[:100])
        return with_moving(tmp / "v.nii.gz"), "v.nii.gz: is not a readable NIfTI image"
    if name == "only one image":
        return ["fuse", good_f, "--weights", weights, "-o", tmp / "out"], \
            "fuse: give both FIXED and MOVING"
    if name == "batch without --moving-dir":
        return ["register", "--fixed-dir", tmp, "-o", tmp / "out"], "--moving-dir: missing"
    if name == "not dicom":
        pytest.importorskip("pydicom")
        (tmp / "x.dcm").write_bytes(b"garbage" * 50)
        return with_moving(tmp / "x.dcm"), "x.dcm: is not a readable DICOM image"
    raise AssertionError(name)


BAD_CASES = [
    "missing file", "empty file", "truncated png", "not an image", "1x1 image",
    "2-channel image", "4-channel image", "nan in tiff", "inf in tiff", "constant image",
    "huge image", "colour MRI", "directory as input", "unknown --pair", "output is a file",
    "output under a file", "corrupt weights", "weights fail sha256", "missing weights",
    "no bundled weights", "truncated nifti", "not dicom", "only one image",
    "batch without --moving-dir",
]


@pytest.mark.parametrize("name", BAD_CASES)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, weights, capsys, name):
    s = sample_pairs("ct")[0]
    argv, expected = _case(name, tmp_path, s.fixed, s.moving, weights)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("bsafusion: error: "), err
    assert expected in err[0], err
    out = tmp_path / "out"
    assert not out.exists() or _files(out) == []
    assert not list(tmp_path.rglob("*.partial*"))


def test_unknown_pair_as_a_subprocess(tmp_path):
    proc = run_cli("fuse", "a.png", "b.png", "--pair", "xray", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("bsafusion: error: --pair: unknown modality pair 'xray' "
                                   "(choose from ct, pet, spect)")


def test_size_mismatch_and_opaque_alpha_warn_but_succeed(tmp_path, weights, capsys):
    s = sample_pairs("ct")[0]
    ct = np.asarray(Image.open(s.moving).convert("L").resize((200, 230)))
    rgba = np.dstack([ct, ct, ct, np.full_like(ct, 255)])
    _png(tmp_path / "m.png", rgba)
    code = main([str(a) for a in ("fuse", s.fixed, tmp_path / "m.png", "--weights", weights,
                                  "--work-size", "32", "-o", tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "dropped its fully opaque alpha" in err and "resampled to the fixed grid" in err
    assert Image.open(tmp_path / "out" / "aligned" / "m.png").size == (256, 256)


def test_existing_outputs_are_kept_without_overwrite(tmp_path, weights, capsys):
    s = sample_pairs("ct")[0]
    argv = [str(a) for a in ("fuse", s.fixed, s.moving, "--weights", weights, "--work-size",
                             "32", "--no-panel", "-o", tmp_path)]
    assert main(argv) == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.png")}
    assert main(argv) == 2
    assert "exists (pass --overwrite" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.png")} == before
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize("command", [[], ["fuse"], ["register"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: bsafusion" in capsys.readouterr().out


def test_float_tiff_in_float_tiff_out(tmp_path, weights):
    """--format tif keeps 32-bit float inputs as float32 TIFFs; aligned in the moving's units."""
    for name, seed, scale in (("mri", 0, 1.0), ("ct", 1, 3000.0)):
        tifffile.imwrite(tmp_path / f"{name}.tif", (_phantom(64, 80, seed) * scale - 1000 * (
            scale > 1)).astype(np.float32))
    code = main([str(a) for a in ("register", tmp_path / "mri.tif", tmp_path / "ct.tif",
                                  "--weights", weights, "--work-size", "32", "--format", "tif",
                                  "-o", tmp_path / "out")])
    assert code == 0
    aligned = tifffile.imread(tmp_path / "out" / "aligned" / "ct.tif")
    assert aligned.dtype == np.float32 and aligned.shape == (64, 80)
    assert aligned.min() < -900 and aligned.max() > 1000


@pytest.mark.parametrize("flags, expected", [([], (False, True)),
                                             (["--amp", "--no-cuda-graphs"], (True, False))])
def test_gpu_flags_reach_the_fuser(monkeypatch, weights, flags, expected):
    from bsafusion.cli import build_parser
    from bsafusion.cli.fuse import load_fuser
    from bsafusion.infer import Fuser

    seen = {}
    monkeypatch.setattr(Fuser, "from_pretrained", classmethod(
        lambda cls, name, device=None, **kwargs: seen.update(kwargs)))
    args = build_parser().parse_args(["fuse", "a.png", "b.png", "-o", "out", "--weights",
                                      str(weights), *flags])
    load_fuser(args, "ct")
    assert (seen["amp"], seen["cuda_graphs"]) == expected


def test_library_errors_name_arguments_and_the_cli_their_flags(tmp_path, weights, capsys):
    """The library says ``work_size`` / ``fmt``; the CLI says ``--work-size`` / ``--format``."""
    from bsafusion.cli import build_parser, flag_for
    from bsafusion.infer import Fuser

    with pytest.raises(InputError) as info:
        Fuser.from_pretrained(weights, work_size=30)
    assert info.value.where == "work_size"
    fuse = build_parser()._subparsers._group_actions[0].choices["fuse"]
    assert flag_for("work_size", fuse) == "--work-size" and flag_for("fmt", fuse) == "--format"
    assert flag_for("fixed", fuse) == "fixed" and flag_for("elsewhere", fuse) == "elsewhere"
    s = sample_pairs("ct")[0]
    assert main(["fuse", str(s.fixed), str(s.moving), "--weights", str(weights), "--work-size",
                 "30", "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("bsafusion: error: --work-size: must be")
    assert main(["fuse", str(s.fixed), str(s.moving), "--weights", str(weights), "--format",
                 "nii", "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("bsafusion: error: --format: nii output needs")
