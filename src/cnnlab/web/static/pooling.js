// The pooling view: the window over the input, the value it keeps and the values it drops, and the
// rows and columns of the input that no window ever reads (an 11x11 map pooled 2x2 by 2 loses its last
// row and column).
import { fmt, layerScale, legend } from "./colors.js";
import { t } from "./i18n.js";
import { player, walker } from "./animate.js";
import { bigMap, el, numberGrid, readout, startPos } from "./maps.js";

function windowOf(layer, inp) {
  const p = layer.params;
  const [, H, W] = inp.shape;
  const [, oh, ow] = layer.shape;
  if (layer.kind === "globalpool") {
    // adaptive pooling: window y covers rows floor(y H / oh) .. ceil((y + 1) H / oh)
    return { adaptive: true, op: p.op, kh: Math.ceil(H / oh), kw: Math.ceil(W / ow), sh: Math.floor(H / oh), sw: Math.floor(W / ow), ph: 0, pw: 0 };
  }
  const [kh, kw] = p.kernel_size;
  const [sh, sw] = p.stride;
  const [ph, pw] = p.padding;
  return { adaptive: false, op: p.op, kh, kw, sh, sw, ph, pw };
}

// The input values under output (y, x)'s window (NaN in padding), and where the window is.
function windowAt(win, inp, layer, channel, y, x) {
  const [, H, W] = inp.shape;
  const [, oh, ow] = layer.shape;
  let [y0, x0, rows, cols] = [y * win.sh - win.ph, x * win.sw - win.pw, win.kh, win.kw];
  if (win.adaptive) {
    y0 = Math.floor((y * H) / oh);
    x0 = Math.floor((x * W) / ow);
    rows = Math.ceil(((y + 1) * H) / oh) - y0;
    cols = Math.ceil(((x + 1) * W) / ow) - x0;
  }
  const vals = [];
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const yy = y0 + i;
      const xx = x0 + j;
      vals.push(yy >= 0 && xx >= 0 && yy < H && xx < W ? inp.data[channel * H * W + yy * W + xx] : NaN);
    }
  }
  return { y0, x0, rows, cols, vals };
}

export function poolDetail(box, ctx, layer, channel) {
  const inp = ctx.inputOf(layer.name);
  const [, H, W] = inp.shape;
  const [, oh, ow] = layer.shape;
  const win = windowOf(layer, inp);
  const { op, kh, kw, sh, sw, ph, pw } = win;
  const isMax = op === "max";
  // rows / columns beyond the last window's reach are never read
  const usedRows = win.adaptive ? H : Math.min(H, (oh - 1) * sh - ph + kh);
  const usedCols = win.adaptive ? W : Math.min(W, (ow - 1) * sw - pw + kw);
  const lostR = H - usedRows;
  const lostC = W - usedCols;
  let text = t(isMax ? "pool.textMax" : "pool.textAvg", { kh, kw, s: sh, H, W, oh, ow });
  if (lostR > 0 || lostC > 0) text += " " + t("pool.lost", { r: lostR, c: lostC, H, W, kh, s: sh });
  box.append(el("p", "explain", text));
  const sIn = layerScale(inp);
  const sOut = sIn; // the kept maximum (or the mean) in the colour it had in the input
  const row = el("div", "detail-row");
  const inView = bigMap(inp, channel, sIn, { title: t("in.title", { name: inp.name, channel, h: H, w: W }) });
  if (lostR > 0) inView.shade(usedRows, 0, lostR, W, "never-read");
  if (lostC > 0) inView.shade(0, usedCols, H, lostC, "never-read");
  const mid = el("div", "dot");
  const line = readout();
  const out = bigMap(layer, channel, sOut, { title: t("out.title", { name: layer.name, channel, h: oh, w: ow }), onMove: (y, x, why) => show(y, x, why) });
  row.append(inView.fig, mid, out.fig);
  // play: the window slides over the input and the kept maximum lights up, position by position
  const play = player(walker(out, oh, ow), line, { labels: { play: t("pool.play") } });
  box.append(play.box, row, line);
  if (lostR > 0 || lostC > 0) box.append(el("p", "muted small", t("pool.legendLost")));

  function show(y, x, why) {
    if (why === "pointer" || why === "key") play.stop();
    play.where.textContent = t("conv.where", { y, x, oh, ow });
    const { y0, x0, rows, cols, vals } = windowAt(win, inp, layer, channel, y, x);
    let best = -1;
    vals.forEach((v, i) => {
      if (Number.isFinite(v) && (best < 0 || v > vals[best])) best = i;
    });
    const finite = vals.filter(Number.isFinite);
    const value = isMax ? vals[best] : finite.reduce((a, b) => a + b, 0) / (finite.length || 1);
    const model = layer.data[channel * oh * ow + y * ow + x];
    inView.mark(y0, x0, rows, cols);
    out.mark(y, x, 1, 1);
    ctx.setPos(y, x);
    const grid = numberGrid(vals, rows, cols, {
      scale: sIn,
      mark: isMax ? [Math.floor(best / cols), best % cols] : null,
      dropped: isMax,
      title: t("pool.window", { y: y0, x: x0 }),
      caption: t("pool.windowCap"),
    });
    grid.append(legend(sIn));
    const kept = numberGrid([value], 1, 1, { scale: sOut, title: t(isMax ? "pool.kept" : "pool.mean") });
    mid.replaceChildren(grid, el("span", "operator", "→"), kept);
    const tol = inp.errors[channel] + layer.errors[channel] + 1e-6 * Math.max(1, Math.abs(model));
    const ok = Math.abs(value - model) <= tol;
    line.dataset.total = String(value);
    line.dataset.output = String(model);
    const dropped = isMax ? finite.length - 1 : 0;
    line.textContent = t(isMax ? "pool.lineMax" : "pool.lineAvg", {
      y, x, v: fmt(value, 4), m: fmt(model, 4), ok: ok ? "✓" : "✗", n: finite.length, d: dropped,
    });
  }
  out.moveTo(...startPos(ctx, layer, channel));
}
