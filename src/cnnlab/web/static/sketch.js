// The sketch pad: draw with the mouse (or a finger) in white on black, like a Fashion-MNIST image;
// the drawing is sent at the model's resolution while you draw.

export function makeSketch(canvas, { onChange, size = 28 }) {
  const ctx = canvas.getContext("2d");
  const state = { size, drawing: false, last: null, dirty: false, timer: null };

  function clear() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    state.dirty = false;
  }

  function point(ev) {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) * canvas.width) / r.width, ((ev.clientY - r.top) * canvas.height) / r.height];
  }

  function stroke(a, b) {
    ctx.strokeStyle = "#fff";
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
    setSize(n) {
      state.size = n;
    },
    // The drawing scaled down to size x size (smoothly, so strokes become soft gray edges), as PNG.
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
