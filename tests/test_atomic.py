"""cnnlab.atomic, the one atomic writer: single files, streamed files, folders of files, new folders."""

from __future__ import annotations

import doctest

import pytest

import cnnlab.atomic
from cnnlab.atomic import atomic_files, atomic_path, new_folders, write_atomic
from cnnlab.errors import CnnlabError


def test_docstring_examples_run():
    assert doctest.testmod(cnnlab.atomic).failed == 0


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_atomic(target, "one")
    write_atomic(target, b"two", fsync=False)
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_a_failure_inside_atomic_path_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("checksum mismatch")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_new_folders_removes_only_what_it_created_and_is_empty(tmp_path):
    (tmp_path / "cache").mkdir()
    with pytest.raises(RuntimeError), new_folders(tmp_path / "cache" / "cnnlab" / "cifar10") as folder:
        assert folder.is_dir()
        raise RuntimeError("offline")
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]  # existed before: kept
    assert not any((tmp_path / "cache").iterdir())
    # a file written before the failure (a verified download) is kept, with the folders above it
    with pytest.raises(RuntimeError), new_folders(tmp_path / "x" / "y") as folder:
        (folder / "done.gz").write_bytes(b"ok")
        (folder / "empty").mkdir()
        raise RuntimeError("second file failed")
    assert sorted(p.name for p in (tmp_path / "x" / "y").iterdir()) == ["done.gz"]  # no empty folder


def test_atomic_files_all_or_nothing(tmp_path):
    out = tmp_path / "new" / "figs"
    with pytest.raises(KeyError), atomic_files(out) as stage:
        stage.write("a/one.png", b"1")
        raise KeyError("bad input found late")
    assert not (tmp_path / "new").exists()  # created here, removed again
    with atomic_files(out) as stage:
        path = stage.write("a/one.png", b"1")
    assert path.read_bytes() == b"1" and sorted(p.name for p in out.iterdir()) == ["a"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(CnnlabError, match="exists and is not a folder"), atomic_files(tmp_path / "file"):
        pass
