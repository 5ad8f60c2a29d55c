// The overview: one column per stage, feature maps as small canvases, columns linked left to right,
// the softmax as bars at the end. Everything drawn from the decoded activations document.

import { colorOf, drawMap, drawRGB, layerScale } from "./colors.js";

const SVG = "http://www.w3.org/2000/svg";
const ELEMENTWISE = new Set(["relu", "activation", "maxpool", "avgpool", "dropout", "batchnorm", "normalize", "globalpool"]);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function shapeText(shape) {
  return shape.join("×");
}

// Draw a vector of n values as a column of cells (wrapped into several columns when long).
export function drawVector(canvas, data, scale, rows = 128) {
  const n = data.length;
  const r = Math.max(1, Math.min(n, rows));
  const c = Math.max(1, Math.ceil(n / r));
  canvas.width = c;
  canvas.height = r;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(c, r);
  for (let row = 0; row < r; row++) {
    for (let col = 0; col < c; col++) {
      const k = col * r + row;
      const rgb = k < n ? colorOf(data[k], scale) : [240, 240, 240];
      img.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * (row * c + col));
    }
  }
  ctx.putImageData(img, 0, 0);
  return { rows: r, cols: c };
}

// Per-map scale: each map centred on 0 and stretched to its own largest |value| (shows every map's
// pattern; the layer scale keeps maps of one stage comparable).
function mapScale(data, offset, n) {
  let m = 0;
  for (let i = 0; i < n; i++) m = Math.max(m, Math.abs(data[offset + i]) || 0);
  return { kind: "div", m: m || 1 };
}

export function renderNetwork(root, state, { perStage, onSelect, scaleMode = "layer" }) {
  root.replaceChildren();
  const wrap = el("div", "net-inner");
  const svg = document.createElementNS(SVG, "svg");
  svg.classList.add("links");
  wrap.append(svg);
  const row = el("div", "columns");
  wrap.append(row);
  root.append(wrap);
  const classes = state.doc.model.classes;
  const pred = state.doc.prediction;

  for (const layer of state.layers) {
    const col = el("div", `col kind-${layer.kind}`);
    col.dataset.layer = layer.name;
    col.dataset.kind = layer.kind;
    const head = el("div", "col-head");
    head.append(el("b", "", layer.name), el("span", "kind", layer.kind), el("span", "shape", shapeText(layer.shape)));
    col.append(head);
    const maps = el("div", "maps");
    col.append(maps);
    const scale = layerScale(layer.stats, layer.kind);
    if (layer.kind === "softmax") {
      const order = [...layer.data.keys()];
      for (const i of order) {
        const bar = el("div", "bar" + (i === pred.index ? " top" : ""));
        bar.dataset.index = i;
        bar.dataset.layer = layer.name;
        bar.dataset.channel = "";
        const label = el("span", "bar-label", classes[i]);
        const track = el("span", "bar-track");
        const fill = el("span", "bar-fill");
        fill.style.width = `${(100 * layer.data[i]).toFixed(1)}%`;
        track.append(fill);
        bar.append(label, track, el("span", "bar-value", `${(100 * layer.data[i]).toFixed(1)}%`));
        bar.addEventListener("click", () => onSelect(layer.name, null));
        maps.append(bar);
      }
      col.classList.add("vector");
    } else if (layer.shape.length === 3) {
      const [c, h, w] = layer.shape;
      const shown = layer.kind === "input" ? 1 : Math.min(c, perStage);
      for (let ch = 0; ch < shown; ch++) {
        const cv = el("canvas", "map");
        cv.dataset.layer = layer.name;
        cv.dataset.channel = layer.kind === "input" ? "0" : String(ch);
        cv.title = layer.kind === "input" ? `input ${shapeText(layer.shape)}` : `${layer.name} channel ${ch}`;
        if (layer.kind === "input" && c === 3) drawRGB(cv, layer.data, h, w);
        else {
          const s = scaleMode === "map" ? mapScale(layer.data, ch * h * w, h * w) : scale;
          drawMap(cv, layer.data, ch * h * w, h, w, s);
        }
        cv.addEventListener("click", () => onSelect(layer.name, Number(cv.dataset.channel)));
        maps.append(cv);
      }
      if (layer.kind !== "input" && c > shown) col.append(el("div", "more", `+${c - shown} more`));
    } else {
      const cv = el("canvas", "map vec");
      cv.dataset.layer = layer.name;
      cv.dataset.channel = "";
      cv.title = `${layer.name}: ${layer.shape[0]} values`;
      const { cols } = drawVector(cv, layer.data, scale);
      cv.style.width = `${Math.min(64, 12 * cols)}px`;
      cv.addEventListener("click", () => onSelect(layer.name, null));
      maps.append(cv);
      col.classList.add("vector");
    }
    col.addEventListener("mouseenter", () => svg.classList.add("dim"));
    col.addEventListener("mouseleave", () => svg.classList.remove("dim"));
    row.append(col);
  }
  requestAnimationFrame(() => drawLinks(wrap, svg));
  return wrap;
}

// Lines from each column's maps to the next column's: one-to-one for element-wise stages, all-to-all
// (faint) into a conv layer, fan-in into vectors.
export function drawLinks(wrap, svg) {
  const box = wrap.getBoundingClientRect();
  svg.setAttribute("width", wrap.scrollWidth);
  svg.setAttribute("height", wrap.scrollHeight);
  svg.replaceChildren();
  const cols = [...wrap.querySelectorAll(".col")];
  const anchors = (col, side) =>
    [...col.querySelectorAll(".maps > canvas, .maps > .bar")].map((m) => {
      const r = m.getBoundingClientRect();
      return { x: (side === "out" ? r.right : r.left) - box.left, y: r.top + r.height / 2 - box.top, el: m };
    });
  for (let i = 0; i + 1 < cols.length; i++) {
    const a = anchors(cols[i], "out");
    const b = anchors(cols[i + 1], "in");
    const kind = cols[i + 1].dataset.kind;
    const pairs = [];
    if (ELEMENTWISE.has(kind) && a.length === b.length) a.forEach((p, k) => pairs.push([p, b[k]]));
    else for (const p of a) for (const q of b) pairs.push([p, q]);
    const faint = pairs.length > 16;
    for (const [p, q] of pairs) {
      const path = document.createElementNS(SVG, "path");
      const mx = (p.x + q.x) / 2;
      path.setAttribute("d", `M${p.x},${p.y} C${mx},${p.y} ${mx},${q.y} ${q.x},${q.y}`);
      path.setAttribute("class", faint ? "link faint" : "link");
      path.dataset.from = p.el.dataset.layer + ":" + (p.el.dataset.channel ?? "");
      path.dataset.to = q.el.dataset.layer + ":" + (q.el.dataset.channel ?? "");
      svg.append(path);
    }
  }
}

export function highlightLinks(svg, layer, channel) {
  const key = `${layer}:${channel ?? ""}`;
  for (const p of svg.querySelectorAll("path.link")) {
    p.classList.toggle("hot", p.dataset.from === key || p.dataset.to === key);
  }
}

