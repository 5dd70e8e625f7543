// The large-set view of featviz.explore: regl-scatterplot draws the points (WebGL), this
// code adds the page around it. It is appended to regl-scatterplot's bundle, taken at save
// time from the jupyter-scatter wheel, in the same module: `createScatterplot` is the
// bundle's. Used by the saved page and by the Jupyter widget (featviz._explorer_widget).
//
// featvizView(root, meta, raw, host):
//   root: an empty element; meta: the view's description (featviz._explorer_big.meta);
//   raw: Uint8Array of the packed columns; host.sheetUrl(key, j) -> Promise of the URL of
//   sheet j of "thumb" or "detail:<name>"; host.onSelect(indices) is told each selection.
const featvizView = async (root, meta, raw, host) => {
  const n = meta.n;
  const TYPES = { uint8: Uint8Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array };
  const col = (c) => new TYPES[c.dtype](raw.buffer, raw.byteOffset + c.offset, n);
  const columns = Object.fromEntries(meta.columns.map((c) => [c.name, col(c)]));
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const index = columns.index ? (i) => columns.index[i] : (i) => i;
  const state = { t0: performance.now(), ready: null, hover: null, draws: 0, lastDraw: null };

  // -- page -----------------------------------------------------------------------------
  root.classList.add("featviz-big");
  root.innerHTML = `
<div class="featviz-bar"><b>${esc(meta.title)}</b>
 <label>Colour by <select class="featviz-color-by"></select></label>
 <button class="featviz-mode" data-type="freeform" title="drag draws a lasso; shift+drag always does">Lasso</button>
 <button class="featviz-mode" data-type="rectangle" title="drag draws a box">Box</button>
 <span class="featviz-count">0 selected</span></div>
<div class="featviz-main">
 <div class="featviz-plot" style="width:${meta.width}px;height:${meta.height}px">
  <canvas style="width:${meta.width}px;height:${meta.height}px"></canvas>
  <div class="featviz-tip" style="display:none"></div></div>
 <div class="featviz-side"><div class="featviz-legend"></div><div class="featviz-detail"></div></div>
</div>
<div class="featviz-bar"><textarea class="featviz-selected" rows="3" readonly
 placeholder="Selected indices (copy)" style="width:${meta.width}px"></textarea>
 <button class="featviz-copy">Copy indices</button></div>`;
  const $ = (sel) => root.querySelector(sel);
  const tip = $(".featviz-tip"), detail = $(".featviz-detail"), legend = $(".featviz-legend");

  // -- points: x, y in [-1, 1], the colouring in valueA (classes) or valueB (0..1) --------
  const x = new Float32Array(n), y = new Float32Array(n), b = new Float32Array(n);
  const [hx, hy] = meta.xy.half;
  for (let i = 0; i < n; i++) {
    x[i] = ((columns.x[i] - hx) / 32767.5) * 0.95; // a margin at the edges
    y[i] = ((columns.y[i] - hy) / 32767.5) * 0.95;
  }
  if (columns.confidence) for (let i = 0; i < n; i++) b[i] = columns.confidence[i] / 65535;
  const names = (name) => meta.names[name] || [];
  const classes = (name) => {
    if (name !== "correct") return columns[name];
    // correct: the predicted name equals the label's name
    const lab = names("label"), same = names("prediction").map((p) => lab.indexOf(p));
    const out = new Uint8Array(n), l = columns.label, p = columns.prediction;
    for (let i = 0; i < n; i++) out[i] = same[p[i]] === l[i] ? 0 : 1;
    return out;
  };

  const canvas = root.querySelector("canvas");
  const draw = drawer(new URLSearchParams(window.location.search).get("featviz-draw"));
  const sp = (draw === "canvas" ? createCanvasScatterplot : createScatterplot)({
    canvas, width: meta.width, height: meta.height, pointSize: meta.point_size,
    performanceMode: meta.performance_mode, lassoOnLongPress: false, lassoInitiator: false,
    backgroundColor: [1, 1, 1, 1], pointColorHover: [0, 0, 0, 1], deselectOnEscape: true,
  });
  sp.subscribe("draw", () => { state.draws += 1; state.lastDraw = performance.now(); });

  // a class hidden from the legend: alpha 0 (neither drawer draws it), not hovered, not selected
  const hidden = new Set();
  let current = null, codes = null; // the colouring's name and its class code per point
  const isHidden = (i) => hidden.size > 0 && codes !== null && hidden.has(codes[i]);
  const rgba = (hex, a) => [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16) / 255).concat([a]);
  const colorBy = async (name, first) => {
    const c = meta.colors[name];
    if (name !== current) hidden.clear();
    current = name;
    codes = name === "confidence" || name === "all" ? null : classes(name);
    const a = codes === null ? new Float32Array(n) : Float32Array.from(codes);
    const opts = first ? {} : { spatialIndex: sp.get("spatialIndex"), preventFilterReset: true };
    const colors = hidden.size ? c.colors.map((h, k) => rgba(h, hidden.has(k) ? 0 : 1)) : c.colors;
    sp.set({ colorBy: name === "confidence" ? "valueB" : "valueA", pointColor: colors });
    await sp.draw({ x, y, valueA: a, valueB: b }, opts);
    legend.innerHTML = `<b>${esc(name)}</b>` + (name === "confidence"
      ? `<div class="featviz-bar-scale" style="background:linear-gradient(to right,${c.colors.filter((_, k) => k % 32 === 0).join(",")})"></div><span>0</span><span style="float:right">1</span>`
      : c.names.map((s, k) => `<div class="featviz-entry${hidden.has(k) ? " featviz-off" : ""}" data-k="${k}" title="click: hide or show">`
        + `<i style="background:${c.colors[k]}"></i>${esc(s)}</div>`).join(""));
  };
  legend.onclick = async (e) => {
    const entry = e.target.closest(".featviz-entry");
    if (!entry || codes === null) return;
    const k = Number(entry.dataset.k);
    if (!hidden.delete(k)) hidden.add(k);
    await colorBy(current, false);
    const kept = (sp.get("selectedPoints") || []).filter((i) => !isHidden(i));
    sp.select(kept, { preventEvent: true });
    showSelection(kept);
  };
  const select = $(".featviz-color-by");
  for (const name of Object.keys(meta.colors)) select.add(new Option(name, name));
  select.onchange = () => colorBy(select.value, false);
  // Lasso / Box: a drag selects inside a freehand line or a box; the lit one again: pan
  const modes = [...root.querySelectorAll(".featviz-mode")];
  for (const button of modes) {
    button.onclick = () => {
      const on = !button.classList.contains("featviz-on");
      for (const other of modes) other.classList.toggle("featviz-on", on && other === button);
      sp.set({ mouseMode: on ? "lasso" : "panZoom", lassoType: on ? button.dataset.type : "freeform" });
    };
  }

  // -- images: tiles cut out of sheets that load when first needed ------------------------
  const images = new Map();
  const sheetImage = (url) => {
    if (!images.has(url)) {
      const img = new Image();
      img.src = url;
      images.set(url, img.decode().then(() => img));
    }
    return images.get(url);
  };
  const tile = async (el, key, i, px) => {
    const g = meta.sheets[key];
    const j = Math.floor(i / g.per_sheet), k = i % g.per_sheet, [h, w] = g.tile;
    const count = Math.min(g.per_sheet, n - j * g.per_sheet), cols = Math.min(g.per_row, count);
    const f = (px || Math.max(h, w)) / Math.max(h, w);
    const url = await host.sheetUrl(key, j);
    await sheetImage(url);
    const sx = (k % g.per_row) * w * f, sy = Math.floor(k / g.per_row) * h * f;
    const size = `${cols * w * f}px ${Math.ceil(count / cols) * h * f}px`;
    el.style.cssText = `width:${w * f}px;height:${h * f}px;flex:none;background:url('${url}') -${sx}px -${sy}px / ${size};`
      + (f > 1 ? "image-rendering:pixelated" : "");
    el.dataset.index = String(i);
  };

  const describe = (i) => {
    let out = `<b>#${index(i)}</b>`;
    for (const name of ["label", "prediction"]) if (columns[name]) out += `<br>${name}: ${esc(names(name)[columns[name][i]])}`;
    if (columns.confidence) out += `<br>confidence: ${b[i].toFixed(3)}`;
    return out;
  };
  // the hovered point first, then (where the drawer reports them) the nearest others under
  // the pointer, HOVER_MAX in all, and "+N more"; kept inside the plot
  sp.subscribe("pointover", async (i) => {
    if (isHidden(i)) return;
    const t = performance.now();
    state.hover = { i, shown: null };
    const hits = sp.get("hoverHits") || { points: [i], total: 1 };
    const near = [i, ...hits.points.filter((j) => j !== i)].slice(0, meta.hover_max);
    const more = Math.max(0, hits.total - near.length);
    tip.innerHTML = near.map((j) => `<div class="featviz-row"><div class="featviz-thumb"></div><div>${describe(j)}</div></div>`).join("")
      + (more ? `<div class="featviz-more">+${more} more</div>` : "");
    const rel = sp.getScreenPosition(i) || [0, 0];
    tip.style.cssText = "display:flex;left:0;top:0;visibility:hidden";
    const w = tip.offsetWidth + (meta.sheets.thumb ? meta.sheets.thumb.tile[1] : 0), h = tip.offsetHeight;
    const left = rel[0] + 12 + w > meta.width ? Math.max(0, rel[0] - 12 - w) : rel[0] + 12;
    const top = rel[1] + 12 + h > meta.height ? Math.max(0, rel[1] - 12 - h) : rel[1] + 12;
    tip.style.cssText = `display:flex;left:${left}px;top:${top}px`;
    if (meta.sheets.thumb) {
      const thumbs = [...tip.querySelectorAll(".featviz-thumb")];
      await Promise.all(near.map((j, k) => tile(thumbs[k], "thumb", j)));
    }
    if (state.hover && state.hover.i === i) state.hover.shown = performance.now() - t;
  });
  sp.subscribe("pointout", () => { tip.style.display = "none"; state.hover = null; });

  // -- selection -------------------------------------------------------------------------
  const text = $(".featviz-selected"), count = $(".featviz-count");
  const showSelection = (points) => {
    const ids = Array.from(points, index).sort((p, q) => p - q);
    text.value = ids.join(", ");
    count.textContent = `${ids.length} selected` + (ids.length ? " (indices below)" : "");
    host.onSelect(ids);
    detail.innerHTML = "";
    if (!points.length) return;
    const i = points.reduce((p, q) => (index(q) < index(p) ? q : p));
    detail.innerHTML = describe(i).replace(/<br>/g, " &nbsp;")
      + (points.length > 1 ? ` (first of ${points.length})` : "") + '<div class="featviz-details"></div>';
    for (const key of Object.keys(meta.sheets).filter((s) => s.startsWith("detail:"))) {
      const fig = document.createElement("figure");
      fig.innerHTML = `<div class="featviz-detail-image" data-name="${esc(key.slice(7))}"></div><figcaption>${esc(key.slice(7))}</figcaption>`;
      detail.querySelector(".featviz-details").append(fig);
      tile(fig.firstChild, key, i, meta.detail_px);
    }
  };
  sp.subscribe("select", ({ points }) => {
    const kept = Array.from(points).filter((i) => !isHidden(i));
    if (kept.length < points.length) sp.select(kept, { preventEvent: true }); // drawn but hidden
    showSelection(kept);
  });
  sp.subscribe("deselect", () => showSelection([]));
  $(".featviz-copy").onclick = () => navigator.clipboard.writeText(text.value).catch(() => {});

  await colorBy(select.value || Object.keys(meta.colors)[0], true);
  state.ready = performance.now() - state.t0;
  state.draw = draw;
  // ms from a zoom to its redraw finished (the pixels read back), for benchmarks and tests
  const zoomMs = (rect) => new Promise((done) => {
    const t = performance.now();
    sp.subscribe("draw", () => {
      if (sp.finish) sp.finish();
      else { const gl = sp.get("regl")._gl; gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4)); }
      done(performance.now() - t);
    }, 1);
    sp.zoomToArea(rect, { transition: false });
  });
  return { sp, state, showSelection, zoomMs };
};

// "webgl" (regl-scatterplot) where WebGL runs on a GPU, "canvas" (_explorer_canvas.js) where
// it runs in software; `want` ("webgl" or "canvas", the page URL's ?featviz-draw=) overrides.
const drawer = (want) => {
  if (want === "webgl" || want === "canvas") return want;
  const gl = document.createElement("canvas").getContext("webgl");
  if (!gl) return "canvas";
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return /swiftshader|llvmpipe|softpipe|software|basic render/i.test(name) ? "canvas" : "webgl";
};
