"""Atomic writes and listing on local paths and file:// URIs."""

import os

import pytest

from scl_ray import storage


@pytest.mark.parametrize("as_uri", [False, True])
def test_round_trip_and_listing(tmp_path, as_uri):
    root = f"file://{tmp_path}" if as_uri else str(tmp_path)
    target = storage.join(root, "a", "b.json")
    storage.write_json(target, {"x": 1})
    assert storage.read_json(target) == {"x": 1}
    assert storage.exists(target) and not storage.exists(storage.join(root, "nothing"))
    assert storage.list_dir(storage.join(root, "a")) == ["b.json"]
    assert storage.list_dir(storage.join(root, "missing")) == []


def test_atomic_write_leaves_no_temporary_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    storage.write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        storage.write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        storage.read_json(tmp_path / "nope.json")
