// The API reference, rendered here from /openapi.json: works offline (no CDN), unlike Swagger UI. The
// curl examples use a real model id and layer from /api/models, so they can be pasted as they are.
import { LANGS, getLang, initLang, onLangChange, setLang, t } from "./i18n.js";

const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

// Prose from docstrings: ``code`` and `code` become <code>, everything else stays text (never HTML).
export function prose(text) {
  const out = [];
  const re = /``(.+?)``|`([^`]+)`/g;
  let last = 0;
  let m;
  while ((m = re.exec(text || ""))) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    out.push(el("code", {}, m[1] ?? m[2]));
    last = re.lastIndex;
  }
  if (last < (text || "").length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

// A one-line type: "integer 1..1000", "string (binary)", "integer or null".
function typeOf(schema = {}) {
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(` ${t("docs.or")} `);
  if (schema.$ref) return schema.$ref.split("/").pop();
  let ty = schema.type || "any";
  if (schema.format) ty += ` (${schema.format})`;
  if (schema.minimum !== undefined || schema.maximum !== undefined) ty += ` ${schema.minimum ?? ""}..${schema.maximum ?? ""}`;
  if (schema.enum) ty += `: ${schema.enum.join(" | ")}`;
  return ty;
}

function fieldsTable(rows) {
  const table = el("table", { className: "fields" });
  table.append(el("tr", {}, ...["docs.field", "docs.type", "docs.default", "docs.what"].map((k) => el("th", {}, t(k)))));
  for (const r of rows) {
    table.append(el("tr", {},
      el("td", {}, el("code", {}, r.name + (r.required ? " *" : ""))),
      el("td", {}, typeOf(r.schema)),
      el("td", {}, r.schema?.default === undefined ? "" : JSON.stringify(r.schema.default)),
      el("td", {}, ...prose(r.description || r.schema?.description || ""))));
  }
  return table;
}

// Real values for the fields an example needs: a model id and one of its layers from /api/models.
function sampleValue(name, sample) {
  const values = { model: sample.model, layer: sample.layer, kernel: "outline", channel: "0" };
  return values[name] ?? "1";
}

function example(path, method, rows, sample) {
  const required = rows.filter((r) => r.required && r.schema?.format !== "binary");
  const q = (s) => `'${s}'`;
  if (method === "get") {
    const query = required.map((r) => `${r.name}=${encodeURIComponent(sampleValue(r.name, sample))}`).join("&");
    return `curl ${q(`${location.origin}${path}${query ? "?" + query : ""}`)}`;
  }
  const parts = required.map((r) => `-F ${q(`${r.name}=${sampleValue(r.name, sample)}`)}`);
  if (rows.some((r) => r.name === "file")) parts.push("-F file=@image.png");
  return `curl ${parts.join(" ")} ${location.origin}${path}`;
}

// Upload errors (413 body too large, 415 not an image) cannot happen to a request without a body.
const BODY_ONLY = new Set(["413", "415"]);

function operation(path, method, op, sample) {
  const rows = (op.parameters || []).map((p) => ({ ...p, required: !!p.required }));
  const form = op.requestBody?.content?.["multipart/form-data"]?.schema;
  if (form) {
    for (const [name, schema] of Object.entries(form.properties || {})) rows.push({ name, schema, required: (form.required || []).includes(name) });
  }
  const box = el("section", { className: "endpoint", id: `${method}-${path}` },
    el("h2", {}, el("span", { className: `method ${method}` }, method.toUpperCase()), " ", path),
    el("p", {}, ...prose(op.summary || "")));
  if (op.description) box.append(el("p", {}, ...prose(op.description)));
  if (form?.description) box.append(el("p", {}, ...prose(form.description)));
  if (rows.length) box.append(fieldsTable(rows));
  box.append(el("p", {}, t("docs.example")), el("pre", { className: "example" }, el("code", {}, example(path, method, rows, sample))));
  const codes = Object.entries(op.responses || {})
    .filter(([code]) => op.requestBody || !BODY_ONLY.has(code))
    .map(([code, r]) => `${code} ${r.description || ""}`.trim());
  box.append(el("p", {}, `${t("docs.responses")} ${codes.join("; ")}`));
  return box;
}

async function sampleModel() {
  try {
    const res = await fetch("/api/models");
    const { models } = await res.json();
    const m = models[0];
    const layer = (m.layers || []).find((l) => l.kind === "conv" || l.kind === "dense");
    return { model: m.id, layer: layer ? layer.name : "conv1" };
  } catch {
    return { model: "cnn2", layer: "conv1" }; // no runs yet: the README's example run
  }
}

async function main() {
  initLang();
  const lang = document.getElementById("lang");
  for (const [code, name] of Object.entries(LANGS)) lang.append(el("option", { value: code }, name));
  lang.value = getLang();
  lang.addEventListener("change", () => setLang(lang.value));
  const target = document.getElementById("ops");
  let spec;
  let sample;
  const draw = () => {
    document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}: ${t("docs.api")}`;
    document.getElementById("description").replaceChildren(...prose(spec.info.description || ""));
    target.replaceChildren();
    for (const [path, methods] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(methods)) target.append(operation(path, method, op, sample));
    }
  };
  try {
    const res = await fetch("/openapi.json");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    [spec, sample] = await Promise.all([res.json(), sampleModel()]);
    draw();
    onLangChange(draw);
    document.body.dataset.ready = "1";
  } catch (err) {
    target.textContent = `Could not read /openapi.json: ${err.message}`;
  }
}

main();
