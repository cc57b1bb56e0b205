/* bsafusion view: draws one pair at a time from the PNG atlases and flow.js that
   bsafusion.viewer.page writes; data.js sets window.BSAVIEW_DATA. No dependencies. */
(function () {
  "use strict";
  const D = window.BSAVIEW_DATA;
  const $ = (id) => document.getElementById(id);
  const ZOOMS = [1, 2, 3, 4, 6, 8, 12, 16];
  const KINDS = ["fixed", "moving", "aligned", "fused", "heat"];
  const state = { index: -1, slice: 0, zoom: 1, zoomSet: false, cmp: "aligned",
                  images: {}, flow: null, tileSet: false, spacingSet: false };
  const flows = {};  // pair id -> decoded flow samples
  const visible = [];  // indices of the pairs the search leaves in the list

  function pair() { return D.pairs[state.index]; }

  // ------------------------------------------------------------------ pair list
  function buildList() {
    const list = $("list");
    const frag = document.createDocumentFragment();
    D.pairs.forEach((p, i) => {
      const li = document.createElement("li");
      li.dataset.index = i;
      li.dataset.search = (p.name + " " + p.group).toLowerCase();
      if (p.thumb) {
        const img = document.createElement("img");
        img.loading = "lazy";  // before src: off-screen thumbnails are not fetched
        img.decoding = "async";
        img.width = p.thumb[0];
        img.height = p.thumb[1];
        img.alt = "";
        img.src = p.dir + "/thumb.png";
        li.appendChild(img);
      }
      const span = document.createElement("span");
      span.textContent = p.group ? p.name + " \u00b7 " + p.group : p.name;
      li.title = span.textContent;
      li.appendChild(span);
      li.addEventListener("click", () => select(i));
      frag.appendChild(li);
    });
    list.appendChild(frag);
    filter();
  }

  function filter() {
    const words = $("search").value.toLowerCase().split(/\s+/).filter(Boolean);
    visible.length = 0;
    for (const li of $("list").children) {
      const show = words.every((w) => li.dataset.search.includes(w));
      li.hidden = !show;
      if (show) visible.push(Number(li.dataset.index));
    }
    $("count").textContent = visible.length + " of " + D.pairs.length + " pairs";
  }

  // ------------------------------------------------------------------ loading a pair
  function select(i) {
    if (i < 0 || i >= D.pairs.length) return;
    const p = D.pairs[i];
    const same = i === state.index;
    state.index = i;
    for (const li of $("list").children) {
      li.classList.toggle("current", Number(li.dataset.index) === i);
    }
    const li = $("list").children[i];
    if (li && li.scrollIntoView) li.scrollIntoView({ block: "nearest" });
    if (location.hash.slice(1) !== p.id) history.replaceState(null, "", "#" + p.id);
    $("pairname").textContent = p.group ? p.name + " \u00b7 " + p.group : p.name;
    $("notes").textContent = D.notes.concat(p.note ? [p.note] : []).join(" \u00b7 ");
    if (same) return render();
    setupControls(p);
    loadImages(p);
    state.flow = flows[p.id] || null;
    if (p.flow && !state.flow) {
      const s = document.createElement("script");
      s.src = p.dir + "/flow.js";
      document.body.appendChild(s);
    }
  }

  function setupControls(p) {
    state.slice = Math.floor(p.slices / 2);
    $("slice").max = p.slices - 1;
    $("slicebox").hidden = p.slices < 2;
    if (!state.zoomSet) {
      const fit = Math.max(1, Math.floor(320 / Math.max(p.w, p.h)));
      state.zoom = ZOOMS.filter((z) => z <= fit).pop();
      $("zoom").value = state.zoom;
    }
    $("tile").max = Math.max(2, Math.floor(Math.min(p.w, p.h) / 2));
    if (!state.tileSet) $("tile").value = Math.max(1, Math.round(Math.min(p.w, p.h) / 8));
    $("spacing").max = Math.max(2, Math.floor(Math.max(p.w, p.h) / 4));
    if (!state.spacingSet) $("spacing").value = Math.max(2, Math.round(Math.max(p.w, p.h) / 16));
  }

  function loadImages(p) {
    const index = state.index;
    const wanted = p.kinds.concat(p.flow ? ["heat"] : []);
    let pending = wanted.length;
    let broken = 0;
    state.images = {};
    document.body.dataset.images = "loading";
    const done = () => {
      if (index !== state.index) return;  // another pair was chosen meanwhile
      if (--pending > 0) return;
      document.body.dataset.images = broken ? "broken" : "ok";
      render();
    };
    for (const kind of wanted) {
      const img = new Image();
      img.onload = () => { state.images[kind] = img; done(); };
      img.onerror = () => { broken += 1; done(); };
      img.src = p.dir + "/" + kind + ".png";
    }
    if (!wanted.length) done();
  }

  function decode(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Int16Array(bytes.buffer);  // little-endian, as written
  }

  // ------------------------------------------------------------------ drawing
  function canvas(id, p) {
    const c = $(id);
    const w = p.w * state.zoom, h = p.h * state.zoom;
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    const ctx = c.getContext("2d");
    ctx.imageSmoothingEnabled = false;  // zoom with nearest-neighbour pixels
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, w, h);
    return ctx;
  }

  function drawSlice(ctx, kind, p) {
    const img = state.images[kind];
    if (!img) return false;
    const k = state.slice, z = state.zoom;
    const sx = (k % p.cols) * p.w, sy = Math.floor(k / p.cols) * p.h;
    ctx.drawImage(img, sx, sy, p.w, p.h, 0, 0, p.w * z, p.h * z);
    return true;
  }

  function missing(ctx, text) {
    ctx.fillStyle = "#888";
    ctx.font = "12px sans-serif";
    ctx.fillText(text, 6, 16);
  }

  function drawTiles(p) {
    for (const kind of ["fixed", "moving", "aligned", "fused"]) {
      const ctx = canvas("c-" + kind, p);
      if (!drawSlice(ctx, kind, p)) missing(ctx, "not available");
    }
  }

  function drawOverlay(p) {
    const ctx = canvas("c-overlay", p);
    const alpha = $("opacity").value / 100;
    $("cap-overlay").textContent = "overlay: fixed + " + state.cmp + " at " +
      Math.round(alpha * 100) + "%";
    if (!drawSlice(ctx, "fixed", p)) missing(ctx, "no fixed image");
    ctx.globalAlpha = alpha;
    drawSlice(ctx, state.cmp, p);
    ctx.globalAlpha = 1;
  }

  function drawChecker(p) {
    const ctx = canvas("c-checker", p);
    const t = Number($("tile").value), z = state.zoom;
    $("tileout").textContent = t;
    $("cap-checker").textContent = "checkerboard: fixed / " + state.cmp;
    if (!drawSlice(ctx, "fixed", p)) missing(ctx, "no fixed image");
    ctx.save();
    ctx.beginPath();
    for (let y = 0, r = 0; y < p.h; y += t, r++) {
      for (let x = (r % 2) * t; x < p.w; x += 2 * t) ctx.rect(x * z, y * z, t * z, t * z);
    }
    ctx.clip();
    drawSlice(ctx, state.cmp, p);
    ctx.restore();
  }

  function drawGrid(p) {
    const ctx = canvas("c-grid", p);
    const f = state.flow, z = state.zoom;
    const spacing = Number($("spacing").value);
    $("spacingout").textContent = spacing;
    ctx.globalAlpha = 0.4;
    drawSlice(ctx, "fixed", p);
    ctx.globalAlpha = 1;
    if (!f) return missing(ctx, p.flow ? "loading the field..." : "no field");
    const every = Math.max(1, Math.round(spacing / f.step));
    const base = state.slice * f.rows * f.cols;
    const point = (r, c) => {
      const i = base + r * f.cols + c;
      return [(c * f.step + f.x[i] / f.unit + 0.5) * z, (r * f.step + f.y[i] / f.unit + 0.5) * z];
    };
    ctx.strokeStyle = "#5adcff";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let r = 0; r < f.rows; r += every) {
      for (let c = 0; c < f.cols; c++) ctx[c ? "lineTo" : "moveTo"](...point(r, c));
    }
    for (let c = 0; c < f.cols; c += every) {
      for (let r = 0; r < f.rows; r++) ctx[r ? "lineTo" : "moveTo"](...point(r, c));
    }
    ctx.stroke();
  }

  function drawHeat(p) {
    const ctx = canvas("c-heat", p);
    if (!p.flow || !drawSlice(ctx, "heat", p)) missing(ctx, "no field");
    $("cap-heat").textContent = p.flow ? "|\u03c6| in px of the fixed image (max " +
      p.peak.toFixed(2) + " px)" : "|\u03c6|";
    const bar = $("c-bar");
    bar.width = Math.max(180, p.w * state.zoom);
    const b = bar.getContext("2d");
    b.clearRect(0, 0, bar.width, bar.height);
    if (!p.flow) return;
    const grad = b.createLinearGradient(0, 0, bar.width, 0);
    D.heat.forEach((rgb, i) => grad.addColorStop(i / (D.heat.length - 1), "rgb(" + rgb + ")"));
    b.fillStyle = grad;
    b.fillRect(0, 0, bar.width, 12);
    b.fillStyle = "#ddd";
    b.font = "11px sans-serif";
    const ticks = [0, p.top / 2, p.top];
    ticks.forEach((v, i) => {
      b.textAlign = ["left", "center", "right"][i];
      b.fillText(v.toFixed(v < 10 ? 1 : 0) + (i === 2 ? " px" : ""), (i / 2) * bar.width, 26);
    });
  }

  function render() {
    const p = pair();
    if (!p) return;
    $("slice").value = state.slice;
    $("sliceout").textContent = (state.slice + 1) + " / " + p.slices;
    document.body.dataset.pair = p.id;
    document.body.dataset.slice = state.slice;
    drawTiles(p);
    drawOverlay(p);
    drawChecker(p);
    drawGrid(p);
    drawHeat(p);
  }

  // ------------------------------------------------------------------ controls
  function setSlice(k) {
    const p = pair();
    if (!p) return;
    state.slice = Math.min(p.slices - 1, Math.max(0, k));
    render();
  }

  function setZoom(step) {
    const i = ZOOMS.indexOf(state.zoom) + step;
    if (i < 0 || i >= ZOOMS.length) return;
    state.zoom = ZOOMS[i];
    state.zoomSet = true;
    $("zoom").value = state.zoom;
    render();
  }

  function setCompare(kind) {
    state.cmp = kind;
    for (const r of document.querySelectorAll("input[name=cmp]")) r.checked = r.value === kind;
    render();
  }

  function step(delta) {
    if (!visible.length) return;
    const at = visible.indexOf(state.index);
    const next = at < 0 ? 0 : Math.min(visible.length - 1, Math.max(0, at + delta));
    select(visible[next]);
  }

  const SLICE_KEYS = {  // only for volumes: elsewhere these keys scroll the page
    ArrowUp: () => setSlice(state.slice + 1), PageUp: () => setSlice(state.slice + 1),
    ArrowDown: () => setSlice(state.slice - 1), PageDown: () => setSlice(state.slice - 1),
    Home: () => setSlice(0), End: () => setSlice(Infinity),
  };
  const KEYS = {
    n: () => step(1), p: () => step(-1),
    a: () => setCompare(state.cmp === "aligned" ? "moving" : "aligned"),
    "+": () => setZoom(1), "=": () => setZoom(1), "-": () => setZoom(-1),
    "/": () => $("search").focus(),
  };

  function onKey(e) {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    const volume = pair() && pair().slices > 1;
    const action = KEYS[e.key] || (volume ? SLICE_KEYS[e.key] : undefined);
    if (!action || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault();
    action();
  }

  function wire() {
    for (const z of ZOOMS) $("zoom").add(new Option(z + "\u00d7", z));
    $("zoom").addEventListener("change", (e) => {
      state.zoom = Number(e.target.value);
      state.zoomSet = true;
      render();
    });
    $("slice").addEventListener("input", (e) => setSlice(Number(e.target.value)));
    $("opacity").addEventListener("input", render);
    $("tile").addEventListener("input", () => { state.tileSet = true; render(); });
    $("spacing").addEventListener("input", () => { state.spacingSet = true; render(); });
    for (const r of document.querySelectorAll("input[name=cmp]")) {
      r.addEventListener("change", () => setCompare(r.value));
    }
    $("search").addEventListener("input", filter);
    $("search").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && visible.length) select(visible[0]);
    });
    document.addEventListener("keydown", onKey);
    window.addEventListener("hashchange", fromHash);
  }

  function fromHash() {
    const id = decodeURIComponent(location.hash.slice(1));
    const i = D.pairs.findIndex((p) => p.id === id);
    select(i >= 0 ? i : Math.max(0, state.index));
  }

  window.BSAView = {
    state: state,
    select: select,
    setSlice: setSlice,
    flowLoaded: function (id, f) {
      flows[id] = { step: f.step, rows: f.rows, cols: f.cols, unit: f.unit,
                    x: decode(f.x), y: decode(f.y) };
      if (pair() && pair().id === id) {
        state.flow = flows[id];
        render();
      }
    },
  };

  document.title = D.title;
  $("title").textContent = D.title;
  wire();
  buildList();
  fromHash();
})();
