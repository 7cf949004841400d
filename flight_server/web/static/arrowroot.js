/* arrowroot.js: the dataset page's interactive plots.
 *
 * Each <section class="view" data-json="/api/view/..."> gets its numbers from the HTTP API (JSON,
 * already reduced on the server: bins, min/max per pixel, one plane) and draws them: uPlot
 * (vendored) for histograms, series and scatter plots, a canvas of our own for colour maps and
 * images. The section's form still works without JavaScript (the page reloads with a PNG); with it,
 * every change redraws in place. The pure helpers at the top are tested with node (tests/js/).
 */
(function (root) {
  "use strict";

  // ------------------------------------------------------------ pure helpers

  // viridis, 9 stops (matplotlib's), interpolated linearly
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

  function viridis(t) {
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    const x = t * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
    const f = x - i;
    const a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * f));
  }

  /** A value → [0, 1] on a linear or log scale; null for values the scale cannot show. */
  function colourScale(min, max, log) {
    if (log) {
      if (!(min > 0) || !(max > 0)) return () => null;
      const lo = Math.log10(min), hi = Math.log10(max), span = hi - lo || 1;
      return (v) => (v > 0 && Number.isFinite(v) ? (Math.log10(v) - lo) / span : null);
    }
    const span = max - min || 1;
    return (v) => (v === null || !Number.isFinite(v) ? null : (v - min) / span);
  }

  function decodeF32(b64) {
    const bin = typeof atob === "function" ? atob(b64) : Buffer.from(b64, "base64").toString("binary");
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }

  /** Bin edges and contents → uPlot's x and y for a step drawn from each left edge. */
  function steps(edges, values) {
    const ys = values.slice();
    ys.push(values.length ? values[values.length - 1] : null);
    return [edges.slice(), ys];
  }

  /** ~n round tick values covering [lo, hi]. */
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / Math.max(1, n);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    return String(Math.round(v * 1e4) / 1e4);
  }

  /** The plane text ("0,:,2,:") of the shown axes and the indices of the others. */
  function planeText(ndim, shown, at) {
    const out = [];
    for (let i = 0; i < ndim; i++) out.push(shown.includes(i) ? ":" : String(at[i] || 0));
    return out.join(",");
  }

  function parsePlane(text, ndim) {
    const parts = (text || "").split(",").map((s) => s.trim());
    if (parts.length !== ndim) return null;
    const shown = [], at = [];
    parts.forEach((p, i) => {
      if (p === ":") { shown.push(i); at.push(0); } else at.push(parseInt(p, 10) || 0);
    });
    return shown.length === 2 ? { shown, at } : null;
  }

  function isoUTC(unix) {
    return new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "").replace("Z", "");
  }

  /** gwpy's axis label: seconds from the range's start, with its UTC date and its own scale. */
  function timeLabel(v) {
    const scale = (v.scale || "gps").toUpperCase();
    const origin = Number.isInteger(v.origin) ? String(v.origin) : v.origin.toFixed(6);
    return `Time [s] from ${isoUTC(v.utc_origin)} UTC (${scale} ${origin})`;
  }

  function withUnit(name, unit) {
    return unit ? `${name} [${unit}]` : name;
  }

  /** Page form fields → the view's JSON parameters (the page names each view's column its own way). */
  const VIEW_COLUMN = { column: "hist", plane: "image", series: "line" };
  const PAGE_COLUMNS = new Set(Object.values(VIEW_COLUMN));
  const CLIENT_ONLY = new Set(["clock", "rows", "live"]);

  function viewParams(view, entries) {
    const out = new URLSearchParams();
    out.set("view", view);
    for (const [k, v] of entries) {
      if (CLIENT_ONLY.has(k) || v === "") continue;
      if (k === VIEW_COLUMN[view]) out.set("column", v);
      else if (!PAGE_COLUMNS.has(k) && k !== "column" && k !== "view") out.append(k, v);
    }
    return out;
  }

  const api = { viridis, colourScale, decodeF32, steps, niceTicks, fmt, planeText, parsePlane, isoUTC,
    timeLabel, withUnit, viewParams };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  root.arrowroot = api;
  if (typeof document === "undefined") return;

  // ------------------------------------------------------------ the page

  const BLUE = "#1f4e9c";

  function size(el) {
    const width = Math.max(280, Math.min(900, el.clientWidth || 640));
    return { width, height: Math.round(Math.min(460, Math.max(240, width * 0.58))) };
  }

  function clear(el) {
    if (el._arrowroot && el._arrowroot.plot) el._arrowroot.plot.destroy();
    el._arrowroot = null;
    el.textContent = "";
  }

  /** Wheel zooms x around the cursor; shift-drag pans; uPlot's own drag zooms, double-click resets. */
  function zoomPan(u, onChange) {
    const over = u.over;
    over.addEventListener("wheel", (e) => {
      e.preventDefault();
      const { left } = u.cursor;
      const x = u.posToVal(left, "x");
      const { min, max } = u.scales.x;
      const f = e.deltaY < 0 ? 0.8 : 1.25;
      u.setScale("x", { min: x - (x - min) * f, max: x + (max - x) * f });
      if (onChange) onChange(u);
    }, { passive: false });
    over.addEventListener("mousedown", (e) => {
      if (!e.shiftKey) return;
      e.stopPropagation();
      e.preventDefault();
      const x0 = e.clientX, { min, max } = u.scales.x;
      const perPx = (max - min) / u.bbox.width * devicePixelRatio;
      const move = (m) => u.setScale("x", { min: min - (m.clientX - x0) * perPx, max: max - (m.clientX - x0) * perPx });
      const up = () => {
        removeEventListener("mousemove", move);
        removeEventListener("mouseup", up);
        if (onChange) onChange(u);
      };
      addEventListener("mousemove", move);
      addEventListener("mouseup", up);
    }, true);
  }

  /** Round ticks for any magnitude (uPlot's own stop at 1e-16; strain is 1e-21); log scales keep uPlot's. */
  function ySplits(u, ai, min, max) {
    if (u.scales.y.distr === 3) {
      const out = [];
      for (let e = Math.ceil(Math.log10(min)); e <= Math.floor(Math.log10(max)); e++) out.push(Math.pow(10, e));
      return out.length ? out : [min, max];
    }
    return niceTicks(min, max, Math.max(2, Math.round(u.bbox.height / devicePixelRatio / 50)));
  }

  function uplot(el, opts, data) {
    const { width, height } = size(el);
    const u = new uPlot({ width, height, ...opts }, data, el);
    return u;
  }

  // one dimension of bins: a ROOT TH1/TProfile (with errors) or a column histogram
  function drawBins(el, v, o) {
    const [xs, ys] = steps(o.edges, o.values.map((c) => (o.log && !(c > 0) ? null : c)));
    const centres = o.edges.slice(0, -1).map((e, i) => (e + o.edges[i + 1]) / 2);
    const errors = o.errors;
    const plugins = [];
    const hooks = {};
    if (errors) {
      hooks.draw = [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = BLUE;
        ctx.lineWidth = devicePixelRatio;
        ctx.beginPath();
        centres.forEach((c, i) => {
          const y = o.values[i], e = errors[i];
          if (y === null || e === null || !(e > 0)) return;
          const lo = o.log ? Math.max(y - e, u.scales.y.min) : y - e;
          const px = u.valToPos(c, "x", true);
          ctx.moveTo(px, u.valToPos(lo, "y", true));
          ctx.lineTo(px, u.valToPos(y + e, "y", true));
        });
        ctx.stroke();
        ctx.restore();
      }];
    }
    const xAxis = { label: o.xTitle, size: o.labels ? 70 : 50 };
    if (o.labels) {
      xAxis.splits = () => centres;
      xAxis.values = (u, splits) => splits.map((s) => o.labels[centres.indexOf(s)] || "");
      xAxis.rotate = -30;
    }
    const opts = {
      plugins,
      hooks,
      scales: { x: { time: false }, y: o.log ? { distr: 3 } : { range: (u, a, b) => [Math.min(0, a), b > 0 ? b * 1.05 : 1] } },
      axes: [xAxis, { label: o.yTitle, size: 70, splits: ySplits, values: (u, splits) => splits.map(fmt) }],
      legend: { live: true },
      series: [
        { label: o.xName, value: (u, x, si, i) => (i === null || i >= centres.length ? "–" : `[${fmt(o.edges[i])}, ${fmt(o.edges[i + 1])})` + (o.labels ? ` ${o.labels[i]}` : "")) },
        { label: o.yName, stroke: BLUE, width: 1.5, fill: o.fill ? "rgba(31,78,156,.25)" : undefined,
          paths: uPlot.paths.stepped({ align: 1 }), points: { show: false },
          value: (u, y, si, i) => (i === null || i >= centres.length ? "–" : fmt(o.values[i]) + (errors && errors[i] !== null ? ` ± ${fmt(errors[i])}` : "")) },
      ],
    };
    if (o.bars) {  // integers: one bar per value, centred on it
      opts.series[1].paths = uPlot.paths.bars({ size: [0.9, Infinity], align: 0 });
      opts.series[1].fill = "rgba(31,78,156,.45)";
      const u = uplot(el, opts, [centres, o.values.map((c) => (o.log && !(c > 0) ? null : c))]);
      zoomPan(u);
      return u;
    }
    const u = uplot(el, opts, [xs, ys]);
    zoomPan(u);
    return u;
  }

  /** A colour map on our own canvas: bins (x/y edges) or an image (rows × cols), a colour bar with its label. */
  function drawHeatmap(el, o) {
    const { width, height } = size(el);
    const dpr = window.devicePixelRatio || 1;
    const canvas = document.createElement("canvas");
    canvas.width = width * dpr;
    canvas.height = height * dpr;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    el.appendChild(canvas);
    const tip = document.createElement("div");
    tip.className = "tip";
    tip.hidden = true;
    el.appendChild(tip);
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    const m = { l: 64, r: 96, t: 10, b: 48 };
    const W = width - m.l - m.r, H = height - m.t - m.b;
    const xe = o.xEdges, ye = o.yEdges;
    const x0 = xe[0], x1 = xe[xe.length - 1], y0 = ye[0], y1 = ye[ye.length - 1];
    const px = (x) => m.l + (x - x0) / (x1 - x0) * W;
    const py = (y) => (o.flipY ? m.t + (y - y0) / (y1 - y0) * H : m.t + H - (y - y0) / (y1 - y0) * H);
    const scale = colourScale(o.log ? o.minPositive : o.min, o.max, o.log);
    ctx.fillStyle = "#f4f6f8";
    ctx.fillRect(m.l, m.t, W, H);
    if (o.uniform && o.rows * o.cols > 4096) {
      const img = document.createElement("canvas");
      img.width = o.cols;
      img.height = o.rows;
      const ic = img.getContext("2d");
      const data = ic.createImageData(o.cols, o.rows);
      for (let r = 0; r < o.rows; r++) {
        for (let c = 0; c < o.cols; c++) {
          const t = scale(o.get(r, c));
          const k = ((o.flipY ? r : o.rows - 1 - r) * o.cols + c) * 4;
          if (t === null) { data.data[k + 3] = 0; continue; }
          const [R, G, B] = viridis(t);
          data.data[k] = R; data.data[k + 1] = G; data.data[k + 2] = B; data.data[k + 3] = 255;
        }
      }
      ic.putImageData(data, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, m.l, m.t, W, H);
    } else {
      for (let r = 0; r < o.rows; r++) {
        for (let c = 0; c < o.cols; c++) {
          const t = scale(o.get(r, c));
          if (t === null) continue;
          const [R, G, B] = viridis(t);
          ctx.fillStyle = `rgb(${R},${G},${B})`;
          const xa = px(xe[c]), xb = px(xe[c + 1]), ya = py(ye[r]), yb = py(ye[r + 1]);
          ctx.fillRect(Math.min(xa, xb), Math.min(ya, yb), Math.abs(xb - xa) + 0.5, Math.abs(yb - ya) + 0.5);
        }
      }
    }
    // axes
    ctx.strokeStyle = "#444";
    ctx.fillStyle = "#222";
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeRect(m.l, m.t, W, H);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    // index axes (images): integer ticks at the cells' centres
    const indexTicks = (a, b, n, step) => niceTicks(a, b - step, n).filter((t) => Number.isInteger(t / step));
    const half = (e) => (o.indexAxes ? (e[1] - e[0]) / 2 : 0);
    const xt = o.xLabels ? xe.slice(0, -1).map((e, i) => (e + xe[i + 1]) / 2)
      : o.indexAxes ? indexTicks(x0, x1, Math.max(2, Math.floor(W / 70)), xe[1] - xe[0]) : niceTicks(x0, x1, Math.max(2, Math.floor(W / 70)));
    xt.forEach((t, i) => {
      const x = px(t + half(xe));
      ctx.beginPath(); ctx.moveTo(x, m.t + H); ctx.lineTo(x, m.t + H + 4); ctx.stroke();
      ctx.fillText(o.xLabels ? o.xLabels[i] : fmt(t), x, m.t + H + 6);
    });
    ctx.fillText(o.xTitle, m.l + W / 2, m.t + H + 24);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const yt = o.yLabels ? ye.slice(0, -1).map((e, i) => (e + ye[i + 1]) / 2)
      : o.indexAxes ? indexTicks(y0, y1, Math.max(2, Math.floor(H / 40)), ye[1] - ye[0])
        : niceTicks(Math.min(y0, y1), Math.max(y0, y1), Math.max(2, Math.floor(H / 40)));
    yt.forEach((t, i) => {
      const y = py(t + half(ye));
      ctx.beginPath(); ctx.moveTo(m.l - 4, y); ctx.lineTo(m.l, y); ctx.stroke();
      ctx.fillText(o.yLabels ? o.yLabels[i] : fmt(t), m.l - 6, y);
    });
    ctx.save();
    ctx.translate(14, m.t + H / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(o.yTitle, 0, 0);
    ctx.restore();
    // colour bar
    const bx = width - m.r + 14, bw = 14;
    for (let i = 0; i < H; i++) {
      const [R, G, B] = viridis(1 - i / H);
      ctx.fillStyle = `rgb(${R},${G},${B})`;
      ctx.fillRect(bx, m.t + i, bw, 1);
    }
    ctx.strokeRect(bx, m.t, bw, H);
    ctx.textAlign = "left";
    ctx.fillStyle = "#222";
    const lo = o.log ? o.minPositive : o.min, hi = o.max;
    if (lo !== null && hi !== null) {
      const decades = [];
      if (o.log) for (let e = Math.ceil(Math.log10(lo)); e <= Math.floor(Math.log10(hi)); e++) decades.push(Math.pow(10, e));
      const ticks = o.log ? (decades.length >= 2 ? decades : [lo, hi]) : niceTicks(lo, hi, 4);
      ticks.forEach((t) => {
        const f = o.log ? (Math.log10(t) - Math.log10(lo)) / ((Math.log10(hi) - Math.log10(lo)) || 1) : (t - lo) / ((hi - lo) || 1);
        ctx.fillText(fmt(t), bx + bw + 3, m.t + H - f * H);
      });
    }
    ctx.save();
    ctx.translate(width - 6, m.t + H / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(o.zTitle + (o.log ? " (log)" : ""), 0, 0);
    ctx.restore();
    // hover: the cell under the pointer and its value
    const cellAt = (cx, cy) => {
      const x = x0 + (cx - m.l) / W * (x1 - x0);
      const y = o.flipY ? y0 + (cy - m.t) / H * (y1 - y0) : y0 + (m.t + H - cy) / H * (y1 - y0);
      let c = -1, r = -1;
      for (let i = 0; i < xe.length - 1; i++) if (x >= Math.min(xe[i], xe[i + 1]) && x < Math.max(xe[i], xe[i + 1])) { c = i; break; }
      for (let i = 0; i < ye.length - 1; i++) if (y >= Math.min(ye[i], ye[i + 1]) && y < Math.max(ye[i], ye[i + 1])) { r = i; break; }
      return r < 0 || c < 0 ? null : { r, c, value: o.get(r, c) };
    };
    canvas.addEventListener("mousemove", (e) => {
      const rect = canvas.getBoundingClientRect();
      const hit = cellAt(e.clientX - rect.left, e.clientY - rect.top);
      if (!hit) { tip.hidden = true; return; }
      tip.hidden = false;
      tip.textContent = o.describe(hit.r, hit.c) + ": " + fmt(hit.value);
      tip.style.left = Math.min(e.clientX - rect.left + 12, width - 160) + "px";
      tip.style.top = e.clientY - rect.top + 12 + "px";
    });
    canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
    return { destroy() {}, cellAt, canvas };
  }

  function range(values) {
    let min = Infinity, max = -Infinity, minPositive = Infinity;
    for (const v of values) {
      if (v === null || !Number.isFinite(v)) continue;
      if (v < min) min = v;
      if (v > max) max = v;
      if (v > 0 && v < minPositive) minPositive = v;
    }
    return { min: min === Infinity ? null : min, max: max === -Infinity ? null : max,
      minPositive: minPositive === Infinity ? null : minPositive };
  }

  // ------------------------------------------------------------ each view

  const RENDER = {
    histogram(el, v, state) {
      const xa = v.axes[0];
      const zTitle = v.value_title || (v.profile ? "mean" : "entries");
      if (v.dims === 1) {
        const u = drawBins(el, v, { edges: xa.edges, values: v.content, errors: v.error, labels: xa.labels,
          xTitle: xa.title || "x", yTitle: zTitle, xName: xa.title || "bin", yName: v.profile ? "mean" : "content",
          log: state.log, fill: false });
        return { plot: u, note: `${v.class} · ${fmt(v.entries)} entries · underflow ${fmt(v.underflow)} · overflow ${fmt(v.overflow)} · integral ${fmt(v.integral)}` };
      }
      const ya = v.axes[1];
      const flat = v.content.flat();
      const r = range(flat);
      const h = drawHeatmap(el, { xEdges: xa.edges, yEdges: ya.edges, rows: v.content.length, cols: xa.bins,
        get: (i, j) => v.content[i][j], ...r, log: state.log, xTitle: xa.title || xa.name, yTitle: ya.title || ya.name,
        zTitle, xLabels: xa.labels, yLabels: ya.labels,
        describe: (i, j) => `${xa.name} [${fmt(xa.edges[j])}, ${fmt(xa.edges[j + 1])}) ${ya.name} [${fmt(ya.edges[i])}, ${fmt(ya.edges[i + 1])})` });
      const s = v.slice ? ` · ${v.slice.axis} bin ${v.slice.index} of ${v.slice.bins}: [${fmt(v.slice.low)}, ${fmt(v.slice.high)})` : "";
      return { plot: h, note: `${v.class} · ${fmt(v.entries)} entries · integral ${fmt(v.integral)} · flow bins ${fmt(v.flow)}${s}` };
    },

    column(el, v, state) {
      const name = v.per === "count" ? `elements per entry of ${v.column}` : v.column;
      const u = drawBins(el, v, { edges: v.edges, values: v.counts, errors: null, labels: null,
        xTitle: withUnit(name, v.unit), yTitle: v.jagged && v.per !== "count" ? "values" : "entries",
        xName: name, yName: "count", log: state.log, fill: true, bars: v.integer });
      const jag = v.jagged && v.per !== "count" ? ` (jagged: every element; ${fmt(v.values / Math.max(1, v.entries))} per entry)` : "";
      const cut = v.where ? ` passing ${v.where}` : "";
      const cap = v.capped ? ` (first ${v.cap} entries)` : "";
      return { plot: u, note: `${v.values} values in ${v.entries} entries${cut}${cap}${jag}` + (v.integer ? " · one bin per integer" + (v.edges[1] - v.edges[0] > 1 ? ` group of ${v.edges[1] - v.edges[0]}` : "") : "") + (v.underflow || v.overflow ? ` · outside the range: ${v.underflow} below, ${v.overflow} above` : "") };
    },

    series(el, v, state, section) {
      const utc = state.clock === "utc" && v.axis === "time";
      const narrow = size(el).width < 520;   // a phone: the long label goes to the note
      const shift = utc ? v.utc_origin : 0;
      const xs = v.x.map((x) => x + shift);
      const data = v.mode === "samples" ? [xs, v.y] : [xs, v.min, v.max];
      const name = withUnit(v.channel || v.column, v.unit);
      const series = [{ label: v.axis === "time" ? "time" : "entry", value: (u, x) => (x === null ? "–" : utc ? isoUTC(x) : fmt(x)) }];
      if (v.mode === "samples") series.push({ label: name, stroke: BLUE, width: 1, points: { show: false }, spanGaps: false });
      else {
        series.push({ label: "min", stroke: BLUE, width: 1, points: { show: false }, spanGaps: false });
        series.push({ label: "max", stroke: BLUE, width: 1, points: { show: false }, spanGaps: false });
      }
      const flags = Object.entries(v.dq || {});
      const draw = (u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.fillStyle = "rgba(120,120,120,.18)";
        for (const g of v.gaps || []) {
          const a = u.valToPos(g.start - v.origin + shift, "x", true), b = u.valToPos(g.stop - v.origin + shift, "x", true);
          ctx.fillRect(a, u.bbox.top, b - a, u.bbox.height);
        }
        const band = 10 * devicePixelRatio;
        ctx.font = `${8 * devicePixelRatio}px system-ui, sans-serif`;
        ctx.textBaseline = "middle";
        flags.forEach(([flag, segs], k) => {
          const top = u.bbox.top + u.bbox.height - band * (k + 1);
          ctx.fillStyle = "rgba(200,60,60,.35)";
          ctx.fillRect(u.bbox.left, top, u.bbox.width, band - 1);
          ctx.fillStyle = "rgba(46,139,87,.9)";
          for (const [a, b] of segs) {
            const pa = u.valToPos(a - v.origin + shift, "x", true), pb = u.valToPos(b - v.origin + shift, "x", true);
            ctx.fillRect(pa, top, pb - pa, band - 1);
          }
          ctx.fillStyle = "#fff";
          ctx.fillText(flag, u.bbox.left + 3 * devicePixelRatio, top + band / 2);
        });
        ctx.restore();
      };
      const opts = {
        scales: { x: { time: utc } },
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
        axes: [{ label: v.axis === "time" ? (utc ? "UTC" : narrow ? `[s] from ${isoUTC(v.utc_origin)} UTC` : timeLabel(v))
          : "entry" + (v.origin ? ` from ${v.origin}` : "") },
          { label: name, size: 80, splits: ySplits, values: (u, splits) => splits.map(fmt) }],
        series,
        bands: v.mode === "minmax" ? [{ series: [2, 1], fill: "rgba(31,78,156,.45)" }] : [],
        hooks: { draw: [draw], setSelect: [] },
        cursor: { drag: { x: true, y: false, setScale: false } },
      };
      const u = uplot(el, opts, data);
      // a zoom reads the range again: the server folds it into this many pixels anew
      const reread = (lo, hi) => {
        const a = v.origin + lo - shift, b = v.origin + hi - shift;
        const extra = v.axis === "time" ? { time_start: String(a), time_stop: String(b), time_last: "" }
          : { entry_start: String(Math.floor(a)), entry_stop: String(Math.ceil(b)) };
        refresh(section, extra);
      };
      u.hooks.setSelect = [(uu) => {
        if (uu.select.width < 3) return;
        reread(uu.posToVal(uu.select.left, "x"), uu.posToVal(uu.select.left + uu.select.width, "x"));
      }];
      zoomPan(u, (uu) => reread(uu.scales.x.min, uu.scales.x.max));
      u.over.addEventListener("dblclick", () => refresh(section, { time_start: "", time_stop: "", time_last: "", entry_start: "", entry_stop: "" }));
      const dq = flags.length ? ` · DQ band (bottom, green = flag on): ${flags.map(([f]) => f).join(", ")}` : "";
      const gaps = v.gaps && v.gaps.length ? ` · ${v.gaps.length} gap${v.gaps.length > 1 ? "s" : ""} (grey)` : "";
      const how = v.mode === "minmax" ? `min/max of ${v.per_pixel} samples per pixel` +
        (v.trend ? ` (from min/max per ${v.trend.block} samples kept at the first read)` : "") : "every sample";
      const origin = narrow && v.axis === "time" && !utc ? ` · ${timeLabel(v)}` : "";
      const first = v.first_stretch ? " · the first stretch only: set a range (or zoom out) for more" : "";
      return { plot: u, note: `${v.samples} samples${v.rate !== 1 ? ` at ${v.rate} Hz` : ""} · ${how}${gaps}${dq}${first}${origin}` };
    },

    plane(el, v, state) {
      const values = decodeF32(v.values);
      const [ra, ca] = v.shown;
      const [rs, cs] = v.steps;
      const xEdges = Array.from({ length: v.cols + 1 }, (_, j) => j * cs);
      const yEdges = Array.from({ length: v.rows + 1 }, (_, i) => i * rs);
      const h = drawHeatmap(el, { xEdges, yEdges, rows: v.rows, cols: v.cols, uniform: true, flipY: true, indexAxes: true,
        get: (i, j) => values[i * v.cols + j], min: v.min, max: v.max, minPositive: v.min_positive, log: state.log,
        xTitle: v.names[ca] + (cs > 1 ? ` (every ${cs})` : ""), yTitle: v.names[ra] + (rs > 1 ? ` (every ${rs})` : ""),
        zTitle: withUnit(v.column, v.unit),
        describe: (i, j) => `${v.names[ra]} ${i * rs}, ${v.names[ca]} ${j * cs}` });
      // uniform grids address cells through one edge pair: spread them
      h.values = values;
      const factor = rs > 1 || cs > 1 ? ` · downsampled: every ${rs} × ${cs} element shown` : " · every element shown";
      return { plot: h, note: `${v.column}[${v.plane}] · ${v.rows} × ${v.cols} of ${v.shape.join(" × ")}${factor}` };
    },

    scatter(el, v, state) {
      const cut = v.where ? ` passing ${v.where}` : "";
      const cap = v.capped ? ` (first ${v.cap} entries)` : "";
      if (v.mode === "density") {
        const flat = v.counts.flat();
        const r = range(flat.map((c) => (c > 0 ? c : null)));
        const h = drawHeatmap(el, { xEdges: v.x_edges, yEdges: v.y_edges, rows: v.counts.length, cols: v.counts[0].length,
          get: (i, j) => (v.counts[i][j] > 0 ? v.counts[i][j] : null), ...r, log: state.log,
          xTitle: withUnit(v.x, v.x_unit), yTitle: withUnit(v.y, v.y_unit), zTitle: "count",
          describe: (i, j) => `${v.x} [${fmt(v.x_edges[j])}, ${fmt(v.x_edges[j + 1])}) ${v.y} [${fmt(v.y_edges[i])}, ${fmt(v.y_edges[i + 1])})` });
        return { plot: h, note: `${v.points} points from ${v.entries} entries${cut}${cap}, as counts in ${v.counts.length}² bins` };
      }
      const order = v.xs.map((_, i) => i).sort((a, b) => v.xs[a] - v.xs[b]);
      const data = [order.map((i) => v.xs[i]), order.map((i) => v.ys[i])];
      const u = uplot(el, {
        scales: { x: { time: false } },
        axes: [{ label: withUnit(v.x, v.x_unit), values: (u, splits) => splits.map(fmt) },
          { label: withUnit(v.y, v.y_unit), size: 70, values: (u, splits) => splits.map(fmt) }],
        series: [{ label: v.x }, { label: v.y, stroke: BLUE, paths: () => null, points: { show: true, size: 4, fill: BLUE } }],
      }, data);
      zoomPan(u);
      return { plot: u, note: `${v.points} points from ${v.entries} entries${cut}${cap}` };
    },
  };

  // ------------------------------------------------------------ forms, sliders, fetching

  function formState(section) {
    const form = section.querySelector("form.viewform");
    const entries = form ? [...new FormData(form).entries()].map(([k, v]) => [k, String(v)]) : [];
    const get = (k) => (entries.find(([key]) => key === k) || [])[1] || "";
    return { entries, log: get("log") === "1", clock: get("clock") || "gps", form };
  }

  async function refresh(section, extra) {
    const chart = section.querySelector(".chart");
    const note = section.querySelector(".note");
    const state = formState(section);
    let entries = state.entries;
    if (extra) {
      entries = entries.filter(([k]) => !(k in extra));
      for (const [k, v] of Object.entries(extra)) if (v !== "") entries.push([k, v]);
      for (const [k, v] of Object.entries(extra)) {
        const input = state.form && state.form.querySelector(`[name="${k}"]:not([type=hidden])`);
        if (input) input.value = v;
      }
    }
    const view = section.dataset.view;
    const params = viewParams(view, entries);
    if (view === "series") params.set("pixels", String(Math.min(4000, Math.round(size(chart).width * (window.devicePixelRatio || 1)))));
    const url = `/api/view/${encodeURI(section.dataset.name).replace(/#/g, "%23").replace(/\?/g, "%3F")}?${params}`;
    section.dataset.pending = "1";
    try {
      // live: the view's address is the same, its answer is not (views are cached for a minute)
      const r = await fetch(url, { credentials: "same-origin", cache: section.dataset.live ? "no-store" : "default" });
      const v = await r.json();
      if (!r.ok) throw new Error(v.message || r.statusText);
      clear(chart);
      const out = RENDER[v.view](chart, v, state, section);
      chart._arrowroot = { view: v, plot: out.plot };
      note.textContent = out.note;
      note.classList.remove("error");
      // the address keeps the state: reload or share it
      const page = new URL(location.href);
      for (const [k] of entries) page.searchParams.delete(k);
      for (const [k, val] of entries) if (!CLIENT_ONLY.has(k)) page.searchParams.append(k, val);
      page.hash = section.id;
      history.replaceState(null, "", page);
    } catch (err) {
      note.textContent = String(err.message || err);
      note.classList.add("error");
    } finally {
      delete section.dataset.pending;
      section.dataset.drawn = String((+section.dataset.drawn || 0) + 1);
    }
  }

  /** One slider per axis not shown, and which two axes are shown; the text box follows. */
  function sliders(section) {
    const box = section.querySelector(".sliders");
    if (!box) return;
    const shape = box.dataset.shape.split(",").map(Number);
    const names = box.dataset.names.split("|");
    const text = section.querySelector("input[name=plane]");
    let cur = parsePlane(text.value, shape.length) || { shown: [shape.length - 2, shape.length - 1], at: shape.map(() => 0) };
    const build = () => {
      box.textContent = "";
      const pick = (label, k) => {
        const sel = document.createElement("select");
        names.forEach((n, i) => { const o = new Option(`${n} (${shape[i]})`, String(i)); sel.add(o); });
        sel.value = String(cur.shown[k]);
        sel.setAttribute("aria-label", label);
        sel.addEventListener("change", () => {
          const other = cur.shown[1 - k];
          const want = Number(sel.value);
          if (want === other) cur.shown[1 - k] = cur.shown[k];
          cur.shown[k] = want;
          cur.shown.sort((a, b) => a - b);
          update(true);
        });
        const l = document.createElement("span");
        l.textContent = label;
        box.append(l, sel, document.createElement("span"));
      };
      pick("rows", 0);
      pick("columns", 1);
      shape.forEach((n, i) => {
        if (cur.shown.includes(i)) return;
        const l = document.createElement("label");
        l.textContent = `${names[i]} (0–${n - 1})`;
        const s = document.createElement("input");
        s.type = "range"; s.min = "0"; s.max = String(n - 1); s.value = String(cur.at[i] || 0);
        s.dataset.axis = String(i);
        s.setAttribute("aria-label", names[i]);
        const out = document.createElement("output");
        out.textContent = s.value;
        s.addEventListener("input", () => { cur.at[i] = Number(s.value); out.textContent = s.value; update(false); });
        box.append(l, s, out);
      });
    };
    let timer = null;
    const update = (rebuild) => {
      text.value = planeText(shape.length, cur.shown, cur.at);
      if (rebuild) build();
      clearTimeout(timer);
      timer = setTimeout(() => refresh(section), 40);
    };
    text.addEventListener("change", () => {
      const p = parsePlane(text.value, shape.length);
      if (p) { cur = p; build(); }
      refresh(section);
    });
    build();
  }

  /** The views of data that grows, and the form field naming the column each plots. */
  const LIVE_COLUMN = { series: "line", column: "hist", scatter: "x" };

  /** A "live" toggle: follow the dataset (``/api/follow``, server-sent events, starting at its last
   *  entry) and redraw the view with the new entries as they are indexed, at most once a second. */
  function live(section, form) {
    const field = LIVE_COLUMN[section.dataset.view];
    if (!field || !form) return;
    const label = document.createElement("label");
    const span = document.createElement("span");
    const box = document.createElement("input");
    box.type = "checkbox"; box.name = "live"; box.value = "1";
    span.append(box, " live: add new entries as they come");
    label.append(span);
    form.insertBefore(label, form.querySelector("button[type=submit]"));
    let source = null, timer = null;
    const stop = () => {
      if (source) source.close();
      source = null;
      clearTimeout(timer);
      timer = null;
      delete section.dataset.live;
    };
    const redraw = () => {
      if (timer) return;
      timer = setTimeout(() => { timer = null; if (source) refresh(section); }, section.dataset.pending ? 1000 : 250);
    };
    box.addEventListener("change", () => {
      stop();
      if (!box.checked) return;
      const state = formState(section);
      const column = (state.entries.find(([k]) => k === field) || [])[1] || "";
      const params = new URLSearchParams({ format: "sse", entry_start: "-1" });
      if (column) params.set("columns", column);
      const name = encodeURI(section.dataset.name).replace(/#/g, "%23").replace(/\?/g, "%3F");
      source = new EventSource(`/api/follow/${name}?${params}`);
      section.dataset.live = "on";
      let first = true;
      source.addEventListener("rows", () => {
        section.dataset.liveEvents = String((+section.dataset.liveEvents || 0) + 1);
        if (first) { first = false; return; }   // the entry the stream starts at: already drawn
        redraw();
      });
      source.addEventListener("error", (e) => {
        if (e.data) {   // the server ended the stream with a status: say so, stop following
          const note = section.querySelector(".note");
          note.textContent = "live: " + (JSON.parse(e.data).message || "the follow stream failed");
          note.classList.add("error");
          box.checked = false;
          stop();
        }
      });
    });
  }

  function start() {
    document.querySelectorAll("section.view").forEach((section) => {
      const form = section.querySelector("form.viewform");
      live(section, form);
      if (form) {
        form.addEventListener("submit", (e) => { e.preventDefault(); refresh(section); });
        form.addEventListener("change", (e) => { if (e.target.name !== "plane" && e.target.name !== "live") refresh(section); });
        form.querySelectorAll("input[type=range]").forEach((r) => r.addEventListener("input", () => refresh(section)));
        form.querySelectorAll("select[name=axis]").forEach((s) => s.addEventListener("change", () => {
          const idx = form.querySelector("input[name=index]");
          if (!idx || !idx.dataset.bins) return;
          const n = JSON.parse(idx.dataset.bins)[s.value];
          idx.max = String(n);
          idx.value = String(Math.floor((n + 1) / 2));
        }));
      }
      sliders(section);
      refresh(section);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})(typeof globalThis !== "undefined" ? globalThis : this);
