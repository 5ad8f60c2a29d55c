// The overview: one column per stage, feature maps as small canvases, columns linked left to right, the
// softmax as bars at the end. One tab stop for the whole network: the arrow keys move between maps
// (up/down in a column, left/right across stages), Enter or Space opens the one in focus.
import { legend, viewScale } from "./colors.js";
import { getLang, pct, plural, t } from "./i18n.js";
import { drawChannel, drawVector, el, shapeText } from "./maps.js";

const SVG = "http://www.w3.org/2000/svg";
const ELEMENTWISE = new Set(["relu", "activation", "maxpool", "avgpool", "dropout", "batchnorm", "normalize", "globalpool"]);

function mapButton(layer, channel, label) {
  const b = el("button", "map");
  b.type = "button";
  b.dataset.layer = layer.name;
  b.dataset.channel = channel === null ? "" : String(channel);
  if (label) b.setAttribute("aria-label", label);
  b.tabIndex = -1;
  return b;
}

// A column's legend: its scale; with one scale per map, a note that each map has its own.
function columnLegend(layer, scale, mode) {
  if (mode === "map" && layer.kind !== "input" && layer.shape.length === 3) {
    const note = el("div", "legend legend-note", t("scale.perMap"));
    return note;
  }
  return legend(scale, { compact: true });
}

// "64×26×26" that may wrap after a "×" but never inside a number.
function shapeEl(shape) {
  const span = el("span", "shape");
  shape.forEach((n, i) => {
    if (i) span.append("×", document.createElement("wbr"));
    span.append(el("span", "dim", String(n)));
  });
  return span;
}

// Every column and the softmax fit the card's width: columns shrink (maps from 44 down to 28 px) when a
// model has many stages, so the softmax at the end is on screen at 1440 px for every built-in model.
export function fitColumns(wrap) {
  const root = wrap.parentElement;
  if (!root) return;
  const cols = wrap.querySelectorAll(".col");
  const soft = wrap.querySelector(".col.kind-softmax");
  const n = cols.length - (soft ? 1 : 0);
  const avail = root.clientWidth - (soft ? soft.offsetWidth : 0) - 16;
  const w = Math.max(40, Math.min(56, Math.floor(avail / Math.max(1, n)) - 6));
  wrap.style.setProperty("--colw", `${w}px`);
}

function column(layer, state, { perStage, onSelect, onAll, onClass }) {
  const col = el("div", `col kind-${layer.kind}`);
  col.dataset.layer = layer.name;
  col.dataset.kind = layer.kind;
  col.setAttribute("role", "group");
  const head = el("button", "col-head");
  head.type = "button";
  head.tabIndex = -1;
  head.dataset.layer = layer.name;
  head.append(el("b", "", layer.name), " ", el("span", "kind", t(`kind.${layer.kind}`)), " ", shapeEl(layer.shape));
  head.setAttribute("aria-describedby", "net-open-hint");
  head.addEventListener("click", () => onSelect(layer.name, layer.shape.length === 3 && layer.kind !== "input" ? 0 : layer.kind === "input" ? 0 : null));
  col.setAttribute("aria-label", t("net.head", { name: layer.name, kind: t(`kind.${layer.kind}`), shape: shapeText(layer.shape) }));
  col.append(head);
  const mode = state.scaleMode;
  const scale = viewScale(state.layers, layer, 0, mode);
  if (layer.kind !== "softmax") col.append(columnLegend(layer, scale, mode));
  const maps = el("div", "maps");
  col.append(maps);
  if (layer.kind === "softmax") {
    const classes = state.doc.model.classes;
    col.classList.add("vector");
    for (let i = 0; i < layer.data.length; i++) {
      const p = pct(layer.data[i]);
      const bar = mapButton(layer, i, null);
      bar.className = "map bar" + (i === state.doc.prediction.index ? " top" : "");
      bar.dataset.index = String(i);
      bar.setAttribute("aria-describedby", "net-class-hint");
      const fill = el("span", "bar-fill");
      fill.style.width = `${(100 * layer.data[i]).toFixed(1)}%`;
      const track = el("span", "bar-track");
      track.append(fill);
      bar.append(el("span", "bar-label", classes[i]), " ", track, " ", el("span", "bar-value", p));
      bar.addEventListener("click", () => onClass(i));
      maps.append(bar);
    }
  } else if (layer.shape.length === 3) {
    const [c, h, w] = layer.shape;
    const shown = layer.kind === "input" ? 1 : Math.min(c, perStage);
    for (let ch = 0; ch < shown; ch++) {
      const label = layer.kind === "input"
        ? t("net.input", { shape: shapeText(layer.shape) })
        : t("net.map", { name: layer.name, ch, c, h, w });
      const b = mapButton(layer, ch, label);
      const cv = el("canvas");
      cv.setAttribute("aria-hidden", "true");
      drawChannel(cv, layer, ch, viewScale(state.layers, layer, ch, mode));
      b.append(cv);
      b.addEventListener("click", () => onSelect(layer.name, ch));
      maps.append(b);
    }
    if (layer.kind !== "input" && c > 1) {
      const more = el("button", "more", c > shown ? t("net.more", { n: c - shown, c }) : t("net.all", { c }));
      more.type = "button";
      more.tabIndex = -1;
      more.dataset.layer = layer.name;
      more.setAttribute("aria-label", `${more.textContent} ${t("net.allLabel", { c, name: layer.name })}`);
      more.addEventListener("click", () => onAll(layer.name));
      col.append(more);
    }
  } else {
    const b = mapButton(layer, null, t("net.vector", { name: layer.name, n: layer.shape[0], units: plural(layer.shape[0], [t("unit.one"), t("unit.few"), t("unit.many")]) }));
    b.classList.add("vec");
    const cv = el("canvas");
    cv.setAttribute("aria-hidden", "true");
    const { cols } = drawVector(cv, layer.data, scale);
    cv.style.width = `${Math.min(48, 12 * cols)}px`;
    b.append(cv);
    b.addEventListener("click", () => onSelect(layer.name, null));
    maps.append(b);
    col.classList.add("vector");
  }
  return col;
}

// Redraw the values of an overview already built for this model and layout: no new elements, so no
// layout work and no edges to re-route (what a new image costs).
function updateNetwork(root, state) {
  const cols = root.querySelectorAll(".col");
  const mode = state.scaleMode;
  state.layers.forEach((layer, i) => {
    const col = cols[i];
    const scale = viewScale(state.layers, layer, 0, mode);
    const old = col.querySelector(":scope > .legend");
    if (old) old.replaceWith(columnLegend(layer, scale, mode));
    if (layer.kind === "softmax") {
      for (const bar of col.querySelectorAll(".bar")) {
        const k = Number(bar.dataset.index);
        bar.querySelector(".bar-fill").style.width = `${(100 * layer.data[k]).toFixed(1)}%`;
        bar.querySelector(".bar-value").textContent = pct(layer.data[k]);
        bar.classList.toggle("top", k === state.doc.prediction.index);
      }
    } else if (layer.shape.length === 3) {
      for (const b of col.querySelectorAll(".maps > .map")) drawChannel(b.firstChild, layer, Number(b.dataset.channel), viewScale(state.layers, layer, Number(b.dataset.channel), mode));
    } else drawVector(col.querySelector(".maps > .map canvas"), layer.data, scale);
  });
}

export function renderNetwork(root, state, opts) {
  const key = `${state.doc.model.id}|${opts.perStage}|${state.scaleMode}|${getLang()}|${state.layers.map((l) => l.shape.join("x")).join(",")}`;
  if (root.dataset.key === key && root.querySelector(".net-inner")) {
    updateNetwork(root, state);
    const wrap = root.querySelector(".net-inner");
    highlightLinks(wrap.querySelector("svg.links"), state.selected?.layer, state.selected?.channel);
    return wrap;
  }
  root.dataset.key = key;
  root.replaceChildren();
  const wrap = el("div", "net-inner");
  const svg = document.createElementNS(SVG, "svg");
  svg.classList.add("links");
  svg.setAttribute("aria-hidden", "true");
  const row = el("div", "columns");
  wrap.append(svg, row);
  root.append(wrap);
  for (const layer of state.layers) row.append(column(layer, state, opts));
  fitColumns(wrap);
  rovingFocus(row, opts.focusKey);
  // hovering or focusing a map lights its edges; leaving shows the selected map's again
  const light = (ev) => {
    const m = ev.target.closest(".map");
    if (m) highlightLinks(svg, m.dataset.layer, m.dataset.channel);
  };
  const restore = () => highlightLinks(svg, state.selected?.layer, state.selected?.channel);
  row.addEventListener("pointerover", light);
  row.addEventListener("focusin", light);
  row.addEventListener("pointerleave", restore);
  row.addEventListener("focusout", restore);
  drawLinks(wrap, svg);
  restore();
  return wrap;
}

// Roving tabindex over every button of the network: columns are lists, stages are side by side.
function rovingFocus(row, focusKey) {
  const cols = () => [...row.querySelectorAll(".col")].map((c) => [...c.querySelectorAll("button")]);
  const all = row.querySelectorAll("button");
  const start = (focusKey && row.querySelector(focusKey)) || row.querySelector(".col .map") || all[0];
  if (start) start.tabIndex = 0;
  row.addEventListener("keydown", (ev) => {
    const grid = cols();
    const ci = grid.findIndex((c) => c.includes(ev.target));
    if (ci < 0) return;
    const ri = grid[ci].indexOf(ev.target);
    let next = null;
    if (ev.key === "ArrowDown") next = grid[ci][ri + 1];
    else if (ev.key === "ArrowUp") next = grid[ci][ri - 1];
    else if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
      const to = grid[ci + (ev.key === "ArrowRight" ? 1 : -1)];
      if (to) next = to[Math.min(ri, to.length - 1)];
    } else if (ev.key === "Home") next = grid[0][0];
    else if (ev.key === "End") next = grid[grid.length - 1][0];
    if (!next) return;
    ev.preventDefault();
    for (const b of row.querySelectorAll("button[tabindex='0']")) b.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
    next.scrollIntoView({ block: "nearest", inline: "nearest" });
  });
}

// Edges between neighbouring stages: one-to-one for element-wise stages; into a stage that reads every
// map of the one before (a conv, a dense layer) through one hub, so n + m curves instead of n x m.
export function drawLinks(wrap, svg) {
  const box = wrap.getBoundingClientRect();
  svg.setAttribute("width", wrap.scrollWidth);
  svg.setAttribute("height", wrap.scrollHeight);
  svg.replaceChildren();
  const cols = [...wrap.querySelectorAll(".col")];
  const anchors = (col, side) =>
    [...col.querySelectorAll(".maps > .map")].map((m) => {
      const r = m.getBoundingClientRect();
      return { x: (side === "out" ? r.right : r.left) - box.left, y: r.top + r.height / 2 - box.top, key: `${m.dataset.layer}:${m.dataset.channel}` };
    });
  const curve = (p, q, attrs) => {
    const path = document.createElementNS(SVG, "path");
    const mx = (p.x + q.x) / 2;
    path.setAttribute("d", `M${p.x},${p.y} C${mx},${p.y} ${mx},${q.y} ${q.x},${q.y}`);
    path.setAttribute("class", "link");
    for (const [k, v] of Object.entries(attrs)) path.dataset[k] = v;
    svg.append(path);
  };
  for (let i = 0; i + 1 < cols.length; i++) {
    const a = anchors(cols[i], "out");
    const b = anchors(cols[i + 1], "in");
    if (!a.length || !b.length) continue;
    if (ELEMENTWISE.has(cols[i + 1].dataset.kind) && a.length === b.length) {
      a.forEach((p, k) => curve(p, b[k], { from: p.key, to: b[k].key }));
      continue;
    }
    const ys = b.map((q) => q.y);
    const hubKey = `hub:${i}`;
    const hub = { x: a[0].x + (b[0].x - a[0].x) * 0.55, y: (Math.min(...ys) + Math.max(...ys)) / 2, key: hubKey };
    for (const p of a) curve(p, { ...hub, x: hub.x }, { from: p.key, to: hubKey, hub: hubKey, side: "in" });
    for (const q of b) curve({ ...hub }, q, { from: hubKey, to: q.key, hub: hubKey, side: "out" });
  }
}

// Light the edges that feed the map (layer, channel) and those it feeds.
export function highlightLinks(svg, layer, channel) {
  const key = layer ? `${layer}:${channel ?? ""}` : null;
  const paths = [...svg.querySelectorAll("path.link")];
  const inHubs = new Set();
  const outHubs = new Set();
  for (const p of paths) {
    if (p.dataset.to === key && p.dataset.hub) inHubs.add(p.dataset.hub);
    if (p.dataset.from === key && p.dataset.hub) outHubs.add(p.dataset.hub);
  }
  for (const p of paths) {
    const d = p.dataset;
    const hot = key !== null && (d.from === key || d.to === key || (d.side === "in" && inHubs.has(d.hub)) || (d.side === "out" && outHubs.has(d.hub)));
    p.classList.toggle("hot", hot);
  }
  svg.classList.toggle("lit", key !== null && paths.some((p) => p.classList.contains("hot")));
}
