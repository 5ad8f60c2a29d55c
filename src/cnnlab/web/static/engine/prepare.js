// An image file -> a model's input, as the server prepares an upload (cnnlab.explain.inputs and
// cnnlab.data.decode / fit): upright (EXIF), transparency over white, grayscale by Pillow's integer luma
// (0.299 R + 0.587 G + 0.114 B), fitted to the input size ("pad" centred on black or the border's median
// colour, "crop", "stretch") with antialiased bilinear resampling in the server's integer arithmetic:
// torch's uint8 kernel (Pillow's filter, int16 weights with as many fractional bits as fit) for "pad",
// "stretch" and same-shape crops, Pillow's own (22 bits) for a "crop" to another aspect ratio, as
// cnnlab.data.fit.fit_pixels does; pixels k / 255 in float32, inverted when asked or (auto) when a
// grayscale light-on-dark model gets a picture with a bright border. PNG, GIF, BMP and WebP give the
// server's pixels exactly with "pad" and "stretch"; a "crop" to another aspect ratio can differ from
// Pillow's box resampling by one level on some pixels (Pillow 13 runs its two passes in either order, by
// a rule not ported here; two in three random crops came out exact); JPEG decoders differ a little
// (Pillow may decode at a reduced DCT scale).

const MAX_PIXELS = 16e6; // the server's limit for an upload (the page scales bigger photos first)
const MIN_SIDE = 8;
const PILLOW_BITS = 22; // Pillow's fixed point: 32 - 8 - 2 fractional bits

// Python's round(): halves to even.
function pyRound(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// Pillow's precompute_coeffs for the bilinear (triangle) filter, support 1, in fixed point with `bits`
// fractional bits (normalize_coeffs_8bpc), or, with bits null, torch's: the most bits (up to 22) that keep
// the largest weight under 2^15, its int16 SIMD kernel's (_compute_index_ranges_int16_weights).
function coeffs(inSize, box0, box1, outSize, bits) {
  const in0 = Math.fround(box0); // Pillow takes the box's edges as C floats (whole sizes stay exact)
  const scale = Math.fround(Math.fround(box1) - in0) / outSize;
  const fscale = Math.max(scale, 1);
  const support = fscale;
  const ss = 1 / fscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = [];
  const kf = new Float64Array(outSize * ksize);
  let wmax = 0;
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    const w = [];
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const v = t < 1 ? 1 - t : 0;
      w.push(v);
      ww += v;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x] / ww : w[x];
      kf[xx * ksize + x] = k;
      if (ww !== 0 && k > wmax) wmax = k;
    }
    bounds.push([xmin, xmax]);
  }
  let prec = bits;
  if (prec === null) for (prec = 0; prec < 22 && Math.trunc(0.5 + wmax * 2 ** (prec + 1)) < 2 ** 15; prec++);
  const one = 2 ** prec;
  const kk = kf.map((k) => (k < 0 ? Math.trunc(-0.5 + k * one) : Math.trunc(0.5 + k * one)));
  return { ksize, bounds, kk, one };
}

// One separable pass of Pillow's ImagingResample (or torch's) over planes (C, h, w) -> along `axis` to n.
function pass(planes, h, w, axis, n, in0, in1, bits) {
  const inSize = axis === "x" ? w : h;
  const { ksize, bounds, kk, one } = coeffs(inSize, in0, in1, n, bits);
  const [oh, ow] = axis === "x" ? [h, n] : [n, w];
  const out = planes.map(() => new Uint8ClampedArray(oh * ow));
  planes.forEach((src, c) => {
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const o = axis === "x" ? x : y;
        const [xmin, xmax] = bounds[o];
        let ss = one / 2;
        for (let k = 0; k < xmax; k++) {
          const v = axis === "x" ? src[y * w + xmin + k] : src[(xmin + k) * w + x];
          ss += v * kk[o * ksize + k];
        }
        out[c][y * ow + x] = ss >= one * 256 ? 255 : ss <= 0 ? 0 : Math.floor(ss / one);
      }
    }
  });
  return out;
}

// Image.resize(size, BILINEAR, box) with Pillow's fixed point (bits 22), or torch's F.interpolate(...,
// antialias=True) on uint8 (bits null, no box): horizontal pass, then vertical, each only when needed.
export function resize(planes, h, w, tw, th, box = [0, 0, w, h], bits = null) {
  let cur = planes;
  let cw = w;
  if (tw !== w || box[0] || box[2] !== w) {
    cur = pass(cur, h, w, "x", tw, box[0], box[2], bits);
    cw = tw;
  }
  if (th !== h || box[1] || box[3] !== h) cur = pass(cur, h, cw, "y", th, box[1], box[3], bits);
  return cur;
}

// The lower median of each plane's outermost pixels (corners counted twice, as numpy concatenates them).
export function borderMedian(plane, h, w) {
  const edge = [];
  for (let x = 0; x < w; x++) edge.push(plane[x], plane[(h - 1) * w + x]);
  for (let y = 0; y < h; y++) edge.push(plane[y * w], plane[y * w + w - 1]);
  edge.sort((a, b) => a - b);
  return edge[Math.floor((edge.length - 1) / 2)];
}

// cnnlab.data.fit.fit_pixels for uint8 planes.
export function fit(planes, h, w, tw, th, resizeMode, fill) {
  if (resizeMode === "stretch" || w * th === h * tw) return w === tw && h === th ? planes : resize(planes, h, w, tw, th);
  if (resizeMode === "crop") {
    const scale = Math.max(tw / w, th / h);
    const nw = Math.max(tw, pyRound(w * scale));
    const nh = Math.max(th, pyRound(h * scale));
    const left = Math.floor((nw - tw) / 2);
    const top = Math.floor((nh - th) / 2);
    const box = [left / scale, top / scale, (left + tw) / scale, (top + th) / scale];
    return resize(planes, h, w, tw, th, box, PILLOW_BITS); // a box with fractional edges: Pillow's
  }
  const scale = Math.min(tw / w, th / h);
  const nw = Math.max(1, pyRound(w * scale));
  const nh = Math.max(1, pyRound(h * scale));
  const small = resize(planes, h, w, nw, nh);
  const x0 = Math.floor((tw - nw) / 2);
  const y0 = Math.floor((th - nh) / 2);
  return small.map((p) => {
    const out = new Uint8ClampedArray(tw * th).fill(fill === "border" ? borderMedian(p, nh, nw) : 0);
    for (let y = 0; y < nh; y++) out.set(p.subarray(y * nw, (y + 1) * nw), (y0 + y) * tw + x0);
    return out;
  });
}

async function decodePixels(blob) {
  let bmp;
  try {
    bmp = await createImageBitmap(blob, { imageOrientation: "from-image", colorSpaceConversion: "none" });
  } catch {
    throw new Error("the image: this browser cannot decode it (not an image, or damaged)");
  }
  const { width: w, height: h } = bmp;
  if (w * h > MAX_PIXELS) throw new Error(`the image: ${w}x${h} is over the ${MAX_PIXELS / 1e6}-megapixel limit`);
  if (Math.min(w, h) < MIN_SIDE) throw new Error(`the image: ${w}x${h} is under ${MIN_SIDE} pixels on a side`);
  const cv = new OffscreenCanvas(w, h);
  const g = cv.getContext("2d", { willReadFrequently: true });
  g.fillStyle = "#fff"; // transparent pixels: over white, as a viewer shows them
  g.fillRect(0, 0, w, h);
  g.drawImage(bmp, 0, 0);
  bmp.close();
  return { rgba: g.getImageData(0, 0, w, h).data, w, h };
}

// An uploaded file -> {x: Float32Array (C*H*W), info} for a model with input (C, H, W) and options.
export async function prepareFile(blob, [C, H, W], opts, invert) {
  const { rgba, w, h } = await decodePixels(blob);
  const n = w * h;
  let planes;
  if (C === 1) {
    const L = new Uint8ClampedArray(n);
    for (let i = 0; i < n; i++) L[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >>> 16;
    planes = [L];
  } else {
    planes = [0, 1, 2].map((c) => Uint8ClampedArray.from({ length: n }, (_, i) => rgba[4 * i + c]));
  }
  const fitted = fit(planes, h, w, W, H, opts.resize, opts.fill);
  let inverted = invert === "true";
  if (invert === "auto") {
    const med = fitted.map((p) => borderMedian(p, H, W));
    inverted = C === 1 && opts.light_on_dark && med.reduce((a, b) => a + b, 0) / med.length > 127.5;
  }
  const x = new Float32Array(C * H * W);
  fitted.forEach((p, c) => {
    for (let i = 0; i < H * W; i++) {
      const v = Math.fround(p[i] / 255);
      x[c * H * W + i] = inverted ? Math.fround(1 - v) : v;
    }
  });
  return { x, info: { original_size: [h, w], inverted, resized: h !== H || w !== W } };
}
