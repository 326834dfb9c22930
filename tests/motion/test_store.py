"""Motion sets in Parquet: exact round trips, and errors that name what is wrong."""

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from scl_ray.motion.constants import FEATURE_DIM
from scl_ray.motion.humanml3d import Caption, MotionRecord
from scl_ray.motion.store import FORMAT_KEY, FORMAT_VERSION, MotionSet, read_motion_set, write_motion_set


def _motion_set(seed=0, count=5):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(40, 197, count)
    lengths[1] = 0
    features = [rng.standard_normal((n, FEATURE_DIM)).astype(np.float32) for n in lengths]
    features[0][4, 7] = np.nan
    features[0][5, 8] = -np.inf
    return MotionSet(
        ids=[f"g{seed:03d}_{i:06d}" for i in range(count)],
        captions=[tuple(f"caption {i} {j}" for j in range(i % 3)) for i in range(count)],
        features=features,
        source=["synthetic", "corrected", "real", "synthetic", "corrected"][:count],
        generation=[seed] * count,
        status=["", "corrected", "failed", "uncorrected", "nonfinite"][:count],
        stats=[{"tracking_error_m": 0.01 * i, "note": f"motion {i}", "falls": [i, {"frame": np.int64(3)}]}
               for i in range(count)],
    )


def _assert_same(a: MotionSet, b: MotionSet):
    assert (a.ids, a.captions, a.source, a.generation, a.status) == (b.ids, b.captions, b.source,
                                                                     b.generation, b.status)
    assert [f.tobytes() for f in a.features] == [f.tobytes() for f in b.features]
    assert all(f.dtype == np.float32 and f.shape == g.shape for f, g in zip(a.features, b.features))


def test_round_trip_local_path_is_exact(tmp_path):
    motion_set = _motion_set()
    write_motion_set(motion_set, str(tmp_path / "gen_001" / "synthetic.parquet"))
    again = read_motion_set(str(tmp_path / "gen_001" / "synthetic.parquet"))
    _assert_same(motion_set, again)
    assert np.isnan(again.features[0][4, 7]) and again.features[0][5, 8] == -np.inf
    assert again.stats[2] == {"tracking_error_m": 0.02, "note": "motion 2", "falls": [2, {"frame": 3}]}
    again.features[0][0, 0] = 1.0   # arrays read back are writable
    assert [p.name for p in (tmp_path / "gen_001").iterdir()] == ["synthetic.parquet"]


def test_round_trip_file_uri_overwrites_and_keeps_schema(tmp_path):
    path = tmp_path / "deep" / "dir" / "corrected.parquet"
    write_motion_set(_motion_set(seed=1), f"file://{path}")
    motion_set = _motion_set(seed=2)
    write_motion_set(motion_set, f"file://{path}")
    _assert_same(motion_set, read_motion_set(f"file://{path}"))
    schema = pq.read_schema(path)
    assert schema.metadata[FORMAT_KEY] == FORMAT_VERSION.encode()
    frames = schema.field("features").type.value_type
    assert pa.types.is_fixed_size_list(frames) and frames.list_size == FEATURE_DIM
    assert frames.value_type == pa.float32()
    assert schema.field("length").type == pa.int32() and schema.field("generation").type == pa.int32()
    assert pq.read_table(path).column("length").to_pylist() == [len(f) for f in motion_set.features]


def test_round_trip_through_a_filesystem_object(tmp_path):
    # A sub-tree filesystem is not "local", so this takes the single-put path used for object stores.
    filesystem = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    motion_set = _motion_set(seed=3)
    write_motion_set(motion_set, "trial_0/gen_002/synthetic.parquet", filesystem=filesystem)
    _assert_same(motion_set, read_motion_set("trial_0/gen_002/synthetic.parquet", filesystem=filesystem))
    assert (tmp_path / "trial_0" / "gen_002" / "synthetic.parquet").is_file()


def test_directory_of_parts_reads_as_one_set(tmp_path):
    motion_set = _motion_set(count=5)
    write_motion_set(motion_set.select([0, 1]), str(tmp_path / "corrected.parquet" / "part-0.parquet"))
    write_motion_set(motion_set.select([2, 3, 4]), str(tmp_path / "corrected.parquet" / "part-1.parquet"))
    _assert_same(read_motion_set(str(tmp_path / "corrected.parquet")), motion_set)


def test_table_slices_batches_and_empty_sets():
    motion_set = _motion_set(count=5)
    table = motion_set.to_table()
    _assert_same(MotionSet.from_table(table.slice(2, 2)), motion_set.select([2, 3]))
    _assert_same(MotionSet.from_table(table.to_batches()[0]), motion_set)
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 4)])
    _assert_same(MotionSet.from_table(chunked), motion_set)
    assert len(MotionSet.from_table(MotionSet().to_table())) == 0


def test_select_concat_and_records():
    motion_set = _motion_set(count=5)
    picked = motion_set.select(np.array([4, 0]))
    assert picked.ids == [motion_set.ids[4], motion_set.ids[0]] and picked.stats[0] == motion_set.stats[4]
    _assert_same(motion_set.select([0, 1]).concat([motion_set.select([2]), motion_set.select([3, 4])]),
                 motion_set)
    record = MotionRecord("000001", np.ones((50, FEATURE_DIM)), (Caption("walks", ("walk/VERB",)),))
    from_records = MotionSet.from_records([record], source="real", generation=0)
    assert from_records.captions == [("walks",)] and from_records.status == [""] and from_records.stats == [{}]
    assert from_records.features[0].tobytes() == record.features.tobytes()


def test_errors_name_what_is_wrong(tmp_path):
    good = np.zeros((50, FEATURE_DIM), np.float32)
    with pytest.raises(ValueError, match=r"motion bad: features have shape \(50, 262\)"):
        MotionSet(["bad"], [()], [np.zeros((50, 262), np.float32)], ["real"], [0], [""], [{}])
    with pytest.raises(ValueError, match="float32"):
        MotionSet(["bad"], [()], [good.astype(np.float64)], ["real"], [0], [""], [{}])
    with pytest.raises(ValueError, match="source 'synth'"):
        MotionSet(["bad"], [()], [good], ["synth"], [0], [""], [{}])
    with pytest.raises(ValueError, match="different lengths"):
        MotionSet(["a", "b"], [()], [good], ["real"], [0], [""], [{}])
    with pytest.raises(ValueError, match="motion a: stats"):
        MotionSet(["a"], [()], [good], ["real"], [0], [""], [{"x": object()}]).to_table()

    table = _motion_set().to_table()
    path = tmp_path / "no_status.parquet"
    pq.write_table(table.drop_columns(["status"]), path)
    with pytest.raises(ValueError, match=r"no_status\.parquet: missing column\(s\) \['status'\]"):
        read_motion_set(str(path))
    wrong_length = table.set_column(2, "length", pa.array([7] * len(table), pa.int32()))
    pq.write_table(wrong_length, tmp_path / "wrong_length.parquet")
    with pytest.raises(ValueError, match=r"wrong_length\.parquet: motion g000_000000 has length 7"):
        read_motion_set(str(tmp_path / "wrong_length.parquet"))
    future = table.replace_schema_metadata({FORMAT_KEY: b"99"})
    pq.write_table(future, tmp_path / "future.parquet")
    with pytest.raises(ValueError, match="format version 99"):
        read_motion_set(str(tmp_path / "future.parquet"))
    with pytest.raises(FileNotFoundError, match="absent.parquet"):
        read_motion_set(str(tmp_path / "absent.parquet"))
