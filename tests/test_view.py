"""``bsafusion view``: the page of a demo pair, a 3-pair batch and a NIfTI volume, loaded in
headless Chromium (the ``browser`` fixture of conftest.py); ``--serve`` over loopback; a
500-pair page; the folder layout and errors without a browser.

Each browser test keeps a screenshot in ``test-artifacts/`` (ignored by git).
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from bsafusion.cli import main
from bsafusion.errors import InputError
from bsafusion.samples import sample_pairs
from bsafusion.viewer import PairImages, build_view, view_outputs

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------- outputs to view
@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """fuse outputs: the demo pair, a 3-pair CT batch, a 32x32x6 NIfTI volume pair."""
    import torch

    nib = pytest.importorskip("nibabel")
    root = tmp_path_factory.mktemp("view")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see conftest's one_thread (function-scoped)
    assert main(["fuse", "--demo", "--work-size", "64", "-o", str(root / "demo")]) == 0
    assert main(["fuse", "--demo", "--pair", "pet", "--work-size", "32", "--no-panel", "-o",
                 str(root / "pet")]) == 0
    a, b = root / "mri", root / "ct"
    a.mkdir(), b.mkdir()
    for s in sample_pairs("ct"):
        (a / f"{s.name}.png").write_bytes(s.fixed.read_bytes())
        (b / f"{s.name}.png").write_bytes(s.moving.read_bytes())
    assert main(["fuse", "--fixed-dir", str(a), "--moving-dir", str(b), "--work-size", "32",
                 "--no-panel", "-o", str(root / "batch")]) == 0
    zz, yy, xx = np.mgrid[0:6, 0:32, 0:32]
    for name, shift in (("mri", 0), ("ct", 2)):
        ball = ((xx - 16 - shift) ** 2 + (yy - 15) ** 2 < (6 + 1.5 * zz) ** 2).astype(np.float32)
        vol = np.moveaxis(ball * (0.5 + 0.08 * zz) + 0.05 * np.sin(xx / 3.0), 0, 2)
        nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), root / f"{name}.nii.gz")
    assert main(["fuse", str(root / "mri.nii.gz"), str(root / "ct.nii.gz"), "--work-size",
                 "32", "--no-panel", "-o", str(root / "volume")]) == 0
    for name in ("demo", "pet", "batch", "volume"):
        view_outputs(root / name)
    torch.set_num_threads(threads)
    return root


def _open(browser, index, fragment=""):
    browser.get(index.resolve().as_uri() + fragment)
    return wait_for_viewer(browser)


def wait_for_viewer(browser, timeout=30.0) -> str:
    """Wait until the shown pair's images have loaded (or failed); returns ok / broken."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = browser.execute_script("return document.body.dataset.images")
        if status != "loading":
            return status
        time.sleep(0.05)
    return "timeout"


def _pixels(browser, element_id) -> np.ndarray:
    el = browser.find_element("id", element_id)
    return np.asarray(Image.open(io.BytesIO(el.screenshot_as_png)).convert("RGB"), np.int16)


def _no_broken_images(browser) -> None:
    broken = browser.execute_script(
        "return [...document.images].filter(i => i.complete && !i.naturalWidth).map(i => i.src)")
    assert not broken
    assert browser.execute_script("return document.body.dataset.images") == "ok"


def _changed(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape != b.shape or bool(np.abs(a - b).max() > 8)


def _keys(browser, element_id, *keys) -> None:
    browser.find_element("id", element_id).send_keys(*keys)


# ---------------------------------------------------------------------------- in the browser
def test_demo_pair_sliders_change_what_is_drawn(browser, outputs, artifacts):
    from selenium.webdriver.common.keys import Keys

    assert _open(browser, outputs / "demo" / "view" / "index.html") == "ok"
    _no_broken_images(browser)
    assert browser.find_element("id", "pairname").text == "16010"
    assert not browser.find_element("id", "slicebox").is_displayed()  # a 2-D pair
    before = _pixels(browser, "c-overlay")
    _keys(browser, "opacity", Keys.END)  # all aligned
    after = _pixels(browser, "c-overlay")
    assert _changed(before, after)
    browser.find_element("tag name", "body").send_keys("a")  # compare with moving instead
    assert _changed(after, _pixels(browser, "c-overlay"))
    assert "moving" in browser.find_element("id", "cap-checker").text
    checker = _pixels(browser, "c-checker")
    _keys(browser, "tile", Keys.HOME)
    assert _changed(checker, _pixels(browser, "c-checker"))
    grid = _pixels(browser, "c-grid")
    _keys(browser, "spacing", Keys.END)
    assert _changed(grid, _pixels(browser, "c-grid"))
    assert "px" in browser.find_element("id", "cap-heat").text
    zoom = browser.find_element("id", "c-fixed").size["width"]
    browser.find_element("tag name", "body").send_keys("+")
    assert browser.find_element("id", "c-fixed").size["width"] > zoom  # nearest-neighbour zoom
    browser.save_screenshot(str(artifacts / "viewer-demo.png"))


def test_batch_has_a_searchable_pair_list(browser, outputs, artifacts):
    assert _open(browser, outputs / "batch" / "view" / "index.html") == "ok"
    items = browser.find_elements("css selector", "#list li")
    assert [li.text for li in items] == sorted(s.name for s in sample_pairs("ct"))
    first = browser.execute_script("return document.body.dataset.pair")
    browser.find_element("tag name", "body").send_keys("n")  # next pair
    assert wait_for_viewer(browser) == "ok"
    assert browser.execute_script("return document.body.dataset.pair") != first
    _keys(browser, "search", items[2].text)
    shown = [li for li in browser.find_elements("css selector", "#list li") if li.is_displayed()]
    assert [li.text for li in shown] == [items[2].text]
    assert browser.find_element("id", "count").text.startswith("1 of 3")
    shown[0].click()
    assert wait_for_viewer(browser) == "ok" and browser.current_url.endswith("#" + items[2].text)
    _no_broken_images(browser)
    browser.save_screenshot(str(artifacts / "viewer-batch.png"))


def test_volume_slice_slider_and_keys_move_through_the_volume(browser, outputs, artifacts):
    from selenium.webdriver.common.keys import Keys

    assert _open(browser, outputs / "volume" / "view" / "index.html") == "ok"
    _no_broken_images(browser)
    slice_of = lambda: int(browser.execute_script("return document.body.dataset.slice"))  # noqa: E731
    assert slice_of() == 3 and browser.find_element("id", "slicebox").is_displayed()
    middle = _pixels(browser, "c-fixed")
    _keys(browser, "slice", Keys.HOME)
    assert slice_of() == 0 and browser.find_element("id", "sliceout").text == "1 / 6"
    assert _changed(middle, _pixels(browser, "c-fixed"))  # the ball grows with the slice
    body = browser.find_element("tag name", "body")
    body.click()
    body.send_keys(Keys.ARROW_UP, Keys.ARROW_UP)
    assert slice_of() == 2
    body.send_keys(Keys.END)
    assert slice_of() == 5
    browser.save_screenshot(str(artifacts / "viewer-volume.png"))


def test_500_pairs_open_at_once_with_lazy_thumbnails(browser, tmp_path, artifacts):
    rng = np.random.default_rng(0)
    base = rng.random((1, 16, 16)).astype(np.float32)
    flow = np.zeros((1, 2, 16, 16), np.float32)
    pairs = (PairImages(f"case{n:03d}", base, base, base, base, flow + n % 5) for n in range(500))
    index = build_view(pairs, tmp_path / "view", title="500 pairs")
    start = time.monotonic()
    assert _open(browser, index) == "ok"
    seconds = time.monotonic() - start
    assert len(browser.find_elements("css selector", "#list li")) == 500
    loaded = browser.execute_script("return [...document.images].filter(i => i.complete).length")
    assert loaded < 100  # thumbnails below the fold are not fetched
    (artifacts / "viewer-500-pairs.txt").write_text(f"opened in {seconds:.2f} s\n")
    browser.save_screenshot(str(artifacts / "viewer-500-pairs.png"))


# ---------------------------------------------------------------------------- --serve
def test_serve_over_loopback_and_stop(outputs, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "bsafusion", "view", str(outputs / "demo"),
                             "-o", str(tmp_path / "page"), "--serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell's background job (`... &`) ignores SIGINT, and a child
                            # inherits that: give the server Ctrl-C back
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = None
        for line in proc.stdout:
            match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
        assert url, proc.stderr.read()
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and 'content="bsafusion view"' in page.read().decode()
        with urllib.request.urlopen(url + "pairs/0000/aligned.png", timeout=10) as png:
            assert Image.open(io.BytesIO(png.read())).size == (256, 256)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # a failing run leaves no server behind
            proc.communicate()
            raise
    assert proc.returncode == 0, err
    assert "stopped" in out


# ---------------------------------------------------------------------------- without a browser
def test_fuse_records_its_inputs_and_the_page_lists_every_kind(outputs):
    assert json.loads((outputs / "demo" / "inputs" / "16010.json").read_text()) == {"demo": "ct"}
    record = json.loads((outputs / "volume" / "inputs" / "ct.json").read_text())
    assert record["axis"] == 2 and record["fixed"].endswith("mri.nii.gz")
    data = (outputs / "volume" / "view" / "data.js").read_text()
    (entry,) = json.loads(data[data.index("{"):data.rindex("}") + 1])["pairs"]
    assert entry["kinds"] == ["fixed", "moving", "aligned", "fused"]
    assert (entry["w"], entry["h"], entry["slices"], entry["cols"]) == (32, 32, 6, 3)
    atlas = Image.open(outputs / "volume" / "view" / entry["dir"] / "fixed.png")
    assert atlas.size == (3 * 32, 2 * 32)


def test_pet_is_shown_in_colour(outputs):
    data = (outputs / "pet" / "view" / "data.js").read_text()
    (entry,) = json.loads(data[data.index("{"):data.rindex("}") + 1])["pairs"]
    assert entry["colour"] and entry["kinds"] == ["fixed", "moving", "aligned", "fused"]
    for kind in ("moving", "fused"):
        rgb = np.asarray(Image.open(outputs / "pet" / "view" / entry["dir"] / f"{kind}.png"))
        assert rgb.ndim == 3 and np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).max() > 40


def test_missing_inputs_are_noted_and_bad_folders_refused(outputs, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(outputs / "batch", out, ignore=shutil.ignore_patterns("view", "inputs"))
    view_outputs(out)
    view_outputs(out)  # a re-run replaces the page
    data = (out / "view" / "data.js").read_text()
    assert "no inputs/" in data and '"kinds": ["aligned", "fused"]' in data
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not a viewer folder"):
        view_outputs(out, tmp_path / "other")
    assert main(["view", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds no outputs" in err
    assert not (tmp_path / "other" / "view").exists()
