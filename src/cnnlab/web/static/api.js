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

// A tensor of the activations schema -> Float32Array (bit-identical to PyTorch's float32 values).
export function decodeTensor(t) {
  if (!t) return null;
  if (t.encoding === "list") return Float32Array.from(t.data, (v) => (v === null ? NaN : v));
  const bin = atob(t.data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Float32Array(bytes.buffer);
}
