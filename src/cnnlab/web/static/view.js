// What the page shows for a result, from the store: the input, the prediction, the network, the article
// and the open detail view; opening and closing a view; the model's description; the failure banner.
// The requests that produce results are in requests.js (reached through `actions`).
import { decodeLayers, decodeTensor, errorAt } from "./api.js";
import { renderArticle } from "./article.js";
import { dataSource } from "./datasource.js";
import { cancelDetail, openDetail } from "./detail.js";
import { renderGallery } from "./gallery.js";
import { num, t } from "./i18n.js";
import { drawLinks, fitColumns, highlightLinks, renderNetwork } from "./network.js";
import { clearPrediction, drawInput, drawPrediction } from "./prediction.js";
import { $, actions, setStatus, state } from "./state.js";

let wrapEl = null;

// The context the detail views get: the result's layers, weights, tolerances and a way to move.
export const ctx = {
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
    if (state.selected) state.selected = { ...state.selected, pos: [y, x] };
  },
  setUnit(i) {
    if (state.selected) state.selected = { ...state.selected, unit: i };
  },
  select: (layer, channel, pos = null, unit = null) => select(layer, channel, { pos, unit }),
  closeDetail: () => closeDetail(),
  explainClass: (i) => actions.explainClass(i),
  sendKernel: (matrix, name) => actions.sendKernel(matrix, name),
};

// A failed request leaves the current result on screen (it is still true) and says what went wrong once,
// in the banner; a model switch that failed goes back to the model whose result is shown.
export function showFailure(message, previous) {
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
}

// The network's overview, keeping keyboard focus on the map that had it.
function drawNetwork() {
  const focused = document.activeElement && document.activeElement.closest("#network") ? document.activeElement : null;
  const key = focused && focused.dataset.layer ? `[data-layer="${CSS.escape(focused.dataset.layer)}"][data-channel="${focused.dataset.channel ?? ""}"]` : null;
  wrapEl = renderNetwork($("network"), state, {
    perStage: state.perStage, onSelect: (l, c) => select(l, c), onAll: (l) => select(l, "all"),
    onClass: (i) => select(state.layers[state.layers.length - 1].name, i), focusKey: key,
  });
  if (key && wrapEl.querySelector(key)) wrapEl.querySelector(key).focus();
}

// The view open before (or asked for by the URL) opened again on the new result, when it still fits.
function reopen() {
  const want = state.pending || state.selected;
  state.pending = null;
  if (want && hasChannel(ctx.layer(want.layer), want.channel)) {
    const opened = select(want.layer, want.channel, { pos: want.pos, unit: want.unit, focus: false });
    if (state.restoring) opened.then(() => $("detail").scrollIntoView({ block: "start" })); // a shared link shows what it points at
    state.restoring = false;
  } else closeDetail(false);
}

export function render(doc) {
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
  drawPrediction(state, { onClass: (i) => actions.explainClass(i) });
  drawNetwork();
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  if (!window.cnnlabFirstRenderMs) window.cnnlabFirstRenderMs = performance.now();
  renderArticle($("article-body"), ctx, state); // before the detail: its "read about it" link points here
  reopen();
  if (!$("compare").hidden) actions.drawCompare();
  if (fresh) actions.inputChanged();
}

function hasChannel(layer, channel) {
  if (!layer) return false;
  if (channel === "all") return layer.shape.length === 3 && layer.kind !== "input";
  if (channel === null || channel === undefined) return true;
  if (layer.kind === "softmax" || layer.shape.length === 1) return channel < layer.shape[0];
  return layer.shape.length === 3 && (layer.kind === "input" || channel < layer.shape[0]);
}

export function closeDetail(restoreFocus = true) {
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
  if (wasOpen && restoreFocus && state.opener && state.opener.isConnected) state.opener.focus();
}

// The chosen map marked on the network, its links lit.
function markSelected(layer, channel) {
  for (const c of document.querySelectorAll(".map.selected")) c.classList.remove("selected");
  const key = `[data-layer="${CSS.escape(layer)}"][data-channel="${channel ?? ""}"]`;
  const sel = document.querySelector(`#network .map${key}`);
  if (sel) sel.classList.add("selected");
  const svg = document.querySelector("#network svg.links");
  if (svg) highlightLinks(svg, layer, channel === "all" ? null : channel);
}

export async function select(layer, channel, { pos = null, unit = null, focus = true } = {}) {
  const same = state.selected && state.selected.layer === layer && state.selected.channel === channel;
  state.selected = { layer, channel, pos: pos || (same ? state.selected.pos : null), unit: unit ?? (same ? state.selected.unit : null) };
  if (focus && document.activeElement && document.activeElement !== document.body && !document.activeElement.closest("#detail")) {
    state.opener = document.activeElement;
  }
  markSelected(layer, channel);
  const box = $("detail");
  try {
    // the view starts at the position asked for (the URL's, or the one open before)
    const shown = await openDetail(box, Object.create(ctx, { pos: { value: state.selected?.pos || null } }), layer, channel);
    if (shown && focus) {
      box.querySelector("#detail-title").focus({ preventScroll: true });
      box.scrollIntoView({ behavior: "instant", block: "nearest" });
    }
  } catch (err) {
    setStatus(err.message, true);
  }
}

// Runs found that cannot be loaded (a damaged config.json or weights file): a short note by the model
// picker with each one's reason, so a run missing from the list is explained.
export function showUnavailable() {
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

export function describeModel() {
  const m = state.model;
  const acc = m.test_accuracy !== null && m.test_accuracy !== undefined ? t("model.acc", { a: num(100 * m.test_accuracy, 1) }) : "";
  const params = m.params ? ` · ${t("model.params", { n: m.params })}` : "";
  $("model-info").textContent = `${m.name} · ${m.data} · ${m.input_shape.join("×")}${params}${acc}`;
  const rgb = m.input_shape[0] === 3;
  const onBlack = !rgb && /^(fashion_mnist|mnist)$/.test(m.data);
  $("invert-row").hidden = rgb;
  $("source-note").textContent = t(rgb ? "source.rgb" : onBlack ? "source.onBlack" : "source.gray", { w: m.input_shape[2], h: m.input_shape[1] });
  const side = Math.min(64, m.input_shape[1] || 28);
  state.sketch.configure({ size: side, colour: rgb });
  $("sketch-size").textContent = `${side}×${side}`;
  $("sketch-colour-row").hidden = !rgb;
  $("sketch-note").textContent = t(rgb ? "sketch.noteRGB" : "sketch.note");
  renderGallery($("gallery"), dataSource, m, (index, label) => actions.pickTest(index, label)).catch((err) => setStatus(err.message, true));
}

// The overlay over the input ("none", "gradcam", "saliency"): its picker and the store agree.
export function setOverlay(value) {
  state.overlay = value;
  $("overlay").value = value;
}

// After a window resize: the columns refitted and the links redrawn.
export function relayout() {
  if (!wrapEl) return;
  fitColumns(wrapEl);
  drawLinks(wrapEl, wrapEl.querySelector("svg.links"));
}
