// The stage kinds of cnnlab's models, forward and backward, on float32 tensors `{data: Float32Array, shape}`
// (C, H, W) or (N,), one image at a time. Sums are taken in double precision and rounded once to float32,
// so each value is within a float32 rounding of PyTorch's (which sums in float32, in its own order).
// Every forward returns `{y, back}`: `back(gy)` is the gradient with respect to the op's input (what
// Grad-CAM and saliency need; no parameter gradients). Semantics follow torch.nn.functional's: the
// output-size and window rules of max/avg/adaptive pooling (ceil_mode, padding, count_include_pad), the
// first maximum wins a tie, GELU in its exact erf form.

const f32 = (n) => new Float32Array(n);
export const tensor = (data, shape) => ({ data, shape });

// ---- convolution (cross-correlation, zero padding, any stride / dilation / groups) ---------------------

function convGeometry(x, op) {
  const [C, H, W] = x.shape;
  const [O, Cg, KH, KW] = op.shape;
  const [pt, pb, pl, pr] = op.padding;
  const [sh, sw] = op.stride;
  const [dh, dw] = op.dilation;
  const OH = Math.floor((H + pt + pb - dh * (KH - 1) - 1) / sh) + 1;
  const OW = Math.floor((W + pl + pr - dw * (KW - 1) - 1) / sw) + 1;
  if (C !== Cg * op.groups || OH < 1 || OW < 1) throw new Error(`conv: input ${x.shape.join("×")} does not fit weights ${op.shape.join("×")}`);
  return { C, H, W, O, Cg, KH, KW, pt, pl, sh, sw, dh, dw, OH, OW, Og: O / op.groups };
}

// The output rows (or columns) whose input index o * s - p + k * d lies inside 0..n-1.
function validRange(k, d, s, p, n, on) {
  const off = k * d - p;
  const lo = Math.max(0, Math.ceil(-off / s));
  const hi = Math.min(on - 1, Math.floor((n - 1 - off) / s));
  return [lo, hi, off];
}

// acc[o-plane] += w * x[ci-plane] for one (ky, kx): the inner loops run over a plane with no bounds checks.
function accumulatePlane(acc, aOff, x, xOff, w, g, ky, kx, back) {
  const [y0, y1, oy] = validRange(ky, g.dh, g.sh, g.pt, g.H, g.OH);
  const [x0, x1, ox] = validRange(kx, g.dw, g.sw, g.pl, g.W, g.OW);
  for (let r = y0; r <= y1; r++) {
    const irow = xOff + (r * g.sh + oy) * g.W + ox;
    const orow = aOff + r * g.OW;
    if (back) for (let c = x0; c <= x1; c++) acc[irow + c * g.sw] += w * x[orow + c];
    else for (let c = x0; c <= x1; c++) acc[orow + c] += w * x[irow + c * g.sw];
  }
}

export function conv(x, op, P) {
  const g = convGeometry(x, op);
  const wt = P[op.w];
  const bias = op.b ? P[op.b] : null;
  const plane = g.OH * g.OW;
  const acc = new Float64Array(g.O * plane);
  for (let o = 0; o < g.O; o++) {
    const grp = Math.floor(o / g.Og);
    if (bias) acc.fill(bias[o], o * plane, (o + 1) * plane);
    for (let c = 0; c < g.Cg; c++) {
      const ci = grp * g.Cg + c;
      for (let ky = 0; ky < g.KH; ky++) {
        for (let kx = 0; kx < g.KW; kx++) {
          const w = wt[((o * g.Cg + c) * g.KH + ky) * g.KW + kx];
          if (w !== 0) accumulatePlane(acc, o * plane, x.data, ci * g.H * g.W, w, g, ky, kx, false);
        }
      }
    }
  }
  const y = tensor(Float32Array.from(acc), [g.O, g.OH, g.OW]);
  const back = (gy) => {
    const gx = new Float64Array(g.C * g.H * g.W);
    for (let o = 0; o < g.O; o++) {
      const grp = Math.floor(o / g.Og);
      for (let c = 0; c < g.Cg; c++) {
        for (let ky = 0; ky < g.KH; ky++) {
          for (let kx = 0; kx < g.KW; kx++) {
            const w = wt[((o * g.Cg + c) * g.KH + ky) * g.KW + kx];
            if (w !== 0) accumulatePlane(gx, o * plane, gy.data, (grp * g.Cg + c) * g.H * g.W, w, g, ky, kx, true);
          }
        }
      }
    }
    return tensor(Float32Array.from(gx), x.shape);
  };
  return { y, back };
}

// ---- dense, batch norm, normalize ----------------------------------------------------------------------

export function dense(x, op, P) {
  const [O, I] = op.shape;
  if (x.data.length !== I) throw new Error(`dense: ${x.data.length} inputs, the weights take ${I}`);
  const W = P[op.w];
  const b = op.b ? P[op.b] : null;
  const out = f32(O);
  for (let o = 0; o < O; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0, r = o * I; i < I; i++) s += W[r + i] * x.data[i];
    out[o] = s;
  }
  const back = (gy) => {
    const gx = new Float64Array(I);
    for (let o = 0; o < O; o++) {
      const go = gy.data[o];
      if (go !== 0) for (let i = 0, r = o * I; i < I; i++) gx[i] += W[r + i] * go;
    }
    return tensor(Float32Array.from(gx), x.shape);
  };
  return { y: tensor(out, [O]), back };
}

// y = (x - m) * s + t per channel (batch norm at evaluation, normalize); back: gy * s.
function affine(x, scale, shift) {
  const C = x.shape[0];
  const per = x.data.length / C;
  const out = f32(x.data.length);
  for (let c = 0; c < C; c++) for (let i = c * per; i < (c + 1) * per; i++) out[i] = x.data[i] * scale[c] + shift[c];
  const back = (gy) => {
    const gx = f32(gy.data.length);
    for (let c = 0; c < C; c++) for (let i = c * per; i < (c + 1) * per; i++) gx[i] = gy.data[i] * scale[c];
    return tensor(gx, x.shape);
  };
  return { y: tensor(out, x.shape), back };
}

export function batchnorm(x, op, P) {
  const mean = P[op.mean];
  const v = P[op.var];
  const C = mean.length;
  const scale = new Float64Array(C);
  const shift = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const s = (op.w ? P[op.w][c] : 1) / Math.sqrt(v[c] + op.eps);
    scale[c] = s;
    shift[c] = (op.b ? P[op.b][c] : 0) - mean[c] * s;
  }
  return affine(x, scale, shift);
}

export function normalize(x, op) {
  const scale = op.std.map((s) => 1 / s);
  const shift = op.mean.map((m, c) => -m / op.std[c]);
  const C = x.shape[0];
  const per = x.data.length / C;
  const out = f32(x.data.length); // (x - mean) / std exactly as written: one rounding
  for (let c = 0; c < C; c++) for (let i = c * per; i < (c + 1) * per; i++) out[i] = (x.data[i] - Math.fround(op.mean[c])) / Math.fround(op.std[c]);
  const { back } = affine(x, scale, shift);
  return { y: tensor(out, x.shape), back };
}
