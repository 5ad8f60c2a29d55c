// The filter playground: edit a kernel, see the feature map (server-side `cnnlab.filters.apply`).

import { decodeTensor, getJSON, postForm } from "./api.js";
import { fmt, legend, scaleOf } from "./colors.js";
import { t } from "./i18n.js";
import { drawMap, el } from "./maps.js";

// A cell's number: an empty cell is 0; anything but a finite decimal number is null (invalid).
function cellValue(text) {
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
  const scale = { kind: "gray", lo, hi: hi > lo ? hi : lo + 1 };
  drawMap(canvas, data, 0, h, w, scale);
  return scale;
}

export async function makePlayground(root, { currentImage }) {
  const { kernels } = await getJSON("/api/kernels");
  const presets = kernels.filter((k) => k.matrix.length <= 7 && k.matrix.length === k.matrix[0].length);
  const q = (sel) => root.querySelector(sel);
  const gridBox = q("#kernel-grid");
  const presetSel = q("#kernel-preset");
  const sizeSel = q("#kernel-size");
  const opSel = q("#kernel-op");
  const srcSel = q("#kernel-image");
  const norm = q("#kernel-normalize");
  const status = q("#filter-status");
  const inCv = q("#filter-input");
  const outCv = q("#filter-output");
  let from = null; // the model layer a kernel came from, while it is unedited
  let timer = null;
  let inputKey = null;
  let seq = 0; // the latest request: an older answer arriving late is dropped

  for (const k of presets) {
    const o = el("option", "", `${k.name} (${k.matrix.length}×${k.matrix.length})`);
    o.value = k.name;
    o.title = k.description;
    presetSel.append(o);
  }

  const grid = kernelGrid(gridBox, sizeSel, () => {
    presetSel.value = "";
    from = null;
    schedule();
  });
  const buildGrid = grid.build;

  // The kernel as rows, or null after marking the cells that are not numbers.
  function matrix() {
    const { rows, bad } = grid.read();
    if (!bad.length) return rows;
    status.textContent = t("pg.bad", { cells: bad.join("; ") });
    status.classList.add("error");
    return null;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(run, 120);
  }

  async function run() {
    const kernel = matrix();
    if (!kernel) return;
    const mine = ++seq;
    const fields = {
      kernel: JSON.stringify(kernel),
      op: opSel.value,
      normalize: norm.checked,
      echo_input: true,
    };
    let note = "";
    if (srcSel.value === "current") {
      const blob = await currentImage();
      if (blob) fields.file = blob;
      else note = t("pg.noCurrent");
    }
    status.textContent = "…";
    if (from) note += t("pg.from", { name: from });
    try {
      const doc = await postForm("/api/filter", fields);
      if (mine !== seq) return;
      const key = srcSel.value;
      if (inputKey !== key || srcSel.value === "current") {
        drawGray(inCv, doc.input, decodeTensor(doc.input));
        inputKey = key;
      }
      // the feature map in the network's colours (blue below 0, orange above), the photo in gray
      const values = decodeTensor(doc.output);
      const scale = scaleOf(values);
      drawMap(outCv, values, 0, doc.output.shape[0], doc.output.shape[1], scale);
      q("#filter-legend").replaceChildren(legend(scale, { label: t("pg.legend") }));
      const sum = kernel.flat().reduce((a, b) => a + b, 0);
      if (norm.checked && Math.abs(sum) < 1e-9) note += t("pg.zeroSum"); // the server scales its positive part
      status.textContent = t("pg.status", { w: doc.output.shape[1], h: doc.output.shape[0], lo: fmt(doc.stats.min, 2), hi: fmt(doc.stats.max, 2), ms: (1000 * doc.seconds).toFixed(0) }) + note;
      status.classList.remove("error");
      root.dataset.updated = String(Date.now());
    } catch (err) {
      if (mine !== seq) return;
      status.textContent = err.message;
      status.classList.add("error");
    }
  }

  presetSel.addEventListener("change", () => {
    const k = presets.find((p) => p.name === presetSel.value);
    if (k) buildGrid(k.matrix);
    from = null;
    schedule();
  });
  sizeSel.addEventListener("change", () => {
    const n = Number(sizeSel.value);
    const m = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === (n >> 1) && j === (n >> 1) ? 1 : 0)));
    presetSel.value = "";
    from = null;
    buildGrid(m);
    schedule();
  });
  for (const c of [opSel, srcSel, norm]) c.addEventListener("change", schedule);

  const first = presets.find((p) => p.name === "outline") || presets[0];
  presetSel.value = first.name;
  buildGrid(first.matrix);
  // The page calls this when its input image changes (a new image, model or error), so that
  // "image = current input" always shows the image the network is explaining.
  function inputChanged() {
    if (srcSel.value === "current") schedule();
  }

  // A learned kernel from the model (one input channel's weights): filtered like a CNN layer does it
  // (cross-correlation, no flip), on the image the network is explaining.
  function useKernel(matrix, name) {
    presetSel.value = "";
    buildGrid(matrix);
    opSel.value = "corr";
    srcSel.value = "current";
    norm.checked = false;
    from = name;
    root.scrollIntoView({ behavior: "instant", block: "start" });
    gridBox.querySelector("input").focus({ preventScroll: true });
    schedule();
  }

  return { run, inputChanged, useKernel };
}
