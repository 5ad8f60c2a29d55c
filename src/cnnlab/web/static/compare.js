// Compare: the models side by side on the same image (the tutorial's own experiment, an MLP against
// CNNs), each with its top classes and where it looked. Each card is one /api/explain call on the image
// the page shows, sent to every model the same way (see source.js).
import { heat, legend } from "./colors.js";
import { pct, t } from "./i18n.js";
import { decodeTensor } from "./api.js";
import { drawHeat, drawRGB, drawMap, el } from "./maps.js";
import { chooseModel, explainFor } from "./requests.js";
import { travels } from "./source.js";
import { $, state, toggleCompare } from "./state.js";

function inputCanvas(doc, layer0) {
  const cv = el("canvas", "cmp-input");
  const [c, h, w] = layer0.shape;
  if (c === 3) drawRGB(cv, layer0.data, h, w);
  else drawMap(cv, layer0.data, 0, h, w, { kind: "gray", lo: 0, hi: 1 });
  const hm = doc.gradcam || doc.saliency;
  if (hm) drawHeat(cv, decodeTensor(hm.values), h, w, heat, 0.6);
  cv.setAttribute("role", "img");
  const what = hm ? t(`heat.${hm.method}`, { layer: hm.layer || "", label: hm.label }) : "";
  cv.setAttribute("aria-label", `${t("cmp.input")} ${what}`);
  return { cv, hm };
}

function card(doc, layer0, { current, onOpen }) {
  const box = el("article", "cmp-card" + (current ? " current" : ""));
  box.dataset.model = doc.model.id;
  const head = el("h3", "", doc.model.id);
  box.append(head, el("p", "muted small", `${doc.model.name} · ${t("model.params", { n: doc.model.params })}`));
  const { cv, hm } = inputCanvas(doc, layer0);
  box.append(cv);
  const note = hm
    ? t(hm.method === "gradcam" ? "cmp.gradcam" : "cmp.saliencyOnly", { layer: hm.layer || "" })
    : t("cmp.none");
  box.append(el("p", "muted small", note));
  const p = doc.prediction;
  const list = el("ol", "cmp-top");
  for (const s of p.top.slice(0, 3)) {
    const li = el("li");
    const fill = el("span", "pf");
    fill.style.width = `${(100 * s.probability).toFixed(1)}%`;
    const track = el("span", "pt");
    track.append(fill);
    li.append(el("span", "pl", s.label), track, el("span", "pv", pct(s.probability)));
    list.append(li);
  }
  box.append(list);
  if (!current) {
    const b = el("button", "", t("cmp.open", { id: doc.model.id }));
    b.type = "button";
    b.addEventListener("click", () => onOpen(doc.model.id));
    box.append(b);
  } else box.append(el("p", "small", t("cmp.current")));
  return box;
}

// Draw the panel: the model choice, then one card per model (the current one first).
function renderCompare(root, { onOpen, onToggle, canUse }) {
  root.replaceChildren(el("h2", "", t("cmp.title")), el("p", "muted small", t("cmp.text")));
  const fs = el("fieldset", "cmp-pick");
  fs.append(el("legend", "", t("cmp.pick")));
  for (const m of state.models) {
    if (m.id === state.model.id) continue;
    const label = el("label", "check");
    const box = el("input");
    box.type = "checkbox";
    box.value = m.id;
    box.checked = state.compare.has(m.id);
    const ok = canUse(m);
    box.disabled = !ok;
    box.addEventListener("change", () => onToggle(m.id, box.checked));
    label.append(box, el("span", "", ` ${m.id} (${m.name}${m.test_accuracy ? `, ${pct(m.test_accuracy)}` : ""})`));
    if (!ok) label.append(el("span", "muted small", ` — ${t("cmp.otherData", { data: m.data })}`));
    fs.append(label);
  }
  root.append(fs);
  const cards = el("div", "cmp-cards");
  root.append(cards, legend({ kind: "heat", lo: 0, hi: 1 }, { label: t("heat.scale") }));
  if (!state.doc) return;
  cards.append(card(state.doc, state.layers[0], { current: true }));
  for (const id of state.compare) {
    const m = state.models.find((x) => x.id === id);
    if (!m || !canUse(m)) continue;
    const slot = el("article", "cmp-card pending");
    slot.dataset.model = id;
    slot.append(el("h3", "", id), el("p", "muted small", t("cmp.loading")));
    cards.append(slot);
    explainFor(m)
      .then(({ doc, layer0 }) => {
        if (slot.isConnected) slot.replaceWith(card(doc, layer0, { current: false, onOpen }));
      })
      .catch((err) => {
        slot.classList.remove("pending");
        slot.replaceChildren(el("h3", "", id), el("p", "error", err.message));
      });
  }
}

// The panel for the page's state: the models ticked in the store, each asked about the image in view.
export function drawCompare() {
  renderCompare($("compare"), {
    canUse: (m) => travels(state.source, m) || (state.source?.kind === "test" && state.source.data === m.data),
    onToggle: (id, on) => {
      toggleCompare(id, on);
      drawCompare();
    },
    onOpen: (id) => {
      $("model").value = id;
      chooseModel(id);
    },
  });
}
