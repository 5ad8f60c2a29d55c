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
        (["--stride", 0], "stride must be"),
        (["--padding", -1], "padding must be >= 0"),
        (["--input", "five"], "--input must be an integer"),
        (["--padding", "sideways"], "--padding must be an integer"),
        (["--pool", "max", "--dilation", 2], "not --pool"),
    ],
)
def test_cli_errors(capsys, argv, message):
    code, out, err = cli(capsys, "conv-arith", *argv)
    assert code == 1 and message in err and err.count("\n") == 1 and "Traceback" not in err


def _gif_frames(data: bytes) -> tuple[int, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as im:
        return im.n_frames, im.size


def test_conv_gif_frame_count_and_size():
    for stride, out in ((1, 5), (2, 3)):  # the tutorial's two figures: padding 1, stride 1 and 2
        anim = animate(5, 3, padding=1, stride=stride)
        assert anim.out_shape == (out, out) and len(anim.frames) == out * out
        n, size = _gif_frames(anim.gif())
        assert n == out * out and size == anim.size
        assert all(f.shape == (anim.size[1], anim.size[0], 3) for f in anim.frames)
        with Image.open(io.BytesIO(anim.strip())) as strip:
            w, h = round(anim.size[0] * 0.5), round(anim.size[1] * 0.5)
            assert strip.size == (out * w, out * h)
    assert "3x3 kernel, padding 1, stride 2 -> 3x3 output" in animate(5, 3, padding=1, stride=2).title


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
