// The filter playground: edit a kernel, see the feature map (server-side `cnnlab.filters.apply`).

import { decodeTensor, getJSON, postForm } from "./api.js";
import { drawMap, fmt } from "./colors.js";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
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
  let size = 3;
  let timer = null;
  let inputKey = null;

  for (const k of presets) {
    const o = el("option", "", `${k.name} (${k.matrix.length}×${k.matrix.length})`);
    o.value = k.name;
    o.title = k.description;
    presetSel.append(o);
  }

  function buildGrid(matrix) {
    size = matrix.length;
    sizeSel.value = String(size);
    gridBox.replaceChildren();
    gridBox.style.gridTemplateColumns = `repeat(${size}, 3.6em)`;
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        const inp = el("input", "kcell");
        inp.type = "number";
        inp.step = "any";
        inp.value = String(+matrix[i][j].toFixed(4));
        inp.addEventListener("input", () => {
          presetSel.value = "";
          schedule();
        });
        gridBox.append(inp);
      }
    }
  }

  function matrix() {
    const cells = [...gridBox.querySelectorAll("input")].map((c) => (c.value.trim() === "" ? 0 : Number(c.value)));
    return Array.from({ length: size }, (_, i) => cells.slice(i * size, (i + 1) * size));
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(run, 120);
  }

  function drawGray(canvas, t, data) {
    const [h, w] = t.shape;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of data) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    drawMap(canvas, data, 0, h, w, { kind: "gray", lo, hi: hi > lo ? hi : lo + 1 });
  }

  async function run() {
    const fields = {
      kernel: JSON.stringify(matrix()),
      op: opSel.value,
      normalize: norm.checked,
      echo_input: true,
    };
    if (srcSel.value === "current") {
      const blob = await currentImage();
      if (blob) fields.file = blob;
    }
    status.textContent = "…";
    try {
      const doc = await postForm("/api/filter", fields);
      const key = srcSel.value;
      if (inputKey !== key || srcSel.value === "current") {
        drawGray(inCv, doc.input, decodeTensor(doc.input));
        inputKey = key;
      }
      drawGray(outCv, doc.output, decodeTensor(doc.output));
      status.textContent = `${doc.output.shape[1]}×${doc.output.shape[0]} feature map, values ${fmt(doc.stats.min, 2)} … ${fmt(doc.stats.max, 2)}, server ${(1000 * doc.seconds).toFixed(0)} ms`;
      status.classList.remove("error");
      root.dataset.updated = String(Date.now());
    } catch (err) {
      status.textContent = err.message;
      status.classList.add("error");
    }
  }

  presetSel.addEventListener("change", () => {
    const k = presets.find((p) => p.name === presetSel.value);
    if (k) buildGrid(k.matrix);
    schedule();
  });
  sizeSel.addEventListener("change", () => {
    const n = Number(sizeSel.value);
    const m = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === (n >> 1) && j === (n >> 1) ? 1 : 0)));
    presetSel.value = "";
    buildGrid(m);
    schedule();
  });
  for (const c of [opSel, srcSel, norm]) c.addEventListener("change", schedule);

  const first = presets.find((p) => p.name === "outline") || presets[0];
  presetSel.value = first.name;
  buildGrid(first.matrix);
  return { run };
}
