// The sketch pad: draw with the mouse, a pen or a finger. For a grayscale model it draws white on black,
// like a Fashion-MNIST image; for an RGB model it draws in a chosen colour on white. The drawing is sent
// at the model's resolution while you draw; a cleared (empty) pad sends nothing.

// Pointer strokes on the canvas, in canvas pixels: down(point), move(point) and end().
function followPointer(canvas, { down, move, end }) {
  const point = (ev) => {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) * canvas.width) / r.width, ((ev.clientY - r.top) * canvas.height) / r.height];
  };
  canvas.addEventListener("pointerdown", (ev) => {
    canvas.setPointerCapture(ev.pointerId);
    down(point(ev));
  });
  canvas.addEventListener("pointermove", (ev) => move(point(ev)));
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

// The drawing scaled down to size x size (smoothly, so strokes become soft edges), as PNG.
function scaledPng(canvas, size) {
  const small = document.createElement("canvas");
  small.width = size;
  small.height = size;
  const s = small.getContext("2d");
  s.imageSmoothingEnabled = true;
  s.imageSmoothingQuality = "high";
  s.drawImage(canvas, 0, 0, size, size);
  return new Promise((resolve) => small.toBlob((b) => resolve(b), "image/png"));
}

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

  followPointer(canvas, {
    down(p) {
      state.drawing = true;
      state.last = p;
      stroke(p, p);
      schedule(false);
    },
    move(p) {
      if (!state.drawing) return;
      stroke(state.last, p);
      state.last = p;
      schedule(false);
    },
    end() {
      if (!state.drawing) return;
      state.drawing = false;
      schedule(true);
    },
  });
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
    blob: () => scaledPng(canvas, state.size),
  };
}
