// Asking the data source (the server's API or a published site's engine): explain the image in view
// with the model in view, Grad-CAM for another class, a model switch, an uploaded file, a gallery pick,
// a model to compare. The newest request wins (state.seq); a failed one keeps what is on screen.
import { decodeLayers } from "./api.js";
import { dataSource } from "./datasource.js";
import { t } from "./i18n.js";
import { clearPrediction, drawInput, drawPrediction } from "./prediction.js";
import { pixelsBlob, prepareUpload, sourceFields } from "./source.js";
import { $, setStatus, state, toggleCompare } from "./state.js";
import { ctx, describeModel, render, setOverlay, showFailure } from "./view.js";

// The request's fields for `model`: the image in view, sent to it as source.js says.
async function fieldsFor(model, extra) {
  const image = await sourceFields(state.source, model, { invert: $("invert").value, sketchBlob: () => state.sketch.blob() });
  return { model: model.id, ...extra, ...image };
}

export async function explain(previous = null) {
  if (!state.model) return;
  if (state.source && state.source.kind === "sketch" && !state.sketch.dirty) {
    clearPrediction(t("sketch.empty"));
    return;
  }
  const seq = ++state.seq;
  setStatus(t("status.computing"));
  const t0 = performance.now();
  try {
    const fields = await fieldsFor(state.model, { top_k: 5 });
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

// Where the model looks for class i: Grad-CAM and saliency for that class (one explain call).
export async function explainClass(i) {
  state.classIndex = i === state.doc?.prediction.index ? null : i;
  if (state.overlay === "none") setOverlay(state.doc?.gradcam ? "gradcam" : "saliency");
  const seq = ++state.seq;
  try {
    const doc = await dataSource.explain(await fieldsFor(state.model, { class_index: i }));
    if (seq !== state.seq) return;
    state.doc.gradcam = doc.gradcam;
    state.doc.saliency = doc.saliency;
    drawInput(state, ctx.heat);
    drawPrediction(state, { onClass: explainClass });
  } catch (err) {
    if (seq === state.seq) showFailure(err.message);
  }
}

// A gallery image: a test image of the model in view, by its index.
export function pickTest(index, label) {
  const previous = { source: state.source, classIndex: state.classIndex };
  state.source = { kind: "test", index, label, model: state.model.id, data: state.model.data, blob: null };
  state.classIndex = null;
  explain(previous);
}

export async function chooseModel(id) {
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
  toggleCompare(next.id, false);
  if (state.doc) document.body.dataset.pending = "1";
  state.weights.clear();
  describeModel();
  await explain(previous);
}

export async function useFile(file) {
  if (!file) return;
  const previous = { source: state.source, classIndex: state.classIndex };
  setStatus(t("status.reading"));
  const { blob, scaledFrom } = await prepareUpload(file);
  state.source = { kind: "upload", blob, scaledFrom };
  state.classIndex = null;
  explain(previous);
}

// Model m's answer for the image in view (a compare card): its document and its decoded input.
export async function explainFor(m) {
  if (state.source?.kind === "test" && !state.source.blob) state.source.blob = await pixelsBlob(state.layers[0]);
  const doc = await dataSource.explain(await fieldsFor(m, { top_k: 3 }));
  return { doc, layer0: decodeLayers({ layers: [doc.layers[0]] })[0] };
}
