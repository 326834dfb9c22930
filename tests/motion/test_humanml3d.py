"""HumanML3D layout: text lines, motion files, upstream loading rules, and the dataset checker."""

import math
import os
import shutil

import numpy as np
import pytest

from scl_ray.motion import humanml3d
from scl_ray.motion.check import KINDS, check_dataset
from scl_ray.motion.constants import FEATURE_DIM
from scl_ray.motion.humanml3d import (
    Caption, MotionRecord, format_text_line, load_split, parse_text_line, read_motion,
    read_split, subclip_id, write_motion, write_split,
)
from scl_ray.text.tokens import tokenize

IDS = [f"{i:06d}" for i in range(1, 13)]


def _record(motion_id, frames, rng, captions=None):
    text = f"a person walks forward {motion_id}"
    return MotionRecord(
        motion_id, rng.standard_normal((frames, FEATURE_DIM)).astype(np.float32),
        captions or (Caption(text, tokenize(text)),),
        rng.standard_normal((frames, 22, 3)).astype(np.float32),
    )


def _make_dataset(root, seed=0):
    """A clean tiny dataset: 12 motions of 40..196 frames, three splits, Mean/Std."""
    rng = np.random.default_rng(seed)
    for index, motion_id in enumerate(IDS):
        write_motion(root, _record(motion_id, 40 + 13 * index, rng))
    write_split(root, "train", IDS[:8])
    write_split(root, "val", IDS[8:10])
    write_split(root, "test", IDS[10:])
    np.save(root / "Mean.npy", np.zeros(FEATURE_DIM, np.float32))
    np.save(root / "Std.npy", np.ones(FEATURE_DIM, np.float32))
    return root


def test_text_line_round_trip_and_upstream_format():
    captions = [Caption("a man kicks.", ("a/DET", "man/NOUN", "kick/VERB")),
                Caption("he jumps", ("he/PRON", "jump/VERB"), 1.5, 4.25), Caption("no tokens", ())]
    for caption in captions:
        assert parse_text_line(format_text_line(caption), "here") == caption
    assert format_text_line(captions[0]) == "a man kicks.#a/DET man/NOUN kick/VERB#0.0#0.0"
    nan_line = parse_text_line("a person waves#a/DET person/NOUN wave/VERB#nan#nan\n", "x")
    assert (nan_line.start, nan_line.end) == (0.0, 0.0) and nan_line.whole_clip


@pytest.mark.parametrize("line, fragment", [
    ("a man walks#a/DET#0.0", "3 '#'-separated fields"),
    ("a man walks#a/DET#zero#1.0", "not numbers"),
    ("a man walks#a/DET#3.0#1.0", "before start"),
    ("a man walks#a/DET#-1.0#1.0", "finite seconds"),
])
def test_parse_text_line_names_place_and_format(line, fragment):
    with pytest.raises(ValueError, match=fragment) as error:
        parse_text_line(line, "texts/000001.txt:7")
    assert "texts/000001.txt:7" in str(error.value) and "caption#" in str(error.value)


def test_motion_round_trip_is_exact(tmp_path):
    record = _record("M000123", 77, np.random.default_rng(1), captions=(
        Caption("a man walks", ("a/DET", "man/NOUN", "walk/VERB")), Caption("then stops", (), 0.5, 3.0)))
    record.features[3, 5] = np.nan
    write_motion(tmp_path, record)
    again = read_motion(tmp_path, "M000123")
    assert again.features.tobytes() == record.features.tobytes()
    assert again.joints.tobytes() == record.joints.tobytes()
    assert again.captions == record.captions
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    write_motion(tmp_path, MotionRecord("M000123", record.features[:50], record.captions))
    assert read_motion(tmp_path, "M000123").joints is None   # no stale 77-frame joints left behind


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    write_split(tmp_path, "train", ["000001"])

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(humanml3d.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_split(tmp_path, "train", ["000002"])
    assert read_split(tmp_path, "train") == ["000001"]
    assert os.listdir(tmp_path) == ["train.txt"]


def test_invalid_records_and_missing_files_fail_with_names(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match=r"motion 000001: features have shape \(50, 262\)"):
        MotionRecord("000001", rng.standard_normal((50, 262)), ())
    with pytest.raises(ValueError, match="joints have shape"):
        MotionRecord("000001", rng.standard_normal((50, FEATURE_DIM)), (), rng.standard_normal((49, 22, 3)))
    with pytest.raises(ValueError, match="motion id"):
        MotionRecord("../etc", rng.standard_normal((50, FEATURE_DIM)), ())
    with pytest.raises(ValueError, match="no captions"):
        write_motion(tmp_path, MotionRecord("000001", rng.standard_normal((50, FEATURE_DIM)), ()))
    with pytest.raises(FileNotFoundError, match="no split file 'val'"):
        read_split(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="000009"):
        read_motion(tmp_path, "000009")


def test_load_split_follows_upstream_rules(tmp_path):
    rng = np.random.default_rng(3)
    whole = Caption("a person walks", ("a/DET", "person/NOUN", "walk/VERB"))
    write_motion(tmp_path, _record("000001", 120, rng, (whole, Caption("he turns", (), 0.15, 3.0),
                                                         Caption("short", (), 0.0, 1.0),
                                                         Caption("he waves", (), 1.0, 5.0))))
    write_motion(tmp_path, _record("000002", 199, rng, (whole,)))   # kept, cropped to 196
    write_motion(tmp_path, _record("000003", 200, rng, (whole,)))   # dropped: >= 200 frames
    write_motion(tmp_path, _record("000004", 39, rng, (whole,)))    # dropped: < 40 frames
    write_motion(tmp_path, _record("000005", 80, rng, (Caption("only a part", (), 1.0, 3.5),)))
    write_split(tmp_path, "train", ["000001", "000002", "000003", "000004", "000005"])
    items = load_split(tmp_path, "train")
    assert [item.id for item in items] == ["000001", "A_000001", "C_000001", "000002", "A_000005"]
    by_id = {item.id: item for item in items}
    full = read_motion(tmp_path, "000001").features
    assert by_id["000001"].captions == (whole,)
    assert np.array_equal(by_id["A_000001"].features, full[3:60])   # int(0.15 * 20) == 3
    assert np.array_equal(by_id["C_000001"].features, full[20:100])
    assert by_id["C_000001"].captions[0].text == "he waves"
    assert len(by_id["000002"].features) == 196
    assert np.array_equal(by_id["A_000005"].features, read_motion(tmp_path, "000005").features[20:70])
    assert all(40 <= len(item.features) <= 196 and item.joints is None for item in items)
    assert [item.id for item in load_split(tmp_path, "train", min_frames=90)] == ["000001", "000002"]


def test_subclip_ids_are_distinct():
    ids = [subclip_id("000001", i) for i in range(60)]
    assert ids[0] == "A_000001" and ids[22] == "W_000001" and ids[23] == "AA_000001"
    assert len(set(ids)) == 60


def test_clean_dataset_passes(tmp_path):
    root = _make_dataset(tmp_path)
    report = check_dataset(root)
    assert report.ok and report.kinds == {} and report.num_motions == len(IDS)
    assert "OK" in report.format() and "0 errors" in report.format()
    assert len(load_split(root, "train")) == 8


def _break(root):
    """One of each defect on a clean dataset; returns the expected count per kind."""
    rng = np.random.default_rng(4)
    features, joints, texts = root / "new_joint_vecs", root / "new_joints", root / "texts"
    (root / "test.txt").unlink()
    np.save(root / "Mean.npy", np.zeros(FEATURE_DIM - 1, np.float32))
    np.save(root / "Std.npy", np.array([0.0, np.nan] + [1.0] * (FEATURE_DIM - 2), np.float32))
    write_split(root, "train", IDS[:8] + ["999999"])
    (texts / "000002.txt").unlink()
    (features / "000003.npy").write_bytes(b"not a numpy file")
    np.save(features / "000004.npy", rng.standard_normal((50, FEATURE_DIM - 1)).astype(np.float32))
    np.save(joints / "000005.npy", np.zeros((92, 21, 3), np.float32))
    np.save(joints / "000006.npy", np.zeros((104, 22, 3), np.float32))
    bad = np.load(features / "000007.npy")
    bad[2, 7] = np.inf
    np.save(features / "000007.npy", bad)
    np.save(features / "000008.npy", np.zeros((30, FEATURE_DIM), np.float32))
    np.save(joints / "000008.npy", np.zeros((30, 22, 3), np.float32))
    (texts / "000009.txt").write_text("a#b#0.0\nwalks#w/VERB#zero#1.0\nwalks#w/VERB#2.0#1.0\nok#o/X#0.0#0.0\n")
    (texts / "000010.txt").write_text("\n  \n")
    (joints / "000011.npy").unlink()
    (texts / "000012.txt").write_bytes(b"caf\xe9#x/NOUN#0.0#0.0\n")
    return {"missing_split": 1, "mean_std_shape": 1, "std_not_positive": 1, "nonfinite": 2,
            "missing_features": 1, "missing_text": 1, "unreadable_file": 2, "feature_shape": 1,
            "joints_shape": 1, "frame_mismatch": 1, "length_out_of_range": 1, "malformed_text_line": 3,
            "empty_text": 1, "missing_joints": 1}


def test_broken_dataset_reports_every_problem_with_counts(tmp_path):
    root = _make_dataset(tmp_path / "clean")
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    expected = _break(broken)
    report = check_dataset(broken, max_examples=2)
    assert {kind: entry.count for kind, entry in report.kinds.items()} == expected
    assert not report.ok and report.num_motions == len(IDS)
    assert report.count("malformed_text_line") == 3 and report.count("missing_directory") == 0
    assert [p.file for p in report.kinds["missing_features"].examples] == ["new_joint_vecs/999999.npy"]
    assert "train.txt" in report.kinds["missing_features"].examples[0].detail
    text = report.format()
    assert "NOT OK" in text and "... and 1 more" in text
    assert all(kind in text for kind in expected)
    assert check_dataset(root).ok   # the clean copy is untouched


def test_missing_directories_and_files(tmp_path):
    assert check_dataset(tmp_path / "nowhere").count("missing_directory") == 1
    root = _make_dataset(tmp_path / "data")
    shutil.rmtree(root / "texts")
    shutil.rmtree(root / "new_joints")
    for name in ("Mean.npy", "Std.npy", "val.txt"):
        (root / name).unlink()
    report = check_dataset(root)
    counts = {kind: entry.count for kind, entry in report.kinds.items()}
    assert counts == {"missing_directory": 1, "missing_split": 1, "missing_mean_std": 2, "missing_joints": 1}
    assert list(report.kinds) == [kind for kind in KINDS if kind in counts]


def test_nan_start_end_is_a_whole_clip_when_loading(tmp_path):
    rng = np.random.default_rng(5)
    record = _record("000001", 60, rng)
    write_motion(tmp_path, record)
    (tmp_path / "texts" / "000001.txt").write_text("a person walks#a/DET person/NOUN walk/VERB#nan#nan\n")
    write_split(tmp_path, "val", ["000001"])
    (item,) = load_split(tmp_path, "val")
    assert item.id == "000001" and math.isclose(item.captions[0].end, 0.0)
    assert item.features.tobytes() == record.features.tobytes()
