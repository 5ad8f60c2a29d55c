// The filter playground's Web Worker on a published site: each message {id, fields, sampleUrl} is
// answered {id, ok, doc} (or {id, ok: false, error}) with what /api/filter would send, computed here off
// the page's thread. The sample photo is fetched and decoded once.
import { filterImage, grayOf } from "./filterlocal.js";

let sample = null;

async function samplePhoto(url) {
  if (!sample) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`the sample photo could not be loaded (HTTP ${r.status})`);
    sample = await grayOf(await r.blob());
  }
  return sample;
}

self.onmessage = async (e) => {
  const { id, fields, sampleUrl } = e.data;
  try {
    const doc = await filterImage(fields, () => samplePhoto(sampleUrl));
    self.postMessage({ id, ok: true, doc });
  } catch (err) {
    self.postMessage({ id, ok: false, error: err.message || String(err) });
  }
};
