// The conv view: the kernel slides over the input (by pointer, arrow keys, or played as an animation),
// and every output value is taken apart: for each input channel the patch under the kernel times the
// kernel, the channel's partial sum, their running total, the bias, and the model's own value.
import { colorOf, cssColor, fmt, layerScale, legend } from "./colors.js";
import { barCell } from "./dense.js";
import { convBuild } from "./convbuild.js";
import { plural, t } from "./i18n.js";
import { player } from "./animate.js";
import { bigMap, el, headCell, numberGrid, readout, startPos } from "./maps.js";

function symScale(values) {
  let m = 0;
  for (const v of values) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  return { kind: "div", m: m || 1, min: -m, max: m };
}

// One scale for every input x weight product of the view: the largest an input on its stage's scale times
// a weight of this filter can make. Scaled to each grid's own 9 products, a grid of tiny products painted
// "0.00" in deep colour.
function productScale(scales) {
  const input = scales.in.kind === "gray" ? scales.in.hi : scales.in.m;
  const m = input * scales.kern.m || 1;
  return { kind: "div", m, min: -m, max: m };
}

// One row's picture: patch | kernel | products, kh x (3 kw + 2) canvas pixels.
function drawTriple(cv, patch, kern, prods, kh, kw, scales) {
  cv.width = 3 * kw + 2;
  cv.height = kh;
  const g = cv.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, cv.width, cv.height);
  [patch, kern, prods].forEach((vals, b) => {
    for (let i = 0; i < kh * kw; i++) {
      g.fillStyle = cssColor(colorOf(Number.isFinite(vals[i]) ? vals[i] : 0, scales[b]));
      g.fillRect(b * (kw + 1) + (i % kw), Math.floor(i / kw), 1, 1);
    }
  });
}

// Partial sums adding up, channel by channel, then the bias: the running total ends at the output.
function drawWaterfall(cv, per, bias, output) {
  const n = per.length + 1;
  const bw = Math.max(3, Math.min(14, Math.floor(640 / n)));
  cv.width = bw * n + 4;
  cv.height = 130;
  const g = cv.getContext("2d");
  const run = [0];
  for (const s of per) run.push(run[run.length - 1] + s);
  run.push(run[run.length - 1] + bias);
  const lo = Math.min(0, ...run, output);
  const hi = Math.max(0, ...run, output);
  const y = (v) => 6 + ((hi - v) / (hi - lo || 1)) * (cv.height - 12);
  g.clearRect(0, 0, cv.width, cv.height);
  g.fillStyle = "#5b6170";
  g.fillRect(0, y(0), cv.width, 1);
  for (let i = 0; i < n; i++) {
    const a = run[i];
    const b = run[i + 1];
    g.fillStyle = i === n - 1 ? "#1f2430" : b >= a ? "#c2500f" : "#1f5f9e";
    g.fillRect(2 + i * bw, Math.min(y(a), y(b)), Math.max(1, bw - 1), Math.max(1, Math.abs(y(a) - y(b))));
  }
  g.fillStyle = "#1d7a43";
  g.fillRect(0, y(output) - 1, cv.width, 2);
}

// The window of one conv layer over its input: which input channels an output channel reads, and the
// values under the kernel at output (y, x) (padding as 0 for zero padding, else NaN: "pad").
function geometry(layer, inp, channel) {
  const p = layer.params;
  const [kh, kw] = p.kernel_size;
  const [sh, sw] = p.stride;
  const [dh, dw] = p.dilation;
  const [top, , left] = p.padding;
  const cinPer = p.in_channels / p.groups;
  const group = Math.floor(channel / (p.out_channels / p.groups));
  const [, H, W] = inp.shape;
  const patchAt = (c, y, x) => {
    const vals = new Array(kh * kw);
    const padded = new Array(kh * kw).fill(false);
    const y0 = y * sh - top;
    const x0 = x * sw - left;
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const yy = y0 + i * dh;
        const xx = x0 + j * dw;
        const inside = yy >= 0 && xx >= 0 && yy < H && xx < W;
        vals[i * kw + j] = inside ? inp.data[c * H * W + yy * W + xx] : p.padding_mode === "zeros" ? 0 : NaN;
        padded[i * kw + j] = !inside;
      }
    }
    return { vals, y0, x0, padded };
  };
  const chans = [...Array(cinPer).keys()].map((k) => group * cinPer + k);
  return { kh, kw, sh, sw, dh, dw, top, left, nk: kh * kw, span: [dh * (kh - 1) + 1, dw * (kw - 1) + 1], chans, H, W, patchAt };
}


// The table of every input channel at one position: patch x kernel, partial sum, running total; the
// last row adds the bias. `onPick(k)` shows channel k's numbers in full.
function channelTable(chans, onPick) {
  const wrap = el("div", "ch-table-wrap");
  const table = el("table", "ch-table");
  const head = el("tr");
  for (const h of [t("conv.col.channel"), t("conv.col.triple"), t("conv.col.partial"), null, t("conv.col.running")]) head.append(headCell(h));
  table.append(head);
  const rows = chans.map((c, k) => {
    const tr = el("tr");
    const th = el("th");
    th.scope = "row";
    const b = el("button", "linklike", String(c));
    b.type = "button";
    b.setAttribute("aria-label", t("conv.pick", { c }));
    b.addEventListener("click", () => onPick(k));
    th.append(b);
    const cv = el("canvas", "triple");
    cv.setAttribute("aria-hidden", "true");
    const tdc = el("td");
    tdc.append(cv);
    const row = { tr, cv, part: el("td", "num"), bar: el("td", "barcell"), running: el("td", "num") };
    tr.append(th, tdc, row.part, row.bar, row.running);
    table.append(tr);
    return row;
  });
  const biasRow = el("tr", "total");
  const biasCell = el("td", "num");
  biasRow.append(el("th", "", t("conv.bias")), el("td"), biasCell, el("td"), el("td"));
  table.append(biasRow);
  wrap.append(table);
  const update = ({ patches, kernels, prods, per, bias, total, sel, g, scales }) => {
    let run = 0;
    const sPer = symScale(per);
    per.forEach((s, k) => {
      run += s;
      const r = rows[k];
      drawTriple(r.cv, patches[k], kernels[k], prods[k], g.kh, g.kw, [scales.in, scales.kern, scales.prod]);
      r.part.textContent = fmt(s, 4);
      r.bar.replaceWith((r.bar = barCell(s, sPer.m)));
      r.running.textContent = fmt(run, 4);
      r.tr.classList.toggle("on", k === sel);
    });
    biasCell.textContent = `${fmt(bias, 4)} → ${fmt(total, 4)}`;
  };
  return { wrap, update };
}

// patch ⊙ kernel = products, as three number grids with their legends.
function dotProduct(patch, kernel, prods, sum, { g, scales, y0, x0, o, c, padded }) {
  const grid = (vals, scale, title, caption, pads) => {
    const f = numberGrid(vals, g.kh, g.kw, { scale, title, caption, padded: pads });
    f.append(legend(scale));
    return f;
  };
  return [
    grid(patch, scales.in, t("conv.patch", { y: y0, x: x0, c }), t("conv.patchCap"), padded),
    el("span", "operator", "⊙"),
    grid(kernel, scales.kern, t("conv.kernel", { o, c }), t("conv.kernelCap")),
    el("span", "operator", "="),
    grid(prods, scales.prod, t("conv.sum", { s: fmt(sum, 4) }), t("conv.prodCap")),
  ];
}

// How far the sum of decoded inputs may stray from the model's value: the output's stated error plus 4
// standard deviations of the inputs' rounding (uniform within their stated precision).
function tolerance(W, g, inp, outError, model) {
  let variance = 0;
  g.chans.forEach((c, k) => {
    for (let i = 0; i < g.nk; i++) variance += (W[k * g.nk + i] * inp.errors[c]) ** 2 / 3;
  });
  return outError + 4 * Math.sqrt(variance) + 1e-4 * Math.max(1, Math.abs(model));
}

// The numbers of output (y, x): each input channel's patch, its products with the kernel and their sum.
function position(g, W, bias, y, x) {
  const patches = g.chans.map((c) => g.patchAt(c, y, x).vals);
  const prods = patches.map((vals, k) => vals.map((v, i) => (Number.isFinite(v) ? v : 0) * W[k * g.nk + i]));
  const per = prods.map((pr) => pr.reduce((a, b) => a + b, 0));
  const sum = per.reduce((a, b) => a + b, 0);
  return { patches, prods, per, sum, total: sum + bias };
}

// The line under the maps: Σ over the channels, + bias = total, beside the model's own value.
function sumLine(line, { y, x, at, bias, model, err, bound, words }) {
  const ok = Math.abs(at.total - model) <= bound;
  Object.assign(line.dataset, { total: String(at.total), output: String(model), bound: String(bound) });
  line.replaceChildren(
    el("span", "", t("conv.line", { y, x, ...words, sum: fmt(at.sum, 4), bias: fmt(bias, 4) })),
    el("b", "", fmt(at.total, 4)),
    el("span", ok ? "ok" : "bad", ` ${t("conv.model")}: ${fmt(model, 4)}${err ? ` (±${fmt(err, 4)})` : ""} ${ok ? "✓" : "✗"}`),
  );
}

// The input channel that contributes most to output (y, x): where the view starts.
function strongest(g, W, y, x) {
  const per = position(g, W, 0, y, x).per;
  return per.reduce((b, v, k) => (Math.abs(v) > Math.abs(per[b]) ? k : b), 0);
}

export async function convDetail(box, ctx, layer, channel) {
  const inp = ctx.inputOf(layer.name);
  const g = geometry(layer, inp, channel);
  const { kh, kw, nk, chans } = g;
  const { weight: W, bias: B } = await ctx.weights(layer.name, channel);
  const bias = B ? B[0] : 0;
  const [, oh, ow] = layer.shape;
  const scales = { in: layerScale(inp), out: layerScale(layer), kern: symScale(W) };
  scales.prod = productScale(scales);
  const words = { n: chans.length, chWord: plural(chans.length, [t("channel.one"), t("channel.few"), t("channel.many")]) };
  box.append(el("p", "explain", t(chans.length === 1 ? "conv.text1" : "conv.text", { name: layer.name, channel, kh, kw, ...words, s: g.sh, pad: g.top })));
  let sel = 0;
  let inView = null;
  const line = readout();
  const row = el("div", "detail-row");
  const inHolder = el("div");
  const mid = el("div", "dot");
  const out = bigMap(layer, channel, scales.out, { title: t("out.title", { name: layer.name, channel, h: oh, w: ow }), onMove: (y, x, why) => show(y, x, why), label: t("conv.mapLabel", { name: layer.name, channel }) });
  row.append(inHolder, mid, out.fig);
  const play = player((d) => {
    const i = (out.pos[0] * ow + out.pos[1] + d + oh * ow) % (oh * ow);
    out.moveTo(Math.floor(i / ow), i % ow, "step");
  }, line);
  const pick = (k, pos = null) => {
    sel = k;
    if (pos) out.moveTo(...pos, "pointer");
    else show(...out.pos, "pick");
  };
  const table = channelTable(chans, pick);
  const build = convBuild({ layer, channel, g, inp, W, bias, scales, onPick: pick });
  const fall = el("canvas", "waterfall");
  fall.setAttribute("role", "img");
  const toPg = el("button", "", t("conv.toPlayground"));
  toPg.type = "button";
  box.append(play.box, row, line, build.box, el("h3", "", t("conv.allTitle", words)), el("p", "muted small", t("conv.allNote")), table.wrap, el("p", "muted small", t("conv.waterfall")), fall, toPg);
  const kernels = chans.map((_, k) => Array.from(W.subarray(k * nk, (k + 1) * nk)));

  function show(y, x, why) {
    if (why === "pointer" || why === "key") play.stop();
    ctx.setPos(y, x);
    const at = position(g, W, bias, y, x);
    const model = layer.data[channel * oh * ow + y * ow + x];
    if (!inView || inView.channel !== chans[sel]) {
      inView = bigMap(inp, chans[sel], scales.in, { title: t("in.title", { name: inp.name, channel: chans[sel], h: g.H, w: g.W }), pad: layer.params.padding });
      inView.channel = chans[sel];
      inHolder.replaceChildren(inView.fig);
    }
    const { y0, x0, padded } = g.patchAt(chans[sel], y, x);
    inView.mark(y0, x0, ...g.span);
    out.mark(y, x, 1, 1);
    build.mark(y, x, sel);
    mid.replaceChildren(...dotProduct(at.patches[sel], kernels[sel], at.prods[sel], at.per[sel], { g, scales, y0, x0, o: channel, c: chans[sel], padded }));
    const err = layer.errors[channel];
    sumLine(line, { y, x, at, bias, model, err, bound: tolerance(W, g, inp, err, model), words });
    table.update({ ...at, kernels, bias, sel, g, scales });
    drawWaterfall(fall, at.per, bias, model);
    fall.setAttribute("aria-label", t("conv.fallLabel", { ...words, sum: fmt(at.sum, 4), bias: fmt(bias, 4), total: fmt(at.total, 4) }));
    play.where.textContent = t("conv.where", { y, x, oh, ow });
  }

  toPg.addEventListener("click", () => {
    const k = kernels[sel];
    ctx.sendKernel(Array.from({ length: kh }, (_, i) => k.slice(i * kw, (i + 1) * kw)), `${layer.name}[${channel}, ${chans[sel]}]`);
  });
  // start on the input channel that contributes most at the strongest (or the URL's) position
  const pos0 = startPos(ctx, layer, channel);
  sel = strongest(g, W, ...pos0);
  out.moveTo(...pos0, "start");
}
