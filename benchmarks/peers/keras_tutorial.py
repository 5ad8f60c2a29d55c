"""The tutorial's Fashion-MNIST experiment in Keras: the peer cnnlab's PyTorch training is timed against.

This reproduces section 4 of /work/shared/reference/TUTORIAL.md (the four models of the Polish post) as the
post's own Keras code trains them, so the benchmark compares cnnlab with what a reader of the tutorial would
actually run:

* models: MLP and CNNs with 1, 2 and 4 conv layers (3x3 'valid' convs, ReLU, 2x2 max pooling, Dropout 0.25),
  parameter counts asserted against the post's table;
* Adam (lr 1e-3), sparse categorical cross-entropy, accuracy metric, batch size 32, up to 100 epochs,
  EarlyStopping(monitor='val_loss', patience=5, restore_best_weights=True).

The post's two defects are fixed, because copying them would make the peer's accuracy meaningless:

* the last Dense layer outputs logits (no softmax) and the loss is built with from_logits=True
  (the post applied softmax twice);
* the 15,000-image early-stopping split is divided by 255 like the others (the post never scaled it).

Data split (documented because the PyTorch side must reproduce it exactly):
``perm = np.random.default_rng(seed).permutation(60000)``; the official training images at ``perm[:45000]``
are "train", those at ``perm[45000:]`` are "val" (early stopping, the post's "test"); the official 10,000
test images are the final set on which the error is reported (the post's "validation").

The script imports nothing from cnnlab and downloads nothing: it reads the four IDX .gz files itself, so it
runs in its own virtual environment (see setup_keras_env.sh) with only TensorFlow installed.

Timing: Keras traces the train/eval step into a TF graph on the first batch (and again for the shorter last
batch) of epoch 1. Each epoch row's ``seconds`` excludes that one-off cost, estimated from batch durations;
``seconds_raw`` and ``trace_seconds`` keep the measured figures (``train_phase_seconds`` and
``val_phase_seconds`` split the raw time), and ``elapsed`` (cumulative wall time since
fit() was called, tracing included) is what time-to-accuracy should be computed from.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT / ".." / "shared" / "data" / "fashion-mnist"

N_OFFICIAL_TRAIN = 60_000
N_TRAIN = 45_000  # 75/25 as sklearn's train_test_split defaults give in the post

# The post's table; asserting them proves the Keras models are the tutorial's models.
EXPECTED_PARAMS = {"mlp": 101_770, "cnn1": 1_386_506, "cnn2": 485_514, "cnn4": 522_570}

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

# A batch is counted as graph tracing when it takes this much longer than the phase's median batch.
TRACE_OUTLIER_FACTOR = 5.0
TRACE_OUTLIER_MIN_SECONDS = 0.05


# ----------------------------------------------------------------------------- data


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one gzipped IDX file (the Fashion-MNIST/MNIST format) into a uint8 array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    # Header: big-endian int32 magic, then one int32 per dimension (the magic's low byte).
    found = int.from_bytes(raw[0:4], "big")
    if found != magic:
        raise ValueError(f"{path}: IDX magic {found}, expected {magic}")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data, header says {dims}")
    return data.reshape(dims)


def load_split(name: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) for the official 'train' or 't10k' split."""
    images = read_idx(data_dir / f"{name}-images-idx3-ubyte.gz", IDX_IMAGES_MAGIC)
    labels = read_idx(data_dir / f"{name}-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
    return images, labels


def scale(images: np.ndarray) -> np.ndarray:
    """Pixels to 0..1 float32 with a channel axis, as the post's CNN inputs (28, 28, 1).

    Every split goes through here, which is what fixes the post's unscaled early-stopping split.
    """
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def tutorial_data(data_dir: Path, seed: int, limit: int | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train / val / test as described in the module docstring, optionally capped to `limit` images each."""
    x, y = load_split("train", data_dir)
    x_test, y_test = load_split("t10k", data_dir)
    if len(x) != N_OFFICIAL_TRAIN:
        raise ValueError(f"expected {N_OFFICIAL_TRAIN} official training images, found {len(x)}")
    perm = np.random.default_rng(seed).permutation(N_OFFICIAL_TRAIN)
    splits = {
        "train": (x[perm[:N_TRAIN]], y[perm[:N_TRAIN]]),
        "val": (x[perm[N_TRAIN:]], y[perm[N_TRAIN:]]),
        "test": (x_test, y_test),
    }
    return {k: (scale(xs[:limit]), ys[:limit].astype(np.int64)) for k, (xs, ys) in splits.items()}


# ----------------------------------------------------------------------------- models


def build_model(name: str):
    """One of the post's four models, ending in logits (the softmax defect fixed)."""
    import keras
    from keras import layers

    def conv(filters: int):
        return layers.Conv2D(filters, kernel_size=(3, 3), activation="relu")

    def pool_drop():
        return [layers.MaxPool2D(pool_size=(2, 2)), layers.Dropout(0.25)]

    bodies = {
        "mlp": [],
        "cnn1": [conv(64), *pool_drop()],
        "cnn2": [conv(64), *pool_drop(), conv(128), *pool_drop()],
        "cnn4": [conv(64), conv(64), *pool_drop(), conv(128), conv(128), *pool_drop()],
    }
    head = [layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(10)]
    # The MLP gets the same (28, 28, 1) input; Flatten makes it the post's 784-vector MLP.
    model = keras.Sequential([keras.Input(shape=(28, 28, 1)), *bodies[name], *head], name=name)
    params = model.count_params()
    if params != EXPECTED_PARAMS[name]:
        raise AssertionError(
            f"{name}: {params:,} params, the tutorial's table says {EXPECTED_PARAMS[name]:,}"
        )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


# ----------------------------------------------------------------------------- timing


def trace_overhead(durations: list[float]) -> float:
    """Seconds of `durations` that are one-off graph tracing rather than steady-state steps.

    Tracing makes a handful of batches (the first, and the first of a new shape) take orders of magnitude
    longer than the rest; their excess over the median batch is the tracing cost.
    """
    if len(durations) < 3:
        return 0.0  # too few batches to tell tracing from work; report the raw time
    median = statistics.median(durations)
    threshold = median + max(TRACE_OUTLIER_MIN_SECONDS, TRACE_OUTLIER_FACTOR * median)
    return sum(d - median for d in durations if d > threshold)


def make_epoch_timer(fit_started: float, verbose: bool):
    """A Keras callback recording per-epoch wall time, split into train and validation phases.

    Only *begin* batch hooks are used: defining on_*_batch_end would make Keras convert the logs to Python
    after every step and turn off its asynchronous callback dispatch, slowing the very run being timed.
    A batch's duration is the gap to the next batch's begin (or to the phase end for the last one).
    """
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()
            self.marks = {"train": [], "val": []}
            self.phase_end = {"train": None, "val": None}

        def on_train_batch_begin(self, batch, logs=None):
            self.marks["train"].append(time.perf_counter())

        def on_test_begin(self, logs=None):
            # Also called by the final evaluate(); only a validation inside an epoch counts here.
            if hasattr(self, "marks"):
                self.phase_end["train"] = time.perf_counter()

        def on_test_batch_begin(self, batch, logs=None):
            if hasattr(self, "marks"):
                self.marks["val"].append(time.perf_counter())

        def on_test_end(self, logs=None):
            if hasattr(self, "marks"):
                self.phase_end["val"] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.rows.append(self._row(epoch, logs or {}, now))
            if verbose:
                print_epoch(self.model.name, self.rows[-1], self.params.get("epochs"))

        def on_train_end(self, logs=None):
            del self.marks  # so the final evaluate() is not mistaken for a validation phase

        def _phase(self, phase: str, now: float) -> tuple[float, float]:
            """(seconds, tracing seconds) of one phase of the epoch that just ended."""
            marks = self.marks[phase]
            if not marks:
                return 0.0, 0.0
            end = self.phase_end[phase] or now
            durations = [b - a for a, b in zip(marks, [*marks[1:], end], strict=True)]
            seconds = end - marks[0]
            # Tracing happens in the first epoch only; later slow batches are real cost, not excluded.
            return seconds, trace_overhead(durations) if not self.rows else 0.0

        def _row(self, epoch: int, logs: dict, now: float) -> dict:
            train_s, train_trace = self._phase("train", now)
            val_s, val_trace = self._phase("val", now)
            raw = now - self.epoch_start
            return {
                "epoch": epoch + 1,
                "loss": float(logs["loss"]),
                "accuracy": float(logs["accuracy"]),
                "val_loss": float(logs["val_loss"]),
                "val_accuracy": float(logs["val_accuracy"]),
                "seconds": raw - train_trace - val_trace,
                "seconds_raw": raw,
                "trace_seconds": train_trace + val_trace,
                "train_phase_seconds": train_s,
                "val_phase_seconds": val_s,
                "elapsed": now - fit_started,
            }

    return EpochTimer()


# ----------------------------------------------------------------------------- experiment


def run_model(name: str, data: dict, args: argparse.Namespace) -> dict:
    """Train and test one model; return its JSON record."""
    import keras

    # Reseed per model so each model's initial weights and dropout masks do not depend on run order.
    keras.utils.set_random_seed(args.seed)
    model = build_model(name)
    early_stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=args.patience, restore_best_weights=True
    )
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]

    started = time.perf_counter()
    timer = make_epoch_timer(started, verbose=not args.quiet)
    # verbose=0: the post's progress bar would add per-step host syncs and printing to the timed loop.
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=(x_val, y_val),
        callbacks=[early_stop, timer],
        verbose=0,
    )
    train_seconds = time.perf_counter() - started

    eval_started = time.perf_counter()
    test_loss, test_acc = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=0)
    eval_seconds = time.perf_counter() - eval_started

    rows = timer.rows
    best = min(range(len(rows)), key=lambda i: rows[i]["val_loss"])  # first minimum, as EarlyStopping
    steady = [r["seconds"] for r in rows]
    return {
        "name": name,
        "params": int(model.count_params()),
        "jit_compile": bool(model.jit_compile),
        "history": rows,
        "epochs_run": len(rows),
        "stopped_early": len(rows) < args.epochs,
        "best_epoch": rows[best]["epoch"],
        "best_val_loss": rows[best]["val_loss"],
        "best_val_accuracy": rows[best]["val_accuracy"],
        "seconds_per_epoch_mean": statistics.fmean(steady),
        "seconds_per_epoch_median": statistics.median(steady),
        "first_epoch_trace_seconds": rows[0]["trace_seconds"],
        "train_seconds": train_seconds,
        # fit() time after the last epoch ended (weight restore, teardown); normally ~0, kept to expose stalls.
        "fit_teardown_seconds": train_seconds - rows[-1]["elapsed"],
        "test_loss": float(test_loss),
        "test_accuracy": float(test_acc),
        "test_error_pct": 100.0 * (1.0 - float(test_acc)),
        "test_eval_seconds": eval_seconds,
    }


def configure_tensorflow(threads: int) -> None:
    """Pin TF's thread pools; must run before TensorFlow executes its first op."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def available_cores() -> int:
    # sched_getaffinity honours taskset/cgroup CPU pinning, which os.cpu_count() ignores.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict:
    import keras
    import tensorflow as tf

    return {
        "cpu_model": cpu_model(),
        "cores": available_cores(),
        "cpu_count": os.cpu_count(),
        "tf_threads": threads,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
    }


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write via a temp file in the same directory and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- output


def print_epoch(name: str, row: dict, epochs: int | None) -> None:
    trace = f" (+{row['trace_seconds']:.2f}s tracing)" if row["trace_seconds"] else ""
    print(
        f"{name:5s} epoch {row['epoch']:3d}/{epochs}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
        f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  {row['seconds']:.2f}s{trace}",
        flush=True,
    )


def print_table(results: dict) -> None:
    header = f"{'model':6s} {'params':>10s} {'epochs':>6s} {'best':>4s} {'s/epoch':>8s} {'train s':>8s}"
    header += f" {'test acc':>8s} {'error':>7s}"
    print(header)
    for r in results.values():
        print(
            f"{r['name']:6s} {r['params']:>10,d} {r['epochs_run']:>6d} {r['best_epoch']:>4d} "
            f"{r['seconds_per_epoch_median']:>8.2f} {r['train_seconds']:>8.1f} "
            f"{r['test_accuracy']:>8.4f} {r['test_error_pct']:>6.2f}%"
        )


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with the 4 IDX .gz files")
    p.add_argument(
        "--models", default="mlp,cnn1,cnn2,cnn4", help="comma-separated subset of mlp,cnn1,cnn2,cnn4"
    )
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split and of Keras")
    p.add_argument("--limit", type=int, default=None, help="cap train/val/test to N images (smoke runs)")
    p.add_argument("--threads", type=int, default=None, help="TF intra/inter-op threads (default: all cores)")
    p.add_argument("--out", type=Path, default=None, help="write results JSON here (atomically)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in EXPECTED_PARAMS]
    if unknown or not args.models:
        p.error(f"unknown model(s) {unknown}; choose from {','.join(EXPECTED_PARAMS)}")
    for opt in ("epochs", "patience", "batch_size", "limit", "threads"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            p.error(f"--{opt.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out of the log
    threads = args.threads or available_cores()
    configure_tensorflow(threads)

    data = tutorial_data(args.data_dir, args.seed, args.limit)
    payload = {
        "peer": "keras",
        "config": {
            "models": args.models,
            "epochs": args.epochs,
            "patience": args.patience,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "limit": args.limit,
            "optimizer": "adam lr=1e-3",
            "loss": "sparse categorical cross-entropy from logits",
            "early_stopping": "val_loss, restore_best_weights=True",
            "split": f"np.random.default_rng(seed).permutation(60000): [:{N_TRAIN}] train, rest val; t10k test",
            "sizes": {k: len(v[1]) for k, v in data.items()},
        },
        "machine": machine_info(threads),
        "models": {},
    }
    for name in args.models:
        payload["models"][name] = run_model(name, data, args)
        if args.out:  # after every model, so a long run that is interrupted keeps what it finished
            write_json_atomic(args.out, payload)

    print_table(payload["models"])
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
