// The page's state, in one store. Every module reads `state`; whatever changes a part the URL carries
// (model, image, open stage and position, class, compare, overlay) reaches the URL through the store
// itself, written once per turn of the event loop: no view writes the URL by hand. Values are replaced,
// not mutated in place (state.selected = {...state.selected, pos}), so every change passes through here.
import { writeUrl } from "./urlstate.js";

const URL_KEYS = new Set(["model", "source", "selected", "classIndex", "compare", "overlay"]);

// `initial` wrapped so that setting one of URL_KEYS schedules `onUrl(state)` (once, however many are set).
export function createStore(initial, onUrl = writeUrl) {
  let queued = false;
  const store = new Proxy(initial, {
    set(target, key, value) {
      target[key] = value;
      if (URL_KEYS.has(key) && !queued) {
        queued = true;
        queueMicrotask(() => {
          queued = false;
          onUrl(store);
        });
      }
      return true;
    },
  });
  return store;
}

export const state = createStore({
  models: [],
  unavailable: [], // runs found but not loadable: {id, error}
  model: null,
  doc: null,
  layers: [],
  source: null, // {kind: "test", index, label, model, data, blob} | {kind: "upload", blob, scaledFrom} | {kind: "sketch"}
  perStage: 8,
  scaleMode: "stage", // the overview's colour scale: one per stage, per map, or for the whole network
  overlay: "none", // over the input: "none", "gradcam" or "saliency"
  weights: new Map(),
  seq: 0,
  selected: null, // {layer, channel, pos, unit}
  classIndex: null, // the class Grad-CAM and saliency explain (null: the predicted one)
  compare: new Set(), // replaced, never changed in place (see toggleCompare)
  opener: null, // the element that opened the detail panel: focus goes back to it on close
  pending: null, // a view to open once its stage is on screen (from the URL): {layer, channel, pos, unit}
  restoring: false, // the first render of a view restored from the URL
  sketch: null, // the drawing pad
});

export function toggleCompare(id, on) {
  const next = new Set(state.compare);
  if (on) next.add(id);
  else next.delete(id);
  state.compare = next;
}

// What the modules that cannot import each other call (requests -> views -> requests): filled by app.js.
export const actions = {};

export const $ = (id) => document.getElementById(id);

export function setStatus(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}
