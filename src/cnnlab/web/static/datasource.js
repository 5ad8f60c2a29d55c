// One front end, two data sources: the page asks this interface for models, explanations and weights,
// and the filter playground for its kernels and feature maps.
// `cnnlab serve` answers over HTTP (the JSON API); a site written by `cnnlab publish` (its index.html
// carries <meta name="cnnlab-site">) answers in the browser, from a Web Worker running the published
// models (./sitesource.js). Both give the same documents (cnnlab.activations/2).
import { getJSON, postForm } from "./api.js";

function httpSource() {
  return {
    kind: "server",
    models: () => getJSON("/api/models"),
    explain: (fields) => postForm("/api/explain", fields),
    weights: (model, layer, channel) => getJSON(`/api/weights?${new URLSearchParams({ model, layer, channel })}`),
    kernels: () => getJSON("/api/kernels"),
    filter: (fields) => postForm("/api/filter", fields),
  };
}

// A published site's source, loaded only there (the served page never fetches the engine's modules).
function staticSource(siteUrl) {
  const ready = import("./sitesource.js").then(({ siteSource }) => siteSource(siteUrl));
  const later = (name) => async (...args) => (await ready)[name](...args);
  // the filter playground's kernels and feature maps, computed in this browser (./filterlocal.js), loaded
  // when the playground first asks
  let filters = null;
  const here = (name) => async (...args) => {
    if (!filters) filters = import("./filterlocal.js").then(({ localFilters }) => localFilters(siteUrl));
    return (await filters)[name](...args);
  };
  return {
    kind: "static", models: later("models"), explain: later("explain"), weights: later("weights"), gallery: later("gallery"),
    kernels: here("kernels"), filter: here("filter"),
  };
}

function choose() {
  const meta = document.querySelector('meta[name="cnnlab-site"]');
  return meta ? staticSource(new URL(meta.content, document.baseURI).href) : httpSource();
}

export const dataSource = choose();
