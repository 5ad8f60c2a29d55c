// The filter playground's computation in the browser, for a published static site (no server to ask):
// `cnnlab.filters.apply(image, kernel, boundary="symm", mode="same", op)` on a gray image, as the
// server's /api/filter does it, on the site's sample photo (sample.png) or the page's input; run in a
// Web Worker (./filterworker.js).

// scipy's convolve2d 'same' is the centre of 'full', rounded towards the start; cross-correlation the other way
function samePadding(kh, kw, op) {
  return op === "conv" ? [kh >> 1, kw >> 1] : [(kh - 1) >> 1, (kw - 1) >> 1];
}

// np.pad(mode="symmetric"): the edge pixel repeated, then the image mirrored.
function symm(i, n) {
  let j = i;
  while (j < 0 || j >= n) j = j < 0 ? -j - 1 : 2 * n - j - 1;
  return j;
}

export function normalizeKernel(k) {
  const flat = k.flat();
  const total = flat.reduce((a, b) => a + b, 0);
  const size = flat.reduce((a, b) => a + Math.abs(b), 0);
  const by = Math.abs(total) > 1e-12 * size ? total : flat.filter((v) => v > 0).reduce((a, b) => a + b, 0);
  if (by === 0) throw new Error("cannot normalise an all-zero kernel");
  return k.map((row) => row.map((v) => v / by));
}

// The feature map of a gray (h, w) image: cross-correlation with the kernel (flipped first for "conv").
export function applyFilter(img, h, w, kernel, op) {
  const kh = kernel.length;
  const kw = kernel[0].length;
  const k = op === "conv" ? kernel.map((row) => [...row].reverse()).reverse() : kernel;
  const [pt, pl] = samePadding(kh, kw, op);
  const rows = Array.from({ length: kh + h }, (_, i) => symm(i - pt, h));
  const cols = Array.from({ length: kw + w }, (_, j) => symm(j - pl, w));
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let i = 0; i < kh; i++) {
        const base = rows[y + i] * w;
        for (let j = 0; j < kw; j++) s += img[base + cols[x + j]] * k[i][j];
      }
      out[y * w + x] = s;
    }
  }
  return out;
}

// An image file as gray values in 0..1 (ITU-R 601-2 luma, as Pillow's "L"), at most maxSide on its long
// side by keeping every n-th pixel (the server's rule).
export async function grayOf(blob, maxSide = 512) {
  const bmp = await createImageBitmap(blob);
  const cv = new OffscreenCanvas(bmp.width, bmp.height);
  const g = cv.getContext("2d");
  g.drawImage(bmp, 0, 0);
  const rgba = g.getImageData(0, 0, bmp.width, bmp.height).data;
  const f = Math.max(1, Math.ceil(Math.max(bmp.width, bmp.height) / maxSide));
  const h = Math.ceil(bmp.height / f);
  const w = Math.ceil(bmp.width / f);
  const data = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = 4 * (y * f * bmp.width + x * f);
      data[y * w + x] = (0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]) / 255;
    }
  }
  return { data, h, w, factor: f };
}

function stats(values) {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

// One request's answer, the document /api/filter gives: `sample()` gives the sample photo's gray values.
export async function filterImage(fields, sample) {
  const t0 = performance.now();
  const img = fields.file ? await grayOf(fields.file) : await sample();
  const rows = JSON.parse(fields.kernel);
  const kernel = fields.normalize ? normalizeKernel(rows) : rows;
  const out = applyFilter(img.data, img.h, img.w, kernel, fields.op);
  const tensor = (data) => ({ encoding: "array", shape: [img.h, img.w], data });
  return { kernel, input: tensor(img.data), output: tensor(out), stats: stats(out), seconds: (performance.now() - t0) / 1000, downsample: img.factor, computed: "browser" };
}

// The static site's answers to the playground's two questions (the server's /api/kernels and
// /api/filter): the kernels from playground.json, the feature maps from a Web Worker (./filterworker.js),
// so the page never waits on a filter.
export function localFilters(base) {
  let worker = null;
  let seq = 0;
  const pending = new Map();
  function start() {
    worker = new Worker(new URL("./filterworker.js", import.meta.url), { type: "module" });
    worker.onmessage = (e) => {
      const p = pending.get(e.data.id);
      pending.delete(e.data.id);
      if (p) (e.data.ok ? p.resolve(e.data.doc) : p.reject(new Error(e.data.error)));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      for (const p of pending.values()) p.reject(new Error(`the playground's worker stopped: ${e.message || "error"}`));
      pending.clear();
      worker = null; // the next request starts a fresh one
    };
  }
  return {
    kind: "static",
    async kernels() {
      const r = await fetch(new URL("playground.json", base));
      if (!r.ok) throw new Error(`playground.json could not be loaded (HTTP ${r.status})`);
      return r.json();
    },
    filter(fields) {
      if (!worker) start();
      const id = ++seq;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, fields, sampleUrl: new URL("sample.png", base).href });
      });
    },
  };
}
