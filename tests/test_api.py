"""The Python API: layouts, any size through a working resolution, prealignment, README."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
import torch

from bsafusion import BSAFusion, Fuser, FusionResult
from bsafusion.errors import InputError
from bsafusion.infer.fuser import check_memory
from bsafusion.infer.procedure import affine_flow, fuse_color, resize_image, work_shape
from bsafusion.io import read_image
from bsafusion.ops.grid import resize_flow
from bsafusion.ops.warp import warp
from bsafusion.samples import sample_pairs

from .conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> BSAFusion:
    torch.manual_seed(0)
    return BSAFusion().eval()


def _smooth(h, w, seed=0, channels=0):
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.random((1, channels or 1, 6, 6), dtype=np.float32))
    img = resize_image(small, (h, w))[0].numpy()
    return img[0] if not channels else img.transpose(1, 2, 0)


def _ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def test_work_shape():
    assert work_shape(256, 256) == (256, 256)
    assert work_shape(512, 512) == (256, 256)
    assert work_shape(300, 200) == (256, 176)
    assert work_shape(181, 217, 32) == (32, 32)
    assert work_shape(100, 70, None) == (96, 64)


def test_native_256_reproduces_the_network(model):
    fixed, moving = _smooth(256, 256, 1), _smooth(256, 256, 2, channels=3)
    res = Fuser(model, fast=False)(fixed, moving)
    with torch.inference_mode():
        ref = fuse_color(model, torch.from_numpy(fixed)[None, None],
                         torch.from_numpy(moving.transpose(2, 0, 1))[None])
    torch.testing.assert_close(torch.from_numpy(res.flow), ref.output.flow[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(res.fused), ref.fused_rgb[0].permute(1, 2, 0),
                               rtol=0, atol=1e-5)
    assert res.meta["work_size"] == (256, 256)
    # the default fast path gives the same result within the performance issue's bounds
    fast = Fuser(model)(fixed, moving)
    assert fast.meta["work_size"] == (256, 256)
    np.testing.assert_allclose(fast.fused, res.fused, rtol=0, atol=1e-3)
    np.testing.assert_allclose(fast.aligned, res.aligned, rtol=0, atol=1e-3)
    np.testing.assert_allclose(fast.flow, res.flow, rtol=0, atol=0.05)


@pytest.mark.parametrize("size", [(512, 512), (300, 200)])
def test_any_size_runs_at_the_working_resolution(model, size):
    h, w = size
    fixed, moving = _smooth(h, w, 3), _smooth(h, w, 4)
    res = Fuser(model, work_size=64)(fixed, moving)
    assert res.fused.shape == res.aligned.shape == (h, w) and res.flow.shape == (2, h, w)
    work = work_shape(h, w, 64)
    assert res.meta["work_size"] == work
    # the flow is the network's at the working size, resampled and rescaled per axis
    with torch.inference_mode():
        out = model(resize_image(torch.from_numpy(fixed)[None, None], work),
                    resize_image(torch.from_numpy(moving)[None, None], work))
    expected = resize_flow(out.flow, (h, w), align_corners=True)[0]
    torch.testing.assert_close(torch.from_numpy(res.flow), expected, rtol=0, atol=1e-5)
    # the aligned image is the native moving image warped by the native flow
    native = warp(torch.from_numpy(moving)[None, None], torch.from_numpy(res.flow)[None])
    torch.testing.assert_close(torch.from_numpy(res.aligned), native[0, 0], rtol=0, atol=1e-5)


def test_layouts_numpy_torch_batches(model):
    fuser = Fuser(model, work_size=32)
    res = fuser(_smooth(48, 40), _smooth(48, 40, 1, channels=3))
    assert isinstance(res, FusionResult) and res.fused.shape == (48, 40, 3)
    batch = fuser(np.stack([_smooth(32, 32, i) for i in range(3)]),
                  np.stack([_smooth(32, 32, i + 5) for i in range(3)]))
    assert batch.fused.shape == (3, 32, 32) and batch.flow.shape == (3, 2, 32, 32)
    single = fuser(_smooth(32, 32, 1), _smooth(32, 32, 6))  # item 1 of the batch alone
    np.testing.assert_allclose(single.flow, batch.flow[1], rtol=0, atol=1e-4)
    t = fuser(torch.rand(2, 1, 32, 48), torch.rand(2, 3, 32, 48))
    assert isinstance(t.fused, torch.Tensor) and t.fused.shape == (2, 3, 32, 48)
    assert t.flow.shape == (2, 2, 32, 48)
    t2 = fuser(torch.rand(32, 32), torch.rand(32, 32))
    assert t2.fused.shape == (32, 32) and t2.flow.shape == (2, 32, 32)
    u8 = fuser(*((_smooth(32, 32, i) * 255).astype(np.uint8) for i in (0, 1)))
    assert u8.fused.dtype == np.float32
    reg = fuser.register(_smooth(32, 32), _smooth(32, 32, 1))
    assert reg.fused is None and reg.aligned.shape == (32, 32)


def test_size_mismatch_is_resampled_with_a_warning(model, caplog):
    with caplog.at_level(logging.WARNING, logger="bsafusion"):
        res = Fuser(model, work_size=32)(_smooth(64, 64), _smooth(50, 70, 1))
    assert res.aligned.shape == (64, 64)
    assert "resampled to the fixed grid" in caplog.text


@pytest.mark.parametrize("fixed, moving, message", [
    (np.zeros((32, 32)), np.ones((32, 32)) * 0.5, "is constant"),
    (np.full((32, 32), np.nan), np.zeros((32, 32)), "NaN"),
    (np.ones((32, 32)) * 3, np.zeros((32, 32)), r"expected \[0, 1\]"),
    (np.zeros((8, 8)), np.zeros((8, 8)), "too small"),
    (np.zeros((2, 32, 32, 4)), np.zeros((2, 32, 32, 4)), "unsupported shape"),
    (np.random.rand(32, 32, 3), np.random.rand(32, 32), "must be grey"),
])
def test_array_errors(model, fixed, moving, message):
    with pytest.raises(InputError, match=message):
        Fuser(model, work_size=32)(fixed.astype(np.float32), moving.astype(np.float32))


def test_memory_aware_refusal(monkeypatch):
    monkeypatch.setattr("bsafusion.infer.fuser.available_memory", lambda: 2**30)
    with pytest.raises(InputError, match="GiB is available"):
        check_memory(1, 3, 16000, 16000, where="big.tif")
    check_memory(1, 3, 256, 256, where="small.png")


def _rotate_shift(image: np.ndarray, degrees: float, shift_x: float) -> np.ndarray:
    h, w = image.shape
    th = math.radians(degrees)
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    a = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    t = centre - a @ centre + np.array([shift_x, 0.0])
    flow = affine_flow(torch.tensor(a[None], dtype=torch.float32),
                       torch.tensor(t[None], dtype=torch.float32), size=(h, w))
    return warp(torch.from_numpy(image)[None, None], flow)[0, 0].numpy()


def test_prealign_restores_a_rotated_shifted_pair(model):
    """20 deg + 15 px: without prealignment NCC(aligned, undeformed) collapses; rigid MI
    prealignment composed with the network's field restores it to near the unrotated case.
    (The network is untrained here, so this tests what the prealignment and the composition
    guarantee; the working size is small to keep the test fast.)"""
    pytest.importorskip("SimpleITK")
    sample = sample_pairs("ct")[0]
    mri, ct = read_image(sample.fixed), read_image(sample.moving)
    moved = _rotate_shift(ct, 20.0, 15.0)
    plain, pre = Fuser(model, work_size=64), Fuser(model, work_size=64, prealign="rigid")
    reference = _ncc(plain(mri, ct).aligned, ct)
    broken = _ncc(plain(mri, moved).aligned, ct)
    res = pre(mri, moved)
    restored = _ncc(res.aligned, ct)
    assert broken < 0.6 < reference
    assert restored > reference - 0.05, (broken, restored, reference)
    # one returned field: aligned is the moving image warped once by res.flow
    again = warp(torch.from_numpy(moved)[None, None], torch.from_numpy(res.flow)[None])[0, 0]
    np.testing.assert_allclose(res.aligned, again.numpy(), rtol=0, atol=1e-5)
    (matrix, _), = res.meta["prealign"]
    assert abs(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])) + 20.0) < 1.5
    # affine = rigid + a refinement kept only when it helps MI: still far better than nothing
    affine = Fuser(model, work_size=64, prealign="affine")(mri, moved)
    assert _ncc(affine.aligned, ct) > broken + 0.2


def test_readme_python_snippet_runs(tmp_path, monkeypatch):
    """The README's Python API snippet, executed as written (the bundled ``ct`` weights; its
    inputs are the bundled CT sample pair)."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    snippets = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    code = next(s for s in snippets if "from bsafusion import Fuser" in s)
    sample = sample_pairs("ct")[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mri.png").write_bytes(sample.fixed.read_bytes())
    (tmp_path / "ct.png").write_bytes(sample.moving.read_bytes())
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    res = namespace["res"]
    assert res.fused.shape == (256, 256) and res.flow.shape == (2, 256, 256)
    for sub in ("fused", "aligned", "flow", "panel"):
        assert any((tmp_path / "out" / sub).iterdir())


def test_volume_batches_one_slice_at_a_time_on_cpu_by_default(model, monkeypatch):
    fuser = Fuser(model, device="cpu", work_size=64)
    seen = []
    original = fuser.fuse_tensors

    def spy(fixed, moving, **kwargs):
        seen.append(fixed.shape[0])
        return original(fixed, moving, **kwargs)

    monkeypatch.setattr(fuser, "fuse_tensors", spy)
    vol = np.stack([_smooth(64, 64, seed=s) for s in range(3)], axis=2)
    result = fuser.fuse_volume(vol, vol, axis=2)
    assert seen == [1, 1, 1] and result.fused.shape == vol.shape
    seen.clear()
    fuser.fuse_volume(vol, vol, axis=2, batch_size=2)
    assert seen == [2, 1]
    with pytest.raises(InputError, match="batch_size"):
        fuser.fuse_volume(vol, vol, axis=2, batch_size=0)


def test_one_result_type_for_numpy_and_torch(model):
    """FusionResult carries (fused, aligned, flow) plus the colour pair's Y and the reverse
    field, numpy in numpy out and tensors in tensors out."""
    fixed, moving = _smooth(64, 48, 1), _smooth(64, 48, 2, channels=3)
    fuser = Fuser(model, work_size=None, fast=False)
    res = fuser(fixed, moving)
    assert isinstance(res, FusionResult)
    assert res.fused.shape == res.aligned.shape == (64, 48, 3) and res.flow.shape == (2, 64, 48)
    assert res.fused_y.shape == res.aligned_y.shape == (64, 48) and res.fused_grey is res.fused_y
    assert res.reverse.shape == (2, 64, 48)
    t = fuser.fuse_tensors(torch.from_numpy(fixed)[None, None],
                           torch.from_numpy(moving.transpose(2, 0, 1))[None])
    assert isinstance(t, FusionResult) and isinstance(t.fused, torch.Tensor)
    assert t.fused.shape == (1, 3, 64, 48) and t.fused_y.shape == (1, 1, 64, 48)
    np.testing.assert_array_equal(t.flow[0].numpy(), res.flow)
    np.testing.assert_array_equal(t.fused_y[0, 0].numpy(), res.fused_y)
    grey = fuser.register(fixed, _smooth(64, 48, 3))
    assert grey.fused is None and grey.fused_y is None and grey.aligned_grey is grey.aligned
