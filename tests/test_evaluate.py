"""``bsafusion evaluate`` end to end on a small test set (2 CT pairs at 64x64), the external
method path (--fused-dir / --flow-dir / --landmarks), the report files and their HTML."""

from __future__ import annotations

import csv
import html
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from bsafusion.errors import ConfigError, InputError
from bsafusion.evaluation import EvalConfig, evaluate, load_landmarks, load_testset
from bsafusion.io.image import write_png
from bsafusion.metrics.registration import inverse_consistency, landmark_tre

from .test_view import wait_for_viewer

METHODS = ("bsafusion", "identity-net", "identity-avg", "identity-lap")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bsafusion", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory, aanlib_dir):
    """One CLI run: builds the 64 px test set, scores 2 pairs with 4 methods."""
    root = tmp_path_factory.mktemp("evaluate")
    testset, out = root / "testset", root / "report"
    proc = _cli("evaluate", "--pair", "CT", "--split", "test", "--seed", "0", "--data",
                str(aanlib_dir), "--testset", str(testset), "--image-size", "64", "--limit",
                "2", "--methods", *METHODS, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return testset, out, proc


def test_cli_writes_the_four_outputs(run):
    _, out, proc = run
    assert "bundled `ct` weights (interim weights" in proc.stdout  # labelled as interim
    for name in ("metrics.csv", "summary.md", "index.html"):
        assert (out / name).is_file()
    assert len(list(out.glob("panel_best_*.png"))) == 1
    assert len(list(out.glob("panel_worst_*.png"))) == 1
    assert not list(out.glob("*.partial*"))


def test_metrics_csv_has_one_row_per_pair_and_method(run):
    _, out, _ = run
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 2 * len(METHODS)
    assert {r["method"] for r in rows} == set(METHODS)
    for r in rows:
        for key in ("NCC", "EPE", "Qabf", "VIF", "Qcv", "time_s"):
            assert np.isfinite(float(r[key])), (r["method"], key)
    # without registration the end-point error is the ground truth's magnitude
    ident = [r for r in rows if r["method"] == "identity-avg"]
    net = [r for r in rows if r["method"] == "identity-net"]
    assert [r["EPE"] for r in ident] == [r["EPE"] for r in net]
    assert all(float(r["inv_cons"]) >= 0 for r in rows if r["method"] == "bsafusion")


def test_summary_reads_like_a_paper_table(run):
    _, out, _ = run
    text = (out / "summary.md").read_text()
    assert "interim weights" in text and "seed 0" in text and "machine" in text
    assert "0.504" in text  # the colour convention is stated
    table = [line for line in text.splitlines() if line.startswith("| identity-avg")]
    assert table and "±" in table[0]
    assert "**" in text  # best values in bold
    assert text.count("| method |") == 3


class _Checker(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def test_index_html_is_well_formed_and_its_images_exist(run):
    _, out, _ = run
    text = (out / "index.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(text)
    assert not checker.errors and not checker.stack
    assert len(checker.images) == 2
    assert all((out / src).is_file() for src in checker.images)


def test_index_html_states_a_verdict_and_links_rows_to_the_viewer(run):
    _, out, _ = run
    text = (out / "index.html").read_text()
    line = html.unescape(re.search(r"<p class=\"verdict\">(.*?)</p>", text).group(1))
    assert line.startswith("Verdict: ") and "weights are interim" in line
    assert "no registration" in line and " px" in line
    assert line in (out / "summary.md").read_text()
    links = re.findall(r'<a class="row" href="view/index.html#([^"]+)"', text)
    assert len(links) == 2 * len(METHODS)  # every row of both panels
    data = (out / "view" / "data.js").read_text()
    assert all(f'"id": "{target}"' in data for target in links)


def test_index_html_renders_and_a_row_opens_the_viewer(run, browser, artifacts):
    """The report in headless Chromium: every image decodes; a panel row opens the viewer on
    that pair and method, whose images load too."""
    _, out, _ = run
    browser.get((out / "index.html").resolve().as_uri())
    assert browser.execute_script(
        "return [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert browser.find_element("css selector", "p.verdict").text.startswith("Verdict: ")
    row = browser.find_elements("css selector", "a.row")[1]
    target = row.get_attribute("href").split("#")[1]
    browser.execute_script("arguments[0].click()", row)
    assert wait_for_viewer(browser) == "ok"
    assert browser.execute_script("return document.body.dataset.pair") == target
    assert len(browser.find_elements("css selector", "#list li")) == 2 * len(METHODS)
    browser.save_screenshot(str(artifacts / "viewer-evaluate.png"))


def test_external_method_with_flows_and_landmarks(run, tmp_path):
    """An 'oracle' that hands in the ground-truth field scores EPE = 0 and TRE = 0."""
    testset, _, _ = run
    ts = load_testset(testset, limit=2)
    fused_dir, flow_dir = tmp_path / "fused", tmp_path / "flow"
    rows = ["pair,fixed_x,fixed_y,moving_x,moving_y"]
    for i, stem in enumerate(ts.names):
        write_png(fused_dir / f"{stem}.png", ((ts.fixed[i, 0] + ts.label[i, 0]) / 2).numpy())
        flow_dir.mkdir(exist_ok=True)
        np.save(flow_dir / f"{stem}.npy", ts.flow[i].numpy())
        for x, y in ((20, 30), (40, 25)):
            u, v = ts.flow[i, :, y, x].tolist()
            rows.append(f"{stem}.png,{x},{y},{x + u},{y + v}")
    (tmp_path / "lm.csv").write_text("\n".join(rows) + "\n")
    result = evaluate(EvalConfig(
        out_dir=tmp_path / "report", pair="ct", seed=0, testset=testset, image_size=64,
        limit=2, methods=("identity-avg",), fused_dir=fused_dir, flow_dir=flow_dir,
        name="oracle", landmarks=tmp_path / "lm.csv"))
    oracle = [r for r in result.rows if r["method"] == "oracle"]
    ident = [r for r in result.rows if r["method"] == "identity-avg"]
    assert len(oracle) == 2 and result.methods == ("identity-avg", "oracle")
    assert all(r["EPE"] < 1e-6 and r["TRE"] < 1e-4 for r in oracle)
    assert all(r["TRE"] > 0.5 for r in ident)  # identity: TRE = |GT| at the landmarks
    assert sum(r["NCC"] for r in oracle) > sum(r["NCC"] for r in ident)
    assert "weights" in (tmp_path / "report" / "summary.md").read_text()
    # fused images only (no field): the report and its viewer still work
    evaluate(EvalConfig(out_dir=tmp_path / "fused-only", pair="ct", seed=0, testset=testset,
                        image_size=64, limit=2, methods=("none",), fused_dir=fused_dir,
                        name="oracle"))
    assert '"flow"' not in (tmp_path / "fused-only" / "view" / "data.js").read_text()


def test_tre_and_inverse_consistency_values():
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0] = 1.5
    points = np.array([[2.0, 3.0, 3.5, 3.0], [4.0, 4.0, 4.0, 4.0]])
    torch.testing.assert_close(landmark_tre(flow, torch.from_numpy(points)),
                               torch.tensor([0.0, 1.5], dtype=torch.float64).float(),
                               rtol=0, atol=1e-6)
    assert float(inverse_consistency(flow, -flow)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(inverse_consistency(flow, flow)[0]) == pytest.approx(3.0, abs=1e-5)


def test_bad_landmarks_and_options(tmp_path, run):
    testset, _, _ = run
    bad = tmp_path / "bad.csv"
    bad.write_text("pair,x,y\n")
    with pytest.raises(InputError):
        load_landmarks(bad)
    bad.write_text("pair,fixed_x,fixed_y,moving_x,moving_y\na,1,2,x,4\n")
    with pytest.raises(InputError, match="line 2"):
        load_landmarks(bad)
    with pytest.raises(ConfigError):
        evaluate(EvalConfig(out_dir=tmp_path, testset=testset, image_size=64, methods=("nope",)))
    ts = load_testset(testset, limit=1)
    (tmp_path / "f").mkdir()
    (tmp_path / "fl").mkdir()
    write_png(tmp_path / "f" / f"{ts.names[0]}.png", ts.fixed[0, 0].numpy())
    np.save(tmp_path / "fl" / f"{ts.names[0]}.npy", np.zeros((64, 64, 2), np.float32))
    with pytest.raises(InputError, match=r"expected a \(2, H, W\) field"):
        evaluate(EvalConfig(out_dir=tmp_path / "r", testset=testset, image_size=64, limit=1,
                            methods=("none",), fused_dir=tmp_path / "f", flow_dir=tmp_path / "fl"))
    with pytest.raises(InputError, match="holds a test set"):
        evaluate(EvalConfig(out_dir=tmp_path, testset=testset, seed=1, image_size=64,
                            methods=("identity-avg",)))


def test_cli_errors_are_one_line(tmp_path):
    proc = _cli("evaluate", "--aligned-dir", str(tmp_path), "-o", str(tmp_path / "r"),
                "--testset", str(tmp_path / "ts"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--fused-dir" in proc.stderr
    assert not (tmp_path / "r").exists()
    assert os.path.exists(tmp_path)


def test_colour_pair_is_scored_on_y_and_shown_in_colour(tmp_path, aanlib_dir):
    from PIL import Image

    result = evaluate(EvalConfig(
        out_dir=tmp_path / "report", pair="pet", seed=0, data=aanlib_dir,
        testset=tmp_path / "ts", image_size=64, limit=1, methods=("identity-avg",)))
    (row,) = result.rows
    assert 0.0 < row["NCC"] <= 1.0 and np.isfinite(row["Qabf"])
    ts = load_testset(tmp_path / "ts", limit=1)
    assert ts.chroma is not None and ts.moving.shape[1] == 1
    (panel,) = (tmp_path / "report").glob("panel_best_*.png")
    arr = np.asarray(Image.open(panel).convert("RGB")).astype(int)
    assert (np.abs(arr[..., 0] - arr[..., 2]) > 40).any()  # pseudo-colour survived


def test_a_pair_without_bundled_weights_scores_a_labelled_untrained_network(monkeypatch):
    import bsafusion.weights as weights
    from bsafusion.evaluation.run import build_model

    entries = {k: v for k, v in weights.available_weights().items() if k != "pet"}
    monkeypatch.setattr(weights, "_manifest", lambda: entries)
    model, label = build_model(EvalConfig(out_dir=Path("unused"), pair="pet", seed=3))
    assert label.startswith("UNTRAINED network") and "seed 3" in label
    assert not model.training


def test_weights_file_is_used_and_named(run, tmp_path):
    from bsafusion.model.bsafusion import BSAFusion

    testset, _, _ = run
    torch.manual_seed(1)
    weights = tmp_path / "w.safetensors"
    BSAFusion().save_pretrained(weights)
    result = evaluate(EvalConfig(out_dir=tmp_path / "r", testset=testset, image_size=64, limit=1,
                                 weights=str(weights), methods=("bsafusion",)))
    assert result.weights_label == f"weights file {weights}"
    text = (tmp_path / "r" / "summary.md").read_text()
    assert "UNTRAINED" not in text and str(weights) in text


def test_the_network_is_scored_through_the_fuse_path(run):
    """evaluate's network method is Fuser.fuse_tensors: the same numbers as Fuser.fuse."""
    from bsafusion import BSAFusion, Fuser
    from bsafusion.evaluation.methods import NetworkMethod

    testset, _, _ = run
    ts = load_testset(testset, limit=1)
    with torch.random.fork_rng(devices=[]):  # leave the global generator as it was
        torch.manual_seed(0)
        fuser = Fuser(BSAFusion().eval(), work_size=None)
    with torch.inference_mode():
        res = NetworkMethod(fuser)(ts.fixed[:1], ts.moving_image[:1])
    ref = fuser.fuse(ts.fixed[0, 0].numpy(), ts.moving_image[0, 0].numpy())
    np.testing.assert_array_equal(res.flow[0].numpy(), ref.flow)
    np.testing.assert_array_equal(res.fused[0, 0].numpy(), ref.fused)
    assert res.reverse is not None and ref.reverse.shape == ref.flow.shape


def test_another_method_plugs_in_through_the_interface(run, tmp_path):
    from bsafusion.infer.result import FusionResult

    class Average:
        name = "average"

        def __call__(self, fixed, moving):
            flow = torch.zeros(1, 2, *fixed.shape[-2:])
            return FusionResult((fixed + moving) / 2, moving, flow)

    testset, _, _ = run
    result = evaluate(EvalConfig(out_dir=tmp_path / "r", testset=testset, image_size=64,
                                 limit=2, methods=("identity-avg",)), plugins=(Average(),))
    rows = {m: [r for r in result.rows if r["method"] == m] for m in result.methods}
    assert result.methods == ("identity-avg", "average")
    assert [r["Qabf"] for r in rows["average"]] == [r["Qabf"] for r in rows["identity-avg"]]
    with pytest.raises(ConfigError, match="taken"):
        evaluate(EvalConfig(out_dir=tmp_path / "r2", testset=testset, image_size=64, limit=1,
                            methods=("none",)), plugins=(Average(), Average()))
