// The article's padding / stride / kernel widget: choose the input size n, kernel size k, padding p and
// stride s (typed or stepped), edit the input's and the kernel's numbers, and see the output size the
// formula gives, the output values, and the window each output reads (pick an output cell, or play).
import { player } from "./animate.js";
import { num, t } from "./i18n.js";
import { el } from "./maps.js";
import { cellValue } from "./playground.js";

const LIMITS = { n: [2, 9], k: [1, 5], p: [0, 2], s: [1, 3] };

// A value as the reader writes it, to 2 decimals at most (0.1 · 3 is 0.3, not 0.30000000000000004).
const short = (v) => num(Math.round(v * 100) / 100 + 0);

export const outSize = ({ n, k, p, s }) => Math.floor((n + 2 * p - k) / s) + 1;

// A starting picture (a bright bar on a dark field) and kernel (a vertical-edge detector): values worth
// watching, kept where they fit when n or k change.
const pictureAt = (i, j, n) => (Math.abs(j - Math.floor(n / 2)) <= Math.floor(n / 4) ? 2 : 0) + ((i + j) % 3 === 0 ? 1 : 0);
const kernelAt = (i, j, k) => (k === 1 ? 1 : j < (k - 1) / 2 ? 1 : j > (k - 1) / 2 ? -1 : 0);

function resized(old, n, fill) {
  return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (old[i] && old[i][j] !== undefined ? old[i][j] : fill(i, j, n))));
}

// Output (y, x): the window's top-left in padded coordinates, every input × weight term and their sum.
export function outputAt(cur, y, x) {
  const { k, p, s, vals, kern } = cur;
  const terms = [];
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const r = y * s + i - p;
      const c = x * s + j - p;
      const inside = r >= 0 && c >= 0 && r < cur.n && c < cur.n;
      terms.push([inside ? vals[r][c] : 0, kern[i][j]]);
    }
  }
  return { terms, sum: terms.reduce((a, [v, w]) => a + v * w, 0) };
}

// One number field of the controls, kept within its limits.
function sizeField(key, cur, onChange) {
  const label = el("label", "", t(`arith.${key}`));
  const inp = el("input", "arith-size");
  Object.assign(inp, { type: "number", min: String(LIMITS[key][0]), max: String(LIMITS[key][1]), step: "1", value: String(cur[key]) });
  inp.name = `arith-${key}`;
  inp.addEventListener("change", () => {
    const v = Math.round(Number(inp.value));
    cur[key] = Number.isFinite(v) ? Math.max(LIMITS[key][0], Math.min(LIMITS[key][1], v)) : cur[key];
    inp.value = String(cur[key]);
    onChange();
  });
  label.append(inp);
  return label;
}

// A square grid of editable numbers (`pad` rings of fixed zeros around it): `cells[r][c]` are the
// value fields, `all` every cell in padded order (for the window's marking).
function valueGrid(cls, values, pad, aria, onEdit) {
  const n = values.length;
  const N = n + 2 * pad;
  const box = el("div", `arith-grid ${cls}`);
  box.style.gridTemplateColumns = `repeat(${N}, var(--arith-cell))`;
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", aria);
  const all = [];
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      const inside = i >= pad && j >= pad && i < pad + n && j < pad + n;
      const cell = inside ? el("input", "arith-cell") : el("span", "arith-cell pad", "0");
      if (inside) {
        Object.assign(cell, { type: "text", inputMode: "decimal", autocomplete: "off", value: String(values[i - pad][j - pad]) });
        cell.setAttribute("aria-label", t("arith.cell", { what: aria, r: i - pad + 1, c: j - pad + 1 }));
        cell.addEventListener("input", () => {
          const v = cellValue(cell.value);
          cell.classList.toggle("invalid", v === null);
          if (v === null) cell.setAttribute("aria-invalid", "true");
          else cell.removeAttribute("aria-invalid");
          values[i - pad][j - pad] = v ?? 0;
          onEdit();
        });
      } else cell.title = t("grid.padCell");
      box.append(cell);
      all.push(cell);
    }
  }
  return { box, all, N };
}

// The output grid: one button per output value; pointing at or choosing one moves the window there.
function outputGrid(cur, o, onPick) {
  const box = el("div", "arith-grid arith-out");
  box.style.gridTemplateColumns = `repeat(${o}, var(--arith-cell))`;
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", t("arith.outGrid", { o }));
  const cells = [];
  for (let y = 0; y < o; y++) {
    for (let x = 0; x < o; x++) {
      const b = el("button", "arith-cell out", short(outputAt(cur, y, x).sum));
      b.type = "button";
      b.dataset.y = String(y);
      b.dataset.x = String(x);
      b.setAttribute("aria-label", t("arith.outCell", { y, x, v: b.textContent }));
      b.addEventListener("click", () => onPick(y * o + x));
      b.addEventListener("pointerenter", () => onPick(y * o + x));
      box.append(b);
      cells.push(b);
    }
  }
  return { box, cells };
}

// The sentence under the grids: the size formula and output (y, x)'s sum of products.
function formulaText(cur, o, y, x) {
  if (o < 1) return t("arith.none", cur);
  const { terms, sum } = outputAt(cur, y, x);
  const shown = terms.slice(0, 9).map(([v, w]) => `${short(v)}·${w < 0 ? `(${short(w)})` : short(w)}`);
  const sumText = `${shown.join(" + ")}${terms.length > 9 ? " + …" : ""} = ${short(sum)}`;
  return t("arith.formula", { ...cur, o, y, x, r0: y * cur.s - cur.p, c0: x * cur.s - cur.p }) + " " + t("arith.value", { y, x, sum: sumText });
}

export function strideWidget() {
  const box = el("div", "arith");
  const cur = { n: 5, k: 3, p: 1, s: 2, pos: 0, vals: [], kern: [] };
  const controls = el("div", "arith-controls");
  const grids = el("div", "arith-grids");
  const formula = el("p", "arith-formula");
  formula.setAttribute("aria-live", "polite");
  let view = null;

  // the window and the chosen output cell at cur.pos, and the formula
  function mark() {
    const o = outSize(cur);
    const pos = o >= 1 ? cur.pos % (o * o) : 0;
    const y = Math.floor(pos / Math.max(o, 1));
    const x = pos % Math.max(o, 1);
    view.input.all.forEach((c, i) => {
      const r = Math.floor(i / view.input.N) - y * cur.s;
      const q = (i % view.input.N) - x * cur.s;
      c.classList.toggle("in-win", o >= 1 && r >= 0 && q >= 0 && r < cur.k && q < cur.k);
    });
    view.out.cells.forEach((c, i) => c.classList.toggle("chosen", i === pos));
    formula.textContent = formulaText(cur, o, y, x);
    box.dataset.out = String(Math.max(o, 0));
  }
  const pick = (i) => {
    play.stop();
    cur.pos = i;
    mark();
  };
  // the grids rebuilt for new sizes; edited values only refresh the outputs
  function build() {
    cur.vals = resized(cur.vals, cur.n, pictureAt);
    cur.kern = resized(cur.kern, cur.k, kernelAt);
    const o = outSize(cur);
    const input = valueGrid("arith-in", cur.vals, cur.p, t("arith.inGrid"), refresh);
    const kernel = valueGrid("arith-kernel", cur.kern, 0, t("arith.kernGrid"), refresh);
    view = { input, out: outputGrid(cur, Math.max(o, 0), pick) };
    const fig = (cls, title, grid) => {
      const f = el("figure", cls);
      f.append(grid, el("figcaption", "", title));
      return f;
    };
    grids.replaceChildren(fig("arith-fig", t("arith.inCap", cur), input.box), fig("arith-fig", t("arith.kernCap", cur), kernel.box), fig("arith-fig", t("arith.outCap", { o: Math.max(o, 0) }), view.out.box));
    mark();
  }
  function refresh() {
    const o = outSize(cur);
    view.out.cells.forEach((c) => {
      c.textContent = short(outputAt(cur, Number(c.dataset.y), Number(c.dataset.x)).sum);
      c.setAttribute("aria-label", t("arith.outCell", { y: c.dataset.y, x: c.dataset.x, v: c.textContent }));
    });
    if (o >= 1) mark();
  }
  for (const key of Object.keys(LIMITS)) controls.append(sizeField(key, cur, () => ((cur.pos = 0), build())));
  // play, pause or step the window over every output position (the controls of the detail views)
  const play = player((d) => {
    const o = Math.max(1, outSize(cur) ** 2);
    cur.pos = (cur.pos + d + o) % o;
    mark();
  }, formula, { labels: { play: t("arith.play"), back: t("arith.prev"), fwd: t("arith.next") } });
  box.append(controls, play.box, grids, formula);
  build();
  return box;
}
