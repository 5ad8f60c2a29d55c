// The sketch pad: draw with the mouse, a pen or a finger. For a grayscale model it draws white on black,
// like a Fashion-MNIST image; for an RGB model it draws in a chosen colour on white. The drawing is sent
// at the model's resolution while you draw; a cleared (empty) pad sends nothing.

export function makeSketch(canvas, { onChange, size = 28 }) {
  const ctx = canvas.getContext("2d");
  const state = { size, colour: false, pen: "#1f4fa0", drawing: false, last: null, dirty: false, timer: null };

  function clear() {
    ctx.fillStyle = state.colour ? "#fff" : "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    state.dirty = false;
    clearTimeout(state.timer);
    state.timer = null;
  }

  function point(ev) {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) * canvas.width) / r.width, ((ev.clientY - r.top) * canvas.height) / r.height];
  }

  function stroke(a, b) {
    ctx.strokeStyle = state.colour ? state.pen : "#fff";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = canvas.width / 11;
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
    state.dirty = true;
  }

  function schedule(now) {
    if (now) {
      clearTimeout(state.timer);
      state.timer = null;
      onChange();
    } else if (!state.timer) {
      state.timer = setTimeout(() => {
        state.timer = null;
        onChange();
      }, 150);
    }
  }

  canvas.addEventListener("pointerdown", (ev) => {
    canvas.setPointerCapture(ev.pointerId);
    state.drawing = true;
    state.last = point(ev);
    stroke(state.last, state.last);
    schedule(false);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!state.drawing) return;
    const p = point(ev);
    stroke(state.last, p);
    state.last = p;
    schedule(false);
  });
  const end = () => {
    if (!state.drawing) return;
    state.drawing = false;
    schedule(true);
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  clear();

  return {
    clear,
    get dirty() {
      return state.dirty;
    },
    // the model's input size, and colour (RGB model) or white-on-black (grayscale model)
    configure({ size: n, colour }) {
      state.size = n;
      if (colour !== state.colour) {
        state.colour = colour;
        clear();
      }
    },
    setColour(css) {
      state.pen = css;
    },
    // The drawing scaled down to size x size (smoothly, so strokes become soft edges), as PNG.
    blob() {
      const small = document.createElement("canvas");
      small.width = state.size;
      small.height = state.size;
      const s = small.getContext("2d");
      s.imageSmoothingEnabled = true;
      s.imageSmoothingQuality = "high";
      s.drawImage(canvas, 0, 0, state.size, state.size);
      return new Promise((resolve) => small.toBlob((b) => resolve(b), "image/png"));
    },
  };
}
