"""cnnlab.filters: kernel registry, kernel parsing, `apply` against scipy.signal (the tutorial's reference),
boundary modes, stride/padding sizes, engines, preprocessing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.errors import CnnlabError
from cnnlab.filters import (
    KERNEL_INFO,
    KERNELS,
    MAX_KERNEL_SIZE,
    apply,
    downsample,
    get_kernel,
    list_kernels,
    mode_padding,
    normalize_kernel,
    output_size,
    parse_kernel,
    prepare,
    resolve_kernel,
    sample_image,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    """The bundled photo as the tutorial prepares it: grayscale, float64 (scipy's working precision)."""
    return sample_image(gray=True).astype(np.float64)


# ------------------------------------------------------------------------------------------- registry
def test_tutorial_kernels_exactly_as_the_post_defines_them():
    assert list_kernels()[:4] == ["outline", "sobel_left", "blur", "negative"]
    np.testing.assert_array_equal(KERNELS["outline"], [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(KERNELS["sobel_left"], [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    np.testing.assert_array_equal(KERNELS["blur"], np.full((3, 3), 0.01))
    np.testing.assert_array_equal(KERNELS["negative"], np.full((3, 3), -1))
    assert KERNELS["blur"].sum() == pytest.approx(0.09)  # the tutorial's blur darkens; not "fixed"
    assert [KERNEL_INFO[n].tutorial_downsample for n in list_kernels()[:4]] == [1, 2, 2, 2]


def test_usual_set_present_and_sane():
    names = set(list_kernels())
    for name in ("identity", "sobel_left", "sobel_right", "sobel_top", "sobel_bottom", "laplacian",
                 "box_blur", "gaussian3", "gaussian5", "sharpen", "emboss", "ridge"):  # fmt: skip
        assert name in names
    assert any(n.startswith("prewitt") for n in names)
    for name in ("box_blur", "gaussian3", "gaussian5", "sharpen", "identity"):
        assert KERNELS[name].sum() == pytest.approx(1.0)
    for name in ("sobel_left", "sobel_top", "laplacian", "outline", "ridge"):
        assert KERNELS[name].sum() == pytest.approx(0.0)
    # the four Sobel directions are rotations / sign flips of each other
    np.testing.assert_array_equal(KERNELS["sobel_right"], -KERNELS["sobel_left"])
    np.testing.assert_array_equal(
        KERNELS["sobel_top"], np.rot90(KERNELS["sobel_left"], -1)
    )  # left column -> top row
    np.testing.assert_array_equal(KERNELS["sobel_bottom"], -KERNELS["sobel_top"])
    assert KERNELS["gaussian5"].shape == (5, 5)


def test_registry_is_read_only_and_get_kernel_copies():
    with pytest.raises(ValueError):
        KERNELS["outline"][0, 0] = 5
    k = get_kernel("outline")
    k[0, 0] = 5
    assert KERNELS["outline"][0, 0] == -1
    with pytest.raises(CnnlabError, match="Unknown kernel 'sobel'. Available: outline, sobel_left"):
        get_kernel("sobel")


# ----------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        ("[[1,0,-1],[2,0,-2],[1,0,-1]]", (3, 3)),
        (" [[1, 0.5], [2e-1, -3]] ", (2, 2)),
        ("1 0 -1; 2 0 -2; 1 0 -1", (3, 3)),
        ("1,2,1", (1, 3)),
        ("[1, 2, 1]", (1, 3)),
        ("[[5]]", (1, 1)),
        ([[1, 2], [3, 4]], (2, 2)),
        (np.ones((63, 2)), (63, 2)),
        ("gaussian5", (5, 5)),
    ],
)
def test_parse_valid_kernels(spec, shape):
    k = parse_kernel(spec)
    assert k.shape == shape and k.dtype == np.float64


def test_parse_kernel_files(tmp_path):
    m = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
    (tmp_path / "k.json").write_text(json.dumps(m.tolist()))
    (tmp_path / "k.csv").write_text("1,0,-1\n2,0,-2\n1,0,-1\n")
    (tmp_path / "k.txt").write_text("# sobel\n1 0 -1\n2 0 -2\n1 0 -1\n")
    np.save(tmp_path / "k.npy", m)
    for suffix in ("json", "csv", "txt", "npy"):
        np.testing.assert_array_equal(parse_kernel(tmp_path / f"k.{suffix}"), m)
    assert resolve_kernel(str(tmp_path / "k.csv"))[0] == "k"


def test_resolve_kernel_names():
    assert resolve_kernel("outline")[0] == "outline"
    assert resolve_kernel("[[1,-1]]")[0] == "custom"
    name, k = resolve_kernel("edge=[[1,0,-1]]")
    assert name == "edge" and k.shape == (1, 3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("[]", "empty"),
        ("[[]]", "empty"),
        ("", "empty"),
        ("[[1,2],[3]]", "ragged: row 1 has 2 entries, row 2 has 1"),
        ("1 2; 3", "ragged"),
        ("[[1,a]]", "not a valid matrix"),
        ('[["1", 2]]', "non-numeric entry '1' at row 1, column 1"),
        ("[[true, 1]]", "non-numeric"),
        ("1 x; 2 3", "non-numeric entry 'x'"),
        ("[[1, NaN]]", "NaN or infinite"),
        ("[[[1]]]", "non-numeric"),
        ("[[1], 2]", "mixes numbers and rows"),
        ("sobelleft", "Unknown kernel 'sobelleft'"),
        ("missing.json", "no such file"),
        (np.ones((64, 3)), "64x3; the largest allowed is 63x63"),
        (np.ones((2, 2, 2)), "2-D"),
        (np.array([["a"]]), "non-numeric"),
        (np.ones((3, 3), dtype=complex), "non-numeric"),
    ],
)
def test_parse_invalid_kernels(spec, message):
    with pytest.raises(CnnlabError, match=message.replace("[", r"\[")):
        parse_kernel(spec)


def test_parse_invalid_kernel_files(tmp_path):
    (tmp_path / "bad.csv").write_text("1,2\n3,oops\n")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    (tmp_path / "obj.npy").write_bytes(b"not numpy")
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "dict.json").write_text('{"k": [[1]]}')
    (tmp_path / "empty.txt").write_text("")
    for name, message in [("bad.csv", "non-numeric entry 'oops' at row 2, column 2"), ("ragged.csv", "ragged"),
                          ("obj.npy", "numeric .npy"), ("pickled.npy", "numeric .npy"),
                          ("dict.json", "JSON list of rows"), ("empty.txt", "empty")]:  # fmt: skip
        with pytest.raises(CnnlabError, match=message) as info:
            parse_kernel(tmp_path / name)
        assert name in str(info.value)


def test_normalize_kernel():
    assert normalize_kernel(get_kernel("blur")).sum() == pytest.approx(1.0)
    k = normalize_kernel(get_kernel("outline"))  # sums to 0: positive part scaled to 1
    assert k[k > 0].sum() == pytest.approx(1.0) and k.sum() == pytest.approx(0.0)
    with pytest.raises(CnnlabError, match="all-zero"):
        normalize_kernel(np.zeros((3, 3)))
    np.testing.assert_allclose(apply(np.ones((4, 4)), "blur", normalize=True), 1.0)


# ----------------------------------------------------------------- exactness against scipy.signal
@pytest.mark.parametrize("name", list(KERNELS))
def test_every_named_kernel_equals_scipy_on_the_photo(cat, name):
    for img in (cat, cat[::2, ::2]):  # the tutorial's full-size and half-size images
        ref = ss.convolve2d(img, KERNELS[name], boundary="symm", mode="same")
        np.testing.assert_allclose(apply(img, name), ref, rtol=0, atol=1e-6)


@st.composite
def image_and_kernel(draw, max_side=24):
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    kh, kw = draw(st.integers(1, 15)), draw(st.integers(1, 15))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return rng.random((h, w)), rng.uniform(-1, 1, size=(kh, kw))


@FAST
@given(image_and_kernel(), st.sampled_from(["auto", "direct", "fft"]))
def test_random_kernels_equal_scipy_in_the_tutorial_setting(data, method):
    img, k = data
    ref = ss.convolve2d(img, k, boundary="symm", mode="same")
    np.testing.assert_allclose(apply(img, k, method=method), ref, rtol=0, atol=1e-6)


@FAST
@given(image_and_kernel(max_side=16), st.sampled_from(["symm", "fill", "wrap"]), st.sampled_from(["same", "full", "valid"]),
       st.sampled_from(["conv", "corr"]))  # fmt: skip
def test_boundaries_modes_and_ops_equal_scipy(data, boundary, mode, op):
    img, k = data
    if mode == "valid" and (k.shape[0] > img.shape[0] or k.shape[1] > img.shape[1]):
        with pytest.raises(CnnlabError, match="larger than the image"):
            apply(img, k, mode=mode)
        return
    reference = ss.convolve2d if op == "conv" else ss.correlate2d
    ref = reference(img, k, boundary=boundary, mode=mode, fillvalue=0.25)
    for method in ("direct", "fft"):
        got = apply(img, k, boundary=boundary, mode=mode, op=op, fillvalue=0.25, method=method)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_reflect_boundary_does_not_repeat_the_edge():
    from scipy import ndimage

    img = np.random.default_rng(3).random((9, 13))
    k = np.random.default_rng(4).random((5, 5))
    # ndimage's "mirror" is numpy's "reflect": d c b | a b c d | c b a
    np.testing.assert_allclose(
        apply(img, k, boundary="reflect"), ndimage.convolve(img, k, mode="mirror"), atol=1e-12
    )
    assert not np.allclose(apply(img, k, boundary="reflect"), apply(img, k, boundary="symm"))


def test_even_kernel_anchoring_matches_scipy():
    assert mode_padding((2, 4), "same", "conv") == (1, 0, 2, 1)
    assert mode_padding((2, 4), "same", "corr") == (0, 1, 1, 2)
    img = np.arange(30.0).reshape(5, 6)
    k = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(apply(img, k), ss.convolve2d(img, k, boundary="symm", mode="same"))
    np.testing.assert_allclose(apply(img, k, op="corr"), ss.correlate2d(img, k, boundary="symm", mode="same"))


def test_conv_flips_and_corr_does_not():
    img = np.random.default_rng(5).random((8, 9))
    np.testing.assert_allclose(apply(img, "sobel_left", op="corr"), apply(img, "sobel_right"), atol=1e-12)
    np.testing.assert_allclose(apply(img, "outline", op="corr"), apply(img, "outline"), atol=1e-12)


def test_colour_is_filtered_per_channel_and_float32_is_kept():
    rgb = np.random.default_rng(6).random((10, 12, 3)).astype(np.float32)
    out = apply(rgb, "sharpen")
    assert out.shape == (10, 12, 3) and out.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(out[..., c], apply(rgb[..., c], "sharpen"), atol=1e-6)
    assert apply(np.ones((4, 4), dtype=np.uint8), "identity").dtype == np.float64


def test_engines_agree_on_a_float32_photo(cat):
    img = cat.astype(np.float32)
    for k in (np.random.default_rng(7).standard_normal((15, 15)), get_kernel("gaussian5")):
        a, b = apply(img, k, method="direct"), apply(img, k, method="fft")
        assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(a).max())


# ---------------------------------------------------------------------------- stride and padding
@FAST
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 5), st.integers(1, 5), st.integers(0, 3),
       st.integers(1, 4), st.integers(1, 4))  # fmt: skip
def test_stride_and_padding_sizes_follow_the_formula(h, w, kh, kw, p, sh, sw):
    img = np.random.default_rng(h * 100 + w).random((h, w))
    k = np.ones((kh, kw))
    if kh > h + 2 * p or kw > w + 2 * p:
        with pytest.raises(CnnlabError, match="larger than the"):
            apply(img, k, padding=p, stride=(sh, sw))
        return
    out = apply(img, k, padding=p, stride=(sh, sw), boundary="fill")
    assert out.shape == (output_size(h, kh, padding=p, stride=sh), output_size(w, kw, padding=p, stride=sw))
    assert out.shape == ((h + 2 * p - kh) // sh + 1, (w + 2 * p - kw) // sw + 1)
    # a strided result is the stride-1 result sampled every s-th position
    full = apply(img, k, padding=p, boundary="fill")
    np.testing.assert_allclose(out, full[::sh, ::sw])
    same = apply(img, k, stride=(sh, sw))
    assert same.shape == (-(-h // sh), -(-w // sw))


def test_padding_and_stride_match_torch_conv2d():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    img, k = rng.random((9, 11)), rng.random((3, 4))
    for p in (0, 1, 2):
        for s in (1, 2, 3):
            ref = torch.nn.functional.conv2d(
                torch.tensor(img)[None, None], torch.tensor(k)[None, None], padding=p, stride=s
            )
            got = apply(img, k, op="corr", padding=p, stride=s, boundary="fill")
            np.testing.assert_allclose(got, ref[0, 0].numpy(), atol=1e-12)
    # asymmetric padding (top, bottom, left, right)
    assert apply(img, k, padding=(1, 0, 2, 3), boundary="fill").shape == (9 + 1 - 3 + 1, 11 + 5 - 4 + 1)


def test_the_tutorials_padding_and_stride_examples():
    five = np.ones((5, 5))
    assert apply(five, np.ones((3, 3)), padding=1, boundary="fill").shape == (5, 5)
    assert apply(five, np.ones((3, 3)), mode="valid").shape == (3, 3)
    assert apply(five, np.ones((3, 3)), padding=1, stride=2, boundary="fill").shape == (3, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stride": 0}, "stride must be >= 1"),
        ({"stride": (1, -2)}, "stride must be >= 1"),
        ({"stride": 1.5}, "stride must be an integer"),
        ({"padding": -1}, "padding must be >= 0"),
        ({"padding": (1, 2, 3)}, "padding must be"),
        ({"padding": 1, "mode": "same"}, "either mode='same' or explicit padding"),
        ({"mode": "valid", "kernel": np.ones((7, 3))}, "kernel 7x3 is larger than the image"),
        ({"boundary": "mirror"}, "Unknown boundary 'mirror'. Choose one of: symm, reflect, wrap, fill"),
        ({"mode": "big"}, "Unknown mode"),
        ({"op": "xcorr"}, "Unknown op"),
        ({"method": "torch"}, "Unknown method"),
        ({"image": np.zeros((0, 4))}, "image is empty"),
        ({"image": np.zeros(5)}, "must be a numeric"),
        ({"image": np.array([["a"]])}, "must be a numeric"),
    ],
)
def test_apply_rejects_bad_arguments(kwargs, message):
    kwargs = {"image": np.ones((5, 6)), "kernel": "outline", **kwargs}
    with pytest.raises(CnnlabError, match=message):
        apply(kwargs.pop("image"), kwargs.pop("kernel"), **kwargs)


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), -float("inf"), 1e300])
def test_apply_refuses_fill_values_that_poison_the_map(fill):
    with pytest.raises(CnnlabError, match="fill value"):
        apply(np.ones((5, 6), dtype=np.float32), "outline", boundary="fill", fillvalue=fill)
    assert np.isfinite(apply(np.ones((5, 6), np.float32), "outline", boundary="fill", fillvalue=1e30)).all()


def test_apply_refuses_padding_beyond_the_pixel_limit_before_allocating():
    with pytest.raises(CnnlabError, match="over the 50-megapixel limit"):
        apply(np.ones((40, 60), np.float32), "identity", padding=100_000)  # 149 GiB if allocated
    with pytest.raises(CnnlabError, match="padding up to 2 on every side fits"):
        apply(np.ones((10, 10)), "identity", padding=5, max_pixels=200)
    assert apply(np.ones((10, 10)), "identity", padding=5, max_pixels=None).shape == (18, 18)
    # the padding a mode implies is always allowed, even past the limit
    assert apply(np.ones((10, 10)), np.ones((5, 5)), mode="full", max_pixels=100).shape == (14, 14)
    assert apply(np.ones((10, 10)), np.ones((5, 5)), padding=4, max_pixels=100).shape == (14, 14)


def test_long_inline_kernels_parse():
    big = [[float(i - j) for j in range(MAX_KERNEL_SIZE)] for i in range(MAX_KERNEL_SIZE)]
    text = json.dumps(big)
    assert len(text) > 4096  # longer than any path the OS takes
    np.testing.assert_array_equal(parse_kernel(text), big)
    name, matrix = resolve_kernel(f"big={text}")
    assert name == "big" and matrix.shape == (MAX_KERNEL_SIZE, MAX_KERNEL_SIZE)
    assert resolve_kernel(text)[0] == "custom"
    with pytest.raises(CnnlabError, match="nested too deeply"):
        parse_kernel("[" * 10_000 + "]" * 10_000)


def test_kernel_files_that_are_not_small_regular_files(tmp_path):
    from cnnlab.filters.kernels import MAX_KERNEL_FILE_BYTES, load_kernel_file

    huge = tmp_path / "huge.npy"
    np.save(huge, np.zeros((1000, 1000)))
    assert huge.stat().st_size > MAX_KERNEL_FILE_BYTES
    with pytest.raises(CnnlabError, match="over the 1 MiB limit for a kernel file"):
        parse_kernel(huge)
    for special, kind in (("/dev/zero", "a character device"), (tmp_path / "k.json.fifo", "a FIFO")):
        if kind == "a FIFO":
            os.mkfifo(special)
        link = tmp_path / f"link-{kind[2:6]}.json"
        link.symlink_to(special)
        for path in (special, link):  # refused on stat: never opened, never read
            with pytest.raises(CnnlabError, match=f"it is (a link to .*, which is )?{kind}"):
                load_kernel_file(path)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(CnnlabError, match="it is a folder"):
        parse_kernel(tmp_path / "dir.json")
    with pytest.raises(CnnlabError, match="File name too long"):
        load_kernel_file("x" * 300 + ".json")


# --------------------------------------------------------------------------------- preprocessing
def test_preprocessing_as_in_the_tutorial(cat):
    rgb = sample_image()
    assert rgb.shape == (300, 451, 3) and cat.shape == (300, 451)
    expected = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    np.testing.assert_allclose(cat, expected, atol=1e-6)
    np.testing.assert_array_equal(downsample(cat, 2), cat[::2, ::2])
    assert prepare(rgb, gray=True, factor=2).shape == (150, 226)
    assert prepare(rgb, gray=False, factor=3).shape == (100, 151, 3)
    assert downsample(cat, 1) is cat


@pytest.mark.parametrize("factor", [0, -1, 300, 1000])
def test_downsample_that_leaves_nothing(cat, factor):
    with pytest.raises(CnnlabError, match="downsample factor"):
        downsample(cat, factor)


def test_downsample_message_on_tiny_images_suggests_a_valid_factor():
    with pytest.raises(CnnlabError, match=r"use factor 1 \(no downsampling\)"):
        downsample(np.ones((1, 1)), 2)
    with pytest.raises(CnnlabError, match="use factor 1"):
        downsample(np.ones((2, 9)), 2)
    with pytest.raises(CnnlabError, match="use a factor below 3"):
        downsample(np.ones((3, 9)), 3)


def test_max_kernel_size_constant():
    assert MAX_KERNEL_SIZE == 63
    assert apply(np.ones((70, 70)), np.ones((63, 63)) / 63**2).shape == (70, 70)


@pytest.mark.parametrize(
    "module",
    ["kernels", "conv", "arith", "preprocess", "figures", "animation", "__init__"],
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    name = "cnnlab.filters" if module == "__init__" else f"cnnlab.filters.{module}"
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_images_docstring_examples_run():
    import doctest

    import cnnlab.images

    assert doctest.testmod(cnnlab.images).failed == 0
