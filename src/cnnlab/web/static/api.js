// Talking to the server: every call returns parsed JSON or throws an Error carrying the server's message.

export async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

export async function postForm(url, fields) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null) continue;
    if (v instanceof Blob) form.append(k, v, v.name || "image.png");
    else form.append(k, String(v));
  }
  const r = await fetch(url, { method: "POST", body: form });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function bytesOf(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

// A tensor of the activations schema (cnnlab.activations/2) -> Float32Array. float32 is bit-identical
// to PyTorch; uint8 is (q - zero_point) * scale per slice of the first axis, computed in double and
// rounded once to float32, exactly as cnnlab.explain.schema.decode_tensor does in Python.
export function decodeTensor(t) {
  if (!t) return null;
  if (t.encoding === "array") return t.data; // computed in this browser (a published site's engine)
  if (t.encoding === "list") return Float32Array.from(t.data, (v) => (v === null ? NaN : v));
  const bytes = bytesOf(t.data);
  if (t.dtype !== "uint8") return new Float32Array(bytes.buffer);
  const out = new Float32Array(bytes.length);
  const per = bytes.length / t.scale.length;
  for (let c = 0; c < t.scale.length; c++) {
    const s = t.scale[c];
    const z = t.zero_point[c];
    for (let i = c * per, end = i + per; i < end; i++) out[i] = (bytes[i] - z) * s;
  }
  return out;
}

// The stated precision of each slice of the first axis (half its uint8 step; 0 where exact).
function sliceErrors(t, shape) {
  if (!t || t.dtype !== "uint8") return new Float32Array(shape.length > 1 ? shape[0] : 1);
  return Float32Array.from(t.scale, (s) => s / 2);
}

// The stated precision of value i of a decoded layer.
export function errorAt(layer, i) {
  return layer.errors[Math.floor(i / layer.errPer)];
}

// Every layer of a document with its values decoded: `data` (Float32Array), `maxError` (the stated
// largest distance from PyTorch's float32: 0 where exact) and `errors` (the same per slice of `errPer`
// values: per channel of a stage of maps, whatever shape a derived stage gives them). A derived
// layer is recomputed from its source (identity: the same array; relu: max(x, 0)), as
// cnnlab.explain.schema.decode_layers does.
export function decodeLayers(doc) {
  const out = [];
  const byName = new Map();
  for (const l of doc.layers) {
    let data;
    let maxError = 0;
    let errors;
    if (l.derived) {
      const src = byName.get(l.derived.source);
      maxError = src.maxError;
      errors = src.errors; // the same flat layout: slice k covers values [k * per, (k + 1) * per)
      data = l.derived.op === "relu" ? src.data.map((v) => (v > 0 ? v : 0)) : src.data;
    } else {
      data = decodeTensor(l.values);
      maxError = l.values ? l.values.max_error || 0 : 0;
      errors = sliceErrors(l.values, l.shape);
    }
    const layer = { ...l, data, maxError, errors, errPer: data ? data.length / errors.length : 1 };
    byName.set(l.name, layer);
    out.push(layer);
  }
  return out;
}
