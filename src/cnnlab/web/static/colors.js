// One honest colour scale for maps and number grids, and its legend.
//
// Signed values get a diverging scale centred on 0 (blue below, white at 0, orange above); values that
// are never negative get the sequential half of the same scale (white at 0 to dark orange), so 0 is
// white everywhere and "how positive" reads the same on every stage. The range is robust: the 99th
// percentile of |value| (one outlier does not wash out the rest); values beyond it are drawn at the end
// colour and the legend says so. The input is drawn in its own colours: gray stays gray, RGB stays RGB.
import { getLang, t } from "./i18n.js";

// ColorBrewer "Oranges" and "Blues", white first: perceptually ordered, print- and colour-blind-safe.
const POS = [[255, 255, 255], [254, 230, 206], [253, 174, 107], [241, 105, 19], [166, 54, 3], [100, 30, 2]];
const NEG = [[255, 255, 255], [222, 235, 247], [158, 202, 225], [66, 146, 198], [8, 81, 156], [8, 40, 90]];
// Heat maps (Grad-CAM, saliency: 0..1, "how much"): dark purple through red to yellow ("inferno"-like).
const HEAT = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];

function ramp(stops, x) {
  x = Math.min(1, Math.max(0, x)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const a = stops[i];
  const b = stops[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

export const heat = (v) => ramp(HEAT, v);

// The q-th quantile of |values| (or of values), from a 2048-bin histogram: one pass, no sorting, so it
// runs on every stage at every redraw; exact to 1/2048 of the largest value.
const BINS = 2048;
const hist = new Uint32Array(BINS);
export function robustMax(data, { abs = true, q = 0.99, offset = 0, length = data.length } = {}) {
  let top = 0;
  let n = 0;
  for (let i = offset; i < offset + length; i++) {
    const v = abs ? Math.abs(data[i]) : data[i];
    if (v > top) top = v;
    if (Number.isFinite(v)) n++;
  }
  if (!(top > 0) || !Number.isFinite(top)) return 1;
  hist.fill(0);
  const f = (BINS - 1) / top;
  for (let i = offset; i < offset + length; i++) {
    const v = abs ? Math.abs(data[i]) : data[i];
    if (v > 0 && v <= top) hist[Math.floor(v * f)]++;
    else if (Number.isFinite(v)) hist[0]++;
  }
  const want = q * n;
  let seen = 0;
  for (let b = 0; b < BINS; b++) {
    seen += hist[b];
    if (seen >= want) return b === BINS - 1 ? top : Math.max((b + 1) / f, Number.MIN_VALUE);
  }
  return top;
}

// A scale: {kind: "div" | "seq" | "gray" | "rgb", m (the end of the range), lo, hi, clipped}.
export function scaleOf(data, { kind = "auto", offset = 0, length = data ? data.length : 0 } = {}) {
  if (kind === "gray") return { kind: "gray", lo: 0, hi: 1 };
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < length; i++) {
    const v = data[offset + i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!(max >= min)) return { kind: "div", m: 1, min: 0, max: 0, clipped: false };
  const signed = min < 0;
  const m = robustMax(data, { offset, length });
  return { kind: signed ? "div" : "seq", m, min, max, clipped: max > m || -min > m };
}

// The scale of a stage: the input in its own colours (pixels 0..1), every other stage as above.
export function layerScale(layer) {
  if (layer.kind === "input") return { kind: layer.shape[0] === 3 ? "rgb" : "gray", lo: 0, hi: 1, min: 0, max: 1 };
  if (!layer._scale) layer._scale = scaleOf(layer.data);
  return layer._scale;
}

// The scale a map is drawn in on the overview, as the scale switch says: "stage" (one per stage, the
// default), "map" (each feature map its own, to see the shape of a weak map) or "network" (one for every
// stage but the input and the softmax, to compare magnitudes along the network).
export function viewScale(layers, layer, channel, mode) {
  if (layer.kind === "input" || mode === "stage" || !mode) return layerScale(layer);
  if (mode === "map" && layer.shape.length === 3) {
    const [, h, w] = layer.shape;
    layer._maps = layer._maps || new Map();
    if (!layer._maps.has(channel)) layer._maps.set(channel, scaleOf(layer.data, { offset: channel * h * w, length: h * w }));
    return layer._maps.get(channel);
  }
  if (mode !== "network") return layerScale(layer);
  if (!layers._net) {
    const inner = layers.filter((l) => l.kind !== "input" && l.kind !== "softmax").map(layerScale);
    const m = Math.max(...inner.map((s) => s.m || 0), 1e-12);
    const signed = inner.some((s) => s.kind === "div");
    layers._net = { kind: signed ? "div" : "seq", m, min: Math.min(...inner.map((s) => s.min)), max: Math.max(...inner.map((s) => s.max)), clipped: false };
  }
  return layers._net;
}

// 256 colours of a scale, packed as 0xAABBGGRR for a Uint32Array view of ImageData (little-endian), and
// the map from a value to its index: what drawMap uses instead of one colorOf call per pixel.
export function lutOf(scale) {
  if (scale._lut) return scale._lut;
  const lut = new Uint32Array(257);
  const span = scale.kind === "div" ? 2 * scale.m : scale.kind === "seq" ? scale.m : scale.hi - scale.lo || 1;
  const lo = scale.kind === "div" ? -scale.m : scale.kind === "seq" ? 0 : scale.lo;
  for (let i = 0; i < 256; i++) {
    const c = colorOf(lo + (span * i) / 255, scale);
    lut[i] = (255 << 24) | (Math.round(c[2]) << 16) | (Math.round(c[1]) << 8) | Math.round(c[0]);
  }
  lut[256] = (255 << 24) | (255 << 16) | 255; // not finite: magenta
  scale._lut = { lut, lo, k: 255 / span };
  return scale._lut;
}

export function colorOf(v, scale) {
  if (!Number.isFinite(v)) return [255, 0, 255];
  if (scale.kind === "gray" || scale.kind === "rgb") {
    const g = (255 * (v - scale.lo)) / (scale.hi - scale.lo || 1);
    return [g, g, g];
  }
  const x = v / scale.m;
  return x < 0 ? ramp(NEG, -x) : ramp(POS, x);
}

export function cssColor(c) {
  return `rgb(${c[0] | 0}, ${c[1] | 0}, ${c[2] | 0})`;
}

// WCAG relative luminance, and the text colour (near-black or white) with the higher contrast on it:
// at least 4.6:1 whatever the background, so every number stays readable (AA).
function luminance(c) {
  const [r, g, b] = c.map((x) => {
    const s = x / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

export function inkOn(c) {
  const l = luminance(c);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#000" : "#fff";
}

// Paint a number cell: background from the scale, text in the colour that reads best on it.
export function paintCell(el, v, scale) {
  const c = Number.isFinite(v) ? colorOf(v, scale) : [235, 235, 235];
  el.style.background = cssColor(c);
  el.style.color = inkOn(c);
}

// Numbers in the reader's language: a decimal comma in Polish ("4,23", as beside "35,9%").
const local = (s) => (getLang() === "pl" ? s.replace(".", ",") : s);

export function fmt(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return local(v.toExponential(2));
  return local(v.toFixed(digits));
}

// Two significant digits: 0.0043 -> "0.0043", 1.234 -> "1.2", 12.3 -> "12", 1234 -> "1.2e3".
export function fmtShort(v) {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1000 || a < 0.001) return local(v.toExponential(1));
  return local(String(Number(v.toPrecision(2))));
}

function gradientCss(scale) {
  const n = 12;
  const stops = [];
  for (let i = 0; i <= n; i++) {
    const f = i / n;
    let c;
    if (scale.kind === "heat") c = heat(f);
    else if (scale.kind === "gray") c = [255 * f, 255 * f, 255 * f];
    else if (scale.kind === "div") c = colorOf(-scale.m + 2 * scale.m * f, scale);
    else c = colorOf(scale.m * f, scale);
    stops.push(`${cssColor(c)} ${(100 * f).toFixed(1)}%`);
  }
  return `linear-gradient(to right, ${stops.join(", ")})`;
}

// A colour legend: the gradient, its end values, and a note when values beyond the range were clipped
// to the end colours. Read out as one sentence by screen readers.
export function legend(scale, { label = "", digits = 2, compact = false } = {}) {
  const box = document.createElement("div");
  box.className = "legend";
  if (scale.kind === "rgb") {
    box.textContent = t("legend.rgb");
    return box;
  }
  const bar = document.createElement("span");
  bar.className = "legend-bar";
  bar.style.background = gradientCss(scale);
  const lo = scale.kind === "div" ? -scale.m : scale.kind === "gray" || scale.kind === "heat" ? scale.lo ?? 0 : 0;
  const hi = scale.kind === "gray" || scale.kind === "heat" ? scale.hi ?? 1 : scale.m;
  const ends = document.createElement("span");
  ends.className = "legend-ends";
  const a = document.createElement("span");
  const b = document.createElement("span");
  const clipLo = scale.kind === "div" && scale.min < -scale.m;
  const clipHi = scale.kind !== "gray" && scale.kind !== "heat" && scale.max > scale.m;
  // compact (a network column): short numbers, clipping shown by a notch on the bar's end
  const short = (v) => (compact ? fmtShort(v) : fmt(v, digits));
  a.textContent = (clipLo && !compact ? "≤" : "") + short(lo);
  b.textContent = (clipHi && !compact ? "≥" : "") + short(hi);
  bar.classList.toggle("clip-lo", clipLo);
  bar.classList.toggle("clip-hi", clipHi);
  ends.append(a);
  if (scale.kind === "div" && !compact) {
    const z = document.createElement("span");
    z.textContent = "0";
    ends.append(z);
  }
  ends.append(b);
  box.append(bar, ends);
  if (label) {
    const l = document.createElement("span");
    l.className = "legend-label";
    l.textContent = label;
    box.prepend(l);
  }
  box.setAttribute("role", "img");
  const clipped = clipLo || clipHi ? ` ${t("legend.clipped")}` : "";
  box.setAttribute(
    "aria-label",
    t("legend.aria", { label, lo: fmt(lo, digits), hi: fmt(hi, digits), kind: t(`legend.${scale.kind}`) }) + clipped,
  );
  return box;
}
