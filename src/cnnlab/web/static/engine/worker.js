// The in-browser engine's Web Worker: answers the page's data-source calls for a published site (see
// ../sitesource.js) with the documents `cnnlab serve` sends, computed here, so the page never blocks.
// Messages: {id, type: "explain" | "weights", base, ...} -> {id, ok, result | error}.
import { loadModelFiles } from "./files.js";
import { backward, forward, gradcamMap, saliencyMap, softmax } from "./model.js";
import { tensor } from "./ops.js";
import { prepareFile } from "./prepare.js";

const models = new Map(); // base URL -> Promise of {doc, params, gallery, stages, camLayer}

function load(base) {
  if (!models.has(base)) {
    const p = loadModelFiles(base).then(({ doc, params, gallery }) => ({ doc, params, gallery, stages: doc.stages, camLayer: doc.gradcam_layer }));
    p.catch(() => models.delete(base)); // a failed load is tried again next time
    models.set(base, p);
  }
  return models.get(base);
}

const array = (data, shape) => ({ dtype: "float32", encoding: "array", shape, data });

function stats(data) {
  let lo = Infinity;
  let hi = -Infinity;
  let s = 0;
  let n = 0;
  for (const v of data) {
    if (!Number.isFinite(v)) continue;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
    s += v;
    n++;
  }
  return n ? { min: lo, max: hi, mean: s / n } : { min: null, max: null, mean: null };
}

// The image a request names: a gallery image (test_index, or random) or an uploaded file.
async function input(m, f) {
  const shape = m.doc.model.input_shape;
  const size = shape[0] * shape[1] * shape[2];
  if (f.file) {
    const { x, info } = await prepareFile(f.file, shape, m.doc.image, f.invert || "auto");
    return { x, info: { shape, source: "upload", label: null, ...info } };
  }
  const count = m.doc.gallery.count;
  const i = f.random ? Math.floor(Math.random() * count) : Number(f.test_index);
  if (!(i >= 0 && i < count)) throw new Error(`test_index must be in 0..${count - 1}, got ${f.test_index}`);
  const x = Float32Array.from(m.gallery.subarray(i * size, (i + 1) * size), (v) => Math.fround(v / 255));
  return { x, info: { shape, source: `test:${i}`, original_size: [shape[1], shape[2]], inverted: false, resized: false, label: m.doc.gallery.labels[i] } };
}

function layersOf(m, x, shape, outs) {
  const layers = [{ name: "input", kind: "input", shape, module: "input image, pixels in 0..1", params: {}, stats: stats(x), values: array(x, shape) }];
  m.stages.forEach((s, i) => {
    const y = outs[i];
    layers.push({ name: s.name, kind: s.kind, shape: y.shape, module: s.module, params: s.params, stats: stats(y.data), values: array(y.data, y.shape) });
  });
  return layers;
}

function prediction(classes, logits, probs, topK) {
  const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a] || a - b);
  let index = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[index]) index = i;
  return {
    index, label: classes[index], probability: probs[index],
    logits: Array.from(logits), probabilities: Array.from(probs),
    top: order.slice(0, Math.max(1, topK)).map((i) => ({ index: i, label: classes[i], probability: probs[i] })),
  };
}

async function explain(msg) {
  const m = await load(msg.base);
  const f = msg.fields;
  const { model } = m.doc;
  const classIndex = f.class_index === undefined || f.class_index === null ? null : Number(f.class_index);
  if (classIndex !== null && !(classIndex >= 0 && classIndex < model.classes.length)) throw new Error(`class_index must be in 0..${model.classes.length - 1}, got ${f.class_index}`);
  const { x, info } = await input(m, f);
  const [C, H, W] = model.input_shape;
  const t0 = performance.now();
  const fwd = forward(m, tensor(x, [C, H, W]));
  const probs = softmax(fwd.logits);
  const t1 = performance.now();
  const { target, camGrad, inputGrad } = backward(m, fwd, classIndex);
  const label = model.classes[target];
  let gradcam = null;
  if (m.camLayer && camGrad) {
    const feats = fwd.outs[m.stages.findIndex((s) => s.name === m.camLayer)];
    gradcam = { method: "gradcam", layer: m.camLayer, class_index: target, label, values: array(gradcamMap(feats, camGrad, H, W).values, [H, W]) };
  }
  const saliency = { method: "saliency", layer: null, class_index: target, label, values: array(saliencyMap(inputGrad), [H, W]) };
  const t2 = performance.now();
  const layers = layersOf(m, x, [C, H, W], fwd.outs);
  const taken = new Set(layers.map((l) => l.name));
  layers.push({ name: taken.has("softmax") ? "softmax_" : "softmax", kind: "softmax", shape: [probs.length], module: "softmax(logits): exp(z_i) / sum_j exp(z_j)", params: {}, stats: stats(probs), values: array(probs, [probs.length]) });
  const doc = { schema: "cnnlab.activations/2", model, input: info, layers, prediction: prediction(model.classes, fwd.logits, probs, Number(f.top_k || 5)), gradcam, saliency };
  // the engine's own times: every stage and the softmax; the backward pass with Grad-CAM and saliency
  doc.timing = { forward_ms: t1 - t0, gradcam_ms: t2 - t1, total_ms: performance.now() - t0 };
  return doc;
}

// /api/weights: one output channel (conv) or unit (dense) of a conv or dense stage.
async function weights(msg) {
  const m = await load(msg.base);
  const s = m.stages.find((st) => st.name === msg.layer);
  if (!s) throw new Error(`Unknown layer ${JSON.stringify(msg.layer)}`);
  if (s.ops.op !== "conv" && s.ops.op !== "dense") throw new Error(`layer '${s.name}' is a ${s.kind} stage; weights are shown for conv and dense layers`);
  const w = m.params[s.ops.w];
  const b = s.ops.b ? m.params[s.ops.b] : null;
  const shape = s.ops.shape;
  const c = msg.channel;
  const per = w.length / shape[0];
  const weight = c === null || c === undefined ? array(w.slice(), shape) : array(w.slice(c * per, (c + 1) * per), shape.slice(1));
  const bias = b ? (c === null || c === undefined ? array(b.slice(), [b.length]) : array(b.slice(c, c + 1), [1])) : null;
  return { model: m.doc.model.id, layer: s.name, kind: s.kind, params: s.params, channel: c ?? null, weight, bias };
}

// The first n gallery images (uint8, C*H*W each) and their labels.
async function gallery(msg) {
  const m = await load(msg.base);
  const g = m.doc.gallery;
  const n = Math.min(msg.n, g.count);
  const size = g.shape.reduce((a, b) => a * b, 1);
  return { count: g.count, shape: g.shape, labels: g.labels.slice(0, n), images: m.gallery.slice(0, n * size) };
}

function transferables(doc) {
  const out = new Set();
  const add = (t) => t && t.data instanceof Float32Array && out.add(t.data.buffer);
  if (doc.layers) doc.layers.forEach((l) => add(l.values));
  if (doc.gradcam) add(doc.gradcam.values);
  if (doc.saliency) add(doc.saliency.values);
  return [...out];
}

self.onmessage = async (e) => {
  const msg = e.data;
  try {
    const answer = { weights, gallery, load: async (x) => (await load(x.base), {}), explain }[msg.type];
    const result = await answer(msg);
    self.postMessage({ id: msg.id, ok: true, result }, transferables(result));
  } catch (err) {
    self.postMessage({ id: msg.id, ok: false, error: err.message || String(err) });
  }
};
