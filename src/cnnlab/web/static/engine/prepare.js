// An image file -> a model's input, as the server prepares an upload (cnnlab.explain.inputs and
// cnnlab.data.decode / fit): upright (EXIF), transparency over white, grayscale by Pillow's integer luma
// (0.299 R + 0.587 G + 0.114 B), fitted to the input size ("pad" centred on black or the border's median
// colour, "crop", "stretch") with Pillow's antialiased bilinear resampling ported to the integer (8-bit
// fixed point) arithmetic Pillow uses, pixels k / 255 in float32, inverted when asked or (auto) when a
// grayscale light-on-dark model gets a picture with a bright border. PNG, GIF, BMP and WebP give the
// server's pixels exactly; JPEG decoders differ a little (Pillow may decode at a reduced DCT scale).

const MAX_PIXELS = 16e6; // the server's limit for an upload (the page scales bigger photos first)
const MIN_SIDE = 8;
const PRECISION = 22; // Pillow: 32 - 8 - 2 bits
const ONE = 2 ** PRECISION;

// Python's round(): halves to even.
function pyRound(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle) filter, support 1.
function coeffs(inSize, in0, in1, outSize) {
  const scale = (in1 - in0) / outSize;
  const fscale = Math.max(scale, 1);
  const support = fscale;
  const ss = 1 / fscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = [];
  const kk = new Float64Array(outSize * ksize);
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
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    bounds.push([xmin, xmax]);
  }
  return { ksize, bounds, kk };
}

const clip8 = (ss) => (ss >= ONE * 256 ? 255 : ss <= 0 ? 0 : Math.floor(ss / ONE));

// One separable pass of Pillow's ImagingResample over planes (C, h, w) -> along `axis` to n.
function pass(planes, h, w, axis, n, in0, in1) {
  const inSize = axis === "x" ? w : h;
  const { ksize, bounds, kk } = coeffs(inSize, in0, in1, n);
  const [oh, ow] = axis === "x" ? [h, n] : [n, w];
  const out = planes.map(() => new Uint8ClampedArray(oh * ow));
  planes.forEach((src, c) => {
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const o = axis === "x" ? x : y;
        const [xmin, xmax] = bounds[o];
        let ss = ONE / 2;
        for (let k = 0; k < xmax; k++) {
          const v = axis === "x" ? src[y * w + xmin + k] : src[(xmin + k) * w + x];
          ss += v * kk[o * ksize + k];
        }
        out[c][y * ow + x] = clip8(ss);
      }
    }
  });
  return out;
}

// Pillow's Image.resize(size, BILINEAR, box): horizontal pass, then vertical, each only when needed.
export function resize(planes, h, w, tw, th, box = [0, 0, w, h]) {
  let cur = planes;
  let cw = w;
  if (tw !== w || box[0] || box[2] !== w) {
    cur = pass(cur, h, w, "x", tw, box[0], box[2]);
    cw = tw;
  }
  if (th !== h || box[1] || box[3] !== h) cur = pass(cur, h, cw, "y", th, box[1], box[3]);
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

// cnnlab.data.fit.fit_image for uint8 planes.
export function fit(planes, h, w, tw, th, resizeMode, fill) {
  if (resizeMode === "stretch" || w * th === h * tw) return w === tw && h === th ? planes : resize(planes, h, w, tw, th);
  if (resizeMode === "crop") {
    const scale = Math.max(tw / w, th / h);
    const nw = Math.max(tw, pyRound(w * scale));
    const nh = Math.max(th, pyRound(h * scale));
    const left = Math.floor((nw - tw) / 2);
    const top = Math.floor((nh - th) / 2);
    return resize(planes, h, w, tw, th, [left / scale, top / scale, (left + tw) / scale, (top + th) / scale]);
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
