// The data source of a published static site: site.json lists the models; the Web Worker in
// ./engine/worker.js loads each one's files (weights checked against their sha256) and answers explain and
// weights calls with the documents the server would send. Requests are answered in order of arrival.

export function siteSource(siteUrl) {
  let worker = null;
  let seq = 0;
  let site = null;
  const pending = new Map();

  function fail(message) {
    for (const p of pending.values()) p.reject(new Error(message));
    pending.clear();
  }
  function start() {
    worker = new Worker(new URL("./engine/worker.js", import.meta.url), { type: "module" });
    worker.onmessage = (e) => {
      const p = pending.get(e.data.id);
      if (!p) return;
      pending.delete(e.data.id);
      if (e.data.ok) p.resolve(e.data.result);
      else p.reject(new Error(e.data.error));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      fail(`the in-browser engine stopped: ${e.message || "error"}`);
      worker = null; // the next call starts a fresh one
    };
  }
  function call(msg) {
    if (!worker) start();
    return new Promise((resolve, reject) => {
      const id = ++seq;
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, ...msg });
    });
  }
  function base(id) {
    const entry = site && site.models.find((m) => m.id === id);
    if (!entry) throw new Error(`Unknown model ${JSON.stringify(id)}`);
    return new URL(entry.path, siteUrl).href;
  }

  return {
    kind: "static",
    async models() {
      const r = await fetch(siteUrl);
      if (!r.ok) throw new Error(`site.json could not be loaded (HTTP ${r.status})`);
      site = await r.json();
      if (site.models.length) call({ type: "load", base: base(site.models[0].id) }).catch(() => {}); // start early
      return { models: site.models, unavailable: site.unavailable || [] };
    },
    explain: async (fields) => call({ type: "explain", base: base(fields.model), fields }),
    gallery: async (model, n) => call({ type: "gallery", base: base(model), n }),
    weights: async (model, layer, channel) => call({ type: "weights", base: base(model), layer, channel: channel ?? null }),
  };
}
