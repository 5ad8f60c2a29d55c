"""Folder and CSV datasets: layout errors, bad images, the cache, and the stratified split.

Every dataset is built in the test from generated PNG/JPEG files; the cache goes to a temp folder.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab.data import load_data
from cnnlab.data.folder import decode_folder, folder_split, load_folder, parse_fractions
from cnnlab.data.stats import channel_stats, pixel_sums
from cnnlab.errors import CnnlabError

COLORS = {"cat": (220, 40, 40), "dog": (40, 40, 220), "fox": (40, 200, 40)}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)


def make_folder(root: Path, counts: dict[str, int], *, size=(24, 16)) -> Path:
    """Class sub-folders of solid-colour images (PNG and JPEG, sizes varying) with a little noise."""
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w, h = size[0] + i % 5, size[1] + i % 3
            arr = np.clip(np.array(COLORS[cls]) + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return root


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "cnnlab" / "folders").glob("*.npy"))


# --- loading ------------------------------------------------------------------------------------


def test_folder_loads_as_dataset_with_train_statistics(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 20, "dog": 14, "fox": 10})
    (root / "cat" / "notes.txt").write_text("not an image; ignored by extension")
    data = load_data(str(root), image_size=16, seed=0)
    assert data.classes == ("cat", "dog", "fox")
    assert data.input_shape == (3, 16, 16)
    assert len(data.train) + len(data.val) + len(data.test) == 44
    x = data.train.images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(data.mean, x.mean(axis=(0, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(data.std, x.std(axis=(0, 2, 3)), atol=1e-5)
    # red cats, blue dogs: the colour survives decoding and resizing (pad bands are black, so use max)
    cats = data.train.images[data.train.labels == 0].float()
    assert cats[:, 0].amax(dim=(1, 2)).min() > 180 and cats[:, 2].amax(dim=(1, 2)).max() < 80
    assert data.describe()["mean"] == list(data.mean)


def test_grayscale_and_limit(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 12, "dog": 12})
    data = load_folder(root, image_size=8, channels=1, limit=3, quiet=True)
    assert data.input_shape == (1, 8, 8)
    assert (len(data.train), len(data.val), len(data.test)) == (3, 3, 3)
    # luma of (220, 40, 40) is about 0.299*220 + 0.587*40 + 0.114*40 = 93
    cats = data.train.images[data.train.labels == 0].float()
    assert 70 < cats[:, 0, 4, 4].mean() < 115


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 20, "dog": 10, "fox": 7})
    a = load_folder(root, image_size=8, seed=1, quiet=True)
    b = load_folder(root, image_size=8, seed=1, quiet=True)
    c = load_folder(root, image_size=8, seed=2, quiet=True)
    for split, expected in (("val", [3, 2, 1]), ("test", [3, 2, 1])):
        assert np.bincount(getattr(a, split).labels.numpy(), minlength=3).tolist() == expected
    assert np.bincount(a.train.labels.numpy()).tolist() == [14, 6, 5]
    assert all(
        np.array_equal(getattr(a, s).images.numpy(), getattr(b, s).images.numpy())
        for s in ("train", "val", "test")
    )
    assert not np.array_equal(a.test.images.numpy(), c.test.images.numpy())
    custom = load_folder(root, image_size=8, split="50/25/25", quiet=True)
    assert np.bincount(custom.val.labels.numpy()).tolist() == [5, 2, 2]


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(3, 60), min_size=2, max_size=6),
    seed=st.integers(0, 2**32 - 1),
    fractions=st.sampled_from([(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.34, 0.33, 0.33)]),
)
def test_folder_split_covers_every_image_once_with_every_class_in_every_split(counts, seed, fractions):
    labels = np.repeat(np.arange(len(counts)), counts)
    parts = folder_split(labels, fractions, seed)
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(len(labels)))
    for part in parts:
        assert set(labels[part].tolist()) == set(range(len(counts)))


def test_split_names(tmp_path):
    assert parse_fractions("default") == parse_fractions("tutorial") == (0.7, 0.15, 0.15)
    assert parse_fractions("80/10/10") == (0.8, 0.1, 0.1)
    for bad in ("90/20", "80/20/0", "a/b/c", "official"):
        with pytest.raises(CnnlabError, match="Unknown split .* for a folder dataset"):
            parse_fractions(bad)


# --- what a folder dataset records: its real split and each split's files ------------------------


def test_each_split_carries_its_files_in_order(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 10, "dog": 7, "fox": 5})
    data = load_folder(root, image_size=8, seed=3, quiet=True)
    files = data.split_files()
    assert files is not None and sorted(files) == ["test", "train", "val"]
    every = [f for split in files.values() for f in split]
    on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*.*"))
    assert sorted(every) == on_disk  # each file in exactly one split, named relative to the folder
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        labels = [data.classes[i] for i in split.labels.tolist()]
        assert [f.split(os.sep)[0] for f in split.files] == labels  # file i is image i
    # the same order from the cache, through head() and take()
    again = load_folder(root, image_size=8, seed=3, quiet=True)
    assert again.split_files() == files
    assert data.train.head(3).files == data.train.files[:3]
    assert data.test.take([1, 0]).files == (data.test.files[1], data.test.files[0])
    json.dumps(files)


def test_csv_splits_name_files_as_the_csv_gives_them(tmp_path):
    make_folder(tmp_path / "imgs", {"cat": 5, "dog": 5})
    rows = [f"imgs/{c}/{i:03d}.{'png' if i % 2 else 'jpg'},{c}" for c in ("cat", "dog") for i in range(5)]
    (tmp_path / "l.csv").write_text("\n".join(rows))
    data = load_folder(tmp_path / "l.csv", image_size=8, quiet=True)
    assert sorted(f for split in data.split_files().values() for f in split) == sorted(
        r.split(",")[0] for r in rows
    )


def test_describe_states_the_real_split(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 10, "dog": 10})
    described = load_data(str(root), image_size=8, seed=4).describe()
    assert described["split"] == "default"  # the name it was asked by (and can be reloaded with)
    assert described["split_description"] == "stratified 70/15/15 train/val/test by class, seed 4"
    custom = load_folder(root, image_size=8, split="80/10/10", quiet=True).describe()
    assert custom["split_description"] == "stratified 80/10/10 train/val/test by class, seed 0"


# --- layout errors: one clear line each, nothing decoded or cached ------------------------------


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"cat": 5}, r"only one class sub-folder \('cat'\); a classifier needs at least two"),
        ({"cat": 5, "dog": 5, "fox": 0}, "Class folder 'fox' in .* holds no images"),
        (
            {"cat": 5, "dog": 2, "fox": 1},
            r"Too few images for the 70/15/15 train/val/test split in classes 'dog' \(2\), 'fox' \(1\): "
            r"every class needs at least 3 \(one each for train, val and test\)",
        ),
    ],
    ids=["one class", "empty class", "1-2 images"],
)
def test_bad_folders_fail_before_decoding(tmp_path, layout, message):
    root = make_folder(tmp_path / "pets", {k: v for k, v in layout.items() if v})
    for cls in (k for k, v in layout.items() if not v):
        (root / cls).mkdir()
    with pytest.raises(CnnlabError, match=message) as info:
        load_data(str(root), image_size=8)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists()  # nothing decoded, nothing cached


# --- layout errors ------------------------------------------------------------------------------


def test_layout_errors_say_what_would_work(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    with pytest.raises(CnnlabError, match=r"has no class sub-folders \(it holds 1 images directly\)"):
        load_data(str(flat))
    one = make_folder(tmp_path / "one", {"cat": 5})
    with pytest.raises(
        CnnlabError, match="only one class sub-folder \\('cat'\\); a classifier needs at least two"
    ):
        load_data(str(one))
    empty = make_folder(tmp_path / "empty", {"cat": 5, "dog": 5})
    (empty / "fox").mkdir()
    (empty / "fox" / "readme.md").write_text("no images here")
    with pytest.raises(CnnlabError, match="Class folder 'fox' in .* holds no images"):
        load_data(str(empty))
    few = make_folder(tmp_path / "few", {"cat": 5, "dog": 2})
    with pytest.raises(CnnlabError, match=r"Too few images for the 70/15/15 .* class 'dog' \(2\)"):
        load_data(str(few))
    with pytest.raises(CnnlabError, match="Dataset folder or CSV 'no/such/folder' does not exist"):
        load_data("no/such/folder")
    # data_dir (e.g. $CNNLAB_DATA_DIR saved with a run) is for built-in files; a folder ignores it
    ok = make_folder(tmp_path / "ok", {"cat": 4, "dog": 4})
    assert len(load_data(str(ok), data_dir=tmp_path / "elsewhere", image_size=8).classes) == 2


def test_too_few_after_skipping_bad_images(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 3})
    (root / "dog" / "000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CnnlabError, match=r"class 'dog' \(2\)"):
        load_folder(root, image_size=8, quiet=True)


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_dataset_and_its_errors(tmp_path):
    make_folder(tmp_path / "imgs", {"cat": 6, "dog": 6})
    rows = [f"imgs/{c}/{i:03d}.{'png' if i % 2 else 'jpg'},{c}" for c in ("cat", "dog") for i in range(6)]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\n" + "\n".join(rows) + "\n")
    data = load_data(str(csv_path), image_size=8)
    assert data.classes == ("cat", "dog") and len(data.train) + len(data.val) + len(data.test) == 12

    # a class list fixes the order and rejects unknown labels
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    assert load_folder(csv_path, image_size=8, quiet=True).classes == ("dog", "cat")
    bad_label = tmp_path / "typo.csv"
    bad_label.write_text("\n".join([*rows, "imgs/cat/000.jpg,dgo"]).replace("imgs/cat/000.jpg,cat\n", ""))
    with pytest.raises(CnnlabError, match=r"labels not in classes.txt: 'dgo' \(line 12\)\. Known: dog, cat"):
        load_data(str(bad_label))
    (tmp_path / "classes.txt").unlink()

    malformed = tmp_path / "malformed.csv"
    malformed.write_text("imgs/cat/000.jpg,cat\nimgs/cat/001.png\n")
    with pytest.raises(CnnlabError, match="line 2: expected path,label"):
        load_data(str(malformed))
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join([*rows, rows[0]]))
    with pytest.raises(CnnlabError, match="twice .*lines 1 and 13"):
        load_data(str(dup))
    single = tmp_path / "single.csv"
    single.write_text("\n".join(r for r in rows if r.endswith(",cat")))
    with pytest.raises(CnnlabError, match="only one class"):
        load_data(str(single))


def test_csv_naming_missing_files_is_one_error_before_any_decoding(tmp_path):
    root = make_folder(tmp_path / "imgs", {"cat": 6, "dog": 6})
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(root.rglob("*.*"))]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join([*rows, "imgs/cat/gone.jpg,cat", "imgs/dog/gone.png,dog"]))
    for bad_images in ("skip", "strict"):
        with pytest.raises(CnnlabError) as info:
            load_data(str(csv_path), image_size=8, bad_images=bad_images)
        message = str(info.value)
        assert "names 2 files that cannot be read" in message and "\n" not in message
        assert "line 13 'imgs/cat/gone.jpg' (no such file)" in message and "line 14" in message
    assert not (tmp_path / "cache").exists()  # nothing decoded, nothing cached


# --- bad and unusual images ---------------------------------------------------------------------


def test_every_image_mode_is_decoded(tmp_path):
    root = tmp_path / "modes"
    a, b = root / "a", root / "b"
    a.mkdir(parents=True)
    b.mkdir()
    Image.new("P", (10, 10), 3).save(a / "palette.png")
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    pal.save(a / "palette_transparent.png", transparency=0)  # fully transparent -> white
    Image.new("CMYK", (12, 9), (0, 255, 255, 0)).save(a / "cmyk.jpg")  # red
    Image.fromarray(np.full((9, 9), 65535, dtype=np.uint16)).save(a / "sixteen.png")
    Image.new("RGBA", (9, 9), (0, 0, 0, 0)).save(b / "alpha.png")  # fully transparent -> white
    Image.new("LA", (9, 9), (0, 255)).save(b / "gray_alpha.png")
    Image.new("1", (9, 9), 1).save(b / "bilevel.png")
    frames = [Image.new("RGB", (9, 9), c) for c in ((0, 255, 0), (255, 0, 0))]
    frames[0].save(b / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    Image.new("RGB", (9, 9), (0, 0, 255)).save(b / "blue.webp")
    Image.new("RGB", (9, 9), (0, 0, 255)).save(b / "blue.bmp")
    Image.new("F", (9, 9), 0.5).save(b / "float.tif")
    imgs = decode_folder(root, image_size=4, cache=False)
    assert imgs.bad == []
    px = {Path(f).name: imgs.images[i, :, 2, 2].tolist() for i, f in enumerate(imgs.files)}
    assert px["palette_transparent.png"] == [255, 255, 255]
    assert px["alpha.png"] == [255, 255, 255]
    assert px["gray_alpha.png"] == [0, 0, 0]
    assert px["sixteen.png"] == [255, 255, 255]
    assert px["bilevel.png"] == [255, 255, 255]
    assert px["animated.gif"][1] > 200 and px["animated.gif"][0] < 50  # the first (green) frame
    assert px["cmyk.jpg"][0] > 200 and px["cmyk.jpg"][1] < 60
    assert px["blue.webp"][2] > 200 and px["blue.bmp"] == [0, 0, 255]
    assert px["float.tif"] == [128, 128, 128]


def test_corrupt_files_skipped_with_report_or_strict(tmp_path, capsys):
    root = make_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    good = (root / "cat" / "000.jpg").read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "cat" / "garbage.png").write_bytes(os.urandom(300))
    (root / "dog" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "text.gif").write_text("GIF? no, a text file")
    data = load_data(str(root), image_size=8)
    assert len(data.train) + len(data.val) + len(data.test) == 12
    err = capsys.readouterr().err
    assert "Skipped 4 unreadable file(s)" in err
    for name, why in (
        ("truncated.jpg", "truncated or corrupt"),
        ("garbage.png", "not an image"),
        ("empty.jpg", "empty file"),
        ("text.gif", "not an image"),
    ):
        assert any(name in line and why in line for line in err.splitlines()), (name, err)
    # from the cache they are counted, never silently, but not listed again on every export or explain
    load_data(str(root), image_size=8)
    again = capsys.readouterr().err
    assert "read from the cache" in again and "4 unreadable skipped" in again
    assert "Skipped" not in again and "garbage.png" not in again
    with pytest.raises(CnnlabError, match=r"cat/garbage.png': not an image .*--bad-images strict"):
        load_data(str(root), image_size=8, bad_images="strict")


def test_decompression_bomb_is_refused_without_decoding(tmp_path, monkeypatch):
    import cnnlab.data.decode as decode

    root = make_folder(tmp_path / "pets", {"cat": 4, "dog": 4})
    Image.new("L", (3000, 3000)).save(root / "dog" / "huge.png")
    imgs = decode_folder(root, image_size=8, cache=False)
    assert imgs.bad == []
    monkeypatch.setattr(decode, "MAX_PIXELS", 1_000_000)
    paths = [root / "dog" / "huge.png"]
    result = decode.decode_images(paths, size=8, max_pixels=1_000_000)
    assert not result.ok.any() and "megapixel limit" in result.bad[0][1]


# --- resizing -----------------------------------------------------------------------------------


def test_resize_modes_pad_crop_stretch(tmp_path):
    from cnnlab.data.decode import decode_image

    path = tmp_path / "wide.png"
    arr = np.full((20, 40, 3), 255, dtype=np.uint8)
    arr[:, :10] = (255, 0, 0)  # red left quarter
    Image.fromarray(arr).save(path)
    pad = decode_image(path, size=8, resize="pad")
    assert pad.shape == (3, 8, 8)
    assert (pad[:, :2] == 0).all() and (pad[:, 6:] == 0).all()  # black bands above and below, centred
    assert (pad[1, 3:5, 4:] == 255).all() and pad[0, 4, 0] == 255 and pad[1, 4, 0] < 30
    crop = decode_image(path, size=8, resize="crop")
    # the centre square is white: the red quarter was cut off (but for the filter's reach at the edge)
    assert (crop[:, :, 1:] == 255).all() and crop[1, :, 0].min() > 200
    stretch = decode_image(path, size=8, resize="stretch")
    assert stretch[1, 4, 0] < 30 and (stretch[:, :, 4:] == 255).all()


def test_jpeg_draft_decoding_matches_a_full_decode(tmp_path):
    from cnnlab.data.decode import decode_image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((256, 256), Image.Resampling.BILINEAR).save(tmp_path / "x.jpg", quality=95)
    fast = decode_image(tmp_path / "x.jpg", size=32).astype(float)
    with Image.open(tmp_path / "x.jpg") as im:
        full = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert np.abs(fast - full).mean() < 3.0


# --- the cache ----------------------------------------------------------------------------------


def test_cache_hit_and_invalidation(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 8, "dog": 8})
    first = decode_folder(root, image_size=8)
    assert not first.from_cache and first.cache_file is not None and first.cache_file.is_file()
    # the cache is a plain .npy (+ .json): no pickle needed (or allowed) to read it
    assert np.load(first.cache_file, allow_pickle=False).shape == (16, 3, 8, 8)
    assert first.cache_file.with_suffix(".json").is_file()
    second = decode_folder(root, image_size=8)
    assert second.from_cache and np.array_equal(second.images, first.images)

    # a changed file (new content, new mtime) decodes again, and the stale entry is removed
    target = root / "dog" / "001.png"
    Image.new("RGB", (24, 16), (255, 255, 0)).save(target)
    later = time.time() + 5
    os.utime(target, (later, later))
    third = decode_folder(root, image_size=8)
    assert not third.from_cache
    idx = third.files.index(os.path.join("dog", "001.png"))
    assert third.images[idx, :, 4, 4].tolist() == [255, 255, 0]
    assert cache_files(tmp_path) == [third.cache_file]

    # an added file, or other options, are other keys
    Image.new("RGB", (8, 8)).save(root / "cat" / "new.png")
    assert not decode_folder(root, image_size=8).from_cache
    assert not decode_folder(root, image_size=8, resize="crop").from_cache
    assert decode_folder(root, image_size=8).from_cache
    assert len(cache_files(tmp_path)) == 2  # one per option set


def test_cache_survives_a_moved_folder_and_recovers_from_damage(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    first = decode_folder(root, image_size=8)
    pixels = np.array(first.images)  # the result maps the cache file, which is damaged below
    moved = root.rename(tmp_path / "moved")
    assert decode_folder(moved, image_size=8).from_cache
    first.cache_file.write_bytes(b"half an npy file")
    again = decode_folder(moved, image_size=8)
    assert not again.from_cache and np.array_equal(again.images, pixels)


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_a_cache_file_cut_short_or_edited_is_rebuilt_with_one_line(tmp_path, capsys, damage):
    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    first = decode_folder(root, image_size=8)
    pixels, npy = np.array(first.images), first.cache_file
    del first
    size = npy.stat().st_size
    if damage == "truncate":
        os.truncate(npy, size - 100)
    else:  # one pixel changed by hand, the size unchanged
        with open(npy, "r+b") as f:
            f.seek(size - 1)
            f.write(b"\x07")
    capsys.readouterr()
    again = decode_folder(root, image_size=8)
    err = capsys.readouterr().err
    assert not again.from_cache and np.array_equal(again.images, pixels)
    assert err.count("\n") == 1 and "damaged or was changed; decoding again" in err
    assert decode_folder(root, image_size=8).from_cache  # rebuilt and consistent


def test_an_interrupted_decode_resumes_where_it_stopped(tmp_path, monkeypatch, capsys):
    from cnnlab.data import disk_entry, folder_cache

    root = make_folder(tmp_path / "pets", {"cat": 40, "dog": 40})
    expected = np.array(decode_folder(root, image_size=16, cache=False).images)
    monkeypatch.setattr(disk_entry, "_COMMIT_SECONDS", 0.0)  # record after every chunk (16 rows of 16x16x3)
    real = folder_cache.decode_into
    seen: list[int] = []

    def interrupted(paths, out, *, start=0, on_chunk=None, **kw):
        def chunk(stop, bad):
            on_chunk(stop, bad)
            if stop >= 48:
                raise KeyboardInterrupt  # Ctrl-C in the middle of the decode

        seen.append(start)
        return real(paths, out, start=start, on_chunk=chunk, **{**kw, "workers": 1})

    monkeypatch.setattr(folder_cache, "decode_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        decode_folder(root, image_size=16)
    parts = sorted(
        p.name for p in (tmp_path / "cache" / "cnnlab" / "folders").iterdir() if p.suffix != ".lock"
    )
    assert [p.split(".", 1)[1] for p in parts] == ["part.json", "part.npy", "part.sums"]  # not finished yet
    monkeypatch.setattr(folder_cache, "decode_into", real)
    capsys.readouterr()
    resumed = decode_folder(root, image_size=16)
    assert seen == [0] and "resuming an interrupted decode at image 48 of 80" in capsys.readouterr().err
    assert not resumed.from_cache and np.array_equal(resumed.images, expected)
    assert np.array_equal(resumed.sums, pixel_sums(expected))  # the sums resumed too
    assert sorted(p.suffix for p in (tmp_path / "cache" / "cnnlab" / "folders").iterdir()) == [
        ".json",
        ".lock",  # what a second process wanting the entry waits on (kept: removing it would race)
        ".npy",
        ".sums",
    ]


def test_unreadable_rows_are_squeezed_out_of_the_file_on_disk(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    (root / "cat" / "001.png").write_bytes(b"not a png")
    (root / "dog" / "003.png").write_bytes(b"")
    first = decode_folder(root, image_size=8)
    expected = np.array(decode_folder(root, image_size=8, cache=False).images)
    assert len(first.bad) == 2 and np.array_equal(first.images, expected)
    on_disk = np.load(first.cache_file, allow_pickle=False)
    assert on_disk.shape == (10, 3, 8, 8) and np.array_equal(on_disk, expected)
    assert (
        first.cache_file.stat().st_size == 4096 + 10 * 3 * 8 * 8
    )  # data from a block on; cut after the last row
    assert np.array_equal(decode_folder(root, image_size=8).sums, pixel_sums(expected))


@pytest.mark.parametrize("where", ["free space", "fallocate"])
def test_a_disk_too_small_for_the_cache_is_one_line_and_decodes_in_memory(
    tmp_path, monkeypatch, capsys, where
):
    import errno

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_statvfs = os.statvfs

    def nearly_full(path):
        st = real_statvfs(path)
        return os.statvfs_result((*st[:4], 0, *st[5:]))  # f_bavail: no block free

    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    if where == "fallocate":
        monkeypatch.setattr(os, "posix_fallocate", full)
    else:
        monkeypatch.setattr(os, "statvfs", nearly_full)
    imgs = decode_folder(root, image_size=8)
    err = capsys.readouterr().err
    assert len(imgs.images) == 10 and imgs.cache_file is None
    assert err.count("\n") == 1 and "cannot hold the decoded images" in err and "XDG_CACHE_HOME" in err
    left = [p.suffix for p in (tmp_path / "cache" / "cnnlab" / "folders").iterdir()]
    assert left == [".lock"]  # nothing half-written left


def test_a_folder_changed_during_the_decode_is_one_error_and_caches_nothing(tmp_path, monkeypatch):
    from cnnlab.data import folder_cache

    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    real = folder_cache.decode_into

    def and_edit(paths, out, **kw):
        bad = real(paths, out, **kw)
        (root / "cat" / "001.png").write_bytes((root / "dog" / "001.png").read_bytes() + b"x")
        return bad

    monkeypatch.setattr(folder_cache, "decode_into", and_edit)
    with pytest.raises(CnnlabError, match="changed while it was being decoded"):
        decode_folder(root, image_size=8)
    assert not list((tmp_path / "cache" / "cnnlab" / "folders").glob("*.npy"))


def test_second_run_is_fast(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 60, "dog": 60}, size=(200, 150))
    t0 = time.perf_counter()
    load_folder(root, image_size=32, quiet=True)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_folder(root, image_size=32, quiet=True)
    warm = time.perf_counter() - t0
    assert warm < cold


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_train_and_eval_on_a_folder(tmp_path, run_cli):
    root = make_folder(tmp_path / "pets", {"cat": 10, "dog": 10})
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        "train", "--data", root, "--image-size", "12", "--model", "conv4-pool-dense8",
        "--epochs", "2", "--batch-size", "8", "--out", out, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "Error:" in stdout
    import json

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["image_size"] == 12 and cfg["input_shape"] == [3, 12, 12] and cfg["classes"] == ["cat", "dog"]
    assert cfg["mean"] is not None and len(cfg["mean"]) == 3
    code, stdout, err = run_cli("eval", out)
    assert code == 0, err
    assert "final set" in stdout
    # explain and the page rebuild the test set as training decoded it (12x12, not the 64x64 default)
    from cnnlab.explain.data import run_test_split

    split, classes = run_test_split(cfg)
    expected = load_data(str(root), image_size=12).test
    assert split.images.shape[1:] == (3, 12, 12) and classes == ["cat", "dog"]
    assert np.array_equal(split.images, expected.images) and np.array_equal(split.labels, expected.labels)


@pytest.mark.parametrize(
    "layout,args,message",
    [
        ("flat", [], "no class sub-folders"),
        ("bad", ["--bad-images", "strict"], "--bad-images strict"),
        ("ok", ["--channels", "2"], "invalid choice"),
        ("ok", ["--resize", "squash"], "invalid choice"),
    ],
)
def test_cli_folder_errors(tmp_path, run_cli, layout, args, message):
    root = tmp_path / "d"
    if layout == "flat":
        root.mkdir()
        Image.new("RGB", (8, 8)).save(root / "a.png")
    else:
        make_folder(root, {"cat": 4, "dog": 4})
        if layout == "bad":
            (root / "cat" / "x.jpg").write_bytes(b"junk")
    code, _, err = run_cli("train", "--data", root, "--out", tmp_path / "r", "--epochs", "1", *args)
    assert code == (2 if "invalid choice" in message else 1)
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("strict", [False, True])
def test_process_and_thread_backends_agree(tmp_path, strict):
    from cnnlab.data.decode import decode_images

    root = make_folder(tmp_path / "pets", {"cat": 30, "dog": 30})
    (root / "dog" / "zz_bad.png").write_bytes(b"junk")
    paths = sorted(root.rglob("*.*"))
    if strict:
        for backend in ("processes", "threads"):
            with pytest.raises(CnnlabError, match="zz_bad.png': not an image"):
                decode_images(paths, size=8, backend=backend, workers=2, strict=True)
        return
    a = decode_images(paths, size=8, backend="processes", workers=2)
    b = decode_images(paths, size=8, backend="threads", workers=2)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.ok, b.ok) and a.bad == b.bad
    assert np.array_equal(a.sizes, b.sizes) and len(a.images) == 60 and a.sizes[0].tolist() == [16, 24]


def test_folder_recipe_keeps_the_tied_epoch_the_validation_loss_prefers(tmp_path, run_cli):
    """On a small validation split accuracy ties for many epochs; the first epoch to reach the best value
    is not the model to keep (the old rule), the one among the tied epochs with the lowest loss is."""
    import csv
    import json

    root = make_folder(tmp_path / "pets", {"cat": 12, "dog": 12, "fox": 12})
    out = tmp_path / "run"
    code, _, err = run_cli(
        "train", "--data", root, "--image-size", "12", "--model", "conv8-pool-dense16",
        "--epochs", "12", "--out", out, "--quiet", "--monitor", "val_accuracy", "--monitor-window", "1",
    )  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    acc = [float(r["val_accuracy"]) for r in rows]
    loss = [float(r["val_loss"]) for r in rows]
    tied = [i for i, a in enumerate(acc) if a == max(acc)]
    assert len(tied) > 1  # the easy colours: the 6 validation images are all right for several epochs
    results = json.loads((out / "results.json").read_text())
    chosen = results["selection"]
    assert chosen["monitor"] == "val_accuracy" and chosen["tie_break"] == "val_loss"
    assert chosen["best_epoch"] == 1 + min(tied, key=lambda i: loss[i])
    assert chosen["best_epoch"] != 1 + tied[0]  # what the first-at-the-best rule kept


def test_resume_auto_before_the_first_checkpoint_starts_afresh_but_never_over_another_run(tmp_path, run_cli):
    root = make_folder(tmp_path / "pets", {"cat": 8, "dog": 8})
    args = ["--data", root, "--image-size", "12", "--model", "conv4-pool-dense8", "--epochs", "1", "--quiet"]
    out = tmp_path / "killed"
    (out / "checkpoints" / ".tmp-step-000000004-1a2b3c4d").mkdir(parents=True)  # killed mid-write
    code, _, err = run_cli("train", *args, "--out", out, "--resume", "auto")
    assert code == 0, err
    assert "no checkpoint in" in err and "starting the run afresh there" in err
    assert (out / "results.json").is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")  # a different run's folder (or anything else) is kept
    code, _, err = run_cli("train", *args, "--out", other, "--resume", "auto")
    assert code == 1 and "already holds files" in err
    assert (other / "config.json").read_text() == "{}"


def test_the_training_statistics_come_from_the_decodes_pixel_sums_not_the_images(tmp_path, monkeypatch):
    from cnnlab.data import folder

    root = make_folder(tmp_path / "pets", {"cat": 10, "dog": 10})
    first = load_folder(root, image_size=8, seed=1, quiet=True)

    def never(images):
        raise AssertionError("the statistics were computed again")

    monkeypatch.setattr(folder, "channel_stats", never)
    again = load_folder(root, image_size=8, seed=1, quiet=True)
    assert (again.mean, again.std) == (first.mean, first.std)
    other = load_folder(root, image_size=8, seed=2, quiet=True)  # another split: from the sums as well
    want = channel_stats(other.train.images)  # from the images, in float64
    np.testing.assert_allclose(other.mean + other.std, want[0] + want[1], rtol=1e-12)


def test_two_processes_wanting_the_same_entry_decode_it_once(tmp_path, monkeypatch, capsys):
    """The other ranks of a DDP job (or a second run) wait on the entry's lock and read the cache."""
    import threading

    from cnnlab.data import folder_cache

    root = make_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    real, calls = folder_cache.decode_into, []

    def slow(*args, **kw):
        calls.append(1)
        time.sleep(0.5)  # long enough for the second to find the lock held
        return real(*args, **kw)

    monkeypatch.setattr(folder_cache, "decode_into", slow)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(decode_folder(root, image_size=8))) for _ in range(2)
    ]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(r.from_cache for r in results) == [False, True]
    assert np.array_equal(results[0].images, results[1].images)
    assert "waiting for another process to finish decoding" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["npy", "block-aligned"])
@pytest.mark.parametrize("backend", ["processes", "threads"])
def test_decoding_into_a_file_map_writes_what_decoding_into_memory_gives(tmp_path, backend, layout):
    """The folder cache's way (chunks written to the mapped file: through the page cache for a plain .npy,
    with direct I/O for the cache's block-aligned one, the last chunk padded and the file cut back) and
    the in-memory way agree row for row, from a resumed start on, with a bad file's row black and every
    row's pixel sums exact."""
    from cnnlab.data import disk_entry
    from cnnlab.data.decode import decode_images, decode_into
    from cnnlab.data.row_file import RowFile

    root = make_folder(tmp_path / "pets", {"cat": 40, "dog": 41}, size=(20, 30))
    (root / "dog" / "m_bad.png").write_bytes(b"junk")
    paths = sorted(root.rglob("*.*"))
    want = decode_images(paths, size=16, backend="threads")
    shape = (82, 3, 16, 16)  # 768 bytes a row: 16 rows to a chunk that starts on a block
    if layout == "npy":
        mapped = np.lib.format.open_memmap(tmp_path / "rows.npy", mode="w+", dtype=np.uint8, shape=shape)
    else:
        mapped = disk_entry._create_npy(tmp_path / "rows.npy", shape)
        probe = RowFile(mapped, 16, threading.Lock())
        direct = probe.direct is not None
        probe.close()
        assert direct or not _direct_io_here(tmp_path)
    mapped[:16] = 7  # rows below the resumed start stay as they were
    sums = np.lib.format.open_memmap(tmp_path / "sums.npy", mode="w+", dtype=np.int64, shape=(82, 2, 3))
    sums[:] = -1  # shared with forked workers, as the cache's is
    bad = decode_into(paths, mapped, start=16, sums=sums, backend=backend, workers=2)
    bad_index = [i for i, p in enumerate(paths) if p.name == "m_bad.png"]
    assert [i for i, _ in bad] == bad_index and "not an image" in bad[0][1]
    offset = mapped.offset
    del mapped
    assert (tmp_path / "rows.npy").stat().st_size == offset + 82 * 768
    got = np.load(tmp_path / "rows.npy")
    assert (got[:16] == 7).all() and (sums[:16] == -1).all()
    assert not got[bad_index[0]].any()
    keep = np.ones(82, dtype=bool)
    keep[bad_index] = False
    keep[:16] = False
    assert np.array_equal(got[keep], want.images[keep[want.ok]])
    assert np.array_equal(sums[16:], pixel_sums(got[16:]))


def _direct_io_here(folder: Path) -> bool:
    """Whether ``folder``'s file system takes O_DIRECT (tmpfs does not)."""
    probe = folder / "direct.probe"
    probe.write_bytes(b"")
    try:
        os.close(os.open(probe, os.O_WRONLY | getattr(os, "O_DIRECT", 0)))
        return hasattr(os, "O_DIRECT")
    except OSError:
        return False
    finally:
        probe.unlink()


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_disk_filling_during_the_decode_is_one_line_and_leaves_no_partial_cache(
    tmp_path, monkeypatch, capsys, backend
):
    import errno

    from cnnlab.data import decode

    real_pwrite, calls = os.pwrite, []

    def fills(fd, data, offset):
        calls.append(offset)
        if len(calls) > 1:  # the second chunk finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    root = make_folder(tmp_path / "pets", {"cat": 30, "dog": 30})
    want = decode_folder(root, image_size=16, cache=False)
    monkeypatch.setattr(os, "pwrite", fills)
    if backend == "processes":
        monkeypatch.setattr(decode, "_use_processes", lambda *a: True)
    imgs = decode_folder(root, image_size=16, workers=1)
    err = capsys.readouterr().err
    assert "filled while decoding" in err and "No space left" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("note:")]) == 1
    assert imgs.cache_file is None and np.array_equal(imgs.images, want.images)
    left = [p.suffix for p in (tmp_path / "cache" / "cnnlab" / "folders").iterdir()]
    assert left == [".lock"]  # the partial entry removed, its space given back
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    again = decode_folder(root, image_size=16)  # room again: cached as usual
    assert again.cache_file is not None and np.array_equal(again.images, want.images)
