"""The compact wire form of activations (schema ``cnnlab.activations/2``): what the page downloads.

A stage's output travels in one of three ways:

- **float32**, bit-exact: the input image, every tensor of at most `EXACT_MAX` values (dense outputs,
  logits, probabilities) and any tensor holding a non-finite value;
- **uint8 per channel**: ``value = (q - zero_point[c]) * scale[c]`` for each slice ``c`` of the first axis
  (one feature map; a long vector is one slice). The grid is chosen with 254 steps over
  ``[min(lo, 0), max(hi, 0)]`` and an integer zero point, so 0 is exact, nothing is clipped and every
  decoded value is within ``scale[c] / 2`` of the float32 the model computed (``max_error`` states the
  bound of the whole tensor);
- **derived**, no data at all: a stage whose output equals an earlier stage's bit for bit (dropout at
  evaluation, flatten: ``identity``) or equals that stage's ReLU (``relu``) names the stage and the
  operation, and the reader recomputes it. ReLU of a decoded value is exact on the uint8 grid because
  0 is a grid point.

For cnn2 this is 1 byte per value for the few stages that carry information instead of 4 bytes for
every stage: the /api/explain document shrinks from about 794 KB to about 110 KB.
"""

from __future__ import annotations

import base64

import numpy as np

from cnnlab.explain import schema

EXACT_MAX = 1024  # tensors this small travel as float32 (they are cheap, and logits deserve all digits)
STEPS = 254  # 254 steps over [lo, hi] keep q within 0..255 whatever the rounding (see _affine)


def _affine(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero_point) per slice for values in [lo, hi]. With lo <= 0 <= hi and ``zp = round(-lo /
    scale)`` (round-half-even is symmetric), ``round(v / scale) + zp`` lies in 0..STEPS+1 for every v."""
    lo = np.minimum(lo, 0.0)
    hi = np.maximum(hi, 0.0)
    scale = (hi - lo) / STEPS  # 0 for an all-zero slice: it decodes to exact zeros whatever q is
    return scale, np.round(-lo / np.where(scale > 0, scale, 1.0))


def encode_compact(values: np.ndarray) -> schema.TensorData:
    """An array -> uint8 `TensorData` with one (scale, zero point) per slice of the first axis (a 1-d
    array is one slice). Non-finite values cannot be quantised: such an array stays float32.

    Example:
        >>> t = encode_compact(np.linspace(-1, 1, 2000, dtype=np.float32))
        >>> t.dtype, round(t.max_error, 5), float(np.abs(schema.decode_tensor(t)).max())
        ('uint8', 0.00394, 1.0)
    """
    arr = np.asarray(values, dtype=np.float32)
    if not np.isfinite(arr).all():
        return schema.encode_tensor(arr)
    rows = arr.reshape(1, -1) if arr.ndim < 2 else arr.reshape(arr.shape[0], -1)
    x = rows.astype(np.float64)
    scale, zp = _affine(x.min(axis=1), x.max(axis=1))
    q = np.round(x / np.where(scale > 0, scale, 1.0)[:, None]) + zp[:, None]
    data = base64.b64encode(q.astype(np.uint8).tobytes()).decode("ascii")
    return schema.TensorData(
        dtype="uint8",
        shape=list(arr.shape),
        encoding="base64",
        data=data,
        scale=[float(s) for s in scale],
        zero_point=[int(z) for z in zp],
        max_error=float(scale.max() / 2),
    )


def derivation(values: np.ndarray, previous: np.ndarray | None) -> str | None:
    """``"identity"`` or ``"relu"`` when ``values`` is that function of ``previous``, bit for bit."""
    if previous is None or previous.size != values.size:
        return None
    prev = previous.reshape(-1)
    flat = values.reshape(-1)
    if np.array_equal(flat, prev):
        return "identity"
    if np.array_equal(flat, np.maximum(prev, np.float32(0))):
        return "relu"
    return None


def wire_values(
    values: np.ndarray, previous: np.ndarray | None, *, kind: str, encoding: str | None, precision: str
) -> tuple[schema.TensorData | None, str | None]:
    """How one stage travels: ``(values, derived_op)``; exactly one of them is set (both None when
    ``encoding`` is None: a document without values)."""
    if encoding is None:
        return None, None
    if encoding == "list" or precision == "exact":
        return schema.encode_tensor(values, encoding), None
    if precision != "compact":
        raise ValueError(f"Unknown precision {precision!r}. Available: compact, exact")
    op = derivation(values, previous)
    if op is not None:
        return None, op
    if kind == "input" or values.size <= EXACT_MAX:
        return schema.encode_tensor(values), None
    return encode_compact(values), None
