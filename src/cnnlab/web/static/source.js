// Where the image comes from, and how it travels to a model: a test image by its index (to the model whose
// test set it is) or by its pixels (to any other model of the same dataset, so models can be compared on
// one image); an upload, scaled down in the browser when it is too big to send; the sketch pad.
import { drawMap, drawRGB } from "./maps.js";

// The server refuses more than 16 megapixels or 8 MiB: a phone photo (24 MP, 10 MB) is scaled here first,
// to at most this many pixels on its longer side (far more than any model's input).
const MAX_PIXELS = 16e6;
const MAX_BYTES = 8 * 1024 * 1024;
const SCALED_SIDE = 2048;

function canvasBlob(canvas, type = "image/png", quality) {
  return new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("could not encode the image"))), type, quality),
  );
}

// An upload as it will be sent: `{blob, scaledFrom: [w, h] | null}`. Images within the server's limits
// are sent untouched (the same bytes `cnnlab predict` would read); bigger ones are drawn smaller. A file
// the browser cannot decode is sent as it is, and the server says what is wrong with it.
export async function prepareUpload(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return { blob: file, scaledFrom: null };
  }
  const { width: w, height: h } = bitmap;
  if (w * h <= MAX_PIXELS && file.size <= MAX_BYTES) {
    bitmap.close();
    return { blob: file, scaledFrom: null };
  }
  const f = Math.min(1, SCALED_SIDE / Math.max(w, h));
  const cv = document.createElement("canvas");
  cv.width = Math.max(1, Math.round(w * f));
  cv.height = Math.max(1, Math.round(h * f));
  const g = cv.getContext("2d");
  g.imageSmoothingEnabled = true;
  g.imageSmoothingQuality = "high";
  g.drawImage(bitmap, 0, 0, cv.width, cv.height);
  bitmap.close();
  const blob = await canvasBlob(cv, "image/jpeg", 0.92);
  const named = new File([blob], (file.name || "image").replace(/\.\w+$/, "") + "-scaled.jpg", { type: "image/jpeg" });
  return { blob: named, scaledFrom: [w, h] };
}

// The model's input pixels (a decoded input layer, 0..1) as a lossless PNG: a test image's pixels are
// k/255, so another model of the same dataset receives exactly the same image.
export function pixelsBlob(layer) {
  const [c, h, w] = layer.shape;
  const cv = document.createElement("canvas");
  if (c === 3) drawRGB(cv, layer.data, h, w);
  else drawMap(cv, layer.data, 0, h, w, { kind: "gray", lo: 0, hi: 1 }); // value k/255 -> byte k
  return canvasBlob(cv);
}

// The form fields that send `source` to model `model` (see the README's /api/explain). A test image goes
// by index to its own model and by pixels to the others; `null` asks for a random test image.
export async function sourceFields(source, model, { invert, sketchBlob }) {
  if (!source) return { random: true };
  if (source.kind === "test") {
    if (source.model === model.id) return { test_index: source.index };
    return { file: source.blob, invert: "false" };
  }
  if (source.kind === "upload") return { file: source.blob, invert };
  if (source.kind === "sketch") return { file: await sketchBlob(), invert: "false" };
  return { random: true };
}

// Can `source` be shown to `model`? Uploads and drawings: any model. A test image: models of its dataset.
export function travels(source, model) {
  if (!source || source.kind !== "test") return true;
  return source.model === model.id || (source.data === model.data && Boolean(source.blob));
}
