// Drawing values on canvases (one canvas pixel per value; CSS scales it up) and the shared widgets of
// the detail views: a big map that a pointer or the arrow keys move a window over, and number grids.
import { colorOf, fmt, legend, lutOf, paintCell } from "./colors.js";
import { t } from "./i18n.js";

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function shapeText(shape) {
  return shape.join("×");
}

// Draw an (h, w) slice of `data` starting at `offset` onto `canvas` (sized h x w).
export function drawMap(canvas, data, offset, h, w, scale) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const px = new Uint32Array(img.data.buffer);
  const { lut, lo, k } = lutOf(scale);
  for (let i = 0; i < h * w; i++) {
    const v = data[offset + i];
    px[i] = v === v ? lut[Math.max(0, Math.min(255, Math.round((v - lo) * k)))] : lut[256];
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

// One channel of a stage, in the stage's scale (the input in its own colours).
export function drawChannel(canvas, layer, channel, scale) {
  const [c, h, w] = layer.shape.length === 3 ? layer.shape : [1, 1, layer.shape[0]];
  if (layer.kind === "input" && c === 3) drawRGB(canvas, layer.data, h, w);
  else drawMap(canvas, layer.data, channel * h * w, h, w, scale);
}

// A heat map (h, w) in 0..1 blended over whatever the canvas holds.
export function drawHeat(canvas, data, h, w, colour, alpha = 0.6) {
  const ctx = canvas.getContext("2d");
  const img = ctx.getImageData(0, 0, w, h);
  for (let i = 0; i < h * w; i++) {
    const c = colour(data[i]);
    const a = alpha * Math.min(1, 0.2 + data[i]);
    for (let k = 0; k < 3; k++) img.data[4 * i + k] = img.data[4 * i + k] * (1 - a) + c[k] * a;
  }
  ctx.putImageData(img, 0, 0);
}

// A vector of n values as a column of cells (wrapped into several columns when long).
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

export const BIG = 224; // css pixels of a big map

// A big view of one channel with a movable window. With `onMove` it is a control: the pointer or the
// arrow keys (Home/End, PageUp/PageDown for rows) pick a position (y, x), announced to screen readers.
// `pad`: [top, bottom, left, right] cells of zero padding drawn around the map as a hatched ring (not
// values of the map: what a conv reads beyond its edge), so a window over the edge stays on the picture.
export function bigMap(layer, channel, scale, { title, onMove, size = BIG, label, pad = null } = {}) {
  const fig = el("figure", "big");
  const holder = el("div", "big-holder");
  const cv = el("canvas", "big-map");
  const [, h, w] = layer.shape.length === 3 ? layer.shape : [1, 1, layer.shape[0]];
  drawChannel(cv, layer, channel, scale);
  const [pt, pb, pl, pr] = pad && pad.some((v) => v > 0) ? pad : [0, 0, 0, 0];
  const cell = size / Math.max(h + pt + pb, w + pl + pr);
  cv.style.width = `${cell * w}px`;
  cv.style.height = `${cell * h}px`;
  const rect = el("div", "window");
  rect.hidden = true;
  if (pt + pb + pl + pr > 0) {
    holder.classList.add("padded");
    holder.style.padding = `${pt * cell}px ${pr * cell}px ${pb * cell}px ${pl * cell}px`;
    holder.title = t("grid.padRing");
  }
  holder.append(cv, rect);
  fig.append(holder, el("figcaption", "", title || `${layer.name} [${channel}] ${h}×${w}`));
  if (scale.kind !== "rgb") fig.append(legend(scale));
  let pos = [0, 0];
  const api = {
    fig,
    canvas: cv,
    holder,
    cell,
    get pos() {
      return pos;
    },
    mark(y0, x0, kh, kw) {
      rect.hidden = false;
      rect.style.left = `${(x0 + pl) * cell}px`;
      rect.style.top = `${(y0 + pt) * cell}px`;
      rect.style.width = `${kw * cell}px`;
      rect.style.height = `${kh * cell}px`;
    },
    // An overlay element positioned in map cells (e.g. the rows and columns a pooling never reads).
    shade(y0, x0, rows, cols, cls) {
      const s = el("div", cls);
      Object.assign(s.style, { left: `${(x0 + pl) * cell}px`, top: `${(y0 + pt) * cell}px`, width: `${cols * cell}px`, height: `${rows * cell}px` });
      holder.append(s);
      return s;
    },
    moveTo(y, x, why = "code") {
      pos = [Math.max(0, Math.min(h - 1, y)), Math.max(0, Math.min(w - 1, x))];
      if (onMove) onMove(pos[0], pos[1], why);
    },
  };
  if (onMove) {
    holder.tabIndex = 0;
    holder.classList.add("control");
    holder.setAttribute("role", "application");
    holder.setAttribute("aria-roledescription", t("map.role"));
    holder.setAttribute("aria-label", label || t("map.label", { name: layer.name, channel, h, w }));
    const at = (ev) => {
      const r = cv.getBoundingClientRect();
      return [Math.floor((ev.clientY - r.top) / cell), Math.floor((ev.clientX - r.left) / cell)];
    };
    const move = (ev) => {
      const [y, x] = at(ev);
      if (y >= 0 && x >= 0 && y < h && x < w && (y !== pos[0] || x !== pos[1])) api.moveTo(y, x, "pointer");
    };
    cv.addEventListener("pointermove", move);
    cv.addEventListener("pointerdown", move);
    holder.addEventListener("keydown", (ev) => {
      const [y, x] = pos;
      const keys = {
        ArrowUp: [y - 1, x], ArrowDown: [y + 1, x], ArrowLeft: [y, x - 1], ArrowRight: [y, x + 1],
        Home: [y, 0], End: [y, w - 1], PageUp: [0, x], PageDown: [h - 1, x],
      };
      if (!keys[ev.key]) return;
      ev.preventDefault();
      api.moveTo(...keys[ev.key], "key");
    });
  }
  return api;
}

// A small table of numbers, each cell coloured on `scale` with text that stays readable on it.
// `padded`: which cells are padding, not values of the map (drawn hatched, "0" in italics, named so).
export function numberGrid(values, rows, cols, { scale, mark, title, digits = 2, dropped, caption, padded } = {}) {
  const fig = el("figure", "grid");
  const table = el("table", "numbers");
  if (caption) table.append(el("caption", "sr-only", caption));
  for (let i = 0; i < rows; i++) {
    const tr = el("tr");
    for (let j = 0; j < cols; j++) {
      const k = i * cols + j;
      const v = values[k];
      const td = el("td", "", Number.isFinite(v) ? fmt(v, digits) : t("grid.pad"));
      if (padded && padded[k]) {
        td.className = "pad";
        td.replaceChildren("0", el("span", "sr-only", ` ${t("grid.padCell")}`));
        td.title = t("grid.padCell");
        tr.append(td);
        continue;
      }
      paintCell(td, v, scale);
      if (mark && mark[0] === i && mark[1] === j) td.classList.add("chosen");
      else if (dropped) {
        td.classList.add("dropped");
        td.title = t("pool.dropped");
      }
      tr.append(td);
    }
    table.append(tr);
  }
  fig.append(table);
  if (title) fig.append(el("figcaption", "", title));
  return fig;
}

export function maxPosition(layer, channel) {
  const [, h, w] = layer.shape;
  let best = 0;
  for (let i = 1; i < h * w; i++) if (layer.data[channel * h * w + i] > layer.data[channel * h * w + best]) best = i;
  return [Math.floor(best / w), best % w];
}

// A position readout that screen readers announce as it changes.
export function readout(cls = "sum") {
  const line = el("div", cls);
  line.setAttribute("aria-live", "polite");
  return line;
}

// Where a view starts: the position in the URL when it fits the stage, else its strongest value.
export function startPos(ctx, layer, channel) {
  const p = ctx.pos;
  if (p && layer.shape.length === 3 && p[0] < layer.shape[1] && p[1] < layer.shape[2]) return p;
  return maxPosition(layer, channel);
}

// A table heading; null: the column of bars, named for screen readers only.
export function headCell(text) {
  const th = el("th");
  th.scope = "col";
  if (text === null) th.append(el("span", "sr-only", t("table.bars")));
  else th.textContent = text;
  return th;
}
