// A published model run in the browser: its stages' op trees (written by cnnlab.explain.graph) over its
// float32 weights. `explainImage` gives what /api/explain gives: every stage's output, the prediction,
// Grad-CAM on the run's Grad-CAM stage and gradient saliency, from one forward and one backward pass.
import { activation } from "./act.js";
import { batchnorm, conv, dense, normalize, tensor } from "./ops.js";
import { adaptive, avgpool, maxpool } from "./pool.js";

function sequence(x, items, P) {
  const backs = [];
  for (const op of items) {
    const r = run(x, op, P);
    backs.push(r.back);
    x = r.y;
  }
  return { y: x, back: (gy) => backs.reduceRight((g, b) => b(g), gy) };
}

function residual(x, op, P) {
  const body = run(x, op.body, P);
  const short = run(x, op.shortcut, P);
  const sum = tensor(new Float32Array(body.y.data.length), body.y.shape);
  for (let i = 0; i < sum.data.length; i++) sum.data[i] = body.y.data[i] + short.y.data[i];
  const out = activation(sum, { op: "relu" });
  const back = (gy) => {
    const g = out.back(gy);
    const a = body.back(g);
    const b = short.back(g);
    const gx = new Float32Array(a.data.length);
    for (let i = 0; i < gx.length; i++) gx[i] = a.data[i] + b.data[i];
    return tensor(gx, x.shape);
  };
  return { y: out.y, back };
}

const identity = (x) => ({ y: x, back: (g) => g });

const OPS = {
  conv,
  dense,
  batchnorm,
  normalize,
  maxpool,
  avgpool,
  adaptive,
  relu: activation,
  act: activation,
  identity,
  flatten: (x) => ({ y: tensor(x.data, [x.data.length]), back: (g) => tensor(g.data, x.shape) }),
  seq: (x, op, P) => sequence(x, op.items, P),
  residual,
};

export function run(x, op, P) {
  const f = OPS[op.op];
  if (!f) throw new Error(`the engine has no op ${op.op}`);
  return f(x, op, P);
}

// Softmax as PyTorch computes it (max-shifted exp over the sum), rounded once to float32.
export function softmax(z) {
  let m = -Infinity;
  for (const v of z) m = Math.max(m, v);
  const e = Array.from(z, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return Float32Array.from(e, (v) => v / s);
}

// F.interpolate(mode="bilinear", align_corners=False) of an (h, w) map to (H, W).
export function bilinear(src, h, w, H, W) {
  const out = new Float32Array(H * W);
  const axis = (n, N) =>
    Array.from({ length: N }, (_, i) => {
      const s = Math.max(0, (n / N) * (i + 0.5) - 0.5);
      const i0 = Math.min(Math.floor(s), n - 1);
      const i1 = i0 < n - 1 ? i0 + 1 : i0;
      return [i0, i1, s - i0];
    });
  const ys = axis(h, H);
  const xs = axis(w, W);
  for (let Y = 0; Y < H; Y++) {
    const [y0, y1, ly] = ys[Y];
    for (let X = 0; X < W; X++) {
      const [x0, x1, lx] = xs[X];
      const top = (1 - lx) * src[y0 * w + x0] + lx * src[y0 * w + x1];
      const bot = (1 - lx) * src[y1 * w + x0] + lx * src[y1 * w + x1];
      out[Y * W + X] = (1 - ly) * top + ly * bot;
    }
  }
  return out;
}

function scaled(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) lo = Math.min(lo, v);
  const out = Float32Array.from(values, (v) => v - lo);
  for (const v of out) hi = Math.max(hi, v);
  return hi > 0 ? out.map((v) => v / hi) : out;
}

// Grad-CAM of features (C, h, w) with their gradient: relu(sum_c mean(grad_c) * A_c), min-max scaled,
// resized to (H, W), clipped to 0..1. Also the raw map, to say when it is all zero.
export function gradcamMap(feats, grad, H, W) {
  const [C, h, w] = feats.shape;
  const n = h * w;
  const raw = new Float64Array(n);
  for (let c = 0; c < C; c++) {
    let g = 0;
    for (let i = c * n; i < (c + 1) * n; i++) g += grad.data[i];
    const wc = Math.fround(g / n);
    for (let i = 0; i < n; i++) raw[i] += wc * feats.data[c * n + i];
  }
  const cam = Float32Array.from(raw, (v) => (v > 0 ? v : 0));
  const up = bilinear(scaled(cam), h, w, H, W);
  return { values: up.map((v) => Math.min(1, Math.max(0, v))), raw: cam };
}

// |d logit / d pixel|, max over channels, scaled by its maximum.
export function saliencyMap(gx) {
  const [C, H, W] = gx.shape;
  const n = H * W;
  const m = new Float32Array(n);
  for (let c = 0; c < C; c++) for (let i = 0; i < n; i++) m[i] = Math.max(m[i], Math.abs(gx.data[c * n + i]));
  let top = 0;
  for (const v of m) top = Math.max(top, v);
  return top > 0 ? m.map((v) => v / top) : m;
}

// Every stage's output for input x (C, H, W), with what the backward pass needs.
export function forward(model, x) {
  const outs = [];
  const backs = [];
  let h = x;
  for (const s of model.stages) {
    const r = run(h, s.ops, model.params);
    outs.push(r.y);
    backs.push(r.back);
    h = r.y;
  }
  return { outs, backs, logits: h.data, shape: h.shape };
}

// The gradient of logit `classIndex` (null: the predicted class, the first maximum) with respect to the
// Grad-CAM stage's output and to the input.
export function backward(model, fwd, classIndex) {
  const { logits } = fwd;
  let target = classIndex;
  if (target === null || target === undefined) {
    target = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[target]) target = i;
  }
  let g = tensor(new Float32Array(logits.length), fwd.shape);
  g.data[target] = 1;
  let camGrad = null;
  for (let i = model.stages.length - 1; i >= 0; i--) {
    if (model.stages[i].name === model.camLayer) camGrad = g;
    g = fwd.backs[i](g);
  }
  return { target, camGrad, inputGrad: g };
}
