// The explainer page: pick a model and an image, see every stage, open any stage to see how it computes,
// compare models on the same image, read the short article beside it. State lives in `state` (and in
// the URL); every number comes from /api/explain.
import { decodeLayers, decodeTensor, errorAt } from "./api.js";
import { dataSource } from "./datasource.js";
import { renderArticle } from "./article.js";
import { renderCompare } from "./compare.js";
import { cancelDetail, openDetail } from "./detail.js";
import { LANGS, applyStatic, getLang, initLang, num, onLangChange, setLang, t } from "./i18n.js";
import { drawLinks, fitColumns, highlightLinks, renderNetwork } from "./network.js";
import { makePlayground } from "./playground.js";
import { clearPrediction, drawInput, drawPrediction } from "./prediction.js";
import { renderGallery } from "./gallery.js";
import { makeSketch } from "./sketch.js";
import { pixelsBlob, prepareUpload, sourceFields, travels } from "./source.js";
import { readUrl, writeUrl } from "./urlstate.js";
import { wireControls } from "./controls.js";

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  unavailable: [], // runs found but not loadable: {id, error}
  model: null,
  doc: null,
  layers: [],
  source: null, // {kind: "test", index, label, model, data, blob} | {kind: "upload", blob, scaledFrom} | {kind: "sketch"}
  perStage: 8,
  scaleMode: "stage", // the overview's colour scale: one per stage, per map, or for the whole network
  weights: new Map(),
  seq: 0,
  selected: null, // {layer, channel, pos, unit}
  classIndex: null, // the class Grad-CAM and saliency explain (null: the predicted one)
  compare: new Set(),
  opener: null, // the element that opened the detail panel: focus goes back to it on close
};
let sketch = null;
let playground = null;
let wrapEl = null;
let pendingUrl = null;
let restoring = false; // the first render of a view restored from the URL
window.cnnlab = state; // for the curious (and the browser tests): everything the page shows

export function setStatus(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

const ctx = {
  get doc() {
    return state.doc;
  },
  get layers() {
    return state.layers;
  },
  get pos() {
    return state.selected?.pos || null;
  },
  layer: (name) => state.layers.find((l) => l.name === name),
  inputOf(name) {
    const i = state.layers.findIndex((l) => l.name === name);
    return state.layers[Math.max(0, i - 1)];
  },
  heat(hm) {
    if (!hm._data) hm._data = decodeTensor(hm.values);
    return hm._data;
  },
  async weights(layer, channel) {
    const key = `${state.model.id}|${layer}|${channel}`;
    if (!state.weights.has(key)) {
      const doc = await dataSource.weights(state.model.id, layer, channel);
      state.weights.set(key, { weight: decodeTensor(doc.weight), bias: doc.bias ? decodeTensor(doc.bias) : null });
    }
    return state.weights.get(key);
  },
  // how far a weighted sum of decoded inputs may stray from the model's value (4 standard deviations of
  // the inputs' rounding, uniform within their stated precision)
  tolerance(layer, weights) {
    const inp = ctx.inputOf(layer.name);
    let v = 0;
    for (let i = 0; i < weights.length; i++) v += (weights[i] * errorAt(inp, i)) ** 2 / 3;
    return 4 * Math.sqrt(v) + 1e-4;
  },
  setPos(y, x) {
    if (state.selected) state.selected.pos = [y, x];
    writeUrl(state);
  },
  setUnit(i) {
    if (state.selected) state.selected.unit = i;
    writeUrl(state);
  },
  select: (layer, channel, pos = null, unit = null) => select(layer, channel, { pos, unit }),
  closeDetail: () => closeDetail(),
  explainClass: (i) => explainClass(i),
  sendKernel: (matrix, name) => playground && playground.useKernel(matrix, name),
};

// A failed request leaves the current result on screen (it is still true) and says what went wrong once,
// in the banner; a model switch that failed goes back to the model whose result is shown.
function showFailure(message, previous) {
  delete document.body.dataset.pending;
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  setStatus(t("status.failed"), true);
  if (previous) Object.assign(state, previous);
  if (state.doc && state.doc.model.id !== state.model.id) state.model = state.models.find((m) => m.id === state.doc.model.id);
  if (state.model && $("model").value !== state.model.id) {
    $("model").value = state.model.id; // the picker shows the model whose result is on screen
    describeModel();
  }
  if (!state.doc) clearPrediction(t("pred.none"));
  writeUrl(state);
}

async function explain(previous = null) {
  if (!state.model) return;
  if (state.source && state.source.kind === "sketch" && !sketch.dirty) {
    clearPrediction(t("sketch.empty"));
    return;
  }
  const seq = ++state.seq;
  setStatus(t("status.computing"));
  const t0 = performance.now();
  try {
    const fields = { model: state.model.id, top_k: 5, ...(await sourceFields(state.source, state.model, { invert: $("invert").value, sketchBlob: () => sketch.blob() })) };
    if (state.classIndex !== null) fields.class_index = state.classIndex;
    const doc = await dataSource.explain(fields);
    if (seq !== state.seq) return; // a newer request is on its way
    const t1 = performance.now();
    render(doc);
    window.cnnlabLastRender = { server: t1 - t0, render: performance.now() - t1 };
    setStatus(t("status.done", { n: doc.layers.length - 2, name: doc.model.id, ms: (performance.now() - t0).toFixed(0) }));
  } catch (err) {
    if (seq !== state.seq) return;
    showFailure(err.message, previous);
  }
}

function render(doc) {
  const fresh = doc !== state.doc;
  state.doc = doc;
  delete document.body.dataset.pending;
  $("error").hidden = true;
  state.layers = decodeLayers(doc);
  const src = doc.input.source;
  if (src.startsWith("test:") && (!state.source || state.source.kind === "test")) {
    const index = Number(src.slice(5));
    if (!state.source || state.source.index !== index || state.source.model !== doc.model.id) {
      state.source = { kind: "test", index, label: doc.input.label, model: doc.model.id, data: state.model.data, blob: null };
    }
  }
  drawInput(state, ctx.heat);
  drawPrediction(state, { onClass: explainClass });
  const focused = document.activeElement && document.activeElement.closest("#network") ? document.activeElement : null;
  const key = focused && focused.dataset.layer ? `[data-layer="${CSS.escape(focused.dataset.layer)}"][data-channel="${focused.dataset.channel ?? ""}"]` : null;
  wrapEl = renderNetwork($("network"), state, {
    perStage: state.perStage, onSelect: (l, c) => select(l, c), onAll: (l) => select(l, "all"),
    onClass: (i) => select(state.layers[state.layers.length - 1].name, i), focusKey: key,
  });
  if (key && wrapEl.querySelector(key)) wrapEl.querySelector(key).focus();
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  if (!window.cnnlabFirstRenderMs) window.cnnlabFirstRenderMs = performance.now();
  renderArticle($("article-body"), ctx, state); // before the detail: its "read about it" link points here
  const want = pendingUrl || state.selected;
  pendingUrl = null;
  if (want && hasChannel(ctx.layer(want.layer), want.channel)) {
    const opened = select(want.layer, want.channel, { pos: want.pos, unit: want.unit, focus: false });
    if (restoring) opened.then(() => $("detail").scrollIntoView({ block: "start" })); // a shared link shows what it points at
    restoring = false;
  }
  else closeDetail(false);
  if (!$("compare").hidden) drawCompare();
  if (fresh && playground) playground.inputChanged();
  writeUrl(state);
}

function hasChannel(layer, channel) {
  if (!layer) return false;
  if (channel === "all") return layer.shape.length === 3 && layer.kind !== "input";
  if (channel === null || channel === undefined) return true;
  if (layer.kind === "softmax" || layer.shape.length === 1) return channel < layer.shape[0];
  return layer.shape.length === 3 && (layer.kind === "input" || channel < layer.shape[0]);
}

function closeDetail(restoreFocus = true) {
  cancelDetail();
  state.selected = null;
  const box = $("detail");
  const wasOpen = !box.hidden;
  box.hidden = true;
  box.replaceChildren();
  delete box.dataset.layer;
  delete box.dataset.kind;
  for (const c of document.querySelectorAll(".map.selected")) c.classList.remove("selected");
  const svg = document.querySelector("#network svg.links");
  if (svg) highlightLinks(svg, null, null);
  writeUrl(state);
  if (wasOpen && restoreFocus && state.opener && state.opener.isConnected) state.opener.focus();
}

async function select(layer, channel, { pos = null, unit = null, focus = true } = {}) {
  const same = state.selected && state.selected.layer === layer && state.selected.channel === channel;
  state.selected = { layer, channel, pos: pos || (same ? state.selected.pos : null), unit: unit ?? (same ? state.selected.unit : null) };
  if (focus && document.activeElement && document.activeElement !== document.body && !document.activeElement.closest("#detail")) {
    state.opener = document.activeElement;
  }
  for (const c of document.querySelectorAll(".map.selected")) c.classList.remove("selected");
  const key = `[data-layer="${CSS.escape(layer)}"][data-channel="${channel ?? ""}"]`;
  const sel = document.querySelector(`#network .map${key}`);
  if (sel) sel.classList.add("selected");
  const svg = document.querySelector("#network svg.links");
  if (svg) highlightLinks(svg, layer, channel === "all" ? null : channel);
  writeUrl(state);
  const box = $("detail");
  try {
    const shown = await openDetail(box, ctxView(), layer, channel);
    if (shown && focus) {
      box.querySelector("#detail-title").focus({ preventScroll: true });
      box.scrollIntoView({ behavior: "instant", block: "nearest" });
    }
  } catch (err) {
    setStatus(err.message, true);
  }
}

// The context a detail view gets: ctx plus the position it should start at.
function ctxView() {
  return Object.create(ctx, { pos: { value: state.selected?.pos || null } });
}

// Where the model looks for class i: Grad-CAM and saliency for that class (one /api/explain call).
async function explainClass(i) {
  state.classIndex = i === state.doc?.prediction.index ? null : i;
  if ($("overlay").value === "none") $("overlay").value = state.doc?.gradcam ? "gradcam" : "saliency";
  const seq = ++state.seq;
  try {
    const fields = { model: state.model.id, class_index: i, ...(await sourceFields(state.source, state.model, { invert: $("invert").value, sketchBlob: () => sketch.blob() })) };
    const doc = await dataSource.explain(fields);
    if (seq !== state.seq) return;
    state.doc.gradcam = doc.gradcam;
    state.doc.saliency = doc.saliency;
    drawInput(state, ctx.heat);
    drawPrediction(state, { onClass: explainClass });
    writeUrl(state);
  } catch (err) {
    if (seq === state.seq) showFailure(err.message);
  }
}

// Runs found in RUNS_DIR that cannot be loaded (a damaged config.json or weights file): a short note by the
// model picker with each one's reason, so a run missing from the list is explained.
function showUnavailable() {
  const box = $("unavailable");
  const list = state.unavailable || [];
  box.hidden = !list.length;
  if (!list.length) return;
  box.querySelector("summary").textContent = t("unavailable.summary", { n: list.length });
  box.querySelector("ul").replaceChildren(
    ...list.map((u) => {
      const li = document.createElement("li");
      li.textContent = `${u.id}: ${u.error}`;
      return li;
    }),
  );
}

function describeModel() {
  const m = state.model;
  const acc = m.test_accuracy !== null && m.test_accuracy !== undefined ? t("model.acc", { a: num(100 * m.test_accuracy, 1) }) : "";
  const params = m.params ? ` · ${t("model.params", { n: m.params })}` : "";
  $("model-info").textContent = `${m.name} · ${m.data} · ${m.input_shape.join("×")}${params}${acc}`;
  const rgb = m.input_shape[0] === 3;
  const onBlack = !rgb && /^(fashion_mnist|mnist)$/.test(m.data);
  $("invert-row").hidden = rgb;
  $("source-note").textContent = t(rgb ? "source.rgb" : onBlack ? "source.onBlack" : "source.gray", { w: m.input_shape[2], h: m.input_shape[1] });
  const side = Math.min(64, m.input_shape[1] || 28);
  sketch.configure({ size: side, colour: rgb });
  $("sketch-size").textContent = `${side}×${side}`;
  $("sketch-colour-row").hidden = !rgb;
  $("sketch-note").textContent = t(rgb ? "sketch.noteRGB" : "sketch.note");
  renderGallery($("gallery"), dataSource, m, pickTest).catch((err) => setStatus(err.message, true));
}

// A gallery image: a test image of the model in view, by its index.
function pickTest(index, label) {
  const previous = { source: state.source, classIndex: state.classIndex };
  state.source = { kind: "test", index, label, model: state.model.id, data: state.model.data, blob: null };
  state.classIndex = null;
  explain(previous);
}

async function chooseModel(id) {
  const previous = { model: state.model, source: state.source, classIndex: state.classIndex };
  const next = state.models.find((m) => m.id === id);
  if (!next) return;
  // a test image goes along by its pixels to another model of the same dataset; else a random one
  const s = state.source;
  if (s && s.kind === "test" && s.model !== next.id) {
    if (s.data === next.data && state.layers.length) {
      if (!s.blob) s.blob = await pixelsBlob(state.layers[0]);
    } else state.source = null;
  }
  if (state.model && state.model.classes.join("|") !== next.classes.join("|")) state.classIndex = null;
  state.model = next;
  state.compare.delete(next.id);
  if (state.doc) document.body.dataset.pending = "1";
  state.weights.clear();
  describeModel();
  await explain(previous);
}

async function useFile(file) {
  if (!file) return;
  const previous = { source: state.source, classIndex: state.classIndex };
  setStatus(t("status.reading"));
  const { blob, scaledFrom } = await prepareUpload(file);
  state.source = { kind: "upload", blob, scaledFrom };
  state.classIndex = null;
  explain(previous);
}

function drawCompare() {
  renderCompare($("compare"), {
    state,
    canUse: (m) => travels(state.source, m) || (state.source?.kind === "test" && state.source.data === m.data),
    onToggle: (id, on) => {
      if (on) state.compare.add(id);
      else state.compare.delete(id);
      writeUrl(state);
      drawCompare();
    },
    onOpen: (id) => {
      $("model").value = id;
      chooseModel(id);
    },
    explainFor: async (m) => {
      if (state.source?.kind === "test" && !state.source.blob) state.source.blob = await pixelsBlob(state.layers[0]);
      const fields = { model: m.id, top_k: 3, ...(await sourceFields(state.source, m, { invert: $("invert").value, sketchBlob: () => sketch.blob() })) };
      const doc = await dataSource.explain(fields);
      return { doc, layer0: decodeLayers({ layers: [doc.layers[0]] })[0] };
    },
  });
}

async function init() {
  initLang();
  const url = readUrl();
  sketch = makeSketch($("sketch"), {
    onChange: () => {
      state.source = { kind: "sketch" };
      state.classIndex = null;
      explain();
    },
  });
  wireControls({ state, sketch, explain, useFile, chooseModel, closeDetail, drawCompare, render, explainClass, setLang, getLang, LANGS });
  onLangChange(() => {
    applyStatic();
    showUnavailable();
    if (state.model) describeModel();
    if (state.doc) render(state.doc);
  });
  window.addEventListener("resize", () => {
    if (!wrapEl) return;
    fitColumns(wrapEl);
    drawLinks(wrapEl, wrapEl.querySelector("svg.links"));
  });
  try {
    const { models, unavailable } = await dataSource.models();
    state.models = models;
    state.unavailable = unavailable || [];
    showUnavailable();
    const sel = $("model");
    for (const m of models) {
      const o = document.createElement("option");
      o.value = m.id;
      o.textContent = `${m.id} (${m.name})`;
      sel.append(o);
    }
    document.body.dataset.ready = "1";
    window.cnnlabInteractiveMs = performance.now();
    if (!models.length) return setStatus(t("status.noRuns"), true);
    const first = models.find((m) => m.id === (url.from || url.model)) || models[0];
    for (const id of url.compare) if (models.some((m) => m.id === id)) state.compare.add(id);
    if (state.compare.size) $("compare").hidden = false;
    $("compare-toggle").setAttribute("aria-expanded", String(!$("compare").hidden));
    state.classIndex = url.classIndex;
    if (url.overlay) $("overlay").value = url.overlay;
    restoring = Boolean(url.stage);
    if (url.stage) pendingUrl = { layer: url.stage, channel: url.channel, pos: url.pos, unit: url.unit };
    if (url.test !== null) state.source = { kind: "test", index: url.test, model: first.id, data: first.data, blob: null };
    sel.value = first.id;
    state.model = first;
    describeModel();
    await explain();
    const target = models.find((m) => m.id === url.model);
    if (url.from && target && target.id !== first.id) {
      pendingUrl = url.stage ? { layer: url.stage, channel: url.channel, pos: url.pos, unit: url.unit } : null;
      sel.value = target.id;
      await chooseModel(target.id);
    }
  } catch (err) {
    setStatus(err.message, true);
  }
  makePlayground($("playground"), { source: dataSource, currentImage: () => (state.layers.length ? pixelsBlob(state.layers[0]) : null) })
    .then((pg) => {
      playground = pg;
      return pg.run();
    })
    .catch((err) => {
      $("filter-status").textContent = err.message;
    });
}

init();
