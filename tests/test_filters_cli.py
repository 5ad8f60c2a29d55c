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
    Image.new("L", (8, 8)).save(tiny)  # the smallest image accepted
    good = tmp_path / "good.png"
    Image.new("L", (16, 16)).save(good)
    one = tmp_path / "one.png"
    Image.new("L", (1, 1)).save(one)
    big_file = tmp_path / "big.txt"
    big_file.write_text("1 " * 600_000)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    return {
        "text": text,
        "cut": cut,
        "bomb": bomb,
        "tiny": tiny,
        "good": good,
        "one": one,
        "big_file": big_file,
        "deep": deep,
    }


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
    (["{tiny}", "-k", "1 1 1 1 1 1 1 1 1", "--mode", "valid"], "larger than the image"),
    (["{good}", "--padding", "1", "--mode", "same"], "not both"),
    (["{good}", "--downsample", "16"], "downsample factor 16 leaves nothing"),
    (["{one}"], "one.png' is 1x1 pixels; the smallest accepted is 8x8"),  # as the server says
    (["{tiny}", "--downsample", "8"], "downsample factor 8 leaves nothing of a 8x8 image"),
    (["{good}", "-k", "identity", "--padding", "100000"], "over the 50-megapixel limit (--max-megapixels)"),
    (["{good}", "-k", "identity", "--padding", "0,0,0," + "9" * 40], "over the 50-megapixel limit"),
    (
        ["{good}", "-k", "identity", "--padding", "50", "--max-megapixels", "0.001"],
        "limit of 1,000 pixels (--max-megapixels); padding up to 7 on every side fits",
    ),
    (["{good}", "--boundary", "fill", "--fill-value", "1e300"], "fill value 1e+300 is too large"),
    (["{good}", "-k", "{big_file}"], "over the 1 MiB limit for a kernel file"),
    (["{good}", "-k", "{tmp}"], "it is a folder"),
    (["{good}", "-k", "{deep}"], "nested too deeply"),
    (["{good}", "-k", "[" * 5000 + "]" * 5000], "nested too deeply"),
    (["{good}", "-k", "[[1]]" + "1" * 400], "Extra data"),  # a long bad matrix: no 'File name too long'
    (["{good}", "-k", "a" * 400], "Unknown kernel 'aaaa"),
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


USAGE = [
    (["--downsample", "0"], "argument --downsample: expected a positive integer, got 0"),
    (["--stride", "0"], "argument --stride: expected S or SH,SW with integers >= 1"),
    (["--stride", "1,2,3"], "argument --stride: expected S or SH,SW"),
    (
        ["--padding", "-1"],
        "argument --padding: expected P, PH,PW or TOP,BOTTOM,LEFT,RIGHT with integers >= 0",
    ),
    (["--padding", "1,2,3"], "argument --padding: expected P, PH,PW or TOP,BOTTOM,LEFT,RIGHT"),
    (["--dpi", "0"], "argument --dpi: expected an integer 10..600, got 0"),
    (["--dpi", "601"], "argument --dpi: expected an integer 10..600, got 601"),
    (
        ["--boundary", "fill", "--fill-value", "nan"],
        "argument --fill-value: expected a finite number, got 'nan'",
    ),
    (["--fill-value=-inf"], "argument --fill-value: expected a finite number"),
    (["--fill-value", "1e400"], "argument --fill-value: expected a finite number"),
    (["--max-megapixels", "inf"], "argument --max-megapixels: expected a finite number"),
    (["--max-megapixels", "0"], "argument --max-megapixels: expected a positive number"),
]


@pytest.mark.parametrize(("argv", "message"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_malformed_numbers_are_usage_errors_exit_2(run_cli, tmp_path, argv, message):
    code, _, err = run_cli("filters", "-k", "identity", *argv, "--out", tmp_path / "out")
    assert code == 2, err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("cnnlab filters: error:") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def _matrix_text(n: int) -> str:
    return json.dumps([[(i * n + j) % 7 - 3 for j in range(n)] for i in range(n)], separators=(",", ":"))


@pytest.mark.parametrize("n", [12, 63])
def test_long_inline_kernels_work(run_cli, tmp_path, n):
    """Inline matrices past the 255-character file-name limit, bare and as NAME=SPEC."""
    image = tmp_path / "cam.png"
    Image.fromarray((np.random.default_rng(0).random((70, 80)) * 255).astype(np.uint8)).save(image)
    text = _matrix_text(n)
    assert len(text) > 255
    rows = "; ".join(" ".join(str(v) for v in row) for row in json.loads(text))
    out = tmp_path / "out"
    code, _, err = run_cli("filters", image, "-k", text, "-k", f"big={text}", "-k", rows, "--out", out)
    assert code == 0, err
    expected = ss.convolve2d(
        np.asarray(Image.open(image), dtype=np.float64) / 255, np.array(json.loads(text)), "same", "symm"
    )
    for name in ("custom1", "big", "custom3"):
        np.testing.assert_allclose(np.load(out / "cam" / f"{name}.npy"), expected, rtol=1e-4, atol=1e-3)


def test_padding_within_the_pixel_limit_still_works(run_cli, tmp_path):
    image = tmp_path / "one.png"
    Image.new("L", (8, 8), 255).save(image)  # the smallest image accepted
    code, _, err = run_cli(
        "filters", image, "-k", "identity", "--downsample", "1", "--padding", "2", "--out", tmp_path / "o"
    )
    assert code == 0, err
    assert np.load(tmp_path / "o" / "one" / "identity.npy").shape == (10, 10)
    # 'full' mode on an image at the limit is fine even though its padding goes past the limit
    code, _, err = run_cli(
        "filters",
        image,
        "-k",
        "gaussian5",
        "--downsample",
        "1",
        "--mode",
        "full",
        "--max-megapixels",
        "0.000064",
        "--out",
        tmp_path / "f",
    )
    assert code == 0, err


def test_names_too_long_for_the_file_system(run_cli, tmp_path):
    """Image paths, --out folders and kernel names past the 255-byte name limit: one line, or shortened."""
    long = "x" * 300
    good = tmp_path / "good.png"
    Image.new("L", (16, 16)).save(good)
    code, _, err = run_cli("filters", tmp_path / f"{long}.png", "-k", "identity", "--out", tmp_path / "o")
    assert code == 1 and "File name too long" in err and err.count("\n") == 1 and len(err) < 200
    code, _, err = run_cli("filters", good, "-k", "identity", "--out", tmp_path / long)
    assert code == 1 and "cannot create output folder" in err and "Traceback" not in err and len(err) < 200
    code, _, err = run_cli("filters", good, "-k", f"{long}=identity", "--out", tmp_path / "o")
    assert code == 0, err
    assert (tmp_path / "o" / "good" / f"{'x' * 100}.npy").is_file()
