// Wiring of the page's controls: image sources (drop zone, file chooser, random, sketch pad), view options,
// the model and language choices, the compare panel, and Escape to close the detail view.
const $ = (id) => document.getElementById(id);

// The image sources: the sketch pad's buttons, random test images, the file chooser and drag-and-drop.
function wireSources({ state, explain, useFile }) {
  const sketch = state.sketch;
  $("sketch-clear").addEventListener("click", () => {
    sketch.clear();
    if (state.source && state.source.kind === "sketch") explain(); // says "draw something"; sends nothing
  });
  $("sketch-colour").addEventListener("input", (ev) => sketch.setColour(ev.target.value));
  $("random").addEventListener("click", () => {
    const previous = { source: state.source, classIndex: state.classIndex };
    state.source = null;
    state.classIndex = null;
    explain(previous);
  });
  $("net-random").addEventListener("click", () => $("random").click());
  $("file").addEventListener("change", (ev) => {
    useFile(ev.target.files[0]);
    ev.target.value = ""; // choosing the same file again must fire "change" again
  });
  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" && ev.key !== " ") return;
    ev.preventDefault(); // Space would scroll the page
    $("file").click();
  });
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
  }
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    useFile(ev.dataTransfer.files[0]);
  });
  $("invert").addEventListener("change", () => state.source && state.source.kind === "upload" && explain());
}

// What the page shows: the overlay and its class, the network's scale and size, the model, compare.
function wireViewOptions({ state, chooseModel, drawCompare, render, explainClass, setOverlay }) {
  $("overlay").addEventListener("change", (ev) => {
    setOverlay(ev.target.value);
    if (state.doc) render(state.doc);
  });
  $("cam-class").addEventListener("change", (ev) => {
    const i = Number(ev.target.value);
    if (state.doc) explainClass(i);
  });
  $("scale-mode").addEventListener("change", (ev) => {
    state.scaleMode = ev.target.value;
    if (state.doc) render(state.doc);
  });
  $("per-stage").addEventListener("change", (ev) => {
    state.perStage = Number(ev.target.value);
    if (state.doc) render(state.doc);
  });
  $("model").addEventListener("change", (ev) => chooseModel(ev.target.value));
  const toggle = $("compare-toggle");
  toggle.addEventListener("click", () => {
    const panel = $("compare");
    panel.hidden = !panel.hidden;
    toggle.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) {
      drawCompare();
      panel.scrollIntoView({ block: "nearest" });
    }
  });
}

export function wireControls(page) {
  wireSources(page);
  wireViewOptions(page);
  const { closeDetail, setLang, getLang, LANGS } = page;
  const lang = $("lang");
  for (const [code, name] of Object.entries(LANGS)) {
    const o = document.createElement("option");
    o.value = code;
    o.textContent = name;
    lang.append(o);
  }
  lang.value = getLang();
  lang.addEventListener("change", () => setLang(lang.value));
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape" || $("detail").hidden) return;
    if (ev.target.closest && ev.target.closest("select")) return; // Escape closes an open <select> first
    ev.preventDefault();
    closeDetail();
  });
}
