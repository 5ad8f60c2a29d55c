// The explainer page: pick a model and an image, see every stage, open any stage to see how it computes.

import { decodeLayers, decodeTensor, getJSON, postForm } from "./api.js";
import { drawHeat, drawRGB, drawMap, layerScale } from "./colors.js";
import { cancelDetail, openDetail } from "./detail.js";
import { drawLinks, highlightLinks, renderNetwork } from "./network.js";
import { makePlayground } from "./playground.js";
import { makeSketch } from "./sketch.js";

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  model: null,
  doc: null,
  layers: [],
  source: null, // {kind: "upload", blob} | {kind: "test", index} | {kind: "sketch"}
  perStage: 8,
  scaleMode: "layer",
  weights: new Map(),
  seq: 0,
  selected: null, // {layer, channel}
};
let sketch = null;
let playground = null;
let wrapEl = null;
window.cnnlab = state; // for the curious (and the browser tests): everything the page shows

function setStatus(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

// A failed request must not leave the previous result on screen under the new model or image:
// the error goes in a banner by the inputs and every result panel is emptied.
function showFailure(message) {
  state.doc = null;
  state.layers = [];
  delete document.body.dataset.pending;
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
  setStatus(message, true);
  const cv = $("input-view");
  cv.getContext("2d").clearRect(0, 0, cv.width, cv.height);
  $("overlay-note").textContent = "";
  $("pred-label").textContent = "—";
  $("pred-prob").textContent = "";
  $("pred-truth").textContent = "no result: see the error above";
  $("pred-bars").replaceChildren();
  $("network").replaceChildren();
  wrapEl = null;
  closeDetail();
  if (playground) playground.inputChanged();
}

const ctx = {
  get doc() {
    return state.doc;
  },
  get layers() {
    return state.layers;
  },
  layer(name) {
    return state.layers.find((l) => l.name === name);
  },
  inputOf(name) {
    const i = state.layers.findIndex((l) => l.name === name);
    return state.layers[Math.max(0, i - 1)];
  },
  closeDetail: () => closeDetail(),
  heat(hm) {
    if (!hm._data) hm._data = decodeTensor(hm.values);
    return hm._data;
  },
  async weights(layer, channel) {
    const key = `${state.model.id}|${layer}|${channel}`;
    if (!state.weights.has(key)) {
      const q = new URLSearchParams({ model: state.model.id, layer, channel });
      const doc = await getJSON(`/api/weights?${q}`);
      state.weights.set(key, { weight: decodeTensor(doc.weight), bias: doc.bias ? decodeTensor(doc.bias) : null });
    }
    return state.weights.get(key);
  },
};

async function sourceFields() {
  const s = state.source;
  if (!s) return { random: true };
  if (s.kind === "upload") return { file: s.blob, invert: $("invert").value };
  if (s.kind === "sketch") return { file: await sketch.blob(), invert: "false" };
  return { test_index: s.index };
}

async function explain() {
  if (!state.model) return;
  const seq = ++state.seq;
  setStatus("computing…");
  const t0 = performance.now();
  try {
    const fields = { model: state.model.id, top_k: 5, ...(await sourceFields()) };
    const doc = await postForm("/api/explain", fields);
    if (seq !== state.seq) return; // a newer request is on its way
    render(doc);
    const ms = performance.now() - t0;
    setStatus(`${doc.layers.length - 2} stages of ${doc.model.name} in ${ms.toFixed(0)} ms`);
  } catch (err) {
    if (seq !== state.seq) return;
    if (state.source && state.source.kind === "test") state.source = null; // e.g. another model's test set
    showFailure(err.message);
  }
}

function drawInput() {
  const input = state.layers[0];
  const cv = $("input-view");
  const [c, h, w] = input.shape;
  if (c === 3) drawRGB(cv, input.data, h, w);
  else drawMap(cv, input.data, 0, h, w, layerScale(input.stats, "input"));
  const which = $("overlay").value;
  const hm = which === "gradcam" ? state.doc.gradcam : which === "saliency" ? state.doc.saliency : null;
  if (hm) drawHeat(cv, ctx.heat(hm), h, w, 0.55);
  $("overlay-note").textContent = hm
    ? `${hm.method}${hm.layer ? " on " + hm.layer : ""}: where the model looked for '${hm.label}'`
    : "";
}

function render(doc) {
  const fresh = doc !== state.doc; // false when only the view options changed
  state.doc = doc;
  delete document.body.dataset.pending;
  $("error").hidden = true;
  state.layers = decodeLayers(doc);
  if (doc.input.source.startsWith("test:") && (!state.source || state.source.kind === "test")) {
    state.source = { kind: "test", index: Number(doc.input.source.slice(5)) };
  }
  drawInput();
  const p = doc.prediction;
  $("pred-label").textContent = p.label;
  $("pred-prob").textContent = `${(100 * p.probability).toFixed(1)}%`;
  const truth = doc.input.label;
  let src = doc.input.source.startsWith("test:") ? `test image #${doc.input.source.slice(5)}` : "your image";
  if (state.source && state.source.kind === "sketch") src = "your drawing";
  const notes = [];
  if (doc.input.resized) notes.push(`resized from ${doc.input.original_size[1]}×${doc.input.original_size[0]}`);
  if (doc.input.inverted) notes.push("inverted");
  if (notes.length) src += ` (${notes.join(", ")})`;
  $("pred-truth").textContent =
    truth !== null && truth !== undefined
      ? `${src}; true class: ${doc.model.classes[truth]} ${truth === p.index ? "✓" : "✗"}`
      : src;
  const bars = $("pred-bars");
  bars.replaceChildren();
  for (const t of p.top) {
    const row = document.createElement("div");
    row.className = "pbar-row";
    row.innerHTML = `<span class="pl"></span><span class="pt"><span class="pf"></span></span><span class="pv"></span>`;
    row.querySelector(".pl").textContent = t.label;
    row.querySelector(".pf").style.width = `${(100 * t.probability).toFixed(1)}%`;
    row.querySelector(".pv").textContent = `${(100 * t.probability).toFixed(1)}%`;
    bars.append(row);
  }
  wrapEl = renderNetwork($("network"), state, { perStage: state.perStage, onSelect: select, scaleMode: state.scaleMode });
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  if (!window.cnnlabFirstRenderMs) window.cnnlabFirstRenderMs = performance.now();
  // keep the detail view open on the new result only where its stage and channel exist (another model
  // may lack the stage or have fewer channels); otherwise it would show numbers of the old result
  const sel = state.selected;
  if (sel && hasChannel(ctx.layer(sel.layer), sel.channel)) select(sel.layer, sel.channel, false);
  else closeDetail();
  if (fresh && playground) playground.inputChanged();
}

function hasChannel(layer, channel) {
  if (!layer) return false;
  if (channel === null || channel === undefined) return layer.shape.length !== 3 || layer.kind === "input";
  return layer.shape.length === 3 && (layer.kind === "input" || channel < layer.shape[0]);
}

function closeDetail() {
  cancelDetail();
  state.selected = null;
  const box = $("detail");
  box.hidden = true;
  box.replaceChildren();
  delete box.dataset.layer;
  delete box.dataset.kind;
  for (const c of document.querySelectorAll(".map.selected")) c.classList.remove("selected");
  const svg = document.querySelector("#network svg.links");
  if (svg) highlightLinks(svg, null, null);
}

async function select(layer, channel, scroll = true) {
  state.selected = { layer, channel };
  for (const c of document.querySelectorAll(".map.selected")) c.classList.remove("selected");
  const sel = document.querySelector(`.map[data-layer="${CSS.escape(layer)}"][data-channel="${channel ?? ""}"]`);
  if (sel) sel.classList.add("selected");
  const svg = document.querySelector("#network svg.links");
  if (svg) highlightLinks(svg, layer, channel);
  const box = $("detail");
  try {
    await openDetail(box, ctx, layer, channel);
    if (!scroll) box.scrollIntoView({ block: "nearest" });
  } catch (err) {
    setStatus(err.message, true);
  }
}

function chooseModel(id) {
  state.model = state.models.find((m) => m.id === id);
  // a test index names an image of one run's test set: the new model gets a random image of its own
  // (an upload or a drawing is simply explained again by the new model)
  if (state.source && state.source.kind === "test") state.source = null;
  // until the new model answers, the old model's result is greyed out rather than shown as the new one's
  if (state.doc) document.body.dataset.pending = "1";
  state.weights.clear();
  const m = state.model;
  const acc = m.test_accuracy !== null && m.test_accuracy !== undefined ? `, test accuracy ${(100 * m.test_accuracy).toFixed(1)}%` : "";
  const params = m.params ? ` · ${m.params.toLocaleString()} params` : "";
  $("model-info").textContent = `${m.name} on ${m.data} · ${m.input_shape.join("×")}${params}${acc}`;
  const side = Math.min(64, m.input_shape[1] || 28);
  sketch.setSize(side);
  $("sketch-size").textContent = `${side}×${side}`;
  explain();
}

function useFile(file) {
  if (!file) return;
  state.source = { kind: "upload", blob: file };
  explain();
}

async function currentImage() {
  if (!state.layers.length) return null;
  const input = state.layers[0];
  const cv = document.createElement("canvas");
  const [c, h, w] = input.shape;
  if (c === 3) drawRGB(cv, input.data, h, w);
  else drawMap(cv, input.data, 0, h, w, { kind: "gray", lo: 0, hi: 1 });
  return new Promise((resolve) => cv.toBlob((b) => resolve(b), "image/png"));
}

async function init() {
  sketch = makeSketch($("sketch"), {
    onChange: () => {
      state.source = { kind: "sketch" };
      explain();
    },
  });
  $("sketch-clear").addEventListener("click", () => {
    sketch.clear();
    if (state.source && state.source.kind === "sketch") explain();
  });
  $("random").addEventListener("click", () => {
    state.source = null;
    explain();
  });
  $("file").addEventListener("change", (ev) => {
    useFile(ev.target.files[0]);
    ev.target.value = ""; // choosing the same file again must fire "change" again
  });
  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" && ev.key !== " ") return;
    ev.preventDefault(); // Space would scroll the page
    $("file").click();
  });
  for (const t of ["dragenter", "dragover"]) {
    document.addEventListener(t, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
  }
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    useFile(ev.dataTransfer.files[0]);
  });
  $("invert").addEventListener("change", () => state.source && state.source.kind === "upload" && explain());
  $("overlay").addEventListener("change", () => state.doc && drawInput());
  $("per-stage").addEventListener("change", (ev) => {
    state.perStage = Number(ev.target.value);
    if (state.doc) render(state.doc);
  });
  $("scale-mode").addEventListener("change", (ev) => {
    state.scaleMode = ev.target.value;
    if (state.doc) render(state.doc);
  });
  $("model").addEventListener("change", (ev) => chooseModel(ev.target.value));
  window.addEventListener("resize", () => {
    if (wrapEl) drawLinks(wrapEl, wrapEl.querySelector("svg.links"));
  });

  try {
    const { models } = await getJSON("/api/models");
    state.models = models;
    const sel = $("model");
    for (const m of models) {
      const o = document.createElement("option");
      o.value = m.id;
      o.textContent = `${m.id} (${m.name})`;
      sel.append(o);
    }
    document.body.dataset.ready = "1";
    window.cnnlabInteractiveMs = performance.now();
    if (!models.length) {
      setStatus("No runs in this folder yet: train one with `cnnlab train --out RUNS_DIR/cnn2`, then reload.", true);
    } else chooseModel(models[0].id);
  } catch (err) {
    setStatus(err.message, true);
  }
  makePlayground($("playground"), { currentImage }).then((pg) => {
    playground = pg;
    return pg.run();
  }).catch((err) => {
    $("filter-status").textContent = err.message;
  });
}

init();
