// The API reference, rendered here from /openapi.json: works offline (no CDN), unlike Swagger UI.

const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

// A one-line type: "integer 1..1000", "string (binary)", "integer or null".
function typeOf(schema = {}) {
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(" or ");
  if (schema.$ref) return schema.$ref.split("/").pop();
  let t = schema.type || "any";
  if (schema.format) t += ` (${schema.format})`;
  if (schema.minimum !== undefined || schema.maximum !== undefined) {
    t += ` ${schema.minimum ?? ""}..${schema.maximum ?? ""}`;
  }
  if (schema.enum) t += `: ${schema.enum.join(" | ")}`;
  return t;
}

function fieldsTable(rows) {
  const table = el("table", { className: "fields" });
  table.append(el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "default"), el("th", {}, "what")));
  for (const r of rows) {
    table.append(el("tr", {},
      el("td", {}, el("code", {}, r.name + (r.required ? " *" : ""))),
      el("td", {}, typeOf(r.schema)),
      el("td", {}, r.schema?.default === undefined ? "" : JSON.stringify(r.schema.default)),
      el("td", {}, r.description || r.schema?.description || "")));
  }
  return table;
}

function example(path, method, rows) {
  const required = rows.filter((r) => r.required);
  if (method === "get") {
    const q = required.map((r) => `${r.name}=…`).join("&");
    return `curl '${location.origin}${path}${q ? "?" + q : ""}'`;
  }
  const parts = required.map((r) => (r.schema?.format === "binary" ? `-F ${r.name}=@image.png` : `-F ${r.name}=…`));
  if (rows.some((r) => r.name === "file") && !parts.some((p) => p.includes("@"))) parts.push("-F file=@image.png");
  return `curl ${parts.join(" ")} ${location.origin}${path}`;
}

function operation(path, method, op) {
  const rows = (op.parameters || []).map((p) => ({ ...p, required: !!p.required }));
  const form = op.requestBody?.content?.["multipart/form-data"]?.schema;
  if (form) {
    for (const [name, schema] of Object.entries(form.properties || {})) {
      rows.push({ name, schema, required: (form.required || []).includes(name) });
    }
  }
  const box = el("section", { className: "op", id: `${method}-${path}` },
    el("h2", {}, el("span", { className: `method ${method}` }, method.toUpperCase()), " ", path),
    el("p", {}, op.summary || ""));
  if (form?.description) box.append(el("p", {}, form.description));
  if (rows.length) box.append(fieldsTable(rows));
  box.append(el("p", {}, "Example: ", el("code", {}, example(path, method, rows))));
  const codes = Object.entries(op.responses || {}).map(([code, r]) => `${code} ${r.description || ""}`.trim());
  box.append(el("p", {}, "Responses: " + codes.join("; ")));
  return box;
}

async function main() {
  const target = document.getElementById("ops");
  try {
    const res = await fetch("/openapi.json");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const spec = await res.json();
    document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version} — API`;
    document.getElementById("description").textContent = spec.info.description || "";
    target.replaceChildren();
    for (const [path, methods] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(methods)) target.append(operation(path, method, op));
    }
  } catch (err) {
    target.textContent = `Could not read /openapi.json: ${err.message}`;
  }
}

main();
