"""Convolution arithmetic: output sizes and which input positions each output reads.

One axis at a time (a 2-D window is the product of a row range and a column range), for a kernel of
size k with dilation d sliding with stride s over an input of size n padded by p_before + p_after:

    out = floor((n + p_before + p_after - d*(k - 1) - 1) / s) + 1

which with symmetric padding p and d = 1 is the familiar `floor((n + 2p - k) / s) + 1`. Output i reads
inputs `i*s - p_before + d*j` for j = 0..k-1; indices outside 0..n-1 fall on the padding. Pooling uses
the same arithmetic (a 2x2 pool with stride 2 is a 2x2 window with stride 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.errors import CnnlabError


def _check(n: int, k: int, stride: int, dilation: int, pads: tuple[int, int]) -> None:
    for name, value in (("input size", n), ("kernel size", k), ("stride", stride), ("dilation", dilation)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CnnlabError(f"{name} must be an integer >= 1, got {value!r}")
    if min(pads) < 0:
        raise CnnlabError(f"padding must be >= 0, got {pads[0] if pads[0] < 0 else pads[1]}")
    span = dilation * (k - 1) + 1
    if span > n + pads[0] + pads[1]:
        raise CnnlabError(
            f"impossible setting: the kernel spans {span} positions but the padded input has only "
            f"{n} + {pads[0]} + {pads[1]} = {n + pads[0] + pads[1]}; use a smaller kernel or more padding"
        )


def output_size(
    n: int, k: int, *, padding: int | tuple[int, int] = 0, stride: int = 1, dilation: int = 1
) -> int:
    """Output length along one axis: `floor((n + 2p - d(k-1) - 1) / s) + 1`.

    Args:
        n: input size. k: kernel size. padding: p on both sides, or (before, after).
        stride: step s. dilation: spacing d between kernel taps (1 = an ordinary kernel).

    Raises:
        CnnlabError: non-positive sizes or stride, negative padding, or a kernel that does not fit.

    Example:
        >>> output_size(5, 3, padding=1), output_size(5, 3), output_size(5, 3, padding=1, stride=2)
        (5, 3, 3)
    """
    pads = (padding, padding) if isinstance(padding, int) else (padding[0], padding[1])
    _check(n, k, stride, dilation, pads)
    return (n + pads[0] + pads[1] - dilation * (k - 1) - 1) // stride + 1


def same_padding(k: int, *, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding that keeps the size at stride 1; the extra one goes after for even k,
    as in PyTorch's `padding="same"` and `scipy.signal.correlate2d`.

    Example:
        >>> same_padding(3), same_padding(4)
        ((1, 1), (1, 2))
    """
    total = dilation * (k - 1)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class AxisArith:
    """The arithmetic of one axis: sizes, padding and the inputs each output reads."""

    n: int
    k: int
    stride: int
    pad_before: int
    pad_after: int
    dilation: int = 1

    @property
    def out(self) -> int:
        return output_size(
            self.n,
            self.k,
            padding=(self.pad_before, self.pad_after),
            stride=self.stride,
            dilation=self.dilation,
        )

    def reads(self, i: int) -> list[int]:
        """Input indices output i reads (negative or >= n means padding)."""
        start = i * self.stride - self.pad_before
        return [start + self.dilation * j for j in range(self.k)]

    def formula(self) -> str:
        """The size formula with this axis's numbers, e.g. `floor((5 + 2*1 - 3) / 2) + 1 = 3`."""
        pb, pa = self.pad_before, self.pad_after
        pads = f"2*{pb}" if pb == pa else f"{pb} + {pa}"
        span = str(self.k) if self.dilation == 1 else f"{self.dilation}*({self.k} - 1) - 1"
        return f"floor(({self.n} + {pads} - {span}) / {self.stride}) + 1 = {self.out}"


def conv_arith(
    input_size: tuple[int, int],
    kernel_size: tuple[int, int],
    *,
    padding: str | tuple[int, int] = (0, 0),
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    pool: bool = False,
) -> tuple[AxisArith, AxisArith]:
    """The arithmetic of both axes (rows, cols). `padding` is (ph, pw) or "same"/"valid"/"full".

    Settings PyTorch refuses are refused here too: `padding="same"` with a stride other than 1, and,
    for a pooling window (`pool=True`), padding of more than half the window on any side.

    Example:
        >>> rows, cols = conv_arith((5, 5), (3, 3), padding=(1, 1), stride=(2, 2))
        >>> rows.out, rows.reads(0), rows.reads(2)
        (3, [-1, 0, 1], [3, 4, 5])
    """
    axes = []
    for a in range(2):
        n, k, s, d = input_size[a], kernel_size[a], stride[a], dilation[a]
        if isinstance(padding, str):
            if padding == "valid":
                pb = pa = 0
            elif padding == "full":
                pb = pa = d * (k - 1)
            elif padding == "same":
                pb, pa = same_padding(k, dilation=d)
            else:
                raise CnnlabError(
                    f"padding must be an integer, HxW, 'same', 'valid' or 'full', got {padding!r}"
                )
        else:
            pb = pa = padding[a]
        axis = AxisArith(n, k, s, pb, pa, d)
        _check(n, k, s, d, (pb, pa))
        if padding == "same" and s != 1:
            raise CnnlabError(
                f"'same' padding needs stride 1, as in PyTorch, got stride {s}; "
                f"give the padding as a number instead (e.g. {d * (k - 1) // 2})"
            )
        if pool and max(pb, pa) > k // 2:
            raise CnnlabError(
                f"pooling padding must be at most half the window, as in PyTorch: a {k}-wide window "
                f"takes padding 0..{k // 2}, got {max(pb, pa)}"
            )
        axes.append(axis)
    return axes[0], axes[1]
