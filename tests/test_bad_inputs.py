"""The error contract, one table row per bad (or edge) input (README, *Errors*).

Each row runs ``bsafusion.cli.main`` in-process (fast: the bundled CT weights at
``--work-size 32``) and checks the exit code, that stderr holds exactly one line
``bsafusion: error: <file or flag>: <problem>`` naming the expected file or flag, that no
line is a traceback, and the output folder's exact contents: nothing (not even the folder)
for a refused run, the complete pairs of a batch. A full disk is simulated by making the
writers raise ``ENOSPC`` after N files. A few rows at the end run the real entry point as a
subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bsafusion.cli import main

from .bad_input_ctx import (
    BUNDLED,
    Case,
    Ctx,
    big_image,
    files_in,
    folders_one_bad,
    folders_two_formats,
    folders_unpartnered,
    foreign_safetensors,
    full_disk_then_free,
    outputs,
    strip_image,
    with_moving,
)
from .io.test_image_io import _huge_png_header

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [
    # ---- input files (failure 2: 4-D NIfTI; messages: 1x1, directories, links)
    Case("missing file", with_moving(lambda c: c.tmp / "nope.png"), where="nope.png",
         problem="no such file"),
    Case("missing fixed file", lambda c: c.fuse(fixed=c.tmp / "mri.png"), where="mri.png",
         problem="no such file"),
    Case("empty file", with_moving(lambda c: c.file("e.png", b"")), where="e.png",
         problem="is empty (0 bytes)"),
    Case("truncated png", with_moving(lambda c: c.file("t.png", c.moving.read_bytes()[:400])),
         where="t.png", problem="is truncated or corrupt"),
    Case("text as png", with_moving(lambda c: c.file("x.png", "hello")), where="x.png",
         problem="is not an image"),
    Case("text with a .txt name", with_moving(lambda c: c.file("x.txt", "hello")), where="x.txt",
         problem="is not an image"),
    Case("1x1 png", with_moving(lambda c: c.png("one.png", np.zeros((1, 1), np.uint8))),
         where="one.png", problem="is too small (1x1 pixels"),
    Case("1x1 jpeg", with_moving(lambda c: c.png("one.jpg", np.zeros((1, 1), np.uint8))),
         where="one.jpg", problem="is too small (1x1 pixels"),
    Case("1x1 bmp", with_moving(lambda c: c.png("one.bmp", np.zeros((1, 1), np.uint8))),
         where="one.bmp", problem="is too small (1x1 pixels"),
    Case("1x1 16-bit png", with_moving(lambda c: c.png("o16.png", np.zeros((1, 1), np.uint16))),
         where="o16.png", problem="is too small (1x1 pixels"),
    Case("1x1 float tiff", with_moving(lambda c: c.tif("one.tif", np.zeros((1, 1), np.float32))),
         where="one.tif", problem="is too small (1x1 pixels"),
    Case("8x300 image", with_moving(lambda c: c.png("thin.png", np.full((8, 300), 9, np.uint8))),
         where="thin.png", problem="is too small (300x8 pixels"),
    Case("2-channel image", with_moving(lambda c: c.png("la.png", c.rng.integers(
        0, 255, (32, 32, 2), dtype=np.uint8))), where="la.png", problem="has 2 channels"),
    Case("4-channel tiff", with_moving(lambda c: c.tif("c4.tif", c.rng.random(
        (32, 32, 4), np.float32))), where="c4.tif", problem="has 4 channels"),
    Case("nan in tiff", with_moving(lambda c: c.tif("n.tif", np.where(
        np.eye(32) > 0, np.nan, 0.5).astype(np.float32))), where="n.tif",
         problem="contains 32 NaN or infinite"),
    Case("inf in tiff", with_moving(lambda c: c.tif("i.tif", np.where(
        np.eye(32) > 0, np.inf, 0.5).astype(np.float32))), where="i.tif",
         problem="NaN or infinite"),
    Case("constant image", with_moving(lambda c: c.png("k.png", np.full((64, 64), 7, np.uint8))),
         where="k.png", problem="is constant"),
    Case("huge png", with_moving(lambda c: _huge_png_header(c.tmp / "h.png") or c.tmp / "h.png"),
         where="h.png", problem="is too large"),
    Case("colour MRI", lambda c: c.fuse(fixed=c.png("rgb.png", c.rng.integers(
        0, 255, (64, 64, 3), dtype=np.uint8))), where="rgb.png",
         problem="the MRI must be grey"),
    Case("3-D tiff stack", with_moving(lambda c: c.tif("st.tif", c.rng.random(
        (5, 32, 32), np.float32))), where="st.tif", problem="3-D stack"),
    Case("directory as input", with_moving(lambda c: c.tmp), where=None,
         problem="is a directory, not an image file"),
    Case("symlink loop", with_moving(lambda c: (os.symlink("l2.png", c.tmp / "l1.png"), os.symlink(
        "l1.png", c.tmp / "l2.png"), c.tmp / "l1.png")[-1]), where="l1.png",
         problem="is a symbolic link loop"),
    Case("broken symlink", with_moving(lambda c: (os.symlink("gone.png", c.tmp / "b.png"),
                                              c.tmp / "b.png")[-1]),
         where="b.png", problem="is a broken symbolic link"),
    Case("not dicom", with_moving(lambda c: c.file("x.dcm", b"garbage" * 50)), where="x.dcm",
         problem="is not a readable DICOM image"),
    Case("truncated nifti", with_moving(lambda c: c.file("v.nii.gz", c.nifti(
        "w.nii.gz", np.ones((20, 20, 5))).read_bytes()[:100])), where="v.nii.gz",
         problem="is not a readable NIfTI image"),
    Case("4-D nifti", lambda c: c.fuse(fixed=c.nifti("f4.nii.gz", c.rng.random((20, 20, 5, 3))),
                                       moving=c.nifti("m4.nii.gz", c.rng.random((20, 20, 5, 3)))),
         where="f4.nii.gz", problem="is a 4-D image (20x20x5x3)"),
    Case("volume with a 2-D image", lambda c: c.fuse(fixed=c.nifti(
        "vol.nii.gz", c.rng.random((20, 20, 5))), moving=c.nifti("sl.nii.gz", c.rng.random(
            (20, 20)))), where="sl.nii.gz", problem="one input is a 3-D volume"),
    Case("volume slices too small along --axis", lambda c: c.fuse("--axis", "1", fixed=c.nifti(
        "v5.nii.gz", c.rng.random((20, 20, 5))), moving=c.nifti("m5.nii.gz", c.rng.random(
            (20, 20, 5)))), where="v5.nii.gz", problem="slices along axis 1 are 5x20, too small"),
    # ---- arguments (failure 3: --device; 4: -o ''; 9: --work-size and memory)
    Case("unknown --pair", lambda c: c.fuse("--pair", "xray"), where="--pair",
         problem="unknown modality pair 'xray' (choose from ct, pet, spect)"),
    Case("--work-size 17", lambda c: c.fuse("--work-size", "17"), where="--work-size",
         problem="must be a positive multiple of 16, got 17"),
    Case("--work-size abc", lambda c: c.fuse("--work-size", "abc"), where="--work-size",
         problem="invalid size 'abc'"),
    Case("--work-size 4096, 16 GiB free", lambda c: c.fuse("--work-size", "4096"),
         setup=lambda c: c.low_memory(16), where="--work-size",
         problem="a 4096x4096 working size needs about 36.0 GiB"),
    Case("--work-size 0 on a large image, 2 GiB free", lambda c: c.fuse(
        "--work-size", "0", fixed=big_image(c), moving=big_image(c)),
         setup=lambda c: c.low_memory(2), where="--work-size", problem="working size needs"),
    Case("--device foo", lambda c: c.fuse("--device", "foo"), where="--device",
         problem="unknown device 'foo'"),
    Case("--device cuda without a GPU", lambda c: c.fuse("--device", "cuda"),
         setup=lambda c: c.no_gpu(), where="--device", problem="no CUDA GPU is available"),
    Case("--device cuda:3 with one GPU", lambda c: c.fuse("--device", "cuda:3"),
         setup=lambda c: c.no_gpu(1), where="--device", problem="this machine has 1 CUDA GPU"),
    Case("--device mps", lambda c: c.fuse("--device", "mps"), where="--device",
         problem="mps: Apple's Metal is not available"),
    Case("-o ''", lambda c: c.fuse(out=""), where="--out", problem="is empty",
         setup=lambda c: c.mp.chdir(c.tmp)),  # nothing written here either
    Case("-o a file", lambda c: c.fuse(out=c.file("f", "x")), where="f",
         problem="is a file, not an output folder"),
    Case("-o under a file", lambda c: c.fuse(out=c.file("f", "x") / "out"), where="out",
         problem="cannot write the output folder"),
    Case("missing -o", lambda c: c.fuse()[:-2], where="--out", problem="is required"),
    Case("--format nii for png inputs", lambda c: c.fuse("--format", "nii"), where="--format",
         problem="nii output needs NIfTI inputs"),
    Case("--format bmp", lambda c: c.fuse("--format", "bmp"), where="--format",
         problem="invalid choice: 'bmp'"),
    Case("--axis 5", lambda c: c.fuse("--axis", "5"), where="--axis", problem="invalid choice"),
    Case("--prealign shear", lambda c: c.fuse("--prealign", "shear"), where="--prealign",
         problem="invalid choice"),
    Case("--prealign without SimpleITK", lambda c: c.fuse("--prealign", "rigid"),
         setup=lambda c: c.mp.setitem(sys.modules, "SimpleITK", None), where="--prealign",
         problem="needs SimpleITK: pip install 'bsafusion[prealign]'"),
    Case("unknown flag", lambda c: c.fuse("--bogus"), where="--bogus",
         problem="unrecognized argument"),
    Case("unknown command", lambda c: ["fusion", c.fixed], where="COMMAND",
         problem="invalid choice: 'fusion'"),
    Case("only one image", lambda c: c.fuse()[:2] + c.fuse()[3:], where="fuse",
         problem="give both FIXED and MOVING"),
    Case("no input at all", lambda c: ["fuse", "-o", c.out], where="fuse",
         problem="give FIXED MOVING, or --fixed-dir"),
    Case("a pair and --demo", lambda c: c.fuse("--demo"), where="fuse", problem="one of them"),
    Case("--fixed-dir without --moving-dir", lambda c: ["register", "--fixed-dir", c.tmp,
                                                         "-o", c.out],
         where="--moving-dir", problem="missing"),
    Case("--fixed-dir missing", lambda c: c.batch(c.tmp / "none", c.tmp), where="none",
         problem="no such folder"),
    Case("batch folders without images", lambda c: c.batch(
        c.file("A/readme.txt", "x").parent, c.file("B/notes.txt", "x").parent),
         where="A", problem="holds no image files"),
    # ---- weights (failure 1: another pair's weights; messages: a text .pt)
    Case("another pair's weights file", lambda c: c.fuse("--pair", "pet", "--weights",
                                                         BUNDLED),
         where=BUNDLED.name, problem="holds CT-MRI weights, not PET-MRI ones"),
    Case("--weights ct --pair pet", lambda c: c.fuse("--pair", "PET", "--weights", "ct"),
         where="--weights", problem="holds CT-MRI weights, not PET-MRI ones"),
    Case("another pair's weights, renamed", lambda c: c.fuse("--pair", "spect-mri", "--weights",
                                                             c.file("spect_final.safetensors",
                                                                    BUNDLED.read_bytes())),
         where="spect_final.safetensors", problem="holds CT-MRI weights, not SPECT-MRI"),
    Case("corrupt weights", lambda c: c.fuse("--weights", c.file(
        "w.safetensors", c.rng.bytes(1000))), where="w.safetensors",
         problem="not a readable safetensors file"),
    Case("weights fail sha256", lambda c: c.fuse("--weights", (c.file(
        "w.safetensors.sha256", "0" * 64 + "  w.safetensors\n"), c.file(
        "w.safetensors", c.untrained.read_bytes()))[1]), where="w.safetensors",
         problem="sha256 mismatch"),
    Case("foreign safetensors", lambda c: c.fuse("--weights", foreign_safetensors(c)),
         where="f.safetensors", problem="not a bsafusion weights file"),
    Case("--weights ''", lambda c: c.fuse("--weights", ""), where="--weights",
         problem="is empty"),
    Case("missing weights", lambda c: c.fuse("--weights", c.tmp / "none.safetensors"),
         where="none.safetensors", problem="no such file"),
    Case("weights is a directory", lambda c: c.fuse("--weights", c.tmp), where=None,
         problem="is a directory, not a weights file"),
    Case("text file as .pt weights", lambda c: c.fuse("--weights", c.file("w.pt", "hello\n")),
         where="w.pt", problem="not a PyTorch file"),
    Case("no bundled weights", lambda c: c.fuse("--pair", "pet"), where="pet",
         setup=lambda c: c.without_bundled("pet"), problem="no trained weights are bundled"),
    # ---- outputs (failures 5 and 6: a full disk; --skip-existing; existing outputs)
    Case("outputs exist", lambda c: c.fuse("--no-panel"), where="16010.png",
         problem="exists (pass --overwrite", files=outputs("16010"),
         setup=lambda c: main([str(a) for a in c.fuse("--no-panel")])),
    Case("disk full at the 3rd file", lambda c: c.fuse(), setup=lambda c: c.disk_full_after(2),
         where="flow/16010.npy", problem="cannot be written: no space left on device"),
    Case("disk full at the 1st file", lambda c: c.fuse(), setup=lambda c: c.disk_full_after(0),
         where="fused/16010.png", problem="no space left on device"),
    Case("disk full in the panel", lambda c: c.fuse(), setup=lambda c: c.disk_full_after(3),
         where="panel/16010.png", problem="no space left on device"),
    Case("disk full mid-batch", lambda c: c.batch(*c.folders()), code=1,
         setup=lambda c: c.disk_full_after(4), where="aligned/2005.png",
         problem="no space left on device", files=outputs("16010"),
         stdout="1 fused, 1 failed, 1 not tried"),
    Case("batch: a bad pair among good ones", lambda c: c.batch(*folders_one_bad(c)), code=1,
         where="2005.png", problem="is truncated or corrupt", files=outputs("16010", "2015"),
         stdout="2 fused, 1 failed"),
    Case("batch: same stem in two formats", lambda c: c.batch(*folders_two_formats(c)), code=1,
         errors=2, where="2005.png", problem="has the same stem '2005' as another file",
         files=outputs("16010", "2015"), stdout="2 fused, 2 failed"),
    Case("batch: a file without a partner", lambda c: c.batch(*folders_unpartnered(c)), code=1,
         where="2015.png", problem="no file with stem '2015'", files=outputs("16010", "2005"),
         stdout="2 fused, 1 failed"),
    # ---- edges that succeed: warnings, resuming, the README's demo twice, W x H strips
    Case("interim weights, renamed", lambda c: c.fuse("--no-panel", "--weights", c.file(
        "final.safetensors", BUNDLED.read_bytes())), code=0, errors=0, warn="interim",
         files=outputs("16010")),
    Case("untrained weights", lambda c: c.fuse("--no-panel", "--weights", c.untrained),
         code=0, errors=0, warn="untrained (randomly initialised)", files=outputs("16010")),
    Case("--pair CT-MRI, register --no-panel", lambda c: c.fuse(
        "--no-panel", "--pair", "CT-MRI", cmd="register"), code=0, errors=0,
         files=outputs("16010", fused=False)),
    Case("--skip-existing, one pair", lambda c: c.fuse("--no-panel", "--skip-existing"),
         setup=lambda c: main([str(a) for a in c.fuse("--no-panel")]), code=0, errors=0,
         stdout="skipped:", files=outputs("16010")),
    Case("--skip-existing after a full disk", lambda c: c.batch(*c.folders(),
                                                                "--skip-existing"),
         setup=full_disk_then_free, code=0, errors=0,
         stdout="2 fused, 0 failed, 1 skipped", files=outputs("16010", "2005", "2015")),
    Case("the demo twice", lambda c: ["fuse", "--demo", "--work-size", "32", "-o", c.out],
         setup=lambda c: main(["fuse", "--demo", "--work-size", "32", "-o", str(c.out)]),
         code=0, errors=0, stdout="holds the demo's outputs", files=outputs("16010", panel=True)),
    Case("a 4000x16 strip", lambda c: c.fuse("--no-panel", fixed=strip_image(c, "f.png"),
                                             moving=strip_image(c, "s.png")),
         code=0, errors=0, files=outputs("s")),
    # ---- other commands (failure 8)
    Case("make-split on a missing folder", lambda c: ["make-split", c.tmp / "nowhere"],
         where="nowhere", problem="no such folder"),
    Case("make-split on a file", lambda c: ["make-split", c.file("f", "x")], where="f",
         problem="is not a folder"),
    Case("make-split bad fractions", lambda c: ["make-split", c.tmp, "--val", "0.9", "--test",
                                                "0.5"],
         where="--val/--test", problem="fractions must be in [0, 1)",
         setup=lambda c: (c.file("MRI/a.png", b"x"), c.file("CT/a.png", b"x"))),
    Case("evaluate -o a file", lambda c: ["evaluate", "-o", c.file("report", "x")],
         where="report", problem="is a file, not an output folder"),
    Case("evaluate --image-size 17", lambda c: ["evaluate", "--image-size", "17", "-o", c.out],
         where="--image-size", problem="must be a positive multiple of 16"),
    Case("evaluate --methods a,b with a typo", lambda c: [
        "evaluate", "--methods", "identity-avg,identity-mix", "-o", c.out],
         where="--methods", problem="unknown 'identity-mix'"),
    Case("evaluate --limit 0", lambda c: ["evaluate", "--limit", "0", "-o", c.out],
         where="--limit", problem="must be >= 1, got 0"),
    Case("evaluate --testset a file", lambda c: ["evaluate", "--testset", c.file("ts", "x"),
                                                 "--methods", "identity-avg", "-o", c.out],
         where="ts", problem="is a file, not a test set folder"),
    Case("evaluate --device foo", lambda c: ["evaluate", "--device", "foo", "-o", c.out],
         where="--device", problem="unknown device 'foo'"),
    Case("evaluate another pair's weights", lambda c: [
        "evaluate", "--pair", "pet", "--weights", BUNDLED, "-o", c.out], where=BUNDLED.name,
         problem="holds CT-MRI weights"),
    Case("make-testset --out a file", lambda c: ["make-testset", "--pair", "ct", "--out",
                                                 c.file("set", "x")],
         where="set", problem="is a file, not an output folder"),
    Case("make-testset --image-size 17", lambda c: ["make-testset", "--pair", "ct",
                                                    "--image-size", "17", "-o", c.out],
         where="--image-size", problem="must be a positive multiple of 16, got 17"),
    Case("make-testset --pair xray", lambda c: ["make-testset", "--pair", "xray", "-o", c.out],
         where="--pair", problem="unknown modality pair"),
    Case("train --image-size 17", lambda c: ["train", "--pair", "ct", "--image-size", "17",
                                             "-o", c.out],
         where="--image-size", problem="must be a positive multiple of 16, got 17"),
    Case("train -o a file", lambda c: ["train", "--pair", "ct", "-o", c.file("run", "x")],
         where="run", problem="is a file, not an output folder"),
    Case("train --device cuda without a GPU", lambda c: ["train", "--pair", "ct", "--device",
                                                         "cuda", "-o", c.out],
         setup=lambda c: c.no_gpu(), where="--device", problem="no CUDA GPU"),
    Case("train --model-config with a typo", lambda c: ["train", "--pair", "ct", "--model-config",
                                                        '{"embed_dimm": 32}', "-o", c.out],
         where="--model-config", problem="embed_dimm: unknown ModelConfig field"),
    Case("train --time-budget -5", lambda c: ["train", "--pair", "ct", "--time-budget", "-5",
                                              "-o", c.out],
         where="--time-budget", problem="must be > 0"),
    Case("train on a folder without data", lambda c: ["train", "--pair", "ct", "--data", c.tmp,
                                                      "-o", c.out],
         where=None, problem="no MRI/ and CT/ folders"),
    Case("convert a missing checkpoint", lambda c: ["convert", c.tmp / "r.pt", c.out],
         where="r.pt", problem="no such file"),
    Case("convert a text file", lambda c: ["convert", c.file("r.pt", "text"), c.tmp / "o.st"],
         where="r.pt", problem="not a PyTorch file"),
    Case("convert without an output", lambda c: ["convert", c.file("r.pt", "text")],
         where="--out", problem="give the output file once"),
    Case("export to a folder", lambda c: ["export", c.tmp / "run", c.tmp], where=None,
         problem="is a folder; give a file name"),
    Case("export a missing run", lambda c: ["export", c.tmp / "run", "-o", c.tmp / "w.st"],
         where="run", problem=""),
]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    import torch

    from bsafusion import BSAFusion

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    BSAFusion().save_pretrained(path, dtype=torch.float16)
    return path


def run_case(case: Case, ctx: Ctx, capsys) -> tuple[int, list[str], list[str]]:
    capsys.readouterr()
    code = main([str(a) for a in case.argv(ctx)])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err.strip().splitlines()


def check_error_lines(case: Case, err: list[str]) -> None:
    assert not any("Traceback" in line for line in err), err
    errors = [line for line in err if line.startswith("bsafusion: error: ")]
    assert len(errors) == case.errors, err
    # everything else is a warning or a batch's progress line
    assert all(line.startswith(("bsafusion: ", "[")) for line in err), err
    if case.warn:
        assert any(line.startswith("bsafusion: warning: ") and case.warn in line
                   for line in err), err
    if not errors:
        return
    loc, _, problem = errors[0].removeprefix("bsafusion: error: ").partition(": ")
    if case.where is not None:
        assert loc == case.where or loc.endswith(os.sep + case.where), errors[0]
    assert case.problem in problem, errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch, capsys, untrained):
    ctx = Ctx(tmp_path, monkeypatch, untrained)
    case.setup(ctx)
    before = files_in(ctx.out) if case.code == 2 and ctx.out.exists() else None
    code, out, err = run_case(case, ctx, capsys)
    assert code == case.code, (out, err)
    check_error_lines(case, err)
    if case.stdout:
        assert out and case.stdout in out[-1], out
    assert files_in(ctx.out) == (case.files if case.files is not None else None), err
    assert before is None or files_in(ctx.out) == before
    assert not list(tmp_path.rglob("*.partial*")) and not list(tmp_path.rglob("*.staged*"))
    assert not {"fused", "aligned", "flow", "panel"} & {p.name for p in tmp_path.iterdir()}


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------- real processes
def _cli(args, cwd, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "bsafusion", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


SUBPROCESS_CASES = {  # id -> (argv in a fresh folder, extra env, expected stderr line)
    "unknown --pair": (lambda tmp: ["fuse", "a.png", "b.png", "--pair", "xray", "-o", "out"],
                       {}, "bsafusion: error: --pair: unknown modality pair 'xray' (choose "
                           "from ct, pet, spect)"),
    "--device cuda, no GPU visible": (
        lambda tmp: ["fuse", "--demo", "--device", "cuda", "-o", "out"],
        {"CUDA_VISIBLE_DEVICES": ""},
        "bsafusion: error: --device: cuda: no CUDA GPU is available here (use cpu)"),
}


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_as_a_process(name, tmp_path):
    """The real entry point: exit 2, the one line and nothing else, nothing written."""
    argv, env, line = SUBPROCESS_CASES[name]
    argv = argv(tmp_path)  # a function of the folder, for cases that write inputs there
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = _cli(argv, tmp_path, **env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == line and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before
