// Wiring of the page's controls: image sources (drop zone, file chooser, random, sketch pad), view options,
// the model and language choices, the compare panel, and Escape to close the detail view.
const $ = (id) => document.getElementById(id);

export function wireControls({ state, sketch, explain, useFile, chooseModel, closeDetail, drawCompare, render, explainClass, setLang, getLang, LANGS }) {
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
  $("overlay").addEventListener("change", () => state.doc && render(state.doc)); // render writes the URL
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
