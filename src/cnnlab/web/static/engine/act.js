// Element-wise activations with their derivatives, in double precision (one rounding to float32 at the
// end), as torch.nn defines them: GELU in the exact erf form (PyTorch's default) or its tanh form.
import { tensor } from "./ops.js";

// erf to double precision: its Taylor series near 0, a continued fraction for erfc further out.
export function erf(x) {
  const ax = Math.abs(x);
  if (ax > 6) return Math.sign(x);
  if (ax < 2.5) {
    let term = x;
    let sum = x;
    const x2 = x * x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated bottom-up
  let f = ax;
  for (let k = 60; k >= 1; k--) f = ax + k / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const K = Math.sqrt(2 / Math.PI);
const sigmoid = (x) => 1 / (1 + Math.exp(-x));
const softplus = (x) => (x > 20 ? x : Math.log1p(Math.exp(x)));

// [f(x), f'(x)] for each function; `a` is ELU's alpha or LeakyReLU's slope.
const FUNCTIONS = {
  relu: (x) => [x > 0 ? x : 0, x > 0 ? 1 : 0],
  gelu: (x) => {
    const cdf = 0.5 * (1 + erf(x * SQRT1_2));
    return [x * cdf, cdf + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x)];
  },
  gelu_tanh: (x) => {
    const inner = K * (x + 0.044715 * x * x * x);
    const t = Math.tanh(inner);
    return [0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K * (1 + 3 * 0.044715 * x * x)];
  },
  silu: (x) => {
    const s = sigmoid(x);
    return [x * s, s * (1 + x * (1 - s))];
  },
  elu: (x, a) => (x > 0 ? [x, 1] : [a * Math.expm1(x), a * Math.exp(x)]),
  leakyrelu: (x, a) => (x > 0 ? [x, 1] : [x * a, a]),
  tanh: (x) => {
    const t = Math.tanh(x);
    return [t, 1 - t * t];
  },
  sigmoid: (x) => {
    const s = sigmoid(x);
    return [s, s * (1 - s)];
  },
  hardswish: (x) => {
    if (x <= -3) return [0, 0];
    if (x >= 3) return [x, 1];
    return [(x * (x + 3)) / 6, (2 * x + 3) / 6];
  },
  mish: (x) => {
    const t = Math.tanh(softplus(x));
    return [x * t, t + x * (1 - t * t) * sigmoid(x)];
  },
};

export function activation(x, op) {
  const fn = FUNCTIONS[op.op === "relu" ? "relu" : op.fn];
  if (!fn) throw new Error(`unknown activation ${op.fn}`);
  const n = x.data.length;
  const out = new Float32Array(n);
  const slope = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const [v, d] = fn(x.data[i], op.alpha);
    out[i] = v;
    slope[i] = d;
  }
  const back = (gy) => {
    const gx = new Float32Array(n);
    for (let i = 0; i < n; i++) gx[i] = gy.data[i] * slope[i];
    return tensor(gx, x.shape);
  };
  return { y: tensor(out, x.shape), back };
}
