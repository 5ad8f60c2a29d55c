// The detail panel, opened by a map, a stage's heading or a class: how each value of that stage was
// computed. This module picks the view and holds the small ones (input, element-wise stages, batch
// norm, blocks); conv, pooling, dense/flatten/softmax and "all maps" have their own modules.
import { player, walker } from "./animate.js";
import { fmt, heat, layerScale, legend } from "./colors.js";
import { convDetail } from "./conv.js";
import { denseDetail, flattenDetail, softmaxDetail } from "./dense.js";
import { allMaps } from "./allmaps.js";
import { t } from "./i18n.js";
import { bigMap, drawHeat, el, readout, shapeText, startPos } from "./maps.js";
import { poolDetail } from "./pooling.js";

// Before -> after for stages that map each value to one value (ReLU, other activations, dropout,
// normalisation), on the scale of the "before" stage, so what changed is what changes colour.
function beforeAfter(box, ctx, layer, channel, text, fn) {
  const inp = ctx.inputOf(layer.name);
  box.append(el("p", "explain", text));
  const row = el("div", "detail-row");
  const line = readout();
  const same = layer.kind === "relu" || layer.kind === "dropout";
  const sIn = layerScale(inp);
  const sOut = same ? sIn : layerScale(layer);
  const [, h, w] = layer.shape;
  const show = (y, x, why) => {
    if (why === "pointer" || why === "key") play.stop();
    const before = inp.data[channel * h * w + y * w + x];
    const after = layer.data[channel * h * w + y * w + x];
    a.mark(y, x, 1, 1);
    b.mark(y, x, 1, 1);
    ctx.setPos(y, x);
    line.dataset.output = String(after);
    line.textContent = t("ba.line", { y, x, before: fmt(before, 4), after: fmt(after, 4), how: fn ? `   (${fn(before)})` : "" });
  };
  const a = bigMap(inp, channel, sIn, { title: t("ba.before", { name: inp.name, channel }) });
  const b = bigMap(layer, channel, sOut, { title: t("ba.after", { name: layer.name, channel }), onMove: show });
  row.append(a.fig, el("span", "operator big-op", "→"), b.fig);
  const play = player(walker(b, h, w), line, { labels: { play: t("ba.play") } });
  box.append(play.box, row, line);
  b.moveTo(...startPos(ctx, layer, channel));
}

const list4 = (values) => (values || []).map((v) => fmt(v, 4)).join(", "); // every kind's text is built

// The article's section on this kind of stage, when the article has one: links run both ways (each
// section has a button that opens its stage here).
const SECTIONS = { conv: "kernels", relu: "relu", activation: "relu", maxpool: "pool", avgpool: "pool", globalpool: "pool", flatten: "flatten", softmax: "softmax", batchnorm: "bn" };
function articleLink(layer) {
  const block = layer.kind === "block" ? (layer.params?.module === "ResidualBlock" ? "residual" : /Conv2d/.test(layer.module || "") ? "kernels" : null) : null;
  const id = block || SECTIONS[layer.kind];
  const heading = id && document.getElementById(`art-${id}`);
  if (!heading) return null;
  const a = el("a", "read-more small", t("detail.read", { title: heading.textContent }));
  a.href = `#art-${id}`;
  a.addEventListener("click", (ev) => {
    ev.preventDefault();
    heading.tabIndex = -1;
    heading.scrollIntoView({ block: "start" });
    heading.focus({ preventScroll: true });
  });
  return a;
}

// PyTorch's repr prints float32 buffers in full (mean=[0.30000001192092896]): 6 significant digits.
const shortFloats = (text) => text.replace(/-?\d+\.\d{7,}(e-?\d+)?/g, (m) => String(Number(Number(m).toPrecision(6))));

// Batch norm at evaluation: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta, per channel.
function batchnormDetail(box, ctx, layer, channel) {
  const p = layer.params;
  const inp = ctx.inputOf(layer.name);
  const g = p.gamma ? p.gamma[channel] : 1;
  const b = p.beta ? p.beta[channel] : 0;
  const mu = p.running_mean ? p.running_mean[channel] : 0;
  const v = p.running_var ? p.running_var[channel] : 1;
  box.append(el("p", "explain", t("bn.text", { eps: p.eps })));
  const stats = el("table", "bn-stats");
  stats.append(el("caption", "", t("bn.caption", { channel })));
  const head = el("tr");
  const vals = el("tr");
  for (const [k, x] of [["γ (gamma)", g], ["β (beta)", b], [t("bn.mean"), mu], [t("bn.var"), v], ["ε", p.eps]]) {
    head.append(el("th", "", k));
    vals.append(el("td", "", fmt(x, 4)));
  }
  stats.append(head, vals);
  box.append(stats);
  const row = el("div", "detail-row");
  const line = readout();
  const [, h, w] = layer.shape;
  const show = (y, x) => {
    const xin = inp.data[channel * h * w + y * w + x];
    const out = layer.data[channel * h * w + y * w + x];
    const xhat = (xin - mu) / Math.sqrt(v + p.eps);
    const y2 = g * xhat + b;
    a.mark(y, x, 1, 1);
    o.mark(y, x, 1, 1);
    ctx.setPos(y, x);
    const tol = inp.errors[channel] * Math.abs(g) / Math.sqrt(v + p.eps) + layer.errors[channel] + 1e-4 * Math.max(1, Math.abs(out));
    const ok = Math.abs(y2 - out) <= tol;
    line.dataset.total = String(y2);
    line.dataset.output = String(out);
    line.textContent = t("bn.line", {
      y, x, x0: fmt(xin, 4), minusMu: mu < 0 ? `+ ${fmt(-mu, 4)}` : `− ${fmt(mu, 4)}`, s: fmt(Math.sqrt(v + p.eps), 4), xhat: fmt(xhat, 4),
      g: fmt(g, 4), b: fmt(b, 4), y2: fmt(y2, 4), out: fmt(out, 4), ok: ok ? "✓" : "✗",
    });
  };
  const a = bigMap(inp, channel, layerScale(inp), { title: t("ba.before", { name: inp.name, channel }) });
  const o = bigMap(layer, channel, layerScale(layer), { title: t("ba.after", { name: layer.name, channel }), onMove: show });
  row.append(a.fig, el("span", "operator big-op", "→"), o.fig);
  box.append(row, line);
  o.moveTo(...startPos(ctx, layer, channel));
}

// A block (a residual block, a conv-BN-ReLU group): output channel k reads every input channel, so the
// view shows the whole input and the chosen output map, not a per-channel mapping.
function blockParts(moduleText) {
  const parts = [];
  for (const m of (moduleText || "").matchAll(/^ {2}\((\w+)\): (\w+)/gm)) parts.push({ name: m[1], type: m[2] });
  return parts;
}

function blockText(layer, inp) {
  const parts = blockParts(layer.module);
  const cin = inp.shape.length === 3 ? inp.shape[0] : inp.shape.reduce((a, b) => a * b, 1);
  const shortcut = parts.find((p) => p.name === "shortcut");
  if (shortcut) {
    const convs = parts.filter((p) => p.type === "Conv2d").length;
    return t(shortcut.type === "Identity" ? "block.residualId" : "block.residualProj", { cin, name: inp.name, convs, cout: layer.shape[0] });
  }
  const chain = parts.length ? parts.map((p) => p.type).join(" → ") : layer.params.module || "block";
  return t("block.chain", { chain, cin, name: inp.name });
}

function blockDetail(box, ctx, layer, channel, text) {
  const inp = ctx.inputOf(layer.name);
  const [, h, w] = layer.shape;
  box.append(el("p", "explain", text || blockText(layer, inp)));
  const row = el("div", "detail-row");
  const line = readout();
  const show = (y, x) => {
    const v = layer.data[channel * h * w + y * w + x];
    out.mark(y, x, 1, 1);
    ctx.setPos(y, x);
    line.dataset.output = String(v);
    line.textContent = t("block.line", { y, x, v: fmt(v, 4) });
  };
  const out = bigMap(layer, channel, layerScale(layer), { title: t("out.title", { name: layer.name, channel, h, w }), onMove: show });
  const input = inp.shape.length === 3
    ? allMaps(null, ctx, inp, { compact: true, max: 16 })
    : el("figure", "", `${inp.name}, ${shapeText(inp.shape)}`);
  row.append(input, el("span", "operator big-op", "⇒"), out.fig);
  box.append(row, line);
  out.moveTo(...startPos(ctx, layer, channel));
}

function inputDetail(box, ctx, layer) {
  const info = ctx.doc.input;
  const notes = [];
  if (info.resized) notes.push(t("input.resized", { w: info.original_size[1], h: info.original_size[0] }));
  if (info.inverted) notes.push(t("input.inverted"));
  box.append(el("p", "explain", t(layer.shape[0] === 3 ? "input.textRGB" : "input.text", { shape: shapeText(layer.shape) }) + (notes.length ? " " + notes.join("; ") : "")));
  const row = el("div", "detail-row");
  const line = readout();
  const [c, h, w] = layer.shape;
  const view = bigMap(layer, 0, layerScale(layer), {
    title: t("input.title"),
    onMove: (y, x) => {
      view.mark(y, x, 1, 1);
      ctx.setPos(y, x);
      const vals = Array.from({ length: c }, (_, k) => fmt(layer.data[k * h * w + y * w + x], 3)).join(", ");
      line.textContent = t("input.line", { y, x, vals });
    },
  });
  row.append(view.fig);
  for (const hm of [ctx.doc.gradcam, ctx.doc.saliency]) {
    if (!hm) continue;
    const v = bigMap(layer, 0, layerScale(layer), { title: t(`heat.${hm.method}`, { layer: hm.layer || "", label: hm.label }) });
    drawHeat(v.canvas, ctx.heat(hm), h, w, heat, 0.65);
    v.fig.append(legend({ kind: "heat", lo: 0, hi: 1 }, { label: t("heat.scale") }));
    row.append(v.fig);
  }
  box.append(row, line);
  view.moveTo(...(ctx.pos && ctx.pos[0] < h && ctx.pos[1] < w ? ctx.pos : [Math.floor(h / 2), Math.floor(w / 2)]));
}

function mapView(box, ctx, layer, ch) {
  const k = layer.kind;
  const inp = ctx.inputOf(layer.name);
  if (k === "block") return blockDetail(box, ctx, layer, ch);
  if (shapeText(inp.shape) !== shapeText(layer.shape)) {
    return blockDetail(box, ctx, layer, ch, t("block.reshape", { kind: t(`kind.${k}`), a: shapeText(inp.shape), b: shapeText(layer.shape) }));
  }
  if (k === "batchnorm") return batchnormDetail(box, ctx, layer, ch);
  const texts = {
    relu: [t("relu.text"), (v) => `max(0, ${fmt(v, 4)})`],
    activation: [t("act.text", { fn: layer.params.function }), null],
    dropout: [t("dropout.text", { p: layer.params.p }), null],
    normalize: [t("normalize.text", { mean: list4(layer.params.mean), std: list4(layer.params.std) }), null],
  };
  const [text, fn] = texts[k] || [t(`kind.${k}`), null];
  return beforeAfter(box, ctx, layer, ch, text, fn);
}

let opened = 0; // the latest openDetail call: an older one still waiting for weights must not draw

export function cancelDetail() {
  opened++;
  return opened;
}

export function currentToken() {
  return opened;
}

// Build the view off-screen and swap it in at the end, so a slower earlier request can neither mix its
// view into this one nor replace it. `channel === "all"` opens the stage's "all maps" view.
export async function openDetail(target, ctx, name, channel) {
  const token = ++opened;
  const layer = ctx.layer(name);
  const box = document.createDocumentFragment();
  const head = el("h2", "detail-title", `${name} · ${t(`kind.${layer.kind}`)} · ${shapeText(layer.shape)}`);
  head.id = "detail-title";
  head.tabIndex = -1;
  const threeD = layer.shape.length === 3 && layer.kind !== "input";
  if (channel === "all") head.textContent += ` · ${t("all.title", { c: layer.shape[0] })}`;
  else if (channel !== null && threeD) head.textContent += ` · ${t("detail.channel", { channel })}`;
  const close = el("button", "close", "×");
  close.type = "button";
  close.setAttribute("aria-label", t("detail.close"));
  close.addEventListener("click", () => ctx.closeDetail());
  box.append(close, head);
  const read = articleLink(layer);
  if (read) box.append(read);
  if (layer.module && layer.kind !== "input" && layer.kind !== "softmax") box.append(el("code", "module", shortFloats(layer.module)));
  const ch = channel === "all" ? 0 : channel ?? 0;
  const k = layer.kind;
  ctx.token = token;
  if (channel === "all") allMaps(box, ctx, layer);
  else if (k === "input") inputDetail(box, ctx, layer);
  else if (k === "conv") await convDetail(box, ctx, layer, ch);
  else if ((k === "maxpool" || k === "avgpool" || k === "globalpool") && layer.shape.length === 3) poolDetail(box, ctx, layer, ch);
  else if (k === "softmax") await softmaxDetail(box, ctx, layer, channel);
  else if (layer.shape.length === 3) mapView(box, ctx, layer, ch);
  else if (k === "dense") await denseDetail(box, ctx, layer, channel);
  else if (k === "flatten") flattenDetail(box, ctx, layer, channel);
  else await denseDetail(box, ctx, layer, channel, { elementwise: true });
  if (token !== opened) return false;
  target.replaceChildren(box);
  target.hidden = false;
  target.dataset.layer = name;
  target.dataset.kind = layer.kind;
  target.dataset.channel = channel === null || channel === undefined ? "" : String(channel);
  return true;
}
