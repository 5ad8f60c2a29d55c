// The explainer page: pick a model and an image, see every stage, open any stage to see how it computes,
// compare models on the same image, read the short article beside it. This module starts the page and
// wires its parts: the store (state.js, which keeps the URL), the requests (requests.js), what is shown
// (view.js), compare (compare.js), the controls (controls.js) and the filter playground.
import { drawCompare } from "./compare.js";
import { wireControls } from "./controls.js";
import { dataSource } from "./datasource.js";
import { LANGS, applyStatic, getLang, initLang, onLangChange, setLang, t } from "./i18n.js";
import { makePlayground } from "./playground.js";
import { chooseModel, explain, explainClass, pickTest, useFile } from "./requests.js";
import { makeSketch } from "./sketch.js";
import { pixelsBlob } from "./source.js";
import { $, actions, setStatus, state } from "./state.js";
import { readUrl } from "./urlstate.js";
import { closeDetail, describeModel, relayout, render, setOverlay, showUnavailable } from "./view.js";

window.cnnlab = state; // for the curious (and the browser tests): everything the page shows
let playground = null;
Object.assign(actions, {
  explainClass, pickTest, drawCompare,
  sendKernel: (matrix, name) => playground && playground.useKernel(matrix, name),
  inputChanged: () => playground && playground.inputChanged(),
});

function listModels(models) {
  const sel = $("model");
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = `${m.id} (${m.name})`;
    sel.append(o);
  }
}

// The first result, as the URL asks: its model (or the model whose test image it is), image, class,
// overlay, models to compare and open view; then the URL's model, when the image came from another.
async function restore(url, models) {
  const first = models.find((m) => m.id === (url.from || url.model)) || models[0];
  state.compare = new Set(url.compare.filter((id) => models.some((m) => m.id === id)));
  if (state.compare.size) $("compare").hidden = false;
  $("compare-toggle").setAttribute("aria-expanded", String(!$("compare").hidden));
  state.classIndex = url.classIndex;
  if (url.overlay) setOverlay(url.overlay);
  const view = url.stage ? { layer: url.stage, channel: url.channel, pos: url.pos, unit: url.unit } : null;
  state.restoring = Boolean(view);
  state.pending = view;
  if (url.test !== null) state.source = { kind: "test", index: url.test, model: first.id, data: first.data, blob: null };
  $("model").value = first.id;
  state.model = first;
  describeModel();
  await explain();
  const target = models.find((m) => m.id === url.model);
  if (url.from && target && target.id !== first.id) {
    state.pending = view;
    $("model").value = target.id;
    await chooseModel(target.id);
  }
}

function startPlayground() {
  const currentImage = () => (state.layers.length ? pixelsBlob(state.layers[0]) : null);
  makePlayground($("playground"), { source: dataSource, currentImage })
    .then((pg) => {
      playground = pg;
      return pg.run();
    })
    .catch((err) => {
      $("filter-status").textContent = err.message;
    });
}

async function init() {
  initLang();
  const url = readUrl();
  state.sketch = makeSketch($("sketch"), {
    onChange: () => {
      state.source = { kind: "sketch" };
      state.classIndex = null;
      explain();
    },
  });
  wireControls({ state, explain, useFile, chooseModel, closeDetail, drawCompare, render, explainClass, setOverlay, setLang, getLang, LANGS });
  onLangChange(() => {
    applyStatic();
    showUnavailable();
    if (state.model) describeModel();
    if (state.doc) render(state.doc);
  });
  window.addEventListener("resize", relayout);
  try {
    const { models, unavailable } = await dataSource.models();
    state.models = models;
    state.unavailable = unavailable || [];
    showUnavailable();
    listModels(models);
    document.body.dataset.ready = "1";
    window.cnnlabInteractiveMs = performance.now();
    if (!models.length) setStatus(t("status.noRuns"), true);
    else await restore(url, models);
  } catch (err) {
    setStatus(err.message, true);
  }
  startPlayground();
}

init();
