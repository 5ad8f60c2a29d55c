// Colour maps and drawing of feature maps on canvases (one canvas pixel per value; CSS scales it up).

// Diverging blue (negative) - white - orange (positive), as CNN Explainer colours conv outputs.
const NEG = [38, 94, 184];
const POS = [214, 96, 28];
const MID = [247, 247, 245];

function lerp(a, b, t) {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

// Sequential: near-black navy through teal to yellow (viridis-like), for values >= 0.
const SEQ = [
  [20, 24, 48], [40, 60, 120], [33, 110, 140], [40, 160, 130], [120, 200, 90], [250, 230, 70],
];

export function sequential(t) {
  t = Math.min(1, Math.max(0, t));
  const x = t * (SEQ.length - 1);
  const i = Math.min(SEQ.length - 2, Math.floor(x));
  return lerp(SEQ[i], SEQ[i + 1], x - i);
}

export function diverging(t) {
  // t in [-1, 1]
  t = Math.min(1, Math.max(-1, t));
  return t < 0 ? lerp(MID, NEG, -t) : lerp(MID, POS, t);
}

// Heat map for Grad-CAM / saliency: transparent-ish blue to red.
export function heat(t) {
  t = Math.min(1, Math.max(0, t));
  const stops = [[0, 0, 140], [0, 160, 255], [80, 230, 120], [255, 220, 0], [230, 30, 20]];
  const x = t * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  return lerp(stops[i], stops[i + 1], x - i);
}

// A scale for one layer (grayscale for the input).
export function layerScale(stats, kind) {
  const lo = stats && stats.min !== null ? stats.min : 0;
  const hi = stats && stats.max !== null ? stats.max : 1;
  if (kind === "input") return { kind: "gray", lo: Math.min(0, lo), hi: Math.max(1, hi) };
  // One scale for the whole layer, centred on 0: a ReLU's output keeps the colours of the conv values
  // it passes (white for 0, orange for positive), so "negatives become 0" is visible at a glance.
  return { kind: "div", m: Math.max(Math.abs(lo), Math.abs(hi)) || 1 };
}

export function colorOf(v, scale) {
  if (!Number.isFinite(v)) return [255, 0, 255];
  if (scale.kind === "gray") {
    const g = 255 * (v - scale.lo) / (scale.hi - scale.lo || 1);
    return [g, g, g];
  }
  if (scale.kind === "div") return diverging(v / scale.m);
  return sequential((v - scale.lo) / (scale.hi - scale.lo || 1));
}

// Draw an (h, w) slice of `data` starting at `offset` onto `canvas` (sized h x w).
export function drawMap(canvas, data, offset, h, w, scale) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const c = colorOf(data[offset + i], scale);
    img.data[4 * i] = c[0];
    img.data[4 * i + 1] = c[1];
    img.data[4 * i + 2] = c[2];
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

// An RGB (3, h, w) input in 0..1, drawn as a colour image.
export function drawRGB(canvas, data, h, w) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const n = h * w;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) img.data[4 * i + c] = 255 * Math.min(1, Math.max(0, data[c * n + i]));
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

// A heat map (h, w) in 0..1 blended over whatever the canvas holds.
export function drawHeat(canvas, data, h, w, alpha = 0.5) {
  const ctx = canvas.getContext("2d");
  const img = ctx.getImageData(0, 0, w, h);
  for (let i = 0; i < h * w; i++) {
    const c = heat(data[i]);
    const a = alpha * Math.min(1, 0.25 + data[i]);
    for (let k = 0; k < 3; k++) img.data[4 * i + k] = img.data[4 * i + k] * (1 - a) + c[k] * a;
  }
  ctx.putImageData(img, 0, 0);
}

export function cssColor(c) {
  return `rgb(${c[0] | 0}, ${c[1] | 0}, ${c[2] | 0})`;
}

export function fmt(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(2);
  return v.toFixed(digits);
}
