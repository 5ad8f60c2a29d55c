// Every map of a stage at once, on the stage's one colour scale: a wrapping grid that stays readable at
// 128 and more channels (sortable by strength), each map a button that opens it. The arrow keys move
// through the grid (one tab stop), Enter opens.
import { layerScale, legend } from "./colors.js";
import { t } from "./i18n.js";
import { drawChannel, el, shapeText } from "./maps.js";

function strengths(layer) {
  const [c, h, w] = layer.shape;
  const n = h * w;
  return Array.from({ length: c }, (_, k) => {
    let m = 0;
    for (let i = 0; i < n; i++) m = Math.max(m, Math.abs(layer.data[k * n + i]));
    return m;
  });
}

// `box` null: return a compact figure (the input of a block) instead of filling the detail panel.
export function allMaps(box, ctx, layer, { compact = false, max = Infinity } = {}) {
  const [c, h, w] = layer.shape;
  const scale = layerScale(layer);
  const fig = el("figure", compact ? "thumbs" : "all-maps");
  const grid = el("div", "thumb-grid");
  grid.setAttribute("role", "group");
  grid.setAttribute("aria-label", t("all.grid", { name: layer.name, c }));
  const size = compact ? 44 : c > 256 ? 36 : c > 64 ? 44 : 56;
  grid.style.gridTemplateColumns = `repeat(auto-fill, minmax(${size}px, 1fr))`;
  if (compact) grid.style.gridTemplateColumns = `repeat(4, ${size}px)`;
  const strong = strengths(layer);
  let order = [...Array(c).keys()];
  const draw = () => {
    grid.replaceChildren();
    order.slice(0, max).forEach((k, n) => {
      const b = el("button", "thumb-btn");
      b.type = "button";
      b.tabIndex = n === 0 ? 0 : -1;
      b.dataset.channel = String(k);
      b.setAttribute("aria-label", t("all.map", { name: layer.name, k, c, m: strong[k].toFixed(2) }));
      const cv = el("canvas", "thumb");
      cv.style.width = cv.style.height = `${size}px`;
      cv.setAttribute("aria-hidden", "true");
      if (layer.kind === "input" && c === 3) drawChannel(cv, layer, 0, scale);
      else drawChannel(cv, layer, k, scale);
      b.append(cv, el("span", "thumb-n", String(k)));
      b.addEventListener("click", () => ctx.select(layer.name, k));
      grid.append(b);
    });
  };
  draw();
  grid.addEventListener("keydown", (ev) => {
    const items = [...grid.querySelectorAll("button")];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    const perRow = Math.max(1, Math.round(grid.clientWidth / (items[0].offsetWidth + 4)));
    const d = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -perRow, ArrowDown: perRow }[ev.key];
    let j = d !== undefined ? i + d : ev.key === "Home" ? 0 : ev.key === "End" ? items.length - 1 : -1;
    if (j < 0 && d === undefined) return;
    j = Math.max(0, Math.min(items.length - 1, j));
    ev.preventDefault();
    items[i].tabIndex = -1;
    items[j].tabIndex = 0;
    items[j].focus();
  });
  const shown = Math.min(c, max);
  const cap = compact
    ? t("all.compactCap", { name: layer.name, shape: shapeText(layer.shape), shown, c })
    : t("all.cap", { name: layer.name, c, h, w });
  fig.append(grid, el("figcaption", "", cap));
  if (layer.kind !== "input" || c !== 3) fig.append(legend(scale));
  if (box === null) return fig;
  box.append(el("p", "explain", t("all.text", { name: layer.name, c })));
  const sort = el("select");
  sort.setAttribute("aria-label", t("all.sort"));
  for (const k of ["index", "strength"]) {
    const o = el("option", "", t(`all.sort.${k}`));
    o.value = k;
    sort.append(o);
  }
  sort.addEventListener("change", () => {
    order = [...Array(c).keys()];
    if (sort.value === "strength") order.sort((a, b) => strong[b] - strong[a]);
    draw();
  });
  const label = el("label", "row", t("all.sortLabel"));
  label.append(sort);
  box.append(label, fig);
  return fig;
}
