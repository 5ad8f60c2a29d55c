// The view in the URL, so that it can be shared and reloaded:
//   ?model=cnn2&image=test:123&stage=conv2&channel=5&pos=3,9&unit=7&class=2&compare=mlp,fast&overlay=gradcam
// (`from=fast`: the test image is one of that model's test set, shown to `model` by its pixels)
// (an upload or a drawing cannot travel in a URL: then `image` is left out and a reload picks a random
// test image). The language is not part of it: it is each reader's own (localStorage).
// writeUrl is called by the store (state.js) after every change of what it carries, never by hand.

export function readUrl() {
  const q = new URLSearchParams(location.search);
  const int = (v) => (v !== null && /^\d+$/.test(v) ? Number(v) : null);
  const image = q.get("image") || "";
  const pos = (q.get("pos") || "").split(",").map(Number);
  return {
    model: q.get("model"),
    from: q.get("from"),
    test: image.startsWith("test:") ? int(image.slice(5)) : null,
    stage: q.get("stage"),
    channel: q.get("channel") === "all" ? "all" : int(q.get("channel")),
    pos: pos.length === 2 && pos.every((v) => Number.isInteger(v) && v >= 0) ? pos : null,
    unit: int(q.get("unit")),
    classIndex: int(q.get("class")),
    compare: (q.get("compare") || "").split(",").filter(Boolean),
    overlay: ["gradcam", "saliency"].includes(q.get("overlay")) ? q.get("overlay") : null,
  };
}

export function writeUrl(state) {
  const q = new URLSearchParams();
  const keep = new URLSearchParams(location.search).get("lang");
  if (state.model) q.set("model", state.model.id);
  const s = state.source;
  if (s && s.kind === "test") q.set("image", `test:${s.index}`);
  if (s && s.kind === "test" && s.model !== state.model?.id) q.set("from", s.model);
  const sel = state.selected;
  if (sel) {
    q.set("stage", sel.layer);
    if (sel.channel !== null && sel.channel !== undefined) q.set("channel", String(sel.channel));
    if (sel.pos) q.set("pos", sel.pos.join(","));
    if (sel.unit !== null && sel.unit !== undefined) q.set("unit", String(sel.unit));
  }
  if (state.classIndex !== null && state.classIndex !== undefined) q.set("class", String(state.classIndex));
  if (state.compare.size) q.set("compare", [...state.compare].join(","));
  if (state.overlay && state.overlay !== "none") q.set("overlay", state.overlay);
  if (keep) q.set("lang", keep);
  const url = `${location.pathname}${q.toString() ? "?" + q : ""}`;
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}
