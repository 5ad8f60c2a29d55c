// How one output map of a conv stage is built (CNN Explainer's picture of a convolution): each input
// channel's map, with its padding ring, cross-correlated with that channel's kernel slice gives an
// intermediate map; the intermediate maps summed, plus the bias, are the output map. Computed here from
// the decoded input and the weights, and checked against the model's own output map.
import { fmt, legend, lutOf } from "./colors.js";
import { plural, t } from "./i18n.js";
import { el } from "./maps.js";

const SHOWN = 16; // intermediate maps drawn; the sum always runs over every input channel
const PAD_A = (255 << 24) | (216 << 16) | (225 << 8) | 228; // the ring's two hatch colours, 0xAABBGGRR
const PAD_B = 0xffffffff;

// Input channel c cross-correlated with its kernel slice k at every output position (oh x ow), padding
// read as 0 (the same values the conv view's patches hold).
export function intermediateMap(g, inp, W, k, c, oh, ow) {
  const out = new Float32Array(oh * ow);
  const base = c * g.H * g.W;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let i = 0; i < g.kh; i++) {
        const yy = y * g.sh - g.top + i * g.dh;
        if (yy < 0 || yy >= g.H) continue;
        for (let j = 0; j < g.kw; j++) {
          const xx = x * g.sw - g.left + j * g.dw;
          if (xx >= 0 && xx < g.W) s += inp.data[base + yy * g.W + xx] * W[k * g.nk + i * g.kw + j];
        }
      }
      out[y * ow + x] = s;
    }
  }
  return out;
}

// A map with its padding ring: (h + top + bottom) x (w + left + right) canvas pixels, the ring hatched.
function drawPadded(cv, data, offset, h, w, pad, scale) {
  const [pt, pb, pl, pr] = pad;
  const H = h + pt + pb;
  const Wd = w + pl + pr;
  cv.width = Wd;
  cv.height = H;
  const g = cv.getContext("2d");
  const img = g.createImageData(Wd, H);
  const px = new Uint32Array(img.data.buffer);
  const { lut, lo, k } = lutOf(scale);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < Wd; x++) {
      const inside = y >= pt && y < pt + h && x >= pl && x < pl + w;
      const v = inside ? data[offset + (y - pt) * w + (x - pl)] : 0;
      px[y * Wd + x] = !inside ? ((x + y) % 2 ? PAD_A : PAD_B) : lut[Math.max(0, Math.min(255, Math.round((v - lo) * k)))];
    }
  }
  g.putImageData(img, 0, 0);
}

// A small picture with a movable marker (a window on an input, a cell on a map), `cell` css px per value.
function thumb(cls, cell, drawn) {
  const holder = el("div", `build-thumb ${cls}`);
  const cv = el("canvas", "thumb");
  drawn(cv);
  cv.style.width = `${cv.width * cell}px`;
  cv.style.height = `${cv.height * cell}px`;
  const win = el("div", "window");
  win.hidden = true;
  holder.append(cv, win);
  const mark = (y, x, hh, ww) => {
    win.hidden = false;
    Object.assign(win.style, { top: `${y * cell}px`, left: `${x * cell}px`, width: `${ww * cell}px`, height: `${hh * cell}px` });
  };
  return { holder, cv, mark };
}

function symScale(maps) {
  let m = 0;
  for (const a of maps) for (const v of a) m = Math.max(m, Math.abs(v));
  return { kind: "div", m: m || 1, min: -m, max: m };
}

// The channels drawn: all of them up to SHOWN, else the SHOWN that add the most (sum of |values|).
function shownChannels(maps) {
  const weight = maps.map((a) => a.reduce((s, v) => s + Math.abs(v), 0));
  const order = maps.map((_, k) => k).sort((a, b) => weight[b] - weight[a]);
  return order.slice(0, SHOWN).sort((a, b) => a - b);
}

// One row of the picture: input channel c (ring and window) ⊛ its kernel slice = its intermediate map.
function buildItem(k, { g, inp, W, maps, scales, pad, oh, ow, onPick }) {
  const c = g.chans[k];
  const fig = el("figure", "build-item");
  fig.dataset.channel = String(c);
  const cell = Math.max(1.5, Math.min(4, 72 / Math.max(g.H + pad[0] + pad[1], g.W + pad[2] + pad[3])));
  const input = thumb("build-in", cell, (cv) => drawPadded(cv, inp.data, c * g.H * g.W, g.H, g.W, pad, scales.in));
  const kern = thumb("build-kernel", Math.min(10, 36 / Math.max(g.kh, g.kw)), (cv) => drawPadded(cv, W, k * g.nk, g.kh, g.kw, [0, 0, 0, 0], scales.kern));
  const ocell = Math.max(1.5, Math.min(4, 72 / Math.max(oh, ow)));
  const inter = thumb("build-out", ocell, (cv) => drawPadded(cv, maps[k], 0, oh, ow, [0, 0, 0, 0], scales.inter));
  inter.cv.dataset.channel = String(c);
  const pick = el("button", "linklike small", t("build.channel", { c }));
  pick.type = "button";
  pick.setAttribute("aria-label", t("build.pick", { c }));
  pick.addEventListener("click", () => onPick(k));
  inter.cv.addEventListener("pointerdown", (ev) => {
    const r = inter.cv.getBoundingClientRect();
    onPick(k, [Math.floor((ev.clientY - r.top) / ocell), Math.floor((ev.clientX - r.left) / ocell)]);
  });
  fig.append(input.holder, el("span", "operator", "⊛"), kern.holder, el("span", "operator", "="), inter.holder, el("figcaption", "", ""));
  fig.lastChild.append(pick);
  const mark = (y, x) => {
    input.mark(y * g.sh, x * g.sw, g.span[0], g.span[1]);
    inter.mark(y, x, 1, 1);
  };
  return { fig, mark };
}

function sumRow(total, model, bias, { oh, ow, scales, n, chWord }) {
  let diff = 0;
  for (let i = 0; i < total.length; i++) diff = Math.max(diff, Math.abs(total[i] - model[i]));
  const row = el("div", "build-sum");
  const cell = Math.max(2, Math.min(5, 112 / Math.max(oh, ow)));
  const sum = thumb("build-total", cell, (cv) => drawPadded(cv, total, 0, oh, ow, [0, 0, 0, 0], scales.out));
  const own = thumb("build-model", cell, (cv) => drawPadded(cv, model, 0, oh, ow, [0, 0, 0, 0], scales.out));
  const f1 = el("figure", "");
  f1.append(sum.holder, el("figcaption", "", t("build.total", { n, chWord, bias: fmt(bias, 4) })));
  const f2 = el("figure", "");
  f2.append(own.holder, el("figcaption", "", t("build.model", { d: fmt(diff, 6) })));
  row.dataset.maxDiff = String(diff);
  row.append(el("span", "operator", "Σ"), f1, el("span", "operator", "≈"), f2, legend(scales.out));
  return { row, mark: (y, x) => [sum, own].forEach((s) => s.mark(y, x, 1, 1)) };
}

// The section under the conv view: `mark(y, x)` moves every window and marker to output (y, x);
// `onPick(k, pos)` picks input channel k (and, clicked on a map, that position).
export function convBuild({ layer, channel, g, inp, W, bias, scales, onPick }) {
  const [, oh, ow] = layer.shape;
  const p = layer.params.padding;
  const pad = layer.params.padding_mode === "zeros" ? [p[0], p[1], p[2], p[3]] : [0, 0, 0, 0];
  const maps = g.chans.map((c, k) => intermediateMap(g, inp, W, k, c, oh, ow));
  const total = new Float32Array(oh * ow).fill(bias);
  for (const a of maps) for (let i = 0; i < a.length; i++) total[i] += a[i];
  const all = { ...scales, in: scales.in.kind === "rgb" ? { kind: "gray", lo: 0, hi: 1 } : scales.in, inter: symScale(maps) };
  const n = g.chans.length;
  const chWord = plural(n, [t("channel.one"), t("channel.few"), t("channel.many")]);
  const box = el("section", "conv-build");
  box.setAttribute("aria-label", t("build.h", { o: channel }));
  box.append(el("h3", "", t("build.h", { o: channel })), el("p", "muted small", t(n === 1 ? "build.text1" : "build.text", { n, chWord, o: channel })));
  const keep = shownChannels(maps);
  if (keep.length < n) box.append(el("p", "muted small build-note", t("build.some", { k: keep.length, n })));
  const items = keep.map((k) => buildItem(k, { g, inp, W, maps, scales: all, pad, oh, ow, onPick }));
  const grid = el("div", "build-grid");
  grid.append(...items.map((i) => i.fig));
  const model = layer.data.subarray(channel * oh * ow, (channel + 1) * oh * ow);
  const sum = sumRow(total, model, bias, { oh, ow, scales: all, n, chWord });
  box.append(grid, el("div", "build-legends", ""), sum.row);
  box.querySelector(".build-legends").append(legend(all.inter, { label: t("build.interScale") }));
  const mark = (y, x, sel) => {
    items.forEach((it) => it.mark(y, x));
    sum.mark(y, x);
    for (const f of grid.children) f.classList.toggle("on", f.dataset.channel === String(g.chans[sel]));
  };
  return { box, mark };
}
