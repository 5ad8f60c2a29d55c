// Detail views, opened by clicking a stage: how each value of that stage was computed.

import { colorOf, cssColor, diverging, drawHeat, drawMap, drawRGB, fmt, layerScale } from "./colors.js";
import { drawVector, shapeText } from "./network.js";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const BIG = 252; // css pixels of a big map

// A big view of one (h, w) map with a movable highlight rectangle; hover reports (y, x).
function bigMap(layer, channel, { title, onHover, size = BIG } = {}) {
  const fig = el("figure", "big");
  const holder = el("div", "big-holder");
  const cv = el("canvas", "big-map");
  const [c, h, w] = layer.shape.length === 3 ? layer.shape : [1, 1, layer.shape[0]];
  if (layer.kind === "input" && c === 3) drawRGB(cv, layer.data, h, w);
  else drawMap(cv, layer.data, channel * h * w, h, w, layerScale(layer.stats, layer.kind));
  const cell = size / Math.max(h, w);
  cv.style.width = `${cell * w}px`;
  cv.style.height = `${cell * h}px`;
  const rect = el("div", "window");
  rect.hidden = true;
  holder.append(cv, rect);
  fig.append(holder, el("figcaption", "", title || `${layer.name} [${channel}] ${h}×${w}`));
  const api = {
    fig,
    canvas: cv,
    cell,
    mark(y0, x0, kh, kw) {
      rect.hidden = false;
      rect.style.left = `${x0 * cell}px`;
      rect.style.top = `${y0 * cell}px`;
      rect.style.width = `${kw * cell}px`;
      rect.style.height = `${kh * cell}px`;
    },
  };
  if (onHover) {
    const move = (ev) => {
      const r = cv.getBoundingClientRect();
      const x = Math.floor((ev.clientX - r.left) / cell);
      const y = Math.floor((ev.clientY - r.top) / cell);
      if (y >= 0 && x >= 0 && y < h && x < w) onHover(y, x);
    };
    cv.addEventListener("mousemove", move);
    cv.addEventListener("click", move);
  }
  return api;
}

// A small table of numbers coloured by value.
function grid(values, rows, cols, { mark, scaleMax, title } = {}) {
  const fig = el("figure", "grid");
  const t = el("table", "numbers");
  const m = scaleMax || Math.max(1e-12, ...values.map((v) => (Number.isFinite(v) ? Math.abs(v) : 0)));
  for (let i = 0; i < rows; i++) {
    const tr = el("tr");
    for (let j = 0; j < cols; j++) {
      const v = values[i * cols + j];
      const td = el("td", "", Number.isFinite(v) ? fmt(v, 2) : "pad");
      td.style.background = Number.isFinite(v) ? cssColor(diverging(v / m)) : "#eee";
      if (mark && mark[0] === i && mark[1] === j) td.classList.add("chosen");
      tr.append(td);
    }
    t.append(tr);
  }
  fig.append(t);
  if (title) fig.append(el("figcaption", "", title));
  return fig;
}

function maxPosition(layer, channel) {
  const [, h, w] = layer.shape;
  let best = 0;
  for (let i = 1; i < h * w; i++) if (layer.data[channel * h * w + i] > layer.data[channel * h * w + best]) best = i;
  return [Math.floor(best / w), best % w];
}

// ---- conv ----------------------------------------------------------------------------------------
async function convDetail(box, ctx, layer, channel) {
  const inp = ctx.inputOf(layer.name);
  const p = layer.params;
  const [kh, kw] = p.kernel_size;
  const [sh, sw] = p.stride;
  const [dh, dw] = p.dilation;
  const [top, , left] = p.padding;
  const cinPer = p.in_channels / p.groups;
  const group = Math.floor(channel / (p.out_channels / p.groups));
  const chans = [...Array(cinPer).keys()].map((k) => group * cinPer + k);
  const wdoc = await ctx.weights(layer.name, channel);
  const W = wdoc.weight; // (cinPer, kh, kw)
  const bias = wdoc.bias ? wdoc.bias[0] : 0;
  const [, H, Wd] = inp.shape;
  const [, oh, ow] = layer.shape;

  box.append(
    el("p", "explain",
      `Each value of ${layer.name} channel ${channel} is the dot product of its ${kh}×${kw} kernel with the ` +
      `input patch under it, summed over ${cinPer} input channel${cinPer > 1 ? "s" : ""}, plus a bias. The ` +
      `kernel moves ${sh} pixel${sh > 1 ? "s" : ""} per step over the input padded by ${top}; PyTorch does not ` +
      `flip it (cross-correlation). Hover the output map to move the kernel.`),
  );
  let sel = 0; // index into chans of the input channel shown
  const row = el("div", "detail-row");
  const inHolder = el("div");
  const mid = el("div", "dot");
  const out = bigMap(layer, channel, { title: `output ${layer.name} [${channel}] ${oh}×${ow}`, onHover: (y, x) => show(y, x) });
  row.append(inHolder, mid, out.fig);
  const sumLine = el("div", "sum");
  const contrib = el("div", "contrib");
  box.append(row, sumLine, contrib);
  let inView = null;
  let pos = maxPosition(layer, channel);

  function patchAt(c, y, x) {
    const vals = [];
    const y0 = y * sh - top;
    const x0 = x * sw - left;
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const yy = y0 + i * dh;
        const xx = x0 + j * dw;
        const inside = yy >= 0 && xx >= 0 && yy < H && xx < Wd;
        vals.push(inside ? inp.data[c * H * Wd + yy * Wd + xx] : p.padding_mode === "zeros" ? 0 : NaN);
      }
    }
    return { vals, y0, x0 };
  }

  function show(y, x) {
    pos = [y, x];
    let total = 0;
    const per = chans.map((c, k) => {
      const { vals } = patchAt(c, y, x);
      let s = 0;
      for (let i = 0; i < kh * kw; i++) s += (Number.isFinite(vals[i]) ? vals[i] : 0) * W[k * kh * kw + i];
      total += s;
      return s;
    });
    total += bias;
    const model = layer.data[channel * oh * ow + y * ow + x];
    if (!inView || inView.channel !== chans[sel]) {
      inView = bigMap(inp, chans[sel], { title: `input ${inp.name} [${chans[sel]}] ${H}×${Wd}` });
      inView.channel = chans[sel];
      inHolder.replaceChildren(inView.fig);
    }
    const { vals, y0, x0 } = patchAt(chans[sel], y, x);
    inView.mark(y0, x0, dh * (kh - 1) + 1, dw * (kw - 1) + 1);
    out.mark(y, x, 1, 1);
    const kern = Array.from(W.slice(sel * kh * kw, (sel + 1) * kh * kw));
    const prods = vals.map((v, i) => (Number.isFinite(v) ? v : 0) * kern[i]);
    mid.replaceChildren(
      grid(vals, kh, kw, { title: `patch at (${y0}, ${x0})` }),
      el("span", "op", "⊙"),
      grid(kern, kh, kw, { title: `kernel [${channel}, ${chans[sel]}]` }),
      el("span", "op", "="),
      grid(prods, kh, kw, { title: `sum ${fmt(per[sel], 4)}` }),
    );
    sumLine.replaceChildren();
    // the inputs and the output travel with a stated precision (8-bit per map, errors uniform within half
    // a step): the sum may differ from the shown output by the output's error plus 4 standard deviations
    // of the summed input rounding (sqrt(sum (w * e)^2 / 3))
    let variance = 0;
    chans.forEach((c, k) => {
      for (let i = 0; i < kh * kw; i++) variance += (W[k * kh * kw + i] * inp.errors[c]) ** 2 / 3;
    });
    const bound = layer.errors[channel] + 4 * Math.sqrt(variance) + 1e-4 * Math.max(1, Math.abs(model));
    const ok = Math.abs(total - model) <= bound;
    sumLine.dataset.total = String(total);
    sumLine.dataset.output = String(model);
    sumLine.dataset.bound = String(bound);
    sumLine.append(
      el("span", "", `(${y}, ${x}):  Σ over ${cinPer} channel${cinPer > 1 ? "s" : ""} = ${fmt(total - bias, 4)}`),
      el("span", "", ` + bias ${fmt(bias, 4)} = `),
      el("b", "", fmt(total, 5)),
      el("span", ok ? "ok" : "bad", `  model: ${fmt(model, 5)} ${ok ? "✓" : "✗"}`),
    );
    contrib.replaceChildren();
    if (cinPer > 1) {
      contrib.append(el("div", "hint", "contribution of each input channel (click one to see its patch):"));
      const m = Math.max(1e-12, ...per.map(Math.abs));
      per.forEach((s, k) => {
        const b = el("span", "cbar" + (k === sel ? " on" : ""));
        b.style.height = `${4 + 36 * Math.abs(s) / m}px`;
        b.style.background = cssColor(diverging(s / m));
        b.title = `channel ${chans[k]}: ${fmt(s, 4)}`;
        b.addEventListener("click", () => {
          sel = k;
          show(...pos);
        });
        contrib.append(b);
      });
    }
  }
  // start on the input channel that contributes most at the most active position
  const first = chans.map((c) => {
    const { vals } = patchAt(c, pos[0], pos[1]);
    return vals.reduce((a, v, i) => a + (Number.isFinite(v) ? v : 0) * W[chans.indexOf(c) * kh * kw + i], 0);
  });
  sel = first.reduce((b, v, k) => (Math.abs(v) > Math.abs(first[b]) ? k : b), 0);
  show(...pos);
}

// ---- pooling --------------------------------------------------------------------------------------
function poolDetail(box, ctx, layer, channel) {
  const inp = ctx.inputOf(layer.name);
  const p = layer.params;
  const [, H, Wd] = inp.shape;
  const [, oh, ow] = layer.shape;
  let kh;
  let kw;
  let sh;
  let sw;
  let ph = 0;
  let pw = 0;
  if (layer.kind === "globalpool") {
    [kh, kw, sh, sw] = [Math.ceil(H / oh), Math.ceil(Wd / ow), Math.floor(H / oh), Math.floor(Wd / ow)];
  } else {
    [kh, kw] = p.kernel_size;
    [sh, sw] = p.stride;
    [ph, pw] = p.padding;
  }
  const op = p.op;
  box.append(el("p", "explain",
    `${op === "max" ? "Max" : "Average"} pooling: each output is the ${op === "max" ? "largest" : "mean"} value ` +
    `of a ${kh}×${kw} window of the input, moved ${sh} pixel${sh > 1 ? "s" : ""} per step; ${H}×${Wd} becomes ${oh}×${ow}. ` +
    `Hover the output to move the window.`));
  const row = el("div", "detail-row");
  const inView = bigMap(inp, channel, { title: `input ${inp.name} [${channel}] ${H}×${Wd}` });
  const mid = el("div", "dot");
  const out = bigMap(layer, channel, { title: `output ${layer.name} [${channel}] ${oh}×${ow}`, onHover: (y, x) => show(y, x) });
  const sumLine = el("div", "sum");
  row.append(inView.fig, mid, out.fig);
  box.append(row, sumLine);
  function show(y, x) {
    const y0 = y * sh - ph;
    const x0 = x * sw - pw;
    const vals = [];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const yy = y0 + i;
        const xx = x0 + j;
        vals.push(yy >= 0 && xx >= 0 && yy < H && xx < Wd ? inp.data[channel * H * Wd + yy * Wd + xx] : NaN);
      }
    }
    let best = -1;
    vals.forEach((v, i) => {
      if (Number.isFinite(v) && (best < 0 || v > vals[best])) best = i;
    });
    const finite = vals.filter(Number.isFinite);
    const value = op === "max" ? vals[best] : finite.reduce((a, b) => a + b, 0) / (finite.length || 1);
    const model = layer.data[channel * oh * ow + y * ow + x];
    inView.mark(y0, x0, kh, kw);
    out.mark(y, x, 1, 1);
    mid.replaceChildren(
      grid(vals, kh, kw, { mark: op === "max" ? [Math.floor(best / kw), best % kw] : null, title: `window at (${y0}, ${x0})` }),
      el("span", "op", "→"),
      grid([value], 1, 1, { title: op }),
    );
    sumLine.dataset.total = String(value);
    sumLine.dataset.output = String(model);
    sumLine.replaceChildren(el("span", "", `(${y}, ${x}): ${op}(window) = ${fmt(value, 5)}; model: ${fmt(model, 5)}`));
  }
  show(...maxPosition(layer, channel));
}

// ---- element-wise stages: before / after ------------------------------------------------------------
function beforeAfter(box, ctx, layer, channel, text, fn) {
  const inp = ctx.inputOf(layer.name);
  box.append(el("p", "explain", text));
  const row = el("div", "detail-row");
  const line = el("div", "sum");
  const show = (y, x) => {
    const [, h, w] = layer.shape;
    const before = inp.data[channel * h * w + y * w + x];
    const after = layer.data[channel * h * w + y * w + x];
    a.mark(y, x, 1, 1);
    b.mark(y, x, 1, 1);
    line.replaceChildren(el("span", "", `(${y}, ${x}): ${fmt(before, 4)} → ${fmt(after, 4)}${fn ? `   (${fn(before)})` : ""}`));
  };
  const a = bigMap(inp, channel, { title: `before: ${inp.name} [${channel}]`, onHover: show });
  const b = bigMap(layer, channel, { title: `after: ${layer.name} [${channel}]`, onHover: show });
  row.append(a.fig, el("span", "op big-op", "→"), b.fig);
  box.append(row, line);
  show(...maxPosition(layer, channel));
}

// ---- blocks: several layers run as one stage (a residual block, a conv-BN-ReLU group) ------------------
// Output channel k of a block is not computed from input channel k: its first convolution reads every
// input channel. So the view shows the block's whole input, then the chosen output map and its numbers.

// The parts of a block, from the module's text: "(conv1): Conv2d(...)" -> {name: "conv1", type: "Conv2d"}.
function blockParts(moduleText) {
  const parts = [];
  for (const m of (moduleText || "").matchAll(/^ {2}\((\w+)\): (\w+)/gm)) parts.push({ name: m[1], type: m[2] });
  return parts;
}

function blockText(layer, inp) {
  const parts = blockParts(layer.module);
  const cin = inp.shape.length === 3 ? inp.shape[0] : inp.shape.reduce((a, b) => a * b, 1);
  const all = cin > 1 ? `all ${cin} input channels of ${inp.name}` : `the single channel of ${inp.name}`;
  const convs = parts.filter((p) => p.type === "Conv2d").length;
  const shortcut = parts.find((p) => p.name === "shortcut");
  if (shortcut) {
    const cout = layer.shape[0];
    const added = shortcut.type === "Identity"
      ? "the block's input itself (the shortcut)"
      : `a shortcut: the block's input through a projection (a 1×1 convolution here) that turns its ${cin} channels into ${cout}`;
    return `A residual block: every output channel mixes ${all} through ${convs === 2 ? "two" : convs} ` +
      `convolutions (with batch norm, and a ReLU between them), then adds ${added}, and applies ReLU. ` +
      "No output channel comes from one input channel alone, so below are the block's whole input and the " +
      "chosen output map.";
  }
  const chain = parts.length ? parts.map((p) => p.type).join(" → ") : `a ${layer.params.module || "block"}`;
  return `Several layers run as one stage: ${chain}. Each output channel is computed from ${all} ` +
    "(not from one input channel of the same number), so below are the stage's whole input and the chosen " +
    "output map.";
}

// Up to `max` channels of a (c, h, w) layer as small maps, on the layer's own colour scale.
function thumbnails(layer, max = 16) {
  const fig = el("figure", "thumbs");
  const box = el("div", "thumb-grid");
  const [c, h, w] = layer.shape;
  if (layer.kind === "input" && c === 3) {
    const cv = el("canvas", "thumb");
    drawRGB(cv, layer.data, h, w);
    box.append(cv);
  } else {
    const scale = layerScale(layer.stats, layer.kind);
    for (let k = 0; k < Math.min(c, max); k++) {
      const cv = el("canvas", "thumb");
      drawMap(cv, layer.data, k * h * w, h, w, scale);
      cv.title = `${layer.name} [${k}]`;
      box.append(cv);
    }
  }
  const shown = layer.kind === "input" && c === 3 ? c : Math.min(c, max);
  const more = c > shown ? ` (first ${shown} shown)` : "";
  fig.append(box, el("figcaption", "", `input: ${layer.name}, ${shapeText(layer.shape)}${c > 1 ? `: all ${c} channels${more}` : ""}`));
  return fig;
}

function channelStats(layer, channel) {
  const [, h, w] = layer.shape;
  let lo = Infinity;
  let hi = -Infinity;
  let sum = 0;
  let zeros = 0;
  for (let i = 0; i < h * w; i++) {
    const v = layer.data[channel * h * w + i];
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
    sum += v;
    if (v === 0) zeros++;
  }
  return { lo, hi, mean: sum / (h * w), zeros: zeros / (h * w) };
}

function blockDetail(box, ctx, layer, channel, text) {
  const inp = ctx.inputOf(layer.name);
  const [, h, w] = layer.shape;
  box.append(el("p", "explain", text || blockText(layer, inp)));
  const row = el("div", "detail-row");
  const line = el("div", "sum");
  const st = channelStats(layer, channel);
  const summary = `${layer.name} [${channel}]: min ${fmt(st.lo, 4)}, max ${fmt(st.hi, 4)}, ` +
    `mean ${fmt(st.mean, 4)}, ${(100 * st.zeros).toFixed(0)}% zeros`;
  const show = (y, x) => {
    const v = layer.data[channel * h * w + y * w + x];
    out.mark(y, x, 1, 1);
    line.dataset.output = String(v);
    line.replaceChildren(el("span", "", `(${y}, ${x}): ${fmt(v, 4)}`), el("span", "muted", ` · ${summary}`));
  };
  const out = bigMap(layer, channel, { title: `output ${layer.name} [${channel}] ${h}×${w}`, onHover: show });
  const input = inp.shape.length === 3 ? thumbnails(inp) : el("figure", "", `input: ${inp.name}, ${shapeText(inp.shape)}`);
  row.append(input, el("span", "op big-op", "⇒"), out.fig);
  box.append(row, line);
  show(...maxPosition(layer, channel));
}

// ---- vectors -----------------------------------------------------------------------------------------
function vectorBars(values, labels, { highlight } = {}) {
  const wrap = el("div", "vbars");
  const m = Math.max(1e-12, ...Array.from(values, Math.abs));
  values.forEach((v, i) => {
    const r = el("div", "vbar" + (i === highlight ? " top" : ""));
    const fill = el("span", "vfill");
    fill.style.width = `${(50 * Math.abs(v)) / m}%`;
    fill.style.marginLeft = v < 0 ? `${50 - (50 * Math.abs(v)) / m}%` : "50%";
    fill.style.background = cssColor(diverging(v / m));
    r.append(el("span", "vlabel", labels ? labels[i] : String(i)), el("span", "vtrack"), el("span", "vvalue", fmt(v, 4)));
    r.children[1].append(fill);
    wrap.append(r);
  });
  return wrap;
}

// Many values as a column chart on a canvas (one column per value), with hover.
function columnChart(data, onHover) {
  const n = data.length;
  const bw = Math.max(1, Math.min(8, Math.floor(900 / n)));
  const H = 140;
  const cv = el("canvas", "colchart");
  cv.width = bw * n;
  cv.height = H;
  const g = cv.getContext("2d");
  const m = Math.max(1e-12, ...Array.from(data, (v) => (Number.isFinite(v) ? Math.abs(v) : 0)));
  const hasNeg = Array.from(data).some((v) => v < 0);
  const zero = hasNeg ? H / 2 : H - 1;
  const span = hasNeg ? H / 2 - 2 : H - 4;
  for (let i = 0; i < n; i++) {
    const v = data[i];
    const hgt = (span * Math.abs(v)) / m;
    g.fillStyle = cssColor(diverging(v / m));
    g.fillRect(i * bw, v >= 0 ? zero - hgt : zero, Math.max(1, bw - (bw > 2 ? 1 : 0)), Math.max(1, hgt));
  }
  g.fillStyle = "#999";
  g.fillRect(0, zero, cv.width, 1);
  cv.addEventListener("mousemove", (ev) => {
    const r = cv.getBoundingClientRect();
    const i = Math.floor(((ev.clientX - r.left) * cv.width) / r.width / bw);
    if (i >= 0 && i < n) onHover(i, data[i]);
  });
  return cv;
}

function softmaxDetail(box, ctx, layer) {
  const logits = ctx.doc.prediction.logits;
  const classes = ctx.doc.model.classes;
  const m = Math.max(...logits);
  const ex = logits.map((z) => Math.exp(z - m));
  const sum = ex.reduce((a, b) => a + b, 0);
  box.append(el("p", "explain",
    "Softmax turns the output layer's scores (logits z) into probabilities that sum to 1: " +
    "p_i = exp(z_i) / Σ_j exp(z_j). Subtracting the largest logit first changes nothing but avoids overflow."));
  const t = el("table", "softmax");
  t.append(el("tr"));
  t.firstChild.append(...["class", "logit z", "exp(z − max)", "p = exp / Σ", ""].map((h) => el("th", "", h)));
  logits.forEach((z, i) => {
    const tr = el("tr", i === ctx.doc.prediction.index ? "top" : "");
    const p = layer.data[i];
    const bar = el("span", "pbar");
    bar.style.width = `${(120 * p).toFixed(1)}px`;
    const cellBar = el("td");
    cellBar.append(bar);
    tr.append(el("td", "", classes[i]), el("td", "", fmt(z, 4)), el("td", "", fmt(ex[i], 4)), el("td", "", `${(100 * p).toFixed(2)}%`), cellBar);
    t.append(tr);
  });
  const f = el("tr");
  f.append(el("td", "", "Σ"), el("td"), el("td", "", fmt(sum, 4)), el("td", "", "100%"), el("td"));
  t.append(f);
  box.append(t);
}

function vectorDetail(box, ctx, layer) {
  const p = layer.params;
  const isOutput = layer.shape[0] === ctx.doc.model.classes.length && layer === ctx.layers[ctx.layers.length - 2];
  let text = `${layer.shape[0]} values.`;
  if (layer.kind === "flatten") {
    const src = ctx.inputOf(layer.name);
    text = `Flatten lays the ${shapeText(src.shape)} maps out as one vector of ${layer.shape[0]} values ` +
      "(channel by channel, row by row), so dense layers can read them.";
  } else if (layer.kind === "dense") {
    text = `A dense layer: each of its ${p.out_features} outputs is a weighted sum of all ${p.in_features} inputs ` +
      `plus a bias (${p.weights.toLocaleString()} weights).` + (isOutput ? " These are the logits: one score per class." : "");
  } else if (layer.kind === "relu") {
    text = "ReLU keeps positive values and turns negatives into 0.";
  } else if (layer.kind === "dropout") {
    text = `Dropout zeroes a random ${Math.round(100 * p.p)}% of values while training; when predicting it does nothing.`;
  }
  box.append(el("p", "explain", text));
  if (layer.shape[0] <= 32) {
    box.append(vectorBars(Array.from(layer.data), isOutput ? ctx.doc.model.classes : null, { highlight: isOutput ? ctx.doc.prediction.index : undefined }));
  } else if (layer.shape[0] <= 8192) {
    const line = el("div", "sum");
    box.append(columnChart(layer.data, (i, v) => {
      let where = "";
      if (layer.kind === "flatten") {
        const [c, h, w] = ctx.inputOf(layer.name).shape;
        where = ` = channel ${Math.floor(i / (h * w))}, row ${Math.floor((i % (h * w)) / w)}, column ${i % w}`;
      }
      line.textContent = `value ${i}${where}: ${fmt(v, 4)}`;
    }), line);
  } else {
    const cv = el("canvas", "big-vec");
    drawVector(cv, layer.data, layerScale(layer.stats, layer.kind), 64);
    box.append(cv);
  }
}

function inputDetail(box, ctx, layer) {
  const info = ctx.doc.input;
  const notes = [];
  if (info.resized) notes.push(`resized from ${info.original_size[1]}×${info.original_size[0]}`);
  if (info.inverted) notes.push("colours inverted (the dataset has light objects on black)");
  box.append(el("p", "explain",
    `The image as the model receives it: ${shapeText(layer.shape)}, pixels 0..1. ${notes.join("; ")}`));
  const row = el("div", "detail-row");
  const line = el("div", "sum");
  const [c, h, w] = layer.shape;
  const view = bigMap(layer, 0, {
    title: "input",
    onHover: (y, x) => line.replaceChildren(el("span", "", `(${y}, ${x}): ${Array.from({ length: c }, (_, k) => fmt(layer.data[k * h * w + y * w + x], 3)).join(", ")}`)),
  });
  row.append(view.fig);
  for (const hm of [ctx.doc.gradcam, ctx.doc.saliency]) {
    if (!hm) continue;
    const v = bigMap(layer, 0, { title: `${hm.method}${hm.layer ? " on " + hm.layer : ""} for '${hm.label}'` });
    drawHeat(v.canvas, ctx.heat(hm), h, w, 0.6);
    row.append(v.fig);
  }
  box.append(row, line);
}

let opened = 0; // the latest openDetail call: an older one still waiting for weights must not draw

// Closing the panel also drops a view still being built.
export function cancelDetail() {
  opened++;
}

export async function openDetail(target, ctx, name, channel) {
  const token = ++opened;
  const layer = ctx.layer(name);
  // built off-screen and swapped in at the end, so a slower earlier request can neither mix its view
  // into this one nor replace it
  const box = document.createDocumentFragment();
  const head = el("h3", "", `${name} · ${layer.kind} · ${shapeText(layer.shape)}`);
  if (channel !== null && layer.shape.length === 3 && layer.kind !== "input") head.textContent += ` · channel ${channel}`;
  const close = el("button", "close", "×");
  close.title = "close";
  close.addEventListener("click", () => ctx.closeDetail());
  box.append(close, head);
  if (layer.module) box.append(el("code", "module", layer.module));
  const ch = channel ?? 0;
  const k = layer.kind;
  if (k === "input") inputDetail(box, ctx, layer);
  else if (k === "conv") await convDetail(box, ctx, layer, ch);
  else if ((k === "maxpool" || k === "avgpool" || k === "globalpool") && layer.shape.length === 3) poolDetail(box, ctx, layer, ch);
  else if (k === "softmax") softmaxDetail(box, ctx, layer);
  else if (layer.shape.length === 3) {
    const texts = {
      relu: ["ReLU: negative values become 0, positive values pass unchanged.", (v) => `max(0, ${fmt(v, 4)})`],
      activation: [`${layer.params.function}: an element-wise non-linearity.`, null],
      dropout: [`Dropout (p = ${layer.params.p}) zeroes random values while training only; at prediction time it passes everything through, so before and after are equal.`, null],
      batchnorm: ["Batch norm: each channel is shifted and scaled with statistics learned in training.", null],
      normalize: [`Normalise: (x − mean) / std per channel, mean ${layer.params.mean}, std ${layer.params.std}.`, null],
    };
    const inp = ctx.inputOf(name);
    if (k === "block") blockDetail(box, ctx, layer, ch);
    else if (shapeText(inp.shape) !== shapeText(layer.shape)) blockDetail(box, ctx, layer, ch, `${k}: changes the shape from ${shapeText(inp.shape)} to ${shapeText(layer.shape)}, so there is no value-by-value mapping to show.`);
    else {
      const [text, fn] = texts[k] || [`${k}`, null];
      beforeAfter(box, ctx, layer, ch, text, fn);
    }
  } else vectorDetail(box, ctx, layer);
  if (token !== opened) return;
  target.replaceChildren(box);
  target.hidden = false;
  target.dataset.layer = name;
  target.dataset.kind = layer.kind;
  target.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

export { colorOf };
