// The short article beside the live network: kernels, padding and stride (with a widget), ReLU, pooling,
// flatten and softmax, each told on the model in view, with a button that opens that stage of it.
import { getLang, num, plural, t } from "./i18n.js";
import { el } from "./maps.js";
import { strideWidget } from "./stridewidget.js";

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

// The first convolution of the model, as a stage of its own or inside a block (a residual block, a
// conv-BN-ReLU stem): {layer, inside, c, cin, k, s, p, w}, read from the stage's params or module text.
function firstConv(layers) {
  for (const l of layers) {
    if (l.kind === "conv") {
      const p = l.params;
      return { layer: l, inside: false, c: p.out_channels, cin: p.in_channels, k: p.kernel_size, s: p.stride[0], p: p.padding[0], w: p.weights };
    }
    const m = l.kind === "block" && /Conv2d\((\d+), (\d+), kernel_size=\((\d+), (\d+)\)(?:, stride=\((\d+), \d+\))?(?:, padding=\((\d+), \d+\))?(, bias=False)?/.exec(l.module || "");
    if (m) {
      const [cin, c, kh, kw] = [1, 2, 3, 4].map((i) => Number(m[i]));
      const w = c * cin * kh * kw + (m[7] ? 0 : c);
      return { layer: l, inside: true, c, cin, k: [kh, kw], s: Number(m[5] || 1), p: Number(m[6] || 0), w };
    }
  }
  return null;
}

// What kinds of computation the model holds, stages and blocks alike.
function anatomy(layers) {
  const inBlock = (re) => layers.find((l) => l.kind === "block" && re.test(l.module || ""));
  return {
    conv: firstConv(layers),
    relu: firstOf(layers, ["relu", "activation"]) || inBlock(/ReLU|GELU|SiLU/),
    bn: firstOf(layers, ["batchnorm"]) || inBlock(/BatchNorm/),
    residual: layers.find((l) => l.kind === "block" && l.params && l.params.module === "ResidualBlock"),
    pool: firstOf(layers, ["maxpool", "avgpool", "globalpool"]),
    flat: firstOf(layers, ["flatten"]),
  };
}

// An example object from the run's own dataset: the true class of the image in view, else its prediction.
function exampleClass(doc) {
  const label = doc.input.label;
  return label !== null && label !== undefined ? doc.model.classes[label] : doc.prediction.label;
}

function kernelsSection(ctx, a, name, doc) {
  const c = a.conv;
  if (!c) return section("kernels", t("art.kernels.h"), [t("art.kernels1"), t("art.noConv", { name, thing: exampleClass(doc) })]);
  const vars = { name: c.layer.name, c: c.c, k: c.k.join("×"), cin: c.cin, chWord: plural(c.cin, [t("channel.one"), t("channel.few"), t("channel.many")]), w: c.w };
  return section("kernels", t("art.kernels.h"), [t("art.kernels1"), t(c.inside ? "art.kernelsBlock" : "art.kernels2", vars)], [showButton(ctx, c.layer)]);
}

function activationText(layer) {
  const fn = layer.kind === "activation" ? layer.params.function : /GELU/.test(layer.module || "") && !/ReLU/.test(layer.module || "") ? "GELU" : null;
  return fn === "GELU" ? t("art.gelu") : null;
}

export function renderArticle(root, ctx, state) {
  const layers = state.layers;
  if (!layers.length) return;
  const doc = state.doc;
  const p = doc.prediction;
  const answer = t("art.softmax2", { label: p.label, p: num(100 * p.probability, 1), k: p.probabilities.length });
  const key = `${doc.model.id}|${getLang()}`;
  if (root.dataset.key === key) {
    // the same model and language: only the sentence about this image's answer changes
    const s = root.querySelector("#art-answer");
    if (s) s.textContent = answer;
    return;
  }
  root.dataset.key = key;
  const name = doc.model.id;
  const a = anatomy(layers);
  const soft = layers[layers.length - 1];
  const input = layers[0];
  const parts = [section("intro", t("art.intro.h"), [t("art.intro", { name, n: layers.length - 2, shape: input.shape.join("×") })])];
  parts.push(kernelsSection(ctx, a, name, doc));
  parts.push(section("stride", t("art.stride.h"), [
    t("art.stride1"),
    a.conv && a.conv.layer.kind === "conv"
      ? t("art.stride2", { name: a.conv.layer.name, n: ctx.inputOf(a.conv.layer.name).shape[1], k: a.conv.k[0], p: a.conv.p, s: a.conv.s, o: a.conv.layer.shape[1] })
      : null,
  ], [strideWidget()]));
  if (a.bn) parts.push(section("bn", t("art.bn.h"), [t("art.bn1"), t(a.bn.kind === "block" ? "art.bnBlock" : "art.bn2", { name: a.bn.name })], [showButton(ctx, a.bn)]));
  if (a.relu) parts.push(section("relu", t("art.relu.h"), [t("art.relu1"), activationText(a.relu), t(a.relu.kind === "block" ? "art.reluBlock" : "art.relu2", { name: a.relu.name })], [showButton(ctx, a.relu)]));
  if (a.residual) parts.push(section("residual", t("art.residual.h"), [t("art.residual1"), t("art.residual2", { name: a.residual.name })], [showButton(ctx, a.residual)]));
  if (a.pool) {
    const src = ctx.inputOf(a.pool.name);
    parts.push(section("pool", t("art.pool.h"), [t("art.pool1"), t("art.pool2", { name: a.pool.name, a: src.shape.join("×"), b: a.pool.shape.join("×") })], [showButton(ctx, a.pool)]));
  }
  if (a.flat) {
    const src = ctx.inputOf(a.flat.name);
    parts.push(section("flatten", t("art.flatten.h"), [t("art.flatten1"), t("art.flatten2", { name: a.flat.name, a: src.shape.join("×"), n: a.flat.shape[0] })], [showButton(ctx, a.flat)]));
  }
  const last = section("softmax", t("art.softmax.h"), [t("art.softmax1"), answer], [showButton(ctx, soft, null)]);
  last.querySelectorAll("p")[1].id = "art-answer";
  parts.push(last);
  root.replaceChildren(...parts);
}
