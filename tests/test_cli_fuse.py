"""`bsafusion fuse` / `register` on real files: subprocess runs and edge cases.

The main paths run ``python -m bsafusion`` as a subprocess; the rest call the same entry
point, ``bsafusion.cli.main``, in-process. The table of bad inputs is
``tests/test_bad_inputs.py``. Weights are those of an untrained network; small working
sizes keep the runs fast.
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

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "untrained.safetensors"
    BSAFusion().save_pretrained(path)
    return path


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
    assert "interim weights" in proc.stderr  # honest about the bundled CT weights
    out = tmp_path / "demo_out"
    assert _files(out) == ["aligned/16010.png", "flow/16010.npy", "fused/16010.png",
                           "inputs/16010.json", "panel/16010.png"]
    flow = np.load(out / "flow" / "16010.npy")
    assert flow.shape == (2, 256, 256) and flow.dtype == np.float32
    assert Image.open(out / "panel" / "16010.png").size[0] >= 4 * 256
    again = run_cli("fuse", "--demo", "--out", "demo_out", cwd=tmp_path)  # the README, twice
    assert again.returncode == 0 and "holds the demo's outputs" in again.stdout
    # PET: the bundled interim PET weights, said so, colour out
    pet = run_cli("fuse", "--demo", "--pair", "pet", "--no-panel", "--out", "pet", cwd=tmp_path)
    assert pet.returncode == 0 and "bundled pet weights are interim" in pet.stderr, pet.stderr
    (fused,) = (tmp_path / "pet" / "fused").glob("*.png")
    assert np.asarray(Image.open(fused)).shape == (256, 256, 3)


def test_demo_of_a_pair_without_bundled_weights_says_it_runs_an_untrained_network(
        tmp_path, monkeypatch, capsys):
    import bsafusion.weights as weights

    entries = {k: v for k, v in weights.available_weights().items() if k != "pet"}
    monkeypatch.setattr(weights, "_manifest", lambda: entries)
    assert main(["fuse", "--demo", "--pair", "pet", "--work-size", "32", "--no-panel", "-o",
                 str(tmp_path / "pet")]) == 0
    assert "untrained network" in capsys.readouterr().err


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


# --------------------------------------------------------------------------- edges
# (the table of bad inputs lives in tests/test_bad_inputs.py)
def _png(path, array):
    Image.fromarray(array).save(path)
    return path


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


def test_in_process_main_leaves_the_package_logger_as_it_was(tmp_path, weights, capsys,
                                                            caplog):
    logger = logging.getLogger("bsafusion")
    before = logger.handlers[:], logger.level, logger.propagate
    s = sample_pairs("ct")[0]
    ct = np.asarray(Image.open(s.moving).convert("L").resize((200, 230)))
    _png(tmp_path / "m.png", ct)
    assert main([str(a) for a in ("fuse", s.fixed, tmp_path / "m.png", "--weights", weights,
                                  "--work-size", "32", "--no-panel", "-o", tmp_path)]) == 0
    assert "resampled to the fixed grid" in capsys.readouterr().err  # the CLI's handler
    assert (logger.handlers[:], logger.level, logger.propagate) == before
    with caplog.at_level(logging.INFO, logger="bsafusion.infer"):
        logging.getLogger("bsafusion.infer.fuser").info("after main")
    assert "after main" in caplog.text  # propagates to the root again


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


def test_every_command_shares_the_conventions():
    """Help and its default for every option, -v, -o/--out, --pair and --device alike."""
    import argparse

    from bsafusion.cli import build_parser
    from bsafusion.cli.common import pair_name

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        formatter = p._get_formatter()
        for action in p._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.dest)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in formatter._get_help_string(action), (name, action.dest)
        opts = p._option_string_actions
        assert "-v" in opts and (name == "make-split" or {"-o", "--out"} <= set(opts)), name
        if "--pair" in opts:
            assert opts["--pair"].type is pair_name, name
        if "--device" in opts:
            assert opts["--device"].default == ("cpu" if name == "make-testset" else "auto")
    assert {"--device"} <= set(sub.choices["evaluate"]._option_string_actions)
    args = parser.parse_args(["evaluate", "--methods", "identity-avg,identity-max", "bsafusion",
                              "-o", "x", "--pair", "CT-MRI"])
    assert args.methods == [["identity-avg", "identity-max"], ["bsafusion"]] and args.pair == "ct"


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
