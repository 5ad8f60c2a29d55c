// Pooling as torch.nn.functional computes it: max (first maximum of the window wins, padding is -inf),
// average (count_include_pad, ceil_mode windows clipped at the padded edge) and adaptive (global) pooling.
import { tensor } from "./ops.js";

// PyTorch's pooling_output_shape: floor or ceil, and a ceil window must start inside the input or left pad.
function outSize(n, k, s, p, d, ceil) {
  let o = Math.floor((n + 2 * p - d * (k - 1) - 1 + (ceil ? s - 1 : 0)) / s) + 1;
  if (ceil && (o - 1) * s >= n + p) o -= 1;
  return o;
}

function maxWindows(x, op) {
  const [C, H, W] = x.shape;
  const [kh, kw] = op.kernel;
  const [sh, sw] = op.stride;
  const [ph, pw] = op.padding;
  const [dh, dw] = op.dilation || [1, 1];
  const OH = outSize(H, kh, sh, ph, dh, op.ceil);
  const OW = outSize(W, kw, sw, pw, dw, op.ceil);
  const out = new Float32Array(C * OH * OW);
  const arg = new Int32Array(C * OH * OW);
  for (let c = 0; c < C; c++) {
    const base = c * H * W;
    for (let oy = 0; oy < OH; oy++) {
      let y0 = oy * sh - ph;
      const y1 = Math.min(y0 + (kh - 1) * dh + 1, H);
      while (y0 < 0) y0 += dh;
      for (let ox = 0; ox < OW; ox++) {
        let x0 = ox * sw - pw;
        const x1 = Math.min(x0 + (kw - 1) * dw + 1, W);
        while (x0 < 0) x0 += dw;
        let best = -Infinity;
        let at = base + y0 * W + x0;
        for (let iy = y0; iy < y1; iy += dh) {
          for (let ix = x0; ix < x1; ix += dw) {
            const v = x.data[base + iy * W + ix];
            if (v > best || Number.isNaN(v)) {
              best = v;
              at = base + iy * W + ix;
            }
          }
        }
        const o = (c * OH + oy) * OW + ox;
        out[o] = best;
        arg[o] = at;
      }
    }
  }
  return { out, arg, shape: [C, OH, OW] };
}

export function maxpool(x, op) {
  const { out, arg, shape } = maxWindows(x, op);
  const back = (gy) => {
    const gx = new Float32Array(x.data.length);
    for (let i = 0; i < arg.length; i++) gx[arg[i]] += gy.data[i];
    return tensor(gx, x.shape);
  };
  return { y: tensor(out, shape), back };
}

// Each output's window (clipped to the input) and divisor, as PyTorch's CPU avg_pool2d chooses them.
function avgWindows(x, op) {
  const [C, H, W] = x.shape;
  const [kh, kw] = op.kernel;
  const [sh, sw] = op.stride;
  const [ph, pw] = op.padding;
  const OH = outSize(H, kh, sh, ph, 1, op.ceil);
  const OW = outSize(W, kw, sw, pw, 1, op.ceil);
  const wins = [];
  for (let oy = 0; oy < OH; oy++) {
    for (let ox = 0; ox < OW; ox++) {
      let y0 = oy * sh - ph;
      let x0 = ox * sw - pw;
      let y1 = Math.min(y0 + kh, H + ph);
      let x1 = Math.min(x0 + kw, W + pw);
      const padded = (y1 - y0) * (x1 - x0);
      y0 = Math.max(y0, 0);
      x0 = Math.max(x0, 0);
      y1 = Math.min(y1, H);
      x1 = Math.min(x1, W);
      const div = op.count_include_pad ? padded : (y1 - y0) * (x1 - x0);
      wins.push([y0, y1, x0, x1, div]);
    }
  }
  return { wins, C, H, W, OH, OW };
}

export function avgpool(x, op) {
  const g = avgWindows(x, op);
  return windowMean(x, g);
}

function windowMean(x, g) {
  const { wins, C, H, W, OH, OW } = g;
  const n = OH * OW;
  const out = new Float32Array(C * n);
  for (let c = 0; c < C; c++) {
    for (let k = 0; k < n; k++) {
      const [y0, y1, x0, x1, div] = wins[k];
      if (y0 >= y1 || x0 >= x1) continue;
      let s = 0;
      for (let iy = y0; iy < y1; iy++) for (let ix = x0; ix < x1; ix++) s += x.data[c * H * W + iy * W + ix];
      out[c * n + k] = s / div;
    }
  }
  const back = (gy) => {
    const gx = new Float64Array(x.data.length);
    for (let c = 0; c < C; c++) {
      for (let k = 0; k < n; k++) {
        const [y0, y1, x0, x1, div] = wins[k];
        const v = gy.data[c * n + k] / div;
        for (let iy = y0; iy < y1; iy++) for (let ix = x0; ix < x1; ix++) gx[c * H * W + iy * W + ix] += v;
      }
    }
    return tensor(Float32Array.from(gx), x.shape);
  };
  return { y: tensor(out, [C, OH, OW]), back };
}

// Adaptive pooling to (oh, ow): window i covers floor(i * n / o) .. ceil((i + 1) * n / o).
export function adaptive(x, op) {
  const [C, H, W] = x.shape;
  const [OH, OW] = op.size;
  const wins = [];
  for (let oy = 0; oy < OH; oy++) {
    for (let ox = 0; ox < OW; ox++) {
      const y0 = Math.floor((oy * H) / OH);
      const y1 = Math.ceil(((oy + 1) * H) / OH);
      const x0 = Math.floor((ox * W) / OW);
      const x1 = Math.ceil(((ox + 1) * W) / OW);
      wins.push([y0, y1, x0, x1, (y1 - y0) * (x1 - x0)]);
    }
  }
  if (op.mode === "avg") return windowMean(x, { wins, C, H, W, OH, OW });
  const out = new Float32Array(C * OH * OW);
  const arg = new Int32Array(out.length);
  for (let c = 0; c < C; c++) {
    wins.forEach(([y0, y1, x0, x1], k) => {
      let best = -Infinity;
      let at = c * H * W + y0 * W + x0;
      for (let iy = y0; iy < y1; iy++) {
        for (let ix = x0; ix < x1; ix++) {
          const v = x.data[c * H * W + iy * W + ix];
          if (v > best || Number.isNaN(v)) [best, at] = [v, c * H * W + iy * W + ix];
        }
      }
      out[c * wins.length + k] = best;
      arg[c * wins.length + k] = at;
    });
  }
  const back = (gy) => {
    const gx = new Float32Array(x.data.length);
    for (let i = 0; i < arg.length; i++) gx[arg[i]] += gy.data[i];
    return tensor(gx, x.shape);
  };
  return { y: tensor(out, [C, OH, OW]), back };
}
