// The example gallery of a published site: the first test images of the model's own test split, each a
// button with its true class; a click explains that image (the same source as a random test image, so
// the URL, compare and a model switch treat it alike). Shown when the data source has a gallery.
import { t } from "./i18n.js";
import { drawMap, drawRGB, el } from "./maps.js";

const SHOWN = 12;

function thumb(g, i) {
  const [c, h, w] = g.shape;
  const n = c * h * w;
  const data = Float32Array.from(g.images.subarray(i * n, (i + 1) * n), (v) => v / 255);
  const cv = el("canvas");
  cv.setAttribute("aria-hidden", "true");
  if (c === 3) drawRGB(cv, data, h, w);
  else drawMap(cv, data, 0, h, w, { kind: "gray", lo: 0, hi: 1 });
  return cv;
}

// Fill `box` with model `model`'s gallery; `onPick(index, label)` when an image is chosen.
export async function renderGallery(box, source, model, onPick) {
  box.replaceChildren();
  box.hidden = true;
  if (!source.gallery) return;
  const g = await source.gallery(model.id, SHOWN);
  const list = el("div", "gallery-list");
  g.labels.forEach((label, i) => {
    const b = el("button", "gallery-item");
    b.type = "button";
    b.dataset.index = String(i);
    const name = model.classes[label];
    b.setAttribute("aria-label", t("gallery.item", { i, label: name }));
    b.append(thumb(g, i), el("span", "gallery-label", name));
    b.addEventListener("click", () => onPick(i, label));
    list.append(b);
  });
  box.append(el("h3", "", t("gallery.h", { n: g.count })), list);
  box.hidden = false;
}
