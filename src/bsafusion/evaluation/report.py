"""The evaluation report: ``metrics.csv``, ``summary.md``, best / worst panels, ``index.html``
and ``view/``, the interactive viewer of every pair and method (:mod:`bsafusion.viewer`).

Tables give mean ± std over the pairs per method, the best mean of each column in bold
(direction-aware: lower is better for errors, MSE, folding, Qcv and time). The page opens with
a one-line verdict (:func:`verdict`), and each row of a panel links to the viewer of that pair
and method.
"""

from __future__ import annotations

import csv
import datetime
import html
import io
import json
import math
import os
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from bsafusion.evaluation.testset import FOREGROUND, Testset
from bsafusion.infer.procedure import luma_to_rgb
from bsafusion.infer.result import FusionResult
from bsafusion.io.atomic import atomic_write
from bsafusion.metrics.fusion import HIGHER_IS_BETTER
from bsafusion.viewer import PairImages, build_view, pair_id

__all__ = ["TABLES", "display_images", "machine_label", "summary_tables", "verdict",
           "write_report"]

# (column key, header, higher is better, format)
_REG = [("NCC", "NCC", True, ".3f"), ("MSE", "MSE", False, ".4f"),
        ("SSIM_reg", "SSIM", True, ".3f"),
        ("EPE", "EPE (px)", False, ".2f"), ("EPE_p95", "EPE p95 (px)", False, ".2f"),
        ("fold_pct", "fold %", False, ".2f"), ("inv_cons", "inv. cons. (px)", False, ".2f"),
        ("TRE", "TRE (px)", False, ".2f"), ("time_s", "time / pair (s)", False, ".3f")]
_FMT = {"EN": ".3f", "SD": ".2f", "SF": ".2f", "AG": ".3f", "MI": ".3f", "FMI": ".3f",
        "Qabf": ".3f", "SSIM": ".3f", "MS-SSIM": ".3f", "VIF": ".3f", "PSNR": ".2f", "CC": ".3f",
        "SCD": ".3f", "Qcb": ".3f", "Qcv": ".1f"}
_FUS1 = [(k, k, HIGHER_IS_BETTER[k], _FMT[k])
         for k in ("EN", "SD", "SF", "AG", "MI", "FMI", "Qabf")]
_FUS2 = [(k, k + (" ↓" if not HIGHER_IS_BETTER[k] else ""), HIGHER_IS_BETTER[k], _FMT[k])
         for k in ("SSIM", "MS-SSIM", "VIF", "PSNR", "CC", "SCD", "Qcb", "Qcv")]
TABLES = (
    ("Registration: aligned vs undeformed moving image", _REG),
    ("Fusion (1/2): information and edges", _FUS1),
    ("Fusion (2/2): similarity to the sources and perception", _FUS2),
)
CONVENTIONS = (
    "Grey levels 0-255 (VIFB's scale); PET/SPECT and colour outputs scored on BT.601 Y "
    "(0.257 R + 0.504 G + 0.098 B + 0.0625). Fusion metrics: A = MRI, B = the undeformed "
    "moving image, F = fused, quantised to 8 bits. EPE over the head (label > its black "
    f"level + {FOREGROUND}); fold % = "
    "pixels with det J ≤ 0; inv. cons. = |φ_AB + φ_BA∘(id+φ_AB)| with φ_BA = φ_A − φ_B. "
    "Qabf uses VIFB's constants, so Qabf(A, A, A) = 0.975. Qcv: lower is better."
)


# ---------------------------------------------------------------------------- tables
def _stats(rows: list[dict], method: str, key: str) -> tuple[float, float, int]:
    vals = np.array([r[key] for r in rows if r["method"] == method and key in r], dtype=float)
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return math.nan, math.nan, 0
    return float(vals.mean()), float(vals.std()), int(vals.size)


def summary_tables(rows: list[dict], methods: tuple[str, ...]) -> list[tuple[str, list, list]]:
    """[(title, header cells, [[(text, bold), ...] per method])] for the present columns."""
    out = []
    for title, columns in TABLES:
        cols = [c for c in columns if any(_stats(rows, m, c[0])[2] for m in methods)]
        if not cols:
            continue
        body = [[(m, False)] for m in methods]
        for key, _, higher, fmt in cols:
            means = [_stats(rows, m, key) for m in methods]
            finite = [mu for mu, _, n in means if n and math.isfinite(mu)]
            best = (max if higher else min)(finite) if len(finite) > 1 else None
            for line, (mu, sd, n) in zip(body, means, strict=True):
                text = "–" if not n else f"{mu:{fmt}} ± {sd:{fmt}}"
                line.append((text, best is not None and n > 0 and
                             f"{mu:{fmt}}" == f"{best:{fmt}}"))
        out.append((title, ["method", *[c[1] for c in cols]], body))
    return out


def _markdown_table(header: list[str], body: list[list[tuple[str, bool]]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line in body:
        lines.append("| " + " | ".join(f"**{t}**" if b else t for t, b in line) + " |")
    return "\n".join(lines)


def machine_label() -> str:
    """CPU model, logical CPUs, torch version and threads, e.g. for the report header."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} torch thread(s))")


def _header(cfg, ts, weights_label: str, rows: list[dict]) -> list[tuple[str, str]]:
    meta_path = ts.root / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    deform = (f"mean displacement {meta.get('mean_displacement_px', math.nan):.2f} px "
              f"(p95 {meta.get('p95_displacement_px', math.nan):.2f}) on the full set"
              if meta else "unknown")
    return [
        ("pair / split", f"{cfg.pair.upper()}-MRI, {cfg.split} ({len(ts.names)} pairs, "
                         f"{ts.fixed.shape[-1]}×{ts.fixed.shape[-2]} px)"),
        ("test set", f"{ts.root} (seed {cfg.seed}; {deform})"),
        ("weights", weights_label),
        ("machine", machine_label()),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("conventions", CONVENTIONS),
    ]


# ---------------------------------------------------------------------------- images
def _u8(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) float in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    arr = x[0].float().clamp(0, 1).mul(255).round().byte().cpu().numpy()
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


def display_images(ts: Testset, i: int, out: FusionResult[torch.Tensor]
                   ) -> dict[str, np.ndarray]:
    """uint8 tiles of one method's result on pair ``i``: aligned, |aligned - label| ×4, fused;
    and ``flow``, its field (2, H, W) px as float16 (for the viewer; None if it has none)."""
    grey = out.aligned_grey
    finite = bool(torch.isfinite(grey).all())
    grey = grey if finite else torch.zeros_like(out.fused_grey)
    diff = ((grey - ts.label[i:i + 1]).abs() * 4).clamp(0, 1)
    aligned = out.aligned if finite and out.aligned.shape[1] == 3 else grey
    if ts.chroma is not None and aligned.shape[1] == 1:  # colour pairs: show it in colour too
        aligned = luma_to_rgb(aligned, ts.chroma[i:i + 1], out.flow)
    flow = None if out.flow is None else out.flow[0].float().cpu().numpy().astype(np.float16)
    return {"aligned": _u8(aligned), "diff": _u8(diff), "fused": _u8(out.fused), "flow": flow}


PANEL_TILE, PANEL_LEFT, PANEL_TOP = 160, 110, 20  # panel geometry (px), for the row links


def _moving_u8(ts, i: int) -> np.ndarray:
    moving = ts.moving[i:i + 1]
    if ts.chroma is not None:
        moving = luma_to_rgb(moving, ts.chroma[i:i + 1])
    return _u8(moving)


def _panel(ts, i: int, methods, shown, tile: int = PANEL_TILE) -> Image.Image:
    cols = ("MRI (fixed)", "moving (deformed)", "aligned", "|aligned - label| x4", "fused")
    left, top = PANEL_LEFT, PANEL_TOP
    img = Image.new("RGB", (left + tile * len(cols), top + tile * len(methods)), "white")
    draw = ImageDraw.Draw(img)
    for c, title in enumerate(cols):
        draw.text((left + c * tile + 4, 4), title, fill="black")
    fixed, moving = _u8(ts.fixed[i:i + 1]), _moving_u8(ts, i)
    for r, method in enumerate(methods):
        draw.text((4, top + r * tile + tile // 2 - 6), method, fill="black")
        tiles = (fixed, moving, *(shown[(i, method)][k] for k in ("aligned", "diff", "fused")))
        for c, arr in enumerate(tiles):
            im = Image.fromarray(arr).convert("RGB").resize((tile, tile), Image.BILINEAR)
            img.paste(im, (left + c * tile, top + r * tile))
    return img


def _weights_words(weights_label: str) -> str:
    label = weights_label.lower()
    if "untrained" in label:
        return "the network is UNTRAINED (random weights)"
    if "interim" in label:
        return "the network's weights are interim (a short run, not the published schedule)"
    if label.startswith("none"):
        return "no network was run"
    return f"the network's weights: {weights_label}"


def verdict(rows: list[dict], methods: tuple[str, ...], weights_label: str) -> str:
    """One line: which method registers best (by mean end-point error, else mean NCC), by how
    much against no registration (the ``identity-*`` methods) and the next method, and what
    the network's weights are."""
    key, lower = ("EPE", True) if any("EPE" in r for r in rows) else ("NCC", False)
    fmt, unit = (".2f", " px") if key == "EPE" else (".3f", "")
    what = "mean end-point error" if key == "EPE" else "mean NCC"
    means = {m: _stats(rows, m, key)[0] for m in methods}
    means = {m: v for m, v in means.items() if math.isfinite(v)}
    base = next((v for m, v in means.items() if m.startswith("identity-")), None)
    ranked = sorted(((v, m) for m, v in means.items() if not m.startswith("identity-")),
                    reverse=not lower)
    if not ranked:
        return f"Verdict: no registration method was run; {_weights_words(weights_label)}."
    (best_v, best), rest = ranked[0], ranked[1:]
    next_text = f"; next: {rest[0][1]}, {rest[0][0]:{fmt}}{unit}" if rest else ""
    if base is None:
        text = f"{best} registers best ({what} {best_v:{fmt}}{unit}{next_text})"
    else:
        gain = base - best_v if lower else best_v - base
        if gain < (max(0.05, 0.01 * abs(base)) if key == "EPE" else 0.005):
            text = (f"no method registers measurably better than no registration (best: "
                    f"{best}, {what} {best_v:{fmt}}{unit} vs {base:{fmt}}{unit} without"
                    f"{next_text})")
        else:
            text = (f"{best} registers best: {what} {best_v:{fmt}}{unit}, {gain:{fmt}}{unit} "
                    f"({100 * gain / abs(base):.0f}%) {'below' if lower else 'above'} no "
                    f"registration ({base:{fmt}}{unit}){next_text}")
    return f"Verdict: {text}; {_weights_words(weights_label)}."


def _view_pairs(ts, methods: tuple[str, ...], shown: dict):
    """Every pair and method as the viewer's :class:`PairImages` (one at a time)."""
    for i, stem in enumerate(ts.names):
        fixed, moving = _u8(ts.fixed[i:i + 1])[None], _moving_u8(ts, i)[None]
        for method in methods:
            tiles = shown[(i, method)]
            flow = None if tiles["flow"] is None else tiles["flow"][None].astype(np.float32)
            yield PairImages(stem, fixed, moving, tiles["aligned"][None], tiles["fused"][None],
                             flow, group=method)


def _best_worst(rows: list[dict], methods: tuple[str, ...], names) -> tuple[str, str, str, str]:
    primary = "bsafusion" if "bsafusion" in methods else methods[0]
    key = "NCC" if any("NCC" in r for r in rows if r["method"] == primary) else "Qabf"
    scored = [(r[key], r["pair"]) for r in rows if r["method"] == primary
              and math.isfinite(r.get(key, math.nan))]
    scored.sort()
    return scored[-1][1], scored[0][1], primary, key


# ---------------------------------------------------------------------------- writing
def write_report(cfg, ts, rows: list[dict], methods: tuple[str, ...], shown: dict,
                 weights_label: str) -> dict[str, Path]:
    """Write metrics.csv, summary.md, panel PNGs and index.html into ``cfg.out_dir``."""
    out = Path(cfg.out_dir)
    files = {"metrics.csv": out / "metrics.csv", "summary.md": out / "summary.md",
             "index.html": out / "index.html"}
    keys = ["pair", "method"] + [k for k in dict.fromkeys(k for r in rows for k in r)
                                 if k not in ("pair", "method")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, restval="", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write(files["metrics.csv"], lambda tmp: tmp.write_text(buf.getvalue()))

    tables = summary_tables(rows, methods)
    header = _header(cfg, ts, weights_label, rows)
    best, worst, primary, key = _best_worst(rows, methods, ts.names)
    panels = []
    for tag, stem in (("best", best), ("worst", worst)):
        path = out / f"panel_{tag}_{stem}.png"
        img = _panel(ts, ts.names.index(stem), methods, shown)
        atomic_write(path, lambda tmp, im=img: im.save(tmp, format="PNG"))
        files[path.name] = path
        panels.append((f"{tag} pair by {primary} {key}: {stem}", path.name, stem))

    line = verdict(rows, methods, weights_label)
    title = f"bsafusion evaluation: {cfg.pair.upper()}-MRI, {cfg.split} split"
    files["view/index.html"] = build_view(_view_pairs(ts, methods, shown), out / "view",
                                          title=title, notes=(line,))
    md = [f"# Evaluation: {cfg.pair.upper()}-MRI, {cfg.split} split", "", line, ""]
    md += [f"- **{k}**: {v}" for k, v in header] + [""]
    for title, head, body in tables:
        md += [f"## {title}", "", _markdown_table(head, body), ""]
    md += ["## Panels", ""] + [f"- {cap}: `{name}`" for cap, name, _ in panels] + [""]
    text = "\n".join(md)
    atomic_write(files["summary.md"], lambda tmp: tmp.write_text(text, encoding="utf-8"))
    page = _html(cfg, header, tables, panels, methods, line)
    atomic_write(files["index.html"], lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return files


def _panel_html(cap: str, name: str, stem: str, methods: tuple[str, ...]) -> list[str]:
    """A panel whose rows link to the viewer of that pair and method (and the same links as
    text under it)."""
    e = html.escape
    height = PANEL_TOP + PANEL_TILE * len(methods)
    links, areas = [], []
    for r, method in enumerate(methods):
        href = e(f"view/index.html#{pair_id(stem, method)}")
        top = 100 * (PANEL_TOP + r * PANEL_TILE) / height
        areas.append(f'<a class="row" href="{href}" style="top:{top:.3f}%;height:'
                     f'{100 * PANEL_TILE / height:.3f}%" title="{e(stem)} · {e(method)} in the '
                     f'viewer" aria-label="{e(stem)} {e(method)} in the viewer"></a>')
        links.append(f'<a href="{href}">{e(method)}</a>')
    return ["<figure>", '<div class="rows">', f'<img src="{e(name)}" alt="{e(cap)}">', *areas,
            "</div>", f"<figcaption>{e(cap)}; open a row in the viewer: "
            f"{' · '.join(links)}</figcaption>", "</figure>"]


def _html(cfg, header, tables, panels, methods: tuple[str, ...], line: str) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>bsafusion evaluation: {e(cfg.pair.upper())}-MRI {e(cfg.split)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block}"
        "dt{font-weight:bold}.verdict{font-size:1.1em;background:#eef4fb;padding:.5em}"
        ".rows{position:relative;display:inline-block}.row{position:absolute;left:0;right:0}"
        ".row:hover{outline:2px solid #2a6ebb}</style>",
        "</head>", "<body>",
        f"<h1>Evaluation: {e(cfg.pair.upper())}-MRI, {e(cfg.split)} split</h1>",
        f'<p class="verdict">{e(line)}</p>',
        '<p>Every pair and method in the <a href="view/index.html">interactive viewer</a> '
        "(overlay, checkerboard, the field).</p>", "<dl>",
    ]
    for k, v in header:
        parts.append(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>")
    parts.append("</dl>")
    for title, head, body in tables:
        parts += [f"<h2>{e(title)}</h2>", "<table>", "<thead><tr>"
                  + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead>", "<tbody>"]
        for line in body:
            cells = "".join(f"<td><b>{e(t)}</b></td>" if b else f"<td>{e(t)}</td>"
                            for t, b in line)
            parts.append(f"<tr>{cells}</tr>")
        parts += ["</tbody>", "</table>"]
    parts.append("<h2>Panels</h2>")
    for cap, name, stem in panels:
        parts += _panel_html(cap, name, stem, methods)
    parts += ['<p>Per-pair values: <a href="metrics.csv">metrics.csv</a>; this summary as '
              '<a href="summary.md">Markdown</a>.</p>', "</body>", "</html>", ""]
    return "\n".join(parts)
