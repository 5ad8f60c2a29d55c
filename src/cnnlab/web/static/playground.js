// The filter playground: edit a kernel, see the feature map (`cnnlab.filters.apply`: the server's
// /api/filter, or on a published site the same computation in the browser; the data source chooses).

import { decodeTensor } from "./api.js";
import { fmt, legend, scaleOf } from "./colors.js";
import { t } from "./i18n.js";
import { drawMap, el } from "./maps.js";

// A cell's number: empty is 0; anything but a finite decimal number is null (marked invalid).
export function cellValue(text) {
  const v = text.trim();
  if (v === "") return 0;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v)) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

// The editable kernel: `build(matrix)` lays out its cells, `read()` gives the rows and the cells that
// are not numbers (marked aria-invalid); `onEdit` runs on every keystroke.
function kernelGrid(gridBox, sizeSel, onEdit) {
  let size = 3;
  function build(matrix) {
    size = matrix.length;
    if (![...sizeSel.options].some((o) => o.value === String(size))) {
      const o = el("option", "", `${size}×${size}`);
      o.value = String(size);
      sizeSel.append(o);
    }
    sizeSel.value = String(size);
    gridBox.replaceChildren();
    gridBox.style.gridTemplateColumns = `repeat(${size}, 4.9em)`; // room for "-0.3033" whole
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        // a text field, not type=number: a number field reports "abc" or "1e400" as an empty value,
        // which would silently become 0; here the typed text is checked and marked when it is no number
        const inp = el("input", "kcell");
        inp.type = "text";
        inp.inputMode = "decimal";
        inp.autocomplete = "off";
        inp.setAttribute("aria-label", t("pg.cell", { r: i + 1, c: j + 1 }));
        inp.value = String(+matrix[i][j].toFixed(4));
        inp.addEventListener("input", onEdit);
        gridBox.append(inp);
      }
    }
  }
  function read() {
    const inputs = [...gridBox.querySelectorAll("input")];
    const cells = inputs.map((c) => cellValue(c.value));
    const bad = [];
    inputs.forEach((c, k) => {
      const invalid = cells[k] === null;
      c.classList.toggle("invalid", invalid);
      if (invalid) {
        c.setAttribute("aria-invalid", "true");
        bad.push(t("pg.badCell", { r: Math.floor(k / size) + 1, c: (k % size) + 1, v: c.value.trim().slice(0, 12) }));
      } else c.removeAttribute("aria-invalid");
    });
    return { rows: Array.from({ length: size }, (_, i) => cells.slice(i * size, (i + 1) * size)), bad };
  }
  return { build, read };
}

function drawGray(canvas, tensor, data) {
  const [h, w] = tensor.shape;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of data) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  drawMap(canvas, data, 0, h, w, { kind: "gray", lo, hi: hi > lo ? hi : lo + 1 });
}

// The playground's controls, found once.
function controlsOf(root) {
  const q = (sel) => root.querySelector(sel);
  return {
    grid: q("#kernel-grid"), preset: q("#kernel-preset"), size: q("#kernel-size"), op: q("#kernel-op"), image: q("#kernel-image"),
    norm: q("#kernel-normalize"), status: q("#filter-status"), inCv: q("#filter-input"), outCv: q("#filter-output"), legend: q("#filter-legend"),
  };
}

function fillPresets(sel, presets) {
  for (const k of presets) {
    const o = el("option", "", `${k.name} (${k.matrix.length}×${k.matrix.length})`);
    o.value = k.name;
    o.title = k.description;
    sel.append(o);
  }
}

// The request for a kernel, and a note when "current input" has no image yet.
async function filterFields(kernel, c, currentImage) {
  const fields = { kernel: JSON.stringify(kernel), op: c.op.value, normalize: c.norm.checked, echo_input: true };
  let note = "";
  if (c.image.value === "current") {
    const blob = await currentImage();
    if (blob) fields.file = blob;
    else note = t("pg.noCurrent");
  }
  return { fields, note };
}

// A result on screen: the input in gray (redrawn when it changed), the feature map in the network's
// colours (blue below 0, orange above) with its legend, and the status line.
function showFilter(doc, kernel, c, note, redrawInput) {
  if (redrawInput) drawGray(c.inCv, doc.input, decodeTensor(doc.input));
  const values = decodeTensor(doc.output);
  const scale = scaleOf(values);
  drawMap(c.outCv, values, 0, doc.output.shape[0], doc.output.shape[1], scale);
  c.legend.replaceChildren(legend(scale, { label: t("pg.legend") }));
  const sum = kernel.flat().reduce((a, b) => a + b, 0);
  const zero = c.norm.checked && Math.abs(sum) < 1e-9 ? t("pg.zeroSum") : ""; // its positive part was scaled
  c.status.textContent = t(doc.computed === "browser" ? "pg.statusHere" : "pg.status", { w: doc.output.shape[1], h: doc.output.shape[0], lo: fmt(doc.stats.min, 2), hi: fmt(doc.stats.max, 2), ms: (1000 * doc.seconds).toFixed(0) }) + note + zero;
  c.status.classList.remove("error");
}

function failed(c, message) {
  c.status.textContent = message;
  c.status.classList.add("error");
}

const identity = (n) => Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === n >> 1 && j === n >> 1 ? 1 : 0)));

// `source`: the page's data source (its kernels() and filter()); `currentImage()`: the network's input
// as an image file. Returns run(), inputChanged() (the page's input image changed) and useKernel().
export async function makePlayground(root, { source, currentImage }) {
  const { kernels } = await source.kernels();
  const presets = kernels.filter((k) => k.matrix.length <= 7 && k.matrix.length === k.matrix[0].length);
  const c = controlsOf(root);
  fillPresets(c.preset, presets);
  let from = null; // the model layer a kernel came from, while it is unedited
  let timer = null;
  let inputKey = null;
  let seq = 0; // the latest request: an older answer arriving late is dropped
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(run, 120);
  };
  const custom = () => {
    c.preset.value = "";
    from = null;
  };
  const grid = kernelGrid(c.grid, c.size, () => (custom(), schedule()));

  async function run() {
    const { rows, bad } = grid.read();
    if (bad.length) return failed(c, t("pg.bad", { cells: bad.join("; ") }));
    const mine = ++seq;
    const { fields, note } = await filterFields(rows, c, currentImage);
    c.status.textContent = "…";
    try {
      const doc = await source.filter(fields);
      if (mine !== seq) return;
      const key = c.image.value;
      showFilter(doc, rows, c, note + (from ? t("pg.from", { name: from }) : ""), inputKey !== key || key === "current");
      inputKey = key;
      root.dataset.updated = String(Date.now());
    } catch (err) {
      if (mine === seq) failed(c, err.message);
    }
  }

  c.preset.addEventListener("change", () => {
    const k = presets.find((p) => p.name === c.preset.value);
    if (k) grid.build(k.matrix);
    from = null;
    schedule();
  });
  c.size.addEventListener("change", () => (custom(), grid.build(identity(Number(c.size.value))), schedule()));
  for (const e of [c.op, c.image, c.norm]) e.addEventListener("change", schedule);
  const first = presets.find((p) => p.name === "outline") || presets[0];
  c.preset.value = first.name;
  grid.build(first.matrix);

  // A learned kernel from the model (one input channel's weights): filtered like a CNN layer does it
  // (cross-correlation, no flip), on the image the network is explaining.
  function useKernel(matrix, name) {
    grid.build(matrix);
    c.preset.value = "";
    c.op.value = "corr";
    c.image.value = "current";
    c.norm.checked = false;
    from = name;
    root.scrollIntoView({ behavior: "instant", block: "start" });
    c.grid.querySelector("input").focus({ preventScroll: true });
    schedule();
  }
  // "image = current input" always shows the image the network is explaining
  const inputChanged = () => c.image.value === "current" && schedule();
  return { run, inputChanged, useKernel };
}
