// The input card (the image as the model sees it, in its own colours, with Grad-CAM or saliency over it)
// and the prediction card (the top classes as buttons: each asks where the model looks for that class),
// plus the sentence a screen reader hears when the prediction changes.
import { heat, legend } from "./colors.js";
import { num, pct, t } from "./i18n.js";
import { drawHeat, drawMap, drawRGB, el } from "./maps.js";

const $ = (id) => document.getElementById(id);

export function drawInput(state, heatOf) {
  const input = state.layers[0];
  const cv = $("input-view");
  const [c, h, w] = input.shape;
  if (c === 3) drawRGB(cv, input.data, h, w);
  else drawMap(cv, input.data, 0, h, w, { kind: "gray", lo: 0, hi: 1 });
  const which = state.overlay;
  const doc = state.doc;
  const hm = which === "gradcam" ? doc.gradcam : which === "saliency" ? doc.saliency : null;
  if (hm) drawHeat(cv, heatOf(hm), h, w, heat, 0.6);
  const note = $("overlay-note");
  const leg = $("overlay-legend");
  leg.replaceChildren();
  if (hm && hm.method === "gradcam" && !heatOf(hm).some((v) => v > 0)) {
    note.textContent = t("heat.gradcamZero", { layer: hm.layer || "", label: hm.label });
    leg.append(legend({ kind: "heat", lo: 0, hi: 1 }, { label: t("heat.scale") }));
  } else if (hm) {
    note.textContent = t(`heat.${hm.method}`, { layer: hm.layer || "", label: hm.label });
    leg.append(legend({ kind: "heat", lo: 0, hi: 1 }, { label: t("heat.scale") }));
  } else if (which === "gradcam" && !doc.gradcam) {
    note.textContent = t("overlay.noGradcam", { name: doc.model.name });
  } else note.textContent = "";
  const opt = $("overlay").querySelector("option[value='gradcam']");
  opt.textContent = doc.gradcam ? t("overlay.gradcam") : t("overlay.gradcamNone");
  cv.setAttribute("aria-label", t(c === 3 ? "input.aria3" : "input.aria", { w, h }) + (hm ? " " + note.textContent : ""));
}

export function sourceText(state) {
  const doc = state.doc;
  const s = state.source;
  let src;
  if (s && s.kind === "test") src = s.model === doc.model.id ? t("src.test", { i: s.index }) : t("src.testOf", { i: s.index, model: s.model });
  else if (s && s.kind === "sketch") src = t("src.sketch");
  else src = t("src.upload");
  const notes = [];
  if (s && s.kind === "upload" && s.scaledFrom) notes.push(t("src.scaled", { w: s.scaledFrom[0], h: s.scaledFrom[1] }));
  if (doc.input.resized) notes.push(t("src.resized", { w: doc.input.original_size[1], h: doc.input.original_size[0] }));
  if (doc.input.inverted) notes.push(t("src.inverted"));
  if (notes.length) src += ` (${notes.join(", ")})`;
  const truth = doc.input.label ?? (s && s.kind === "test" ? s.label : null);
  if (truth === null || truth === undefined) return src;
  const p = doc.prediction;
  return `${src}; ${t("src.truth", { label: doc.model.classes[truth] })} ${truth === p.index ? "✓" : "✗"}`;
}

export function drawPrediction(state, { onClass }) {
  const p = state.doc.prediction;
  $("pred-label").textContent = p.label;
  $("pred-prob").textContent = pct(p.probability);
  $("pred-truth").textContent = sourceText(state);
  const bars = $("pred-bars");
  bars.replaceChildren();
  const chosen = state.classIndex ?? p.index;
  for (const s of p.top) {
    const b = el("button", "pbar-row" + (s.index === chosen ? " on" : ""));
    b.type = "button";
    b.dataset.index = String(s.index);
    b.setAttribute("aria-pressed", String(s.index === chosen));
    b.setAttribute("aria-describedby", "pred-hint");
    const fill = el("span", "pf");
    fill.style.width = `${(100 * s.probability).toFixed(1)}%`;
    const track = el("span", "pt");
    track.append(fill);
    b.append(el("span", "pl", s.label), " ", track, el("span", "pv", pct(s.probability)));
    b.addEventListener("click", () => onClass(s.index));
    bars.append(b);
  }
  const pick = $("cam-class");
  pick.replaceChildren();
  state.doc.model.classes.forEach((name, i) => {
    const o = el("option", "", i === p.index ? t("pred.predicted", { label: name }) : name);
    o.value = String(i);
    pick.append(o);
  });
  pick.value = String(chosen);
  $("pred-live").textContent = t("pred.live", { label: p.label, p: num(100 * p.probability, 1), model: state.doc.model.id });
}

export function clearPrediction(message) {
  $("pred-label").textContent = "—";
  $("pred-prob").textContent = "";
  $("pred-truth").textContent = message;
  $("pred-bars").replaceChildren();
  $("pred-live").textContent = message;
}
