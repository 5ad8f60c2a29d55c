// One front end, two data sources: the page asks this interface for models, explanations and weights.
// `cnnlab serve` answers over HTTP (the JSON API); a site written by `cnnlab publish` (its index.html
// carries <meta name="cnnlab-site">) answers in the browser, from a Web Worker running the published
// models (./sitesource.js). Both give the same documents (cnnlab.activations/2).
import { getJSON, postForm } from "./api.js";
import { siteSource } from "./sitesource.js";

function httpSource() {
  return {
    kind: "server",
    models: () => getJSON("/api/models"),
    explain: (fields) => postForm("/api/explain", fields),
    weights: (model, layer, channel) => getJSON(`/api/weights?${new URLSearchParams({ model, layer, channel })}`),
  };
}

function choose() {
  const meta = document.querySelector('meta[name="cnnlab-site"]');
  return meta ? siteSource(new URL(meta.content, document.baseURI).href) : httpSource();
}

export const dataSource = choose();
