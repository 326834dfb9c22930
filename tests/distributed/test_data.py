"""The correction pipeline: every motion comes back once, in order, corrected or passed through."""

import functools
import os
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray.cloudpickle

from scl_ray.config import CorrectConfig, ResourcesConfig
from scl_ray.distributed.correction import CorrectorActor, CorrectorPool, _input_order, rows_per_block
from scl_ray.distributed.data import correct_file, correct_motion_set
from scl_ray.distributed.runtime import ResourcePlan, plan_resources
from scl_ray.motion.constants import FEATURE_DIM
from scl_ray.motion.store import FORMAT_KEY, FORMAT_VERSION, SCHEMA, MotionSet, read_motion_set, write_motion_set

# The fake correctors below run in Ray workers, which cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

FAILING_ID = "walk_013"


class ShiftCorrector:
    """Adds 1 to every real frame; raises for any batch that holds FAILING_ID."""

    def __init__(self, config: CorrectConfig):
        self.config = config

    def __call__(self, batch: dict) -> dict:
        if FAILING_ID in list(batch["ids"]):
            raise RuntimeError(f"humanoid cannot track {FAILING_ID}")
        features = batch["features"].copy()
        for index, length in enumerate(batch["lengths"]):
            features[index, :length] += 1.0
        count = len(batch["ids"])
        return {
            "ids": batch["ids"], "features": features, "lengths": batch["lengths"],
            "status": np.array(["corrected"] * count, dtype=object), "error": np.array([""] * count, dtype=object),
            "tracking_error": np.full(count, 0.02), "falls": np.zeros(count, np.int64),
            "penetration_before": np.full(count, 0.05, np.float32),
            "penetration_after": np.zeros(count, np.float32),
            "root_offset_m": np.tile([0.5, -0.25], (count, 1)),
        }


class CrashOnceCorrector(ShiftCorrector):
    """Kills its own process on the first call anywhere (a marker file remembers), then shifts."""

    def __init__(self, config: CorrectConfig, marker: str):
        super().__init__(config)
        self.marker = marker

    def __call__(self, batch: dict) -> dict:
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__call__(batch)


class AlwaysCrashCorrector(ShiftCorrector):
    """Kills its own process on every call, like a motion that segfaults the simulator."""

    def __call__(self, batch: dict) -> dict:
        os._exit(1)


class PidCorrector(ShiftCorrector):
    """Shifts, and says which process corrected each motion."""

    def __call__(self, batch: dict) -> dict:
        return {**super().__call__(batch), "pid": np.full(len(batch["ids"]), os.getpid())}


class BrokenCorrector(ShiftCorrector):
    """Fails in its constructor, like a corrector whose MuJoCo model does not compile."""

    def __init__(self, config: CorrectConfig):
        raise ValueError("humanoid cannot be built")


class LosingCorrector(ShiftCorrector):
    """Breaks the contract: drops the last motion of every batch."""

    def __call__(self, batch: dict) -> dict:
        result = super().__call__(batch)
        return {key: value[:-1] for key, value in result.items()}


def _motions(count: int, seed: int = 0) -> MotionSet:
    rng = np.random.default_rng(seed)
    ids = [f"walk_{(7 * index) % count:03d}" for index in range(count)]  # not in sorted order
    lengths = rng.integers(40, 120, count)
    return MotionSet(
        ids=ids, captions=[(f"a person walks {motion_id}",) for motion_id in ids],
        features=[rng.standard_normal((n, FEATURE_DIM)).astype(np.float32) for n in lengths],
        source=["synthetic"] * count, generation=[3] * count, status=[""] * count,
        stats=[{"sample_seed": index} for index in range(count)],
    )


def _pool(actors: int) -> ResourcePlan:
    return ResourcePlan(use_gpu=False, trial_cpus=0.0, worker_cpus=0.0, worker_gpus=0.0, num_workers=0,
                        actor_cpus=1.0, num_actors=actors, data_cpus=1.0, max_concurrent_trials=1)


BACKENDS = ("data", "resident")


def _correct(backend: str, motions: MotionSet, config: CorrectConfig, plan: ResourcePlan, factory) -> MotionSet:
    """Correct through a Ray Data pipeline or a CorrectorPool made (and closed) for this one set."""
    if backend == "data":
        return correct_motion_set(motions, config, plan, factory, progress=False)
    with CorrectorPool(config, plan, factory) as pool:
        return pool.correct(motions)


def _check_corrected(inputs: MotionSet, outputs: MotionSet, failed: set[str]):
    """Same motions in the same order; shifted frames unless passed through (then unchanged)."""
    assert outputs.ids == inputs.ids
    assert outputs.captions == inputs.captions and outputs.generation == inputs.generation
    assert set(outputs.source) == {"corrected"}
    for motion_id, before, after, status, stats, old in zip(inputs.ids, inputs.features, outputs.features,
                                                          outputs.status, outputs.stats, inputs.stats):
        assert stats["sample_seed"] == old["sample_seed"]
        if motion_id in failed:
            assert status == "failed" and f"cannot track {FAILING_ID}" in stats["error"]
            assert after.tobytes() == before.tobytes()
        else:
            assert status == "corrected" and stats["error"] == "" and stats["tracking_error"] == 0.02
            assert stats["penetration_after"] == 0.0 and stats["falls"] == 0
            assert stats["root_offset_m"] == [0.5, -0.25]  # per-motion arrays become JSON lists
            np.testing.assert_array_equal(after, before + 1.0)


def test_actor_corrects_each_motion_alone_so_only_the_failing_one_passes_through():
    motions = _motions(20).select(range(15, 20))
    assert FAILING_ID in motions.ids
    actor = CorrectorActor(ShiftCorrector, CorrectConfig())
    _check_corrected(motions, actor.correct(motions), failed={FAILING_ID})
    table = actor(motions.to_table())  # Ray Data's entry: the same correction, as motion-set rows
    assert table.schema.equals(SCHEMA, check_metadata=True)
    _check_corrected(motions, MotionSet.from_table(table), failed={FAILING_ID})


def test_corrector_sees_each_motion_at_its_own_length_unpadded():
    shapes = []

    class Recording(ShiftCorrector):
        def __call__(self, batch: dict) -> dict:
            shapes.append((batch["features"].shape, list(batch["lengths"])))
            return super().__call__(batch)

    motions = _motions(20).select([0, 1, 2])
    _check_corrected(motions, CorrectorActor(Recording, CorrectConfig()).correct(motions), failed=set())
    assert shapes == [((1, len(f), FEATURE_DIM), [len(f)]) for f in motions.features]


def test_actor_passes_through_a_corrector_output_that_loses_motions():
    motions = _motions(20).select([0, 1, 2])
    outputs = CorrectorActor(LosingCorrector, CorrectConfig()).correct(motions)
    assert outputs.ids == motions.ids and set(outputs.status) == {"failed"}
    assert all("it must keep every motion" in stats["error"] for stats in outputs.stats)
    assert [f.tobytes() for f in outputs.features] == [f.tobytes() for f in motions.features]


def test_input_order_matches_repeated_ids_in_turn_and_names_lost_ones():
    assert _input_order(["b", "a", "c", "a"], ["a", "a", "b", "c"]) == [1, 3, 0, 2]
    lost_and_unexpected = r"lost motion\(s\) \['d'\] and returned unexpected motion\(s\) \['c'\]"
    with pytest.raises(RuntimeError, match=lost_and_unexpected):
        _input_order(["a", "c"], ["a", "d"])
    with pytest.raises(RuntimeError, match=r"lost motion\(s\) \['a'\]"):
        _input_order(["a"], ["a", "a"])


def test_blocks_are_at_most_a_batch_and_about_two_per_actor():
    assert rows_per_block(20, batch_size=8, num_actors=2) == 5
    assert rows_per_block(1000, batch_size=8, num_actors=2) == 8
    assert rows_per_block(1, batch_size=8, num_actors=4) == 1


def test_empty_set_comes_back_empty_and_a_missing_file_is_named(tmp_path):
    assert len(correct_motion_set(MotionSet(), CorrectConfig(), plan=None, corrector_factory=ShiftCorrector)) == 0
    write_motion_set(MotionSet(), str(tmp_path / "empty.parquet"))
    correct_file(str(tmp_path / "empty.parquet"), str(tmp_path / "out.parquet"), CorrectConfig(), None, ShiftCorrector)
    assert len(read_motion_set(str(tmp_path / "out.parquet"))) == 0
    with pytest.raises(FileNotFoundError, match="missing.parquet: no motion set file"):
        correct_file(str(tmp_path / "missing.parquet"), str(tmp_path / "out.parquet"), CorrectConfig())


def test_pipeline_returns_every_motion_once_and_passes_through_the_failing_one(ray_local):
    motions = _motions(20)
    outputs = correct_motion_set(motions, CorrectConfig(batch_size=8), _pool(2), ShiftCorrector, progress=True)
    _check_corrected(motions, outputs, failed={FAILING_ID})


def test_resident_pool_keeps_its_actors_across_sets_and_matches_the_pipeline(ray_local):
    motions = _motions(20)
    with CorrectorPool(CorrectConfig(batch_size=8), _pool(2), PidCorrector) as pool:
        first, second = pool.correct(motions), pool.correct(motions.select(range(3)))
        assert len(pool.correct(MotionSet())) == 0
    _check_corrected(motions, first, failed={FAILING_ID})
    _check_corrected(motions.select(range(3)), second, failed=set())
    workers = {stats["pid"] for stats in first.stats if "pid" in stats}
    assert len(workers) == 2 and {stats["pid"] for stats in second.stats} <= workers
    piped = correct_motion_set(motions, CorrectConfig(batch_size=8), _pool(2), ShiftCorrector, progress=False)
    assert [f.tobytes() for f in piped.features] == [f.tobytes() for f in first.features]
    assert piped.status == first.status
    with pytest.raises(RuntimeError, match="CorrectorPool is closed"):
        pool.correct(motions)


def test_file_to_file_writes_one_valid_motion_set(ray_local, tmp_path):
    motions = _motions(6).select(range(5))
    write_motion_set(motions, str(tmp_path / "synthetic.parquet"))
    out = tmp_path / "gen_001" / "corrected.parquet"
    returned = correct_file(str(tmp_path / "synthetic.parquet"), str(out), CorrectConfig(batch_size=2), _pool(1),
                            ShiftCorrector, progress=False)
    assert out.is_file() and sorted(os.listdir(out.parent)) == ["corrected.parquet"]
    schema = pq.read_schema(out)
    assert schema.names == SCHEMA.names and schema.metadata[FORMAT_KEY] == FORMAT_VERSION.encode()
    written = read_motion_set(str(out))
    _check_corrected(motions, written, failed=set())
    assert written.stats == returned.stats and written.ids == returned.ids


@pytest.mark.parametrize("backend", BACKENDS)
def test_crashed_actor_is_replaced_and_its_batch_retried(ray_local, tmp_path, backend):
    marker = tmp_path / "crashed"
    motions = _motions(4)
    factory = functools.partial(CrashOnceCorrector, marker=str(marker))
    outputs = _correct(backend, motions, CorrectConfig(batch_size=2), _pool(1), factory)
    assert marker.exists()
    _check_corrected(motions, outputs, failed=set())


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_actor_that_always_crashes_stops_the_run_with_an_error(ray_local, backend):
    with pytest.raises(RuntimeError, match="a corrector actor process died 4 times"):
        _correct(backend, _motions(2), CorrectConfig(batch_size=2), _pool(1), AlwaysCrashCorrector)


def test_a_corrector_that_cannot_start_fails_with_its_own_error(ray_local):
    with pytest.raises(ray.exceptions.RayActorError, match="humanoid cannot be built"):
        _correct("resident", _motions(2), CorrectConfig(batch_size=2), _pool(1), BrokenCorrector)


@pytest.mark.timeout(120)  # a pipeline that needs more CPUs than the plan gives would wait forever
def test_pipeline_inside_a_train_worker_of_a_trial_completes_on_exactly_its_cpus(ray_local, tmp_path):
    ray = ray_local
    plan = plan_resources(ResourcesConfig(num_workers=1, corrector_actors=1, data_cpus=1, trial_cpus=0.01),
                          cluster_cpus=4)
    assert plan.cpus_per_trial == pytest.approx(3.01)
    other_trials = ray.remote(num_cpus=round(4 - plan.cpus_per_trial, 4))(_Idle).remote()
    ray.get(other_trials.ready.remote())
    motions = _motions(20).select(range(8))
    write_motion_set(motions, str(tmp_path / "synthetic.parquet"))

    def train_worker() -> tuple[MotionSet, MotionSet]:
        # A file needs Ray Data read tasks besides the pool: the most an in-trial pipeline asks for.
        piped = correct_file(str(tmp_path / "synthetic.parquet"), str(tmp_path / "corrected.parquet"),
                             CorrectConfig(batch_size=4), plan, ShiftCorrector, progress=False)
        with CorrectorPool(CorrectConfig(batch_size=4), plan, ShiftCorrector) as pool:  # what a loop keeps
            return piped, pool.correct(motions)

    class Trial:
        def run(self) -> tuple[MotionSet, MotionSet]:
            return ray.get(ray.remote(num_cpus=plan.worker_cpus)(train_worker).remote())

    trial = ray.remote(num_cpus=plan.trial_cpus)(Trial).remote()
    try:
        for outputs in ray.get(trial.run.remote()):
            _check_corrected(motions, outputs, failed=set())
    finally:
        ray.kill(trial)
        ray.kill(other_trials)


class _Idle:
    """Holds CPUs, like the other trials of a sweep."""

    def ready(self) -> bool:
        return True
