// The short article beside the live network: kernels, padding and stride (with a widget), ReLU, pooling,
// flatten and softmax, each told on the model in view, with a button that opens that stage of it.
import { getLang, num, plural, t } from "./i18n.js";
import { el } from "./maps.js";

function firstOf(layers, kinds) {
  return layers.find((l) => kinds.includes(l.kind));
}

function showButton(ctx, layer, channel = 0) {
  const b = el("button", "ghost show", t("art.show", { name: layer.name }));
  b.type = "button";
  b.addEventListener("click", () => ctx.select(layer.name, layer.shape.length === 3 ? channel : null));
  return b;
}

function section(id, title, paragraphs, extra = []) {
  const s = el("section", "art-section");
  s.setAttribute("aria-labelledby", `art-${id}`);
  const h = el("h3", "", title);
  h.id = `art-${id}`;
  s.append(h, ...paragraphs.filter(Boolean).map((p) => el("p", "", p)), ...extra);
  return s;
}

// The widget's picture: the padded input (padding cells gray, "0"), the kernel's window at output
// position `cur.pos`, and the output grid beside it; the formula in words below.
function drawArith(cv, formula, cur, o) {
  const { n, k, p, s } = cur;
  const N = n + 2 * p;
  const cell = Math.max(14, Math.min(26, Math.floor(150 / N)));
  const gap = 30;
  cv.width = (N + Math.max(o, 1)) * cell + gap + 2;
  cv.height = Math.max(N, 1) * cell + 2;
  cv.style.width = `${cv.width}px`;
  const g = cv.getContext("2d");
  g.clearRect(0, 0, cv.width, cv.height);
  g.font = `${Math.max(12, cell - 12)}px system-ui, sans-serif`;
  g.textAlign = "center";
  g.textBaseline = "middle";
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      const pad = i < p || j < p || i >= p + n || j >= p + n;
      g.fillStyle = pad ? "#e4e1d8" : "#ffffff";
      g.fillRect(1 + j * cell, 1 + i * cell, cell - 1, cell - 1);
      if (pad) {
        g.fillStyle = "#55524a";
        g.fillText("0", 1 + j * cell + cell / 2, 1 + i * cell + cell / 2);
      }
    }
  }
  g.strokeStyle = "#8d8a80";
  g.strokeRect(0.5 + p * cell, 0.5 + p * cell, n * cell, n * cell);
  const x0 = N * cell + gap;
  if (o >= 1) {
    const pos = cur.pos % (o * o);
    const oy = Math.floor(pos / o);
    const ox = pos % o;
    for (let i = 0; i < o; i++) {
      for (let j = 0; j < o; j++) {
        g.fillStyle = i === oy && j === ox ? "#f4a259" : "#fdf2e6";
        g.fillRect(x0 + j * cell, 1 + i * cell, cell - 1, cell - 1);
      }
    }
    g.strokeStyle = "#b4470c";
    g.lineWidth = 3;
    g.strokeRect(1.5 + ox * s * cell, 1.5 + oy * s * cell, k * cell - 2, k * cell - 2);
    g.lineWidth = 1;
    formula.textContent = t("arith.formula", { n, k, p, s, o, y: oy, x: ox, r0: oy * s - p, c0: ox * s - p });
  } else formula.textContent = t("arith.none", { n, k, p });
  cv.setAttribute("aria-label", t("arith.aria", { n, k, p, s, o }));
}

// Padding and stride: an n x n input (padding drawn around it), a k x k kernel stepping by s, and the
// output size the formula gives; step through the positions with the buttons.
function strideWidget() {
  const box = el("div", "arith");
  const opts = { n: [3, 4, 5, 6, 7, 8], k: [1, 2, 3, 4, 5], p: [0, 1, 2], s: [1, 2, 3] };
  const cur = { n: 5, k: 3, p: 1, s: 2, pos: 0 };
  const controls = el("div", "arith-controls");
  for (const key of Object.keys(opts)) {
    const label = el("label", "", t(`arith.${key}`));
    const sel = el("select");
    for (const v of opts[key]) {
      const o = el("option", "", String(v));
      o.value = String(v);
      sel.append(o);
    }
    sel.value = String(cur[key]);
    sel.addEventListener("change", () => {
      cur[key] = Number(sel.value);
      cur.pos = 0;
      draw();
    });
    label.append(sel);
    controls.append(label);
  }
  const prev = el("button", "ghost", t("arith.prev"));
  const next = el("button", "ghost", t("arith.next"));
  prev.type = next.type = "button";
  controls.append(prev, next);
  const cv = el("canvas", "arith-canvas");
  cv.setAttribute("role", "img");
  const formula = el("p", "arith-formula");
  formula.setAttribute("aria-live", "polite");
  box.append(controls, cv, formula);
  const out = () => Math.floor((cur.n + 2 * cur.p - cur.k) / cur.s) + 1;
  const draw = () => drawArith(cv, formula, cur, out());
  prev.addEventListener("click", () => {
    const o = out();
    cur.pos = (cur.pos - 1 + o * o) % Math.max(1, o * o);
    draw();
  });
  next.addEventListener("click", () => {
    cur.pos += 1;
    draw();
  });
  draw();
  return box;
}

export function renderArticle(root, ctx, state) {
  const layers = state.layers;
  if (!layers.length) return;
  const p = state.doc.prediction;
  const answer = t("art.softmax2", { label: p.label, p: num(100 * p.probability, 1), k: p.probabilities.length });
  const key = `${state.doc.model.id}|${getLang()}`;
  if (root.dataset.key === key) {
    // the same model and language: only the sentence about this image's answer changes
    const s = root.querySelector("#art-answer");
    if (s) s.textContent = answer;
    return;
  }
  root.dataset.key = key;
  const name = state.doc.model.id;
  const conv = firstOf(layers, ["conv"]);
  const relu = firstOf(layers, ["relu", "activation"]);
  const pool = firstOf(layers, ["maxpool", "avgpool", "globalpool"]);
  const flat = firstOf(layers, ["flatten"]);
  const soft = layers[layers.length - 1];
  const input = layers[0];
  const parts = [];
  parts.push(section("intro", t("art.intro.h"), [t("art.intro", { name, n: layers.length - 2, shape: input.shape.join("×") })]));
  if (conv) {
    const p = conv.params;
    parts.push(section("kernels", t("art.kernels.h"), [
      t("art.kernels1"),
      t("art.kernels2", { name: conv.name, c: p.out_channels, k: p.kernel_size.join("×"), cin: p.in_channels, chWord: plural(p.in_channels, [t("channel.one"), t("channel.few"), t("channel.many")]), w: p.weights }),
    ], [showButton(ctx, conv)]));
  } else {
    parts.push(section("kernels", t("art.kernels.h"), [t("art.kernels1"), t("art.noConv", { name })]));
  }
  const out = conv ? conv.shape[1] : null;
  parts.push(section("stride", t("art.stride.h"), [
    t("art.stride1"),
    conv ? t("art.stride2", { name: conv.name, n: ctx.inputOf(conv.name).shape[1], k: conv.params.kernel_size[0], p: conv.params.padding[0], s: conv.params.stride[0], o: out }) : null,
  ], [strideWidget()]));
  if (relu) parts.push(section("relu", t("art.relu.h"), [t("art.relu1"), t("art.relu2", { name: relu.name })], [showButton(ctx, relu)]));
  if (pool) {
    const src = ctx.inputOf(pool.name);
    parts.push(section("pool", t("art.pool.h"), [t("art.pool1"), t("art.pool2", { name: pool.name, a: src.shape.join("×"), b: pool.shape.join("×") })], [showButton(ctx, pool)]));
  }
  if (flat) {
    const src = ctx.inputOf(flat.name);
    parts.push(section("flatten", t("art.flatten.h"), [t("art.flatten1"), t("art.flatten2", { name: flat.name, a: src.shape.join("×"), n: flat.shape[0] })], [showButton(ctx, flat)]));
  }
  const last = section("softmax", t("art.softmax.h"), [t("art.softmax1"), answer], [showButton(ctx, soft, null)]);
  last.querySelectorAll("p")[1].id = "art-answer";
  parts.push(last);
  root.replaceChildren(...parts);
}
