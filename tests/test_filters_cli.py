"""`cnnlab filters` and `cnnlab kernels` end to end, on the bundled photo, and every bad input the issue lists:
one line, exit 1, no traceback, no output files left behind."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
import scipy.signal as ss
from PIL import Image

from cnnlab.cli import main
from cnnlab.filters import KERNELS, sample_image


def cli(capsys, *args) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors exit 2
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def bomb_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_default_run_reproduces_the_tutorial(capsys, tmp_path):
    out = tmp_path / "figs"
    code, stdout, err = cli(capsys, "filters", "--out", out)
    assert code == 0, err
    folder = out / "chelsea"
    names = sorted(p.name for p in folder.iterdir())
    expected = {
        f"{k}{suffix}"
        for k in ("outline", "sobel_left", "blur", "negative")
        for suffix in (".png", "_map.png", ".npy")
    }
    assert set(names) == expected | {"grid.png"}
    assert "outline" in stdout and "sobel_left" in stdout
    # exactly the tutorial's computation: gray 0.299/0.587/0.114, outline full size, the others half size
    gray = sample_image(gray=True)
    np.testing.assert_allclose(
        np.load(folder / "outline.npy"),
        ss.convolve2d(gray, KERNELS["outline"], boundary="symm", mode="same"),
        atol=1e-5,
    )
    small = gray[::2, ::2]
    for name in ("sobel_left", "blur", "negative"):
        feature = np.load(folder / f"{name}.npy")
        assert feature.shape == (150, 226)
        np.testing.assert_allclose(
            feature, ss.convolve2d(small, KERNELS[name], boundary="symm", mode="same"), atol=1e-5
        )
    with Image.open(folder / "outline.png") as im:
        assert im.format == "PNG" and im.width > 2 * im.height * 0.9  # two panels side by side
    with Image.open(folder / "sobel_left_map.png") as im:
        assert im.size == (226, 150) and im.mode == "L"
        values = np.asarray(im)
        assert values.min() == 0 and values.max() == 255  # min-max normalised
    assert not any(p.name.startswith(".cnnlab-tmp") for p in folder.parent.iterdir())


def test_tutorial_figure_titles():
    from cnnlab.filters.figures import tutorial_figure

    fig = tutorial_figure(np.eye(4), np.eye(4), "outline")
    assert [ax.get_title() for ax in fig.axes] == ["Input image", "Feature map - outline"]
    assert list(fig.get_size_inches()) == [20, 10]
    assert all(len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0 for ax in fig.axes)


def test_custom_kernels_colour_stride_padding_and_corr(capsys, tmp_path):
    photo = tmp_path / "my photo.png"
    rgb = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(photo)
    kfile = tmp_path / "edge.csv"
    kfile.write_text("1,0,-1\n2,0,-2\n1,0,-1\n")
    code, _, err = cli(capsys, "filters", photo, "-k", "mine=[[1,2],[3,4]]", "-k", kfile, "-k", "gaussian5",
                       "--color", "--stride", "2", "--padding", "1", "--op", "corr", "--boundary", "fill",
                       "--normalize", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    folder = tmp_path / "o" / "my_photo"
    mine = np.load(folder / "mine.npy")
    assert mine.shape == ((40 + 2 - 2) // 2 + 1, (60 + 2 - 2) // 2 + 1, 3)
    img = rgb.astype(np.float32) / 255
    padded = np.pad(img[..., 0], 1)
    expected = ss.correlate2d(padded, np.array([[1, 2], [3, 4]]) / 10, mode="valid")[::2, ::2]
    np.testing.assert_allclose(mine[..., 0], expected, atol=1e-5)
    assert (folder / "edge.png").is_file() and (folder / "gaussian5_map.png").is_file()
    with Image.open(folder / "edge_map.png") as im:
        assert im.mode == "RGB"


def test_two_images_and_downsample(capsys, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.new("RGB", (32, 24), (10, 200, 30)).save(a)
    Image.new("L", (20, 20), 128).save(b)
    code, _, err = cli(capsys, "filters", a, b, "-k", "blur", "--downsample", "2", "--out", tmp_path / "o")
    assert code == 0, err
    assert np.load(tmp_path / "o" / "a" / "blur.npy").shape == (12, 16)
    assert np.load(tmp_path / "o" / "b" / "blur.npy").shape == (10, 10)


def test_kernels_command_lists_every_kernel_with_its_matrix(capsys):
    code, out, _ = cli(capsys, "kernels")
    assert code == 0
    for name in KERNELS:
        assert name in out
    assert "0.01" in out and "-1" in out and "8" in out
    code, out, _ = cli(capsys, "kernels", "sobel_left", "--json")
    assert json.loads(out)["sobel_left"]["matrix"] == [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    code, _, err = cli(capsys, "kernels", "nope")
    assert code == 1 and "Unknown kernel 'nope'" in err


def test_help_explains_convolution_versus_correlation(capsys):
    code, out, _ = cli(capsys, "filters", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "cross-correlation" in text and "flipped" in text and "CNN layers" in text
    assert "anchored" in text  # even-sized kernels


def test_show_without_display_falls_back_to_files(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    code, out, _ = cli(capsys, "filters", "-k", "identity", "--show", "--out", tmp_path / "o")
    assert code == 0 and "no display" in " ".join(out.split())
    assert (tmp_path / "o" / "chelsea" / "identity.png").is_file()


def _bad_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(9000, 9000))
    tiny = tmp_path / "tiny.png"
    Image.new("L", (4, 4)).save(tiny)
    good = tmp_path / "good.png"
    Image.new("L", (16, 16)).save(good)
    return {"text": text, "cut": cut, "bomb": bomb, "tiny": tiny, "good": good}


BAD = [
    (["{text}"], "not an image"),
    (["{cut}"], "truncated"),
    (["{bomb}"], "81.0 megapixels"),
    (["{good}", "{cut}"], "truncated"),  # the first image's files must not survive the second's failure
    (["{tmp}/missing.png"], "no such file"),
    (["{good}", "-k", "[]"], "empty"),
    (["{good}", "-k", "[[1,2],[3]]"], "ragged"),
    (["{good}", "-k", "[[1,x]]"], "not a valid matrix"),
    (["{good}", "-k", "1 2; 3 y"], "non-numeric entry 'y'"),
    (["{good}", "-k", "{tmp}/nokernel.json"], "no such file"),
    (["{good}", "-k", "blurr"], "Unknown kernel 'blurr'"),
    (["{tiny}", "-k", "gaussian5", "--mode", "valid"], "larger than the image"),
    (["{good}", "--stride", "0"], "--stride must be >= 1"),
    (["{good}", "--padding", "-1"], "--padding must be >= 0"),
    (["{good}", "--padding", "1", "--mode", "same"], "not both"),
    (["{good}", "--downsample", "16"], "downsample factor 16 leaves nothing"),
    (["{good}", "--downsample", "0"], "--downsample must be"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_one_line_exit_1_no_outputs(capsys, tmp_path, argv, message):
    files = _bad_files(tmp_path)
    args = [a.format(tmp=tmp_path, **files) for a in argv]
    out = tmp_path / "out" / "nested"
    code, _, err = cli(capsys, "filters", *args, "--out", out)
    assert code == 1, err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("cnnlab filters: error:") and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written, not even the folders


def test_failure_keeps_existing_outputs_untouched(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, _ = cli(capsys, "filters", "-k", "[[1,2],[3]]", "--out", out)
    assert code == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_out_path_that_is_a_file(capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    code, _, err = cli(capsys, "filters", "-k", "identity", "--out", target)
    assert code == 1 and "not a folder" in err
