// Animation controls shared by the detail views: play / pause / step buttons and a speed choice that move
// a view one step at a time (the conv kernel, the pooling window, the ReLU position, softmax's stages).
import { t } from "./i18n.js";
import { el } from "./maps.js";

const SPEEDS = { slow: 900, normal: 400, fast: 120 };

export // Play / pause / step buttons and a speed choice; `step(d)` moves the kernel d positions.
function player(step, line, { labels = {} } = {}) {
  const box = el("div", "player");
  const mk = (text, label) => {
    const b = el("button", "ghost", text);
    b.type = "button";
    b.setAttribute("aria-label", label);
    return b;
  };
  const back = mk(t("conv.backText"), labels.back || t("conv.back"));
  const play = mk("▶", labels.play || t("conv.play"));
  play.classList.add("play");
  const fwd = mk(t("conv.fwdText"), labels.fwd || t("conv.fwd"));
  const speed = el("select");
  speed.setAttribute("aria-label", t("conv.speed"));
  for (const k of Object.keys(SPEEDS)) {
    const o = el("option", "", t(`speed.${k}`));
    o.value = k;
    speed.append(o);
  }
  speed.value = "normal";
  const where = el("span", "muted");
  box.append(back, play, fwd, el("span", "", t("conv.speedLabel")), speed, where);
  let timer = null;
  const stop = () => {
    if (timer === null) return;
    clearInterval(timer);
    timer = null;
    play.textContent = "▶";
    play.setAttribute("aria-label", labels.play || t("conv.play"));
    line.setAttribute("aria-live", "polite");
  };
  const start = () => {
    line.setAttribute("aria-live", "off"); // no announcement per animation frame
    play.textContent = "❚❚";
    play.setAttribute("aria-label", t("conv.pause"));
    timer = setInterval(() => (play.isConnected ? step(1) : stop()), SPEEDS[speed.value]);
  };
  play.addEventListener("click", () => (timer === null ? start() : stop()));
  back.addEventListener("click", () => (stop(), step(-1)));
  fwd.addEventListener("click", () => (stop(), step(1)));
  speed.addEventListener("change", () => timer !== null && (stop(), start()));
  return { box, where, stop };
}

// Step a 2-D position (a bigMap's) through all oh x ow places, row by row, wrapping around.
export function walker(view, oh, ow) {
  return (d) => {
    const i = (view.pos[0] * ow + view.pos[1] + d + oh * ow * 4) % (oh * ow);
    view.moveTo(Math.floor(i / ow), i % ow, "step");
  };
}
