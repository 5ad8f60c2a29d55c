"""Convolution arithmetic (`output_size`, `conv_arith`, `cnnlab conv-arith`) and the sliding-window GIFs."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.filters import apply, conv_arith, output_size, same_padding
from cnnlab.filters.animation import animate


def cli(capsys, *args) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_tutorials_examples():
    assert output_size(5, 3, padding=1) == 5  # padding keeps 5x5
    assert output_size(5, 3) == 3  # without padding it would be 3x3
    assert output_size(5, 3, padding=1, stride=2) == 3
    assert output_size(4, 2, stride=2) == 2  # 2x2 pooling halves
    assert output_size(28, 3) == 26 and output_size(26, 2, stride=2) == 13  # the tutorial's CNN layers


def test_output_size_matches_torch_for_conv_and_pooling():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = torch.zeros(1, 1, 13, 13)
    for k in range(1, 6):
        for p in range(0, 3):
            for s in range(1, 4):
                for d in (1, 2):
                    if d * (k - 1) + 1 > 13 + 2 * p:
                        continue
                    torch_out = F.conv2d(x, torch.zeros(1, 1, k, k), padding=p, stride=s, dilation=d).shape[
                        -1
                    ]
                    assert output_size(13, k, padding=p, stride=s, dilation=d) == torch_out
                if p <= k // 2:  # torch's pooling limit
                    assert output_size(13, k, padding=p, stride=s) == F.max_pool2d(x, k, s, p).shape[-1]


def test_output_size_agrees_with_apply():
    img = np.ones((11, 8))
    for k in (1, 2, 3, 4):
        for p in (0, 1, 2):
            for s in (1, 2, 3):
                shape = apply(img, np.ones((k, k)), padding=p, stride=s, boundary="fill").shape
                assert shape == (
                    output_size(11, k, padding=p, stride=s),
                    output_size(8, k, padding=p, stride=s),
                )


def test_reads_lists_input_positions_with_padding():
    rows, cols = conv_arith((5, 5), (3, 3), padding=(1, 1), stride=(2, 2))
    assert (rows.out, cols.out) == (3, 3)
    assert [rows.reads(i) for i in range(3)] == [[-1, 0, 1], [1, 2, 3], [3, 4, 5]]
    assert rows.formula() == "floor((5 + 2*1 - 3) / 2) + 1 = 3"
    dil, _ = conv_arith((7, 7), (3, 3), padding="valid", dilation=(2, 2))
    assert dil.out == 3 and dil.reads(0) == [0, 2, 4]


def test_same_padding_keeps_the_size():
    for k in range(1, 8):
        before, after = same_padding(k)
        assert output_size(10, k, padding=(before, after)) == 10
        rows, _ = conv_arith((10, 10), (k, k), padding="same")
        assert rows.out == 10
    full, _ = conv_arith((5, 5), (3, 3), padding="full")
    assert full.out == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stride": 0}, "stride must be an integer >= 1"),
        ({"padding": -1}, "padding must be >= 0"),
        ({"n": 0}, "input size must be"),
        ({"k": 0}, "kernel size must be"),
        (
            {"k": 8},
            "impossible setting: the kernel spans 8 positions but the padded input has only 5 + 1 + 1 = 7",
        ),
        ({"dilation": 0}, "dilation must be"),
    ],
)
def test_impossible_settings(kwargs, message):
    args = {"n": 5, "k": 3, "padding": 1, "stride": 1, "dilation": 1, **kwargs}
    with pytest.raises(CnnlabError, match=re.escape(message)):
        output_size(args.pop("n"), args.pop("k"), **args)


def test_cli_prints_size_formula_and_positions(capsys):
    code, out, err = cli(capsys, "conv-arith", "--input", 5, "--kernel", 3, "--padding", 1, "--stride", 2)
    assert code == 0, err
    text = " ".join(out.split())
    assert "output size: 3x3" in text
    assert "floor((5 + 2*1 - 3) / 2) + 1 = 3" in text
    assert "(-1) 0 1" in text and "3 4 (5)" in text
    code, out, _ = cli(capsys, "conv-arith", "--input", "28x20", "--kernel", "3x5", "--padding", "same")
    assert code == 0 and "output size: 28x20" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", 5, "--kernel", 7], "impossible setting"),
        (["--pool", "max", "--dilation", 2], "not --pool"),
        (
            ["--pool", "max", "--input", 5, "--kernel", 3, "--padding", 2, "--stride", 2],
            "pooling padding must be at most half the window, as in PyTorch: a 3-wide window takes padding 0..1, got 2",
        ),
        (["--pool", "avg", "--kernel", 3, "--padding", "full", "--stride", 1], "padding 0..1, got 2"),
        (
            ["--pool", "max", "--kernel", "3x2", "--padding", "1x2"],
            "a 2-wide window takes padding 0..1, got 2",
        ),
        (["--padding", "same", "--stride", 2], "'same' padding needs stride 1, as in PyTorch, got stride 2"),
        (
            ["--pool", "max", "--padding", "same"],
            "'same' padding needs stride 1",
        ),  # pool stride defaults to 2
    ],
)
def test_cli_errors(capsys, argv, message):
    code, out, err = cli(capsys, "conv-arith", *argv)
    assert code == 1 and message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "abc"], "argument --input: expected a positive integer or HxW like 5x7, got 'abc'"),
        (["--input", 0], "argument --input: expected a positive integer or HxW like 5x7, got '0'"),
        (["--input", "5x6x7"], "argument --input"),
        (["--input", "5x"], "argument --input"),
        (["--kernel", -3], "argument --kernel"),
        (["--stride", 0], "argument --stride: expected a positive integer"),
        (["--stride", "2x0"], "argument --stride"),
        (["--dilation", 0], "argument --dilation"),
        (
            ["--padding", -1],
            "argument --padding: expected an integer >= 0, PHxPW like 1x2, same, valid or full",
        ),
        (["--padding", "1x-1"], "argument --padding"),
        (["--padding", "sideways"], "argument --padding"),
    ],
)
def test_malformed_numbers_are_usage_errors_exit_2(run_cli, argv, message):
    code, _, err = run_cli("conv-arith", *argv)
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_pytorch_rules_for_pooling_padding_and_strided_same():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = torch.zeros(1, 1, 9, 9)
    for k in range(1, 6):
        for p in range(0, 4):
            try:
                F.max_pool2d(x, k, 1, p)
                torch_ok = True
            except RuntimeError:
                torch_ok = False
            try:
                conv_arith((9, 9), (k, k), padding=(p, p), pool=True)
                ours_ok = True
            except CnnlabError:
                ours_ok = False
            assert ours_ok == torch_ok, (k, p)
    with pytest.raises(RuntimeError):
        F.conv2d(x, torch.zeros(1, 1, 3, 3), stride=2, padding="same")
    with pytest.raises(CnnlabError, match="'same' padding needs stride 1"):
        conv_arith((9, 9), (3, 3), padding="same", stride=(2, 2))
    assert conv_arith((9, 9), (3, 3), padding="same", stride=(1, 1))[0].out == 9
    with pytest.raises(CnnlabError, match="pooling padding"):
        animate(5, 3, padding=2, stride=2, kind="max")


@pytest.mark.parametrize(
    "argv",
    [
        ["--input", "9" * 30, "--kernel", 3, "--stride", "9" * 11],
        ["--input", 5, "--kernel", "9" * 20, "--padding", "9" * 20],
        ["--input", 5, "--dilation", "9" * 16, "--padding", "full"],
        ["--input", "9" * 30, "--animate"],
    ],
    ids=["huge input", "huge kernel", "huge dilation", "huge animate"],
)
def test_huge_sizes_print_an_elided_table_not_a_traceback(run_cli, tmp_path, argv):
    code, out, err = run_cli("conv-arith", *argv, "--out", tmp_path / "o")
    assert "Traceback" not in err and "output size:" in out
    if "--animate" in argv:
        assert code == 1 and "small grids" in err
    else:
        assert code == 0, err
        assert "..." in out


def test_wide_kernel_rows_are_elided_with_the_padding_count(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells at the terminal width
    code, out, err = run_cli("conv-arith", "--input", 5, "--kernel", 30, "--padding", 20, "--stride", 7)
    assert code == 0, err
    text = " ".join(out.split())
    assert "(-20) (-19) (-18) (-17) (-16) (-15) ... 4 (5) (6) (7) (8) (9) (25 padding)" in text
    assert "output [r, c] reads the 30x30 window" in text  # not eaten as rich markup


def _gif_frames(data: bytes) -> tuple[int, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as im:
        return im.n_frames, im.size


@pytest.mark.parametrize(
    "stride, out",  # the tutorial's two figures: padding 1, stride 1 (25 frames: slow) and 2
    [pytest.param(1, 5, marks=pytest.mark.slow), (2, 3)],
)
def test_conv_gif_frame_count_and_size(stride, out):
    anim = animate(5, 3, padding=1, stride=stride)
    assert anim.out_shape == (out, out) and len(anim.frames) == out * out
    n, size = _gif_frames(anim.gif())
    assert n == out * out and size == anim.size
    assert all(f.shape == (anim.size[1], anim.size[0], 3) for f in anim.frames)
    with Image.open(io.BytesIO(anim.strip())) as strip:
        w, h = round(anim.size[0] * 0.5), round(anim.size[1] * 0.5)
        assert strip.size == (out * w, out * h)
    assert f"3x3 kernel, padding 1, stride {stride} -> {out}x{out} output" in anim.title


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_gif(kind):
    anim = animate(4, 2, padding=0, stride=2, kind=kind)
    assert anim.out_shape == (2, 2) and _gif_frames(anim.gif())[0] == 4
    assert f"2x2 {'max' if kind == 'max' else 'average'} pooling" in anim.title


def test_animation_limits():
    with pytest.raises(CnnlabError, match="small grids"):
        animate(30, 3)
    with pytest.raises(CnnlabError, match="Unknown animation kind"):
        animate(5, 3, kind="min")
    with pytest.raises(CnnlabError, match="impossible"):
        animate(3, 5, padding=0)


def test_cli_animate_writes_gif_and_strip(capsys, tmp_path):
    code, out, err = cli(
        capsys,
        "conv-arith",
        "--input",
        5,
        "--kernel",
        3,
        "--padding",
        1,
        "--stride",
        2,
        "--animate",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    gif = tmp_path / "conv_in5x5_k3x3_p1_s2x2.gif"
    assert _gif_frames(gif.read_bytes())[0] == 9
    assert (tmp_path / "conv_in5x5_k3x3_p1_s2x2_frames.png").is_file()
    code, _, err = cli(capsys, "conv-arith", "--input", 4, "--pool", "avg", "--animate", "--out", tmp_path)
    assert code == 0, err
    assert _gif_frames((tmp_path / "avg_in4x4_k2x2_p0_s2x2.gif").read_bytes())[0] == 4
    code, _, err = cli(capsys, "conv-arith", "--input", 40, "--animate", "--out", tmp_path / "no")
    assert code == 1 and "small grids" in err and not (tmp_path / "no").exists()
