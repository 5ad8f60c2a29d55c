// Vectors: a dense unit and the inputs that drove it (weight x activation, traced back to the feature-map
// position each input came from), flatten's index -> (channel, row, column), and softmax from the
// logits, whose own sources are the output layer's top contributions.
import { colorOf, cssColor, fmt, layerScale, legend } from "./colors.js";
import { pct, plural, t } from "./i18n.js";
import { player } from "./animate.js";
import { drawChannel, el, headCell, readout } from "./maps.js";

const TOP = 10;

// Many values as a column chart; a control: pointer or Left/Right/Home/End pick an index.
export function columnChart(data, { selected = 0, onPick, label }) {
  const n = data.length;
  const bw = Math.max(1, Math.min(8, Math.floor(900 / n)));
  const H = 120;
  const holder = el("div", "colchart-holder");
  const cv = el("canvas", "colchart");
  cv.width = bw * n;
  cv.height = H;
  holder.append(cv);
  const scale = layerScale({ kind: "vector", data, shape: [n] });
  let sel = selected;
  const draw = () => {
    const g = cv.getContext("2d");
    g.clearRect(0, 0, cv.width, H);
    const m = Math.max(1e-12, ...Array.from(data, (v) => (Number.isFinite(v) ? Math.abs(v) : 0)));
    const hasNeg = Array.from(data).some((v) => v < 0);
    const zero = hasNeg ? H / 2 : H - 1;
    const span = hasNeg ? H / 2 - 2 : H - 4;
    for (let i = 0; i < n; i++) {
      const v = data[i];
      const hgt = (span * Math.abs(v)) / m;
      g.fillStyle = i === sel ? "#1f2430" : cssColor(colorOf(v, { kind: "div", m }));
      g.fillRect(i * bw, v >= 0 ? zero - hgt : zero, Math.max(1, bw - (bw > 2 ? 1 : 0)), Math.max(1, hgt));
    }
    g.fillStyle = "#5b6170";
    g.fillRect(0, zero, cv.width, 1);
  };
  draw();
  const pick = (i) => {
    sel = Math.max(0, Math.min(n - 1, i));
    draw();
    onPick(sel);
  };
  cv.addEventListener("pointerdown", (ev) => {
    const r = cv.getBoundingClientRect();
    pick(Math.floor(((ev.clientX - r.left) * cv.width) / r.width / bw));
  });
  holder.tabIndex = 0;
  holder.classList.add("control");
  holder.setAttribute("role", "application");
  holder.setAttribute("aria-roledescription", t("chart.role"));
  holder.setAttribute("aria-label", label);
  holder.addEventListener("keydown", (ev) => {
    const d = { ArrowLeft: -1, ArrowRight: 1, ArrowDown: -1, ArrowUp: 1, PageDown: -10, PageUp: 10 }[ev.key];
    if (ev.key === "Home") pick(0);
    else if (ev.key === "End") pick(n - 1);
    else if (d) pick(sel + d);
    else return;
    ev.preventDefault();
  });
  return { holder, pick, scale };
}

// Where input i of a vector stage came from: (channel, row, column) of the last 3-d stage before it.
function source(ctx, layer) {
  let src = ctx.inputOf(layer.name);
  const seen = new Set();
  while (src && src.shape.length !== 3 && (src.kind === "flatten" || src.kind === "dropout") && !seen.has(src.name)) {
    seen.add(src.name);
    src = ctx.inputOf(src.name);
  }
  return src && src.shape.length === 3 ? src : null;
}

function whereText(src, i) {
  const [, h, w] = src.shape;
  return t("dense.from", { name: src.name, c: Math.floor(i / (h * w)), y: Math.floor((i % (h * w)) / w), x: i % w });
}

// A small picture of the source map with the position marked.
function thumb(src, i) {
  const [, h, w] = src.shape;
  const c = Math.floor(i / (h * w));
  const cv = el("canvas", "thumb");
  drawChannel(cv, src, c, layerScale(src));
  const g = cv.getContext("2d");
  g.fillStyle = "#00c853"; // the position, in a colour no scale uses
  g.fillRect(i % w, Math.floor((i % (h * w)) / w), 1, 1);
  cv.setAttribute("aria-hidden", "true");
  return cv;
}

// A bar in its own cell: length |v| / m, coloured by sign on the diverging scale.
export function barCell(v, m) {
  const td = el("td", "barcell");
  const bar = el("span", "cbar");
  bar.style.width = `${Math.round((56 * Math.abs(v)) / (m || 1))}px`;
  bar.style.background = cssColor(colorOf(v, { kind: "div", m: m || 1 }));
  td.append(bar);
  return td;
}

// The top |w x| contributions to one unit, traced to their sources; returns the table.
function contributions(ctx, layer, unit, weights, bias) {
  const inp = ctx.inputOf(layer.name);
  const x = inp.data;
  const n = x.length;
  const prods = new Float64Array(n);
  for (let i = 0; i < n; i++) prods[i] = weights[i] * x[i];
  const order = [...prods.keys()].sort((a, b) => Math.abs(prods[b]) - Math.abs(prods[a]));
  const top = order.slice(0, TOP);
  const total = prods.reduce((a, b) => a + b, 0) + bias;
  const rest = total - bias - top.reduce((a, i) => a + prods[i], 0);
  const src = source(ctx, layer);
  const m = Math.max(1e-12, ...top.map((i) => Math.abs(prods[i])));
  const table = el("table", "contrib-table");
  table.append(el("caption", "", t("dense.caption", { n: TOP, of: n, name: layer.name, unit })));
  const head = el("tr");
  for (const h of [t("dense.col.input"), t("dense.col.from"), t("dense.col.x"), t("dense.col.w"), t("dense.col.wx"), null]) head.append(headCell(h));
  table.append(head);
  for (const i of top) {
    const tr = el("tr");
    const th = el("th");
    th.scope = "row";
    th.textContent = `${inp.name}[${i}]`;
    const from = el("td", "from");
    if (src) {
      const [, h, w] = src.shape;
      const b = el("button", "linklike");
      b.type = "button";
      b.append(thumb(src, i), el("span", "", whereText(src, i)));
      b.addEventListener("click", () => ctx.select(src.name, Math.floor(i / (h * w)), [Math.floor((i % (h * w)) / w), i % w]));
      from.append(b);
    } else if (inp.kind !== "input") {
      const b = el("button", "linklike", t("dense.unit", { name: inp.name, i }));
      b.type = "button";
      b.addEventListener("click", () => ctx.select(inp.name, null, null, i));
      from.append(b);
    }
    tr.append(th, from, el("td", "num", fmt(x[i], 4)), el("td", "num", fmt(weights[i], 4)), el("td", "num", fmt(prods[i], 4)), barCell(prods[i], m));
    table.append(tr);
  }
  const foot = [
    [t("dense.rest", { n: n - top.length }), fmt(rest, 4)],
    [t("dense.bias"), fmt(bias, 4)],
    [t("dense.total"), fmt(total, 4)],
  ];
  for (const [a, b] of foot) {
    const tr = el("tr", "total");
    const th = el("th", "", a);
    th.colSpan = 4;
    th.scope = "row";
    tr.append(th, el("td", "num", b), el("td"));
    table.append(tr);
  }
  return { table, total };
}

function unitLabel(ctx, layer, i) {
  const isOutput = layer === ctx.layers[ctx.layers.length - 2] && layer.shape[0] === ctx.doc.model.classes.length;
  return isOutput ? `${i} (${ctx.doc.model.classes[i]})` : String(i);
}

// A dense unit: its value as weights x inputs + bias; `elementwise`: ReLU/dropout on a vector instead.
export async function denseDetail(box, ctx, layer, unit, { elementwise = false } = {}) {
  const p = layer.params;
  const inp = ctx.inputOf(layer.name);
  const n = layer.shape[0];
  const isOutput = layer === ctx.layers[ctx.layers.length - 2] && n === ctx.doc.model.classes.length;
  if (elementwise) box.append(el("p", "explain", t(`vec.${layer.kind}`, { p: p.p, fn: p.function })));
  else box.append(el("p", "explain", t(isOutput ? "dense.textOut" : "dense.text", { out: p.out_features, in: p.in_features, w: p.weights })));
  const detail = el("div", "unit-detail");
  const line = readout();
  let start = unit;
  if (start === null || start === undefined) start = isOutput ? ctx.doc.prediction.index : argmax(layer.data);
  let pending = 0;
  const show = async (i) => {
    const mine = ++pending;
    const v = layer.data[i];
    ctx.setUnit(i);
    if (elementwise) {
      line.textContent = t("vec.line", { name: layer.name, i, before: fmt(inp.data[i], 4), after: fmt(v, 4) });
      return;
    }
    const { weight, bias } = await ctx.weights(layer.name, i);
    if (mine !== pending) return;
    const { table, total } = contributions(ctx, layer, unitLabel(ctx, layer, i), weight, bias ? bias[0] : 0);
    const tol = ctx.tolerance(layer, weight) + layer.maxError;
    const ok = Math.abs(total - v) <= tol;
    Object.assign(line.dataset, { total: String(total), output: String(v) });
    line.textContent = t("dense.line", { name: layer.name, i: unitLabel(ctx, layer, i), total: fmt(total, 4), v: fmt(v, 4), ok: ok ? "✓" : "✗" });
    detail.replaceChildren(table);
  };
  const chart = columnChart(layer.data, { selected: start, onPick: show, label: t("chart.label", { name: layer.name, n }) });
  box.append(chart.holder, legend(chart.scale), line, detail);
  await show(start);
}

function argmax(data) {
  let b = 0;
  for (let i = 1; i < data.length; i++) if (data[i] > data[b]) b = i;
  return b;
}

export function flattenDetail(box, ctx, layer, index) {
  const src = source(ctx, layer);
  box.append(el("p", "explain", src ? t("flatten.text", { shape: src.shape.join("×"), n: layer.shape[0] }) : t("flatten.plain")));
  const line = readout();
  const pic = el("div", "flat-src");
  const show = (i) => {
    ctx.setUnit(i);
    line.textContent = `${layer.name}[${i}] = ${fmt(layer.data[i], 4)}${src ? " · " + whereText(src, i) : ""}`;
    if (src) {
      const cv = thumb(src, i);
      cv.classList.add("big-thumb");
      pic.replaceChildren(cv);
    }
  };
  const start = index ?? argmax(layer.data);
  const chart = columnChart(layer.data, { selected: start, onPick: show, label: t("chart.label", { name: layer.name, n: layer.shape[0] }) });
  box.append(chart.holder, legend(chart.scale), line, pic);
  show(start);
}

export async function softmaxDetail(box, ctx, layer, cls) {
  const logits = ctx.doc.prediction.logits;
  const classes = ctx.doc.model.classes;
  const m = Math.max(...logits);
  const ex = logits.map((z) => Math.exp(z - m));
  const sum = ex.reduce((a, b) => a + b, 0);
  box.append(el("p", "explain", t("softmax.text")));
  const table = el("table", "softmax");
  table.append(el("caption", "sr-only", t("softmax.caption")));
  const head = el("tr");
  for (const h of [t("softmax.class"), t("softmax.logit"), t("softmax.exp"), t("softmax.p"), null]) head.append(headCell(h));
  table.append(head);
  const sources = el("div", "sources");
  const output = ctx.layers[ctx.layers.length - 2];
  let chosen = cls ?? ctx.doc.prediction.index;
  const rows = [];
  const pick = async (i) => {
    chosen = i;
    rows.forEach((r, k) => r.classList.toggle("on", k === i));
    ctx.setUnit(i);
    if (output.kind !== "dense") return;
    const { weight, bias } = await ctx.weights(output.name, i);
    if (chosen !== i) return;
    const { table: tbl } = contributions(ctx, output, `${i} (${classes[i]})`, weight, bias ? bias[0] : 0);
    const b = el("button", "", t("softmax.where", { label: classes[i] }));
    b.type = "button";
    b.addEventListener("click", () => ctx.explainClass(i));
    sources.replaceChildren(el("h3", "", t("softmax.sources", { label: classes[i], name: output.name })), tbl, b);
  };
  logits.forEach((z, i) => {
    const tr = el("tr", i === ctx.doc.prediction.index ? "top" : "");
    const p = layer.data[i];
    const bar = el("span", "pbar");
    bar.style.width = `${(120 * p).toFixed(1)}px`;
    const cellBar = el("td");
    cellBar.append(bar);
    const th = el("th");
    th.scope = "row";
    const b = el("button", "linklike", classes[i]);
    b.type = "button";
    b.setAttribute("aria-label", t("softmax.pick", { label: classes[i] }));
    b.addEventListener("click", () => pick(i));
    th.append(b);
    tr.append(th, el("td", "num", fmt(z, 4)), el("td", "num", fmt(ex[i], 4)), el("td", "num", pct(p, 2)), cellBar);
    table.append(tr);
    rows.push(tr);
  });
  const f = el("tr", "total");
  f.append(el("th", "", "Σ"), el("td"), el("td", "num", fmt(sum, 4)), el("td", "num", "100%"), el("td"));
  table.append(f);
  box.append(softmaxSteps(table, { logits, m, sum, classes, probs: layer.data, top: ctx.doc.prediction.index }), table, sources);
  await pick(chosen);
}

// Softmax in four steps, played or stepped: the logits, exp(z − max), their sum, each divided by it; the
// table's column (or sum row) of the step in view lights up, and a live line says it with this image's numbers.
function softmaxSteps(table, { logits, m, sum, classes, probs, top }) {
  const line = readout("softmax-step");
  let step = -1;
  const texts = [
    () => t("softmax.step1", { max: fmt(m, 4), label: classes[top] }),
    () => t("softmax.step2", { label: classes[top] }),
    () => t("softmax.step3", { sum: fmt(sum, 4) }),
    () => t("softmax.step4", { sum: fmt(sum, 4), label: classes[top], p: pct(probs[top], 2) }),
  ];
  const show = (k) => {
    step = k;
    table.dataset.step = String(k + 1);
    line.textContent = `${k + 1}/4: ${texts[k]()}`;
  };
  const play = player((d) => show((step + d + 4) % 4), line, { labels: { play: t("softmax.play") } });
  play.where.textContent = t("softmax.stepsOf", { n: logits.length });
  const box = el("div", "softmax-steps");
  box.append(play.box, line);
  return box;
}

export const unitsWord = (n) => plural(n, [t("unit.one"), t("unit.few"), t("unit.many")]);
