// featviz's point drawer for browsers that render WebGL in software (no GPU: SwiftShader,
// llvmpipe). Every WebGL renderer pays a per-vertex cost there: a minimal WebGL2 shader takes
// about 0.55 s per frame of 1,000,000 points on 2 cores, regl-scatterplot 0.65-0.72 s; writing
// the points' pixels from JavaScript into a 2D canvas takes 16-40 ms (docs/explore.md).
//
// createCanvasScatterplot(opts) answers the part of regl-scatterplot's interface that
// featvizView uses (subscribe, get, set, draw, select, deselect, zoomToArea,
// getScreenPosition, destroy), so the page code above it is the same for both:
//   opts: canvas, width, height (CSS px), pointSize (CSS px), deselectOnEscape.
//   set({mouseMode: "panZoom" | "lasso", lassoType: "freeform" | "rectangle"}): what a drag
//   does (shift+drag always selects).
//   draw({x, y, valueA, valueB}): x, y in [-1, 1]; colorBy "valueA" reads class codes
//   (index into pointColor), "valueB" values in [0, 1] (a colour ramp). A pointColor entry
//   whose alpha is 0 hides its points: not drawn, not hovered, not selected.
const createCanvasScatterplot = (opts) => {
  const { canvas, width: W, height: H } = opts;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(W * dpr);
  canvas.height = Math.round(H * dpr);
  const CW = canvas.width, CH = canvas.height;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(CW, CH), px = new Uint32Array(image.data.buffer);
  const overlay = document.createElement("canvas"); // the hover ring and the lasso
  overlay.width = CW;
  overlay.height = CH;
  overlay.style.cssText = `position:absolute;left:0;top:0;width:${W}px;height:${H}px;pointer-events:none`;
  canvas.after(overlay);
  const octx = overlay.getContext("2d");
  octx.scale(dpr, dpr);

  const props = {
    mouseMode: "panZoom", lassoType: "freeform", colorBy: "valueA", pointColor: ["#1f77b4"],
    pointSize: opts.pointSize || 3,
  };
  const subs = new Map();
  const emit = (name, arg) => {
    for (const s of [...(subs.get(name) || [])]) {
      s.times -= 1;
      if (s.times <= 0) subs.get(name).delete(s);
      s.fn(arg);
    }
  };
  let pts = null; // {n, x, y, code (Uint16 palette index per point)}
  let grid = null; // the points bucketed in G x G cells of [-1, 1]^2, for hover and lasso
  let full = new Uint32Array(0), faded = full, shown = new Uint8Array(0); // per palette entry
  let selected = new Int32Array(0), isSelected = new Uint8Array(0), hovered = -1;
  const cam = { cx: 0, cy: 0, zoom: 1 };
  const base = Math.min(W, H) / 2; // CSS px per data unit at zoom 1
  const scale = () => base * cam.zoom;
  const toScreen = (x, y) => [W / 2 + (x - cam.cx) * scale(), H / 2 - (y - cam.cy) * scale()];
  const toData = (u, v) => [cam.cx + (u - W / 2) / scale(), cam.cy - (v - H / 2) / scale()];

  // -- colours: "#rrggbb[aa]" or [r, g, b, a] in 0..1, packed as the canvas's RGBA bytes -----
  const rgba = (c) => {
    if (typeof c === "string") {
      const h = c.replace("#", "");
      const v = (k) => parseInt(h.slice(k, k + 2), 16);
      return [v(0), v(2), v(4), h.length >= 8 ? v(6) : 255];
    }
    return [0, 1, 2, 3].map((k) => Math.round(255 * (c[k] === undefined ? 1 : c[k])));
  };
  const pack = (r, g, b) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
  const setPalette = () => {
    const pal = props.pointColor.map(rgba);
    full = Uint32Array.from(pal, ([r, g, b]) => pack(r, g, b));
    const fade = (t) => Math.round(255 - (255 - t) * 0.2);
    faded = Uint32Array.from(pal, ([r, g, b]) => pack(fade(r), fade(g), fade(b)));
    shown = Uint8Array.from(pal, (c) => (c[3] > 0 ? 1 : 0));
  };
  const codes = (data) => {
    const n = data.x.length, code = new Uint16Array(n), last = Math.max(0, props.pointColor.length - 1);
    if (props.colorBy === "valueB" && data.valueB) {
      for (let i = 0; i < n; i++) code[i] = Math.min(last, Math.max(0, Math.round(data.valueB[i] * last)));
    } else if (data.valueA) {
      for (let i = 0; i < n; i++) code[i] = Math.min(last, Math.max(0, data.valueA[i]));
    }
    return code;
  };
  const visible = (i) => shown[pts.code[i]] === 1;

  // -- the spatial index: a counting sort of the points into cells --------------------------
  const buildGrid = (x, y, n) => {
    const G = Math.max(1, Math.min(1024, Math.ceil(Math.sqrt(n / 4))));
    const cell = (v) => Math.min(G - 1, Math.max(0, Math.floor((v + 1) * 0.5 * G)));
    const start = new Int32Array(G * G + 1), order = new Int32Array(n), key = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      key[i] = cell(y[i]) * G + cell(x[i]);
      start[key[i] + 1] += 1;
    }
    for (let k = 0; k < G * G; k++) start[k + 1] += start[k];
    const fill = start.slice(0, G * G);
    for (let i = 0; i < n; i++) order[fill[key[i]]++] = i;
    return { G, cell, start, order };
  };
  // every visible point in the data box [x0, x1] x [y0, y1] (cell-wise, a superset): fn(i)
  const inBox = (x0, y0, x1, y1, fn) => {
    const { G, cell, start, order } = grid;
    for (let gy = cell(y0); gy <= cell(y1); gy++) {
      for (let gx = cell(x0), k = gy * G + gx; gx <= cell(x1); gx++, k++) {
        for (let j = start[k]; j < start[k + 1]; j++) if (visible(order[j])) fn(order[j]);
      }
    }
  };
  // the point under (u, v) (nearest within the hover radius; on a tie the one drawn on top);
  // `hits` keeps the HITS nearest and how many were in reach
  const HITS = 8;
  let hits = { points: [], total: 0 };
  const nearest = (u, v) => {
    const r = Math.max(4, props.pointSize) / scale(), [dx, dy] = toData(u, v), found = [];
    inBox(dx - r, dy - r, dx + r, dy + r, (i) => {
      const d = (pts.x[i] - dx) ** 2 + (pts.y[i] - dy) ** 2;
      if (d <= r * r) found.push([d, i]);
    });
    found.sort((p, q) => p[0] - q[0] || q[1] - p[1]);
    hits = { points: found.slice(0, HITS).map((p) => p[1]), total: found.length };
    return found.length ? found[0][1] : -1;
  };

  // -- drawing -------------------------------------------------------------------------------
  const square = (u, v, size, colour) => {
    const a0 = Math.max(0, u), b0 = Math.max(0, v), a1 = Math.min(CW, u + size), b1 = Math.min(CH, v + size);
    for (let b = b0; b < b1; b++) px.fill(colour, b * CW + a0, b * CW + a1);
  };
  const render = () => {
    px.fill(0xffffffff);
    if (pts) {
      const { n, x, y, code } = pts, s = scale() * dpr;
      const ox = CW / 2 - cam.cx * s, oy = CH / 2 + cam.cy * s;
      const ps = Math.max(1, Math.round(props.pointSize * dpr)), half = ps >> 1;
      const maxU = CW - ps, maxV = CH - ps, pal = selected.length ? faded : full;
      for (let i = 0; i < n; i++) {
        const c = code[i];
        if (shown[c] === 0) continue;
        const u = Math.floor(x[i] * s + ox) - half, v = Math.floor(oy - y[i] * s) - half;
        if (u < 0 || v < 0 || u > maxU || v > maxV) continue;
        const colour = pal[c];
        for (let a = 0, o = v * CW + u; a < ps; a++, o += CW) for (let b = 0; b < ps; b++) px[o + b] = colour;
      }
      for (const i of selected) { // on top, with a dark border
        const u = Math.floor(x[i] * s + ox) - half, v = Math.floor(oy - y[i] * s) - half;
        square(u - dpr, v - dpr, ps + 2 * dpr, 0xff333333);
        square(u, v, ps, full[code[i]]);
      }
    }
    ctx.putImageData(image, 0, 0);
    drawOverlay();
    emit("draw");
  };
  let queued = false;
  const redraw = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; render(); });
  };
  let lasso = null; // [[u, v], ...] CSS px while a lasso is drawn
  const drawOverlay = () => {
    octx.clearRect(0, 0, W, H);
    if (hovered >= 0) {
      const [u, v] = toScreen(pts.x[hovered], pts.y[hovered]);
      octx.strokeStyle = "#000";
      octx.lineWidth = 1.5;
      octx.strokeRect(u - props.pointSize / 2 - 2, v - props.pointSize / 2 - 2, props.pointSize + 4, props.pointSize + 4);
    }
    if (lasso && lasso.length > 1) {
      octx.beginPath();
      lasso.forEach(([u, v], k) => (k ? octx.lineTo(u, v) : octx.moveTo(u, v)));
      octx.closePath();
      octx.fillStyle = "rgba(0, 102, 204, 0.08)";
      octx.fill();
      octx.strokeStyle = "#0066cc";
      octx.lineWidth = 1;
      octx.stroke();
    }
  };

  // -- selection -----------------------------------------------------------------------------
  const select = (points, { preventEvent = false } = {}) => {
    if (!pts) return;
    const ok = Array.from(points).filter((i) => Number.isInteger(i) && i >= 0 && i < pts.n && visible(i));
    selected = Int32Array.from(new Set(ok)).sort();
    isSelected = new Uint8Array(pts.n);
    for (const i of selected) isSelected[i] = 1;
    render();
    if (!preventEvent) emit(selected.length ? "select" : "deselect", { points: Array.from(selected) });
  };
  const deselect = (o = {}) => select([], o);
  const insideLasso = (poly) => { // the visible points inside the polygon (data units)
    const xs = poly.map((p) => p[0]), ys = poly.map((p) => p[1]), out = [];
    inBox(Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys), (i) => {
      const x = pts.x[i], y = pts.y[i];
      let inside = false;
      for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
        const [xa, ya] = poly[a], [xb, yb] = poly[b];
        if (ya > y !== yb > y && x < ((xb - xa) * (y - ya)) / (yb - ya) + xa) inside = !inside;
      }
      if (inside) out.push(i);
    });
    return out;
  };

  // -- the pointer ---------------------------------------------------------------------------
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  const hover = (i) => {
    if (i === hovered) return;
    if (hovered >= 0) emit("pointout", hovered);
    hovered = i;
    drawOverlay();
    if (i >= 0) emit("pointover", i);
  };
  let drag = null, pending = null;
  const onDown = (e) => {
    if (e.button !== 0 || !pts) return;
    canvas.setPointerCapture(e.pointerId);
    const p = at(e);
    drag = { start: p, last: p, moved: false, lasso: props.mouseMode === "lasso" || e.shiftKey };
    if (drag.lasso) lasso = [p];
  };
  const onMove = (e) => {
    const p = at(e);
    if (!drag) {
      if (!pending) requestAnimationFrame(() => { if (pts && pending) hover(nearest(...pending)); pending = null; });
      pending = p;
      return;
    }
    const [du, dv] = [p[0] - drag.last[0], p[1] - drag.last[1]];
    if (Math.hypot(p[0] - drag.start[0], p[1] - drag.start[1]) > 3) drag.moved = true;
    if (drag.lasso && props.lassoType === "rectangle") { // a box: its corners
      const [s0, s1] = drag.start;
      lasso = [[s0, s1], [p[0], s1], p, [s0, p[1]]];
      drawOverlay();
      return;
    }
    if (drag.lasso) {
      if (Math.hypot(du, dv) >= 2) { lasso.push(p); drag.last = p; drawOverlay(); }
      return;
    }
    drag.last = p;
    cam.cx -= du / scale();
    cam.cy += dv / scale();
    hover(-1);
    redraw();
  };
  const onUp = (e) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    const poly = lasso;
    lasso = null;
    if (!d.moved) { // a click: its point, or nothing
      const i = nearest(...at(e));
      if (i >= 0) select([i]); else if (selected.length) deselect(); else drawOverlay();
      return;
    }
    if (d.lasso && poly.length >= 3) select(insideLasso(poly.map(([u, v]) => toData(u, v))));
    else drawOverlay();
  };
  const onWheel = (e) => {
    e.preventDefault();
    const [u, v] = at(e), [dx, dy] = toData(u, v);
    const step = e.deltaY * (e.deltaMode === 1 ? 33 : e.deltaMode === 2 ? H : 1); // lines, pages
    cam.zoom = Math.min(1e5, Math.max(0.05, cam.zoom * Math.exp(-step * 0.0015)));
    cam.cx = dx - (u - W / 2) / scale();
    cam.cy = dy + (v - H / 2) / scale();
    hover(-1);
    redraw();
  };
  const onKey = (e) => { if (e.key === "Escape" && opts.deselectOnEscape !== false && selected.length) deselect(); };
  const onLeave = () => { if (!drag) { pending = null; hover(-1); } };
  const listeners = [
    [canvas, "pointerdown", onDown], [canvas, "pointermove", onMove], [canvas, "pointerup", onUp],
    [canvas, "pointerleave", onLeave], [canvas, "wheel", onWheel, { passive: false }], [window, "keydown", onKey],
  ];
  for (const [el, name, fn, o] of listeners) el.addEventListener(name, fn, o);
  canvas.style.touchAction = "none";

  return {
    subscribe: (name, fn, times = Infinity) => {
      const s = { fn, times };
      if (!subs.has(name)) subs.set(name, new Set());
      subs.get(name).add(s);
      return s;
    },
    unsubscribe: (name, s) => subs.get(name)?.delete(s),
    get: (key) => ({
      mouseMode: props.mouseMode, lassoType: props.lassoType, selectedPoints: Array.from(selected),
      spatialIndex: grid, camera: { ...cam }, hoverHits: hits,
    })[key],
    set: (changes) => {
      Object.assign(props, changes);
      if ("pointColor" in changes) setPalette();
      if (("pointSize" in changes || "pointColor" in changes) && pts) redraw();
    },
    draw: (data) => {
      const n = data.x.length;
      if (!pts || pts.x !== data.x || pts.y !== data.y) grid = buildGrid(data.x, data.y, n);
      pts = { n, x: data.x, y: data.y, code: codes(data) };
      if (isSelected.length !== n) { isSelected = new Uint8Array(n); selected = new Int32Array(0); }
      if (hovered >= n) hovered = -1;
      render();
      return Promise.resolve();
    },
    select,
    deselect,
    zoomToArea: ({ x, y, width, height }) => new Promise((resolve) => {
      cam.cx = x + width / 2;
      cam.cy = y + height / 2;
      cam.zoom = Math.min(W / width, H / height) / base;
      hover(-1);
      const s = { fn: resolve, times: 1 };
      if (!subs.has("draw")) subs.set("draw", new Set());
      subs.get("draw").add(s);
      redraw();
    }),
    getScreenPosition: (i) => (pts && i >= 0 && i < pts.n ? toScreen(pts.x[i], pts.y[i]) : undefined),
    finish: () => ctx.getImageData(0, 0, 1, 1), // the pixels are on the canvas when this returns
    destroy: () => {
      for (const [el, name, fn] of listeners) el.removeEventListener(name, fn);
      overlay.remove();
    },
  };
};
