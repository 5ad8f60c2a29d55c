// A published model's files: safetensors weights (8-byte little-endian header length, a JSON header of
// {name: {dtype, shape, data_offsets}}, then the raw little-endian data), checked against the sha256
// published beside them before anything runs.

export function parseSafetensors(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 8) throw new Error("the weights file is truncated");
  const view = new DataView(buffer);
  const n = Number(view.getBigUint64(0, true));
  if (n > bytes.length - 8) throw new Error("the weights file is damaged (its header runs past its end)");
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch {
    throw new Error("the weights file is damaged (its header is not JSON)");
  }
  const start = 8 + n;
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (t.dtype !== "F32") throw new Error(`weights ${name}: dtype ${t.dtype}; the engine reads F32`);
    const [a, b] = t.data_offsets;
    if (b < a || start + b > bytes.length || (b - a) % 4) throw new Error(`weights ${name}: offsets outside the file`);
    const slice = buffer.slice(start + a, start + b); // a copy: aligned for Float32Array
    out[name] = new Float32Array(slice);
  }
  return out;
}

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

// SHA-256 in plain JS, for pages served over plain http from another machine (no crypto.subtle there).
function sha256Plain(buffer) {
  const src = new Uint8Array(buffer);
  const total = Math.ceil((src.length + 9) / 64) * 64;
  const m = new Uint8Array(total);
  m.set(src);
  m[src.length] = 0x80;
  const dv = new DataView(m.buffer);
  dv.setUint32(total - 8, Math.floor((src.length * 8) / 2 ** 32));
  dv.setUint32(total - 4, (src.length * 8) >>> 0);
  const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < total; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, h] = H;
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      [h, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
    }
    [a, b, c, d, e, f, g, h].forEach((v, i) => (H[i] = (H[i] + v) >>> 0));
  }
  return Array.from(H, (v) => v.toString(16).padStart(8, "0")).join("");
}

export async function sha256Hex(buffer) {
  if (globalThis.crypto && crypto.subtle) {
    const d = await crypto.subtle.digest("SHA-256", buffer);
    return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
  }
  return sha256Plain(buffer);
}

async function fetchOk(url, what) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${what} could not be loaded (HTTP ${r.status})`);
  return r;
}

// model.json, the checked weights and the gallery of one published model (base: its folder's URL).
export async function loadModelFiles(base) {
  const doc = await (await fetchOk(new URL("model.json", base), "model.json")).json();
  const [weights, sumText, gallery] = await Promise.all([
    fetchOk(new URL(doc.weights.file, base), "the weights").then((r) => r.arrayBuffer()),
    fetchOk(new URL(doc.weights.sha256, base), "the weights' sha256").then((r) => r.text()),
    fetchOk(new URL(doc.gallery.file, base), "the gallery").then((r) => r.arrayBuffer()),
  ]);
  const want = (sumText.trim().split(/\s+/)[0] || "").toLowerCase();
  const got = await sha256Hex(weights);
  if (got !== want) throw new Error(`the weights of ${doc.model.id} fail their sha256 check (damaged or changed); nothing was run`);
  return { doc, params: parseSafetensors(weights), gallery: new Uint8Array(gallery) };
}
