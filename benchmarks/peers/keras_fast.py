"""cnnlab's ``--recipe fast`` (CPU settings) written in Keras: the peer its time to 91% is measured against.

The same model and recipe as cnnlab's fast CPU recipe, as a Keras user would write it:

* model ``fastcnn``: Conv2D(32, 3x3 valid)-BatchNorm-ReLU-MaxPool(2), Conv2D(64, 3x3 valid)-BatchNorm-ReLU-
  MaxPool(2), Flatten, Dense(128, relu), Dropout(0.2), Dense(10) logits; 225,226 trainable parameters
  (asserted). BatchNormalization(momentum=0.9, epsilon=1e-5) is PyTorch's momentum 0.1 / eps 1e-5;
* Adam (lr ``LR``, 6e-3; epsilon 1e-7, betas 0.9/0.999) under a per-step one-cycle schedule that reproduces
  ``torch.optim.lr_scheduler.OneCycleLR(max_lr=LR, total_steps=epochs*steps, pct_start=0.25)``: cosine
  warm-up from lr/25 over the first 25% of the steps, cosine anneal to lr/25/1e4, and (torch's default
  ``cycle_momentum``) beta_1 cycled 0.95 -> 0.85 -> 0.95 against it. Keras' Adam takes no schedule for
  beta_1, so ``OneCycleAdam`` overrides its update step (with torch's placement of epsilon, so the update is
  torch's Adam exactly); the cost per step is that of Keras' own Adam;
* batch ``BATCH_SIZE`` (256), the last batch of an epoch smaller; CategoricalCrossentropy(from_logits=True,
  label_smoothing=0.1) on one-hot labels (SparseCategoricalCrossentropy has no label smoothing);
* inputs normalised with the training split's per-channel mean and std (as cnnlab's ``channel_stats``);
* with ``FLIP`` (off: the CPU recipe does not flip), alternating horizontal flips with cnnlab's rule (``cnnlab/engine/augment.py``): image ``i`` of the training
  split has a fixed pseudo-random bit ``(((i + seed * 1000003) * 2654435761) % 2**32 >> 16) & 1`` and is
  flipped in epoch ``e`` (1-based) when that bit XOR ``e % 2`` is set;
* the input pipeline is tf.data: per epoch a seeded permutation of indices, batched, then one vectorised map
  gathers the batch, flips it and one-hot encodes the labels (what Keras itself does for NumPy inputs:
  shuffle indices, gather per batch), prefetched.
* with ``--bf16`` (speedrun_peers.py passes it when cnnlab's fast recipe runs in bf16 on this CPU): Keras' ``mixed_bfloat16`` policy (the logits layer float32).

Data split, identical to cnnlab's ``default`` split with seed 0 (what ``benchmarks/speedrun.py`` loads):
5,000 validation images stratified by class (``np.random.default_rng(0)``, ``rng.choice`` per class, then
both parts permuted), the other 55,000 train. The 5,000 are held out and unused (no validation pass, as
speedrun.py's ``fit(validate=False)``); ``--seed`` seeds weights, shuffling, dropout and the flip bits.

Timing: after every epoch the official 10,000 test images are evaluated *outside* the timed region (for
measurement only: nothing is selected on them). An epoch's ``epoch_seconds`` is the wall time from Keras'
``on_epoch_begin`` to ``on_epoch_end``: training only, epoch 1 including Keras' one-off graph tracing
(also estimated separately as ``trace_seconds``, see keras_tutorial.py). ``train_seconds`` is cumulative,
and ``time_to`` gives it at the first epoch whose test accuracy reaches 91% / 93% (null if none does).

Runs in benchmarks/.venv-keras (see setup_keras_env.sh); imports nothing from cnnlab. The data helpers here
use NumPy only, so the Lightning peer (lightning_fast.py) imports them from this file.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# Shared with the tutorial peer: IDX reading, core count, CPU name, TF threads, atomic JSON writing.
from keras_tutorial import (
    DEFAULT_DATA_DIR,
    available_cores,
    configure_tensorflow,
    load_split,
    machine_info,
    trace_overhead,
    write_json_atomic,
)

# cnnlab's fast recipe, CPU settings (src/cnnlab/recipes.py)
EPOCHS = 5
BATCH_SIZE = 256
LR = 6e-3
FLIP = False  # the CPU fast recipe trains without flips (they cost more than they give in 5 epochs)
ADAM_EPS = 1e-7
LABEL_SMOOTHING = 0.1
PCT_START = 0.25
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4
BASE_MOMENTUM, MAX_MOMENTUM = 0.85, 0.95  # OneCycleLR's default beta_1 cycle
VAL_SIZE = 5_000
SPLIT_SEED = 0  # speedrun.py loads the split with seed 0 and varies only the training seed
TARGETS = (0.91, 0.93)
TRAINABLE_PARAMS = 225_226  # cnnlab's fastcnn without its normalize stage
EVAL_BATCH = 1000


# ----------------------------------------------------------------------------- data (NumPy only)


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """cnnlab's ``default`` split (cnnlab/data/split.py): ``val_size`` indices stratified by class, with
    quotas by largest remainder; both parts shuffled. Returns (train_idx, val_idx)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = val_size * counts / n
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[: val_size - int(quota.sum())]] += 1
    val = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False)
            for c, q in zip(classes, quota, strict=True)
        ]
    )
    in_val = np.zeros(n, dtype=bool)
    in_val[val] = True
    train = np.flatnonzero(~in_val)
    return rng.permutation(train).astype(np.int64), rng.permutation(val).astype(np.int64)


def fast_data(data_dir: Path, limit: int | None) -> dict:
    """uint8 images (N, 28, 28) and int64 labels for train / val / test, plus the training mean and std.

    ``limit`` (smoke runs) keeps the first ``limit`` images of each split, as cnnlab's ``load_data(limit=)``.
    """
    x, y = load_split("train", data_dir)
    x_test, y_test = load_split("t10k", data_dir)
    train_idx, val_idx = stratified_split(y, VAL_SIZE, SPLIT_SEED)
    if limit is not None:
        train_idx, val_idx, x_test, y_test = (
            train_idx[:limit],
            val_idx[:limit],
            x_test[:limit],
            y_test[:limit],
        )
    data = {
        "train": (x[train_idx], y[train_idx].astype(np.int64)),
        "val": (x[val_idx], y[val_idx].astype(np.int64)),
        "test": (x_test, y_test.astype(np.int64)),
    }
    # cnnlab's channel_stats: mean and (population) std of the training pixels on the 0..1 scale, float64
    pixels = data["train"][0].astype(np.float64) / 255.0
    data["mean"], data["std"] = float(pixels.mean()), max(float(pixels.std()), 1 / 255)
    return data


def normalized(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1), (x / 255 - mean) / std."""
    return ((images.astype(np.float32) / 255.0 - mean) / std)[..., np.newaxis]


def flip_bits(idx: np.ndarray, seed: int) -> np.ndarray:
    """cnnlab's alternating-flip bit of each training index (flip in epoch e when bit XOR e % 2)."""
    idx = np.asarray(idx, dtype=np.int64)
    return ((((idx + seed * 1_000_003) * 2654435761) % 4294967296) >> 16) & 1


def time_to(rows: list[dict]) -> dict:
    """Cumulative training seconds at the first epoch whose test accuracy reaches each target, else None."""
    return {
        f"{t:.2f}": next((r["train_seconds"] for r in rows if r["test_accuracy"] >= t), None) for t in TARGETS
    }


def print_epoch(peer: str, row: dict, epochs: int) -> None:
    extra = f" (incl. ~{row['trace_seconds']:.2f}s tracing)" if row.get("trace_seconds") else ""
    print(
        f"{peer} epoch {row['epoch']}/{epochs}  {row['epoch_seconds']:.2f}s{extra}  loss {row['loss']:.4f}  "
        f"acc {row['accuracy']:.4f}  test_acc {row['test_accuracy']:.4f}  "
        f"(test eval {row['test_eval_seconds']:.2f}s, untimed)",
        flush=True,
    )


def print_summary(peer: str, payload: dict) -> None:
    per_epoch = [r["epoch_seconds"] for r in payload["epochs"]]
    hit = ", ".join(
        f"{100 * float(t):.0f}% after {s:.1f}s" if s is not None else f"{100 * float(t):.0f}% not reached"
        for t, s in payload["time_to"].items()
    )
    print(
        f"{peer}: {len(per_epoch)} epochs, {payload['train_seconds']:.1f}s of training "
        f"(median {statistics.median(per_epoch):.2f}s/epoch), final test accuracy "
        f"{payload['final_accuracy']:.4f}; {hit}",
        flush=True,
    )


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"epoch budget (the recipe's: {EPOCHS})")
    p.add_argument("--seed", type=int, default=0, help="weights, shuffling, dropout and flip bits")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all available cores)")
    p.add_argument("--limit", type=int, default=None, help="smoke runs only: cap each split to N images")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with the 4 IDX .gz files")
    p.add_argument("--out", type=Path, default=None, help="write the results JSON here (atomically)")
    p.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 mixed precision (as cnnlab's recipe on a CPU with native bf16): Keras' mixed_bfloat16 "
        "policy / Lightning's precision='bf16-mixed'",
    )
    args = p.parse_args(argv)
    for opt in ("epochs", "threads", "limit"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            p.error(f"--{opt} must be at least 1")
    if not 0 <= args.seed < 2**32:
        p.error("--seed must be in [0, 2**32)")
    return args


def recipe_config(args: argparse.Namespace, data: dict) -> dict:
    return {
        "recipe": "fast (cnnlab, CPU settings)",
        "model": "fastcnn: conv32-bn-relu-pool-conv64-bn-relu-pool-flatten-dense128-relu-drop.2-dense10",
        "epochs": args.epochs,
        "batch_size": BATCH_SIZE,
        "optimizer": f"adam lr={LR:g} eps={ADAM_EPS:g} betas=(0.9, 0.999)",
        "schedule": (
            f"one-cycle per step, pct_start={PCT_START}, div_factor={DIV_FACTOR:g}, "
            f"final_div_factor={FINAL_DIV_FACTOR:g}, cosine, beta_1 {MAX_MOMENTUM}->{BASE_MOMENTUM}->{MAX_MOMENTUM}"
        ),
        "label_smoothing": LABEL_SMOOTHING,
        "augment": "alternating horizontal flips (cnnlab's hash of the training index XOR epoch parity)"
        if FLIP
        else "none",
        "normalize": {"mean": data["mean"], "std": data["std"]},
        "precision": "bf16 mixed" if args.bf16 else "float32",
        "seed": args.seed,
        "limit": args.limit,
        "split": f"cnnlab's default split with seed {SPLIT_SEED}: {VAL_SIZE} val stratified by class (held out, "
        "unused), the rest train; t10k test, evaluated after every epoch off the clock",
        "sizes": {k: len(data[k][1]) for k in ("train", "val", "test")},
    }


# ----------------------------------------------------------------------------- Keras


def one_cycle(step, total_steps: int, start: float, peak: float, end: float):
    """torch OneCycleLR's two-phase cosine curve (``_annealing_cos``) at ``step``, as a Keras tensor."""
    from keras import ops

    s = ops.cast(step, "float64")  # float32 loses the tail of the anneal (lr ~1e-8) to rounding
    end1 = float(PCT_START * total_steps) - 1.0  # torch's phase boundaries
    end2 = float(total_steps - 1)

    def cos(a: float, b: float, pct):
        return b + (a - b) / 2.0 * (ops.cos(math.pi * pct) + 1.0)

    return ops.where(s <= end1, cos(start, peak, s / end1), cos(peak, end, (s - end1) / (end2 - end1)))


def make_optimizer(total_steps: int):
    import keras
    from keras import ops

    class OneCycleLR(keras.optimizers.schedules.LearningRateSchedule):
        """lr of torch's OneCycleLR(max_lr, total_steps, pct_start=0.25) at each step."""

        def __init__(self, max_lr: float, total_steps: int):
            self.max_lr, self.total_steps = max_lr, total_steps

        def __call__(self, step):
            initial = self.max_lr / DIV_FACTOR
            return one_cycle(step, self.total_steps, initial, self.max_lr, initial / FINAL_DIV_FACTOR)

        def get_config(self):
            return {"max_lr": self.max_lr, "total_steps": self.total_steps}

    class OneCycleAdam(keras.optimizers.Adam):
        """Keras' Adam with beta_1 on OneCycleLR's momentum cycle, updating as torch.optim.Adam does."""

        def __init__(self, total_steps: int, **kwargs):
            super().__init__(**kwargs)
            self.total_steps = total_steps

        def update_step(self, gradient, variable, learning_rate):
            dtype = variable.dtype
            lr = ops.cast(learning_rate, dtype)
            gradient = ops.cast(gradient, dtype)
            t = ops.cast(self.iterations + 1, dtype)
            beta_1 = ops.cast(
                one_cycle(self.iterations, self.total_steps, MAX_MOMENTUM, BASE_MOMENTUM, MAX_MOMENTUM), dtype
            )
            m = self._momentums[self._get_variable_index(variable)]
            v = self._velocities[self._get_variable_index(variable)]
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
            self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
            # torch: p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
            denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(1 - ops.power(self.beta_2, t))), self.epsilon)
            self.assign_sub(variable, ops.divide(ops.multiply(m, lr / (1 - ops.power(beta_1, t))), denom))

    return OneCycleAdam(
        total_steps,
        learning_rate=OneCycleLR(LR, total_steps),
        beta_1=MAX_MOMENTUM,
        beta_2=0.999,
        epsilon=ADAM_EPS,
    )


def build_model(total_steps: int):
    import keras
    from keras import layers

    def conv_block(filters: int) -> list:
        return [
            layers.Conv2D(filters, kernel_size=(3, 3)),  # 'valid', with bias, as nn.Conv2d
            layers.BatchNormalization(momentum=0.9, epsilon=1e-5),  # = torch's momentum 0.1, eps 1e-5
            layers.ReLU(),
            layers.MaxPool2D(pool_size=(2, 2)),
        ]

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            *conv_block(32),
            *conv_block(64),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(10, dtype="float32"),  # logits (float32 also under a mixed policy)
        ],
        name="fastcnn",
    )
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    if trainable != TRAINABLE_PARAMS:
        raise AssertionError(f"fastcnn: {trainable:,} trainable params, cnnlab's has {TRAINABLE_PARAMS:,}")
    model.compile(
        optimizer=make_optimizer(total_steps),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=LABEL_SMOOTHING),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def train_dataset(x: np.ndarray, y: np.ndarray, seed: int, epochs: int):
    """All epochs' batches as one tf.data pipeline; each epoch knows its number, for the flip parity."""
    import tensorflow as tf

    n = len(y)
    images, labels = tf.constant(x), tf.constant(y)
    bits = tf.constant(flip_bits(np.arange(n), seed).astype(bool))

    def epoch_batches(epoch):  # epoch: int64 scalar, 1-based like cnnlab's
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=[seed, epoch])
        parity = tf.cast(epoch % 2, tf.bool)

        def batch(idx):
            xb = tf.gather(images, idx)
            if FLIP:
                flip = tf.math.logical_xor(tf.gather(bits, idx), parity)
                xb = tf.where(
                    flip[:, None, None, None], tf.reverse(xb, axis=[2]), xb
                )  # mirror the width axis
            return xb, tf.one_hot(tf.gather(labels, idx), 10)

        return (
            tf.data.Dataset.from_tensor_slices(order)
            .batch(BATCH_SIZE)
            .map(batch, num_parallel_calls=tf.data.AUTOTUNE)
        )

    return tf.data.Dataset.range(1, epochs + 1).flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE)


def make_probe(x_test: np.ndarray, y_test: np.ndarray, epochs: int):
    """Times each epoch (begin -> end, training only) and then evaluates the test set off the clock."""
    import keras

    class TestProbe(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []
            self.train_seconds = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.marks = []
            self.start = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            # begin hooks only: an end hook would make Keras sync and convert logs after every step
            self.marks.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            end = time.perf_counter()
            seconds = end - self.start
            self.train_seconds += seconds
            durations = [b - a for a, b in zip(self.marks, [*self.marks[1:], end], strict=True)]
            t0 = time.perf_counter()
            logits = self.model.predict(x_test, batch_size=EVAL_BATCH, verbose=0)
            acc = float(np.mean(np.argmax(logits, axis=1) == y_test))
            eval_seconds = time.perf_counter() - t0
            self.rows.append(
                {
                    "epoch": epoch + 1,
                    "epoch_seconds": seconds,
                    "trace_seconds": trace_overhead(durations) if not self.rows else 0.0,
                    "train_seconds": self.train_seconds,
                    "loss": float(logs["loss"]),
                    "accuracy": float(logs["accuracy"]),
                    "test_accuracy": acc,
                    "test_eval_seconds": eval_seconds,
                }
            )
            print_epoch("keras", self.rows[-1], epochs)

    return TestProbe()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.split("\n\n")[0], argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = args.threads or available_cores()
    configure_tensorflow(threads)
    import keras

    data = fast_data(args.data_dir, args.limit)
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    x_train = normalized(x_train, data["mean"], data["std"])
    x_test = normalized(x_test, data["mean"], data["std"])
    steps = math.ceil(len(y_train) / BATCH_SIZE)

    keras.utils.set_random_seed(args.seed)  # weights and dropout
    if args.bf16:  # bf16 compute, float32 weights; the logits layer below stays float32
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model(total_steps=args.epochs * steps)
    dataset = train_dataset(x_train, y_train, args.seed, args.epochs)

    probe = make_probe(x_test, y_test, args.epochs)
    started = time.perf_counter()
    # verbose=0: a progress bar adds host syncs and printing to the timed loop
    model.fit(dataset, epochs=args.epochs, steps_per_epoch=steps, callbacks=[probe], shuffle=False, verbose=0)
    wall = time.perf_counter() - started

    rows = probe.rows
    payload = {
        "peer": "keras",
        "config": recipe_config(args, data),
        "machine": machine_info(threads),
        "jit_compile": bool(model.jit_compile),
        "epochs": rows,
        "final_accuracy": rows[-1]["test_accuracy"],
        "train_seconds": rows[-1]["train_seconds"],
        "first_epoch_trace_seconds": rows[0]["trace_seconds"],
        "time_to": time_to(rows),
        # all of fit(), test probes included: exposes time spent outside the epochs (set-up, teardown)
        "fit_wall_seconds": wall,
        "test_eval_seconds_total": sum(r["test_eval_seconds"] for r in rows),
    }
    print_summary("keras", payload)
    if args.out:
        write_json_atomic(args.out, payload)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
