"""The loop's sequence, resume and accounting, with a one-number model so every value is checkable."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pytest

from scl_ray.config import LoopConfig
from scl_ray.loop.generation import (
    LoopError, LoopParts, SelfConsumingLoop, accumulated, mix, progress_line, status_counts,
)
from scl_ray.loop.plan import arm_name, plan_generation, trial_name
from scl_ray.loop.state import TrialDirectory
from scl_ray import storage


@dataclass
class Values:
    """Items are plain numbers; status says how the corrector treated each."""

    values: np.ndarray
    status: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=float)
        if not self.status:
            self.status = [""] * len(self.values)

    def __len__(self):
        return len(self.values)

    def select(self, indices):
        indices = np.asarray(indices, dtype=int)
        return Values(self.values[indices], [self.status[i] for i in indices])

    def finite_mask(self):
        return np.isfinite(self.values)

    def failed_mask(self):
        return np.array([status == "failed" for status in self.status], dtype=bool)


def concat(sets):
    return Values(np.concatenate([s.values for s in sets]), [x for s in sets for x in s.status])


class MeanModel:
    """'Trains' to the mean of its data; samples that mean plus seeded noise (or NaN on demand)."""

    def __init__(self, nan=False):
        self.mean = 0.0
        self.nan = nan
        self.trained_sizes = []

    def reset(self, seed):
        self.mean = 0.0

    def train(self, items, steps, seed):
        self.trained_sizes.append(len(items))
        self.mean = float(items.values.mean())
        return {"loss": float(np.var(items.values))}

    def sample(self, prompts, seed, generation):
        if self.nan:
            return Values(np.full(len(prompts), np.nan))
        return Values(self.mean + np.random.default_rng(seed).normal(size=len(prompts)) + 1.0)

    def save(self, location):
        storage.write_json(location, {"mean": self.mean})

    def load(self, location):
        self.mean = storage.read_json(location)["mean"]


def make_parts(model, real, calls=None):
    calls = calls if calls is not None else []

    def correct(synthetic, seed):
        calls.append(len(synthetic))
        return Values(synthetic.values - 1.0, ["corrected"] * len(synthetic))

    return LoopParts(
        model=model,
        real=real,
        concat=concat,
        correct=correct,
        evaluate=lambda m, g, seed: {"distance": abs(m.mean)},
        write_items=lambda items, loc: storage.write_json(loc, {"v": items.values.tolist(), "s": items.status}),
        read_items=lambda loc: Values(storage.read_json(loc)["v"], storage.read_json(loc)["s"]),
    )


def test_plan_and_names():
    loop = LoopConfig(generations=3, train_size=10, synthetic_ratio=0.75, strength=1.0, steps_per_generation=7)
    assert plan_generation(loop, 0, 100, 10).train_steps == 100
    assert plan_generation(loop, 0, 100, 10).num_synthetic == 0
    assert plan_generation(loop, 2, 100, 10).num_synthetic == 7  # floor(0.75 * 10)
    assert plan_generation(loop, 2, 100, 10).train_steps == 7
    assert plan_generation(loop, 1, 100, 10).seed != plan_generation(loop, 2, 100, 10).seed
    with pytest.raises(ValueError, match="outside 0..3"):
        plan_generation(loop, 4, 100, 10)
    assert [arm_name(0, 1), arm_name(0.5, 0), arm_name(0.5, 0.5)] == ["baseline", "self-consuming", "corrected"]
    assert trial_name(loop) == "n10_lambda0.75_strength1_seed0"


def test_mix_replaces_with_probability_strength_and_drops_nonfinite():
    synthetic = Values(np.r_[np.arange(999.0), np.nan])
    corrected = Values(-np.ones(1000), ["corrected"] * 1000)
    for strength in (0.0, 0.3, 1.0):
        mixed = mix(synthetic, corrected, strength, seed=1, concat=concat)
        replaced = (mixed.values == -1).mean()
        assert abs(replaced - strength) < 0.05
        assert np.isfinite(mixed.values).all()
    with pytest.raises(LoopError, match="returned 3 items for 1000"):
        mix(synthetic, Values(np.zeros(3)), 0.5, 0, concat)


def test_mix_leaves_failed_corrections_out_unless_asked_to_keep_them():
    synthetic = Values(np.arange(10.0))
    corrected = Values(-np.arange(10.0) - 1, ["corrected"] * 5 + ["failed"] * 5)
    dropped = mix(synthetic, corrected, 1.0, seed=1, concat=concat)
    assert sorted(dropped.values) == [-5.0, -4.0, -3.0, -2.0, -1.0]
    kept = mix(synthetic, corrected, 1.0, seed=1, concat=concat, keep_failed=True)
    assert len(kept) == 10 and kept.status.count("failed") == 5
    # A failed correction of a motion that was not chosen for replacement costs nothing.
    assert len(mix(synthetic, corrected, 0.0, seed=1, concat=concat)) == 10


def test_accumulation_takes_growing_prefixes():
    sets = [Values(np.full(20, j)) for j in range(1, 5)]
    pooled = accumulated(sets, concat)
    counts = [int((pooled.values == j).sum()) for j in range(1, 5)]
    assert counts == [5, 10, 15, 20]  # floor(j/4 * 20)


def test_loop_runs_every_generation_and_writes_done(tmp_path):
    loop = LoopConfig(generations=3, train_size=20, synthetic_ratio=0.5, strength=1.0, steps_per_generation=5)
    model, calls = MeanModel(), []
    real = Values(np.linspace(-1, 1, 20))
    directory = TrialDirectory(tmp_path / "trial")
    metrics = SelfConsumingLoop(loop, 10, make_parts(model, real, calls), directory).run()
    assert [m["generation"] for m in metrics] == [0, 1, 2, 3]
    assert calls == [10, 10, 10]
    assert model.trained_sizes == [20, 30, 30, 30]
    assert directory.done_generations() == [0, 1, 2, 3]
    stored = json.loads((tmp_path / "trial" / "gen_002" / "metrics.json").read_text())
    assert stored["correction/corrected"] == 10 and stored["synthetic/trained_on"] == 10
    assert stored["time/generation_s"] >= stored["time/train_s"]
    assert (tmp_path / "trial" / "gen_003" / "synthetic.parquet").exists()


def files(directory) -> dict[str, list[str]]:
    return {path.name: sorted(p.name for p in path.iterdir()) for path in sorted(directory.glob("gen_*"))}


@pytest.mark.parametrize("accumulate", [False, True])
def test_only_what_the_report_resume_and_evaluate_need_is_kept(tmp_path, accumulate):
    """Older generations keep metrics.json, DONE (and the eval samples, where written); the newest keeps
    its model and sets; an accumulating loop keeps every set, which its resume reads."""
    loop = LoopConfig(generations=3, train_size=20, synthetic_ratio=0.5, strength=1.0, accumulate=accumulate)
    real = Values(np.linspace(-1, 1, 20))
    SelfConsumingLoop(loop, 10, make_parts(MeanModel(), real), TrialDirectory(tmp_path / "lean")).run()
    sets = ["corrected.parquet", "synthetic.parquet"] if accumulate else []
    assert files(tmp_path / "lean") == {
        "gen_000": ["DONE", "metrics.json"], "gen_001": sorted(["DONE", *sets, "metrics.json"]),
        "gen_002": sorted(["DONE", *sets, "metrics.json"]),
        "gen_003": ["DONE", "corrected.parquet", "metrics.json", "model.pt", "synthetic.parquet"]}
    longer = LoopConfig(**{**loop.__dict__, "generations": 4})
    full = SelfConsumingLoop(longer, 10, make_parts(MeanModel(), real), TrialDirectory(tmp_path / "full")).run()
    resumed = SelfConsumingLoop(longer, 10, make_parts(MeanModel(), real), TrialDirectory(tmp_path / "lean")).run()
    assert resumed[-1]["distance"] == full[-1]["distance"]


def test_keep_all_keeps_every_generations_model_and_sets(tmp_path):
    loop = LoopConfig(generations=2, train_size=20, synthetic_ratio=0.5, strength=1.0, keep_all=True)
    SelfConsumingLoop(loop, 10, make_parts(MeanModel(), Values(np.linspace(-1, 1, 20))), TrialDirectory(tmp_path)).run()
    assert files(tmp_path) == {"gen_000": ["DONE", "metrics.json", "model.pt"],
                               **{f"gen_00{g}": ["DONE", "corrected.parquet", "metrics.json", "model.pt",
                                                 "synthetic.parquet"] for g in (1, 2)}}


def test_resume_continues_after_newest_done_and_matches_uninterrupted(tmp_path):
    loop = LoopConfig(generations=4, train_size=20, synthetic_ratio=1.0, strength=0.5, steps_per_generation=5)
    real = Values(np.linspace(0, 1, 20))
    full = SelfConsumingLoop(loop, 10, make_parts(MeanModel(), real), TrialDirectory(tmp_path / "a")).run()

    directory = TrialDirectory(tmp_path / "b")
    short = LoopConfig(**{**loop.__dict__, "generations": 2})
    SelfConsumingLoop(short, 10, make_parts(MeanModel(), real), directory).run()
    # A crash in the middle of generation 3 leaves files but no DONE: it is redone.
    storage.write_text(directory.file(3, "model.pt"), "half-written")
    calls = []
    resumed = SelfConsumingLoop(loop, 10, make_parts(MeanModel(), real, calls), directory).run()
    assert [m["generation"] for m in resumed] == [3, 4]
    assert calls == [20, 20]
    assert resumed[-1]["distance"] == full[-1]["distance"]


def test_all_nonfinite_samples_fail_the_loop_clearly(tmp_path):
    loop = LoopConfig(generations=2, train_size=10, synthetic_ratio=1.0, strength=1.0)
    parts = make_parts(MeanModel(nan=True), Values(np.zeros(10)))
    with pytest.raises(LoopError, match="generation 1: all 10 synthetic samples are non-finite"):
        SelfConsumingLoop(loop, 3, parts, TrialDirectory(tmp_path)).run()
    assert TrialDirectory(tmp_path).done_generations() == [0]


def test_baseline_arm_never_samples(tmp_path):
    loop = LoopConfig(generations=2, train_size=10, synthetic_ratio=0.0, strength=1.0)
    calls = []
    parts = make_parts(MeanModel(), Values(np.zeros(10)), calls)
    SelfConsumingLoop(loop, 3, parts, None).run()
    assert calls == []


def test_generation_zero_is_shared_between_loops_of_a_sweep(tmp_path):
    real = Values(np.linspace(0, 1, 20))
    shared = str(tmp_path / "_shared" / "gen0_key")
    first_model, second_model = MeanModel(), MeanModel()
    first_parts, second_parts = make_parts(first_model, real), make_parts(second_model, real)
    first_parts.shared_generation_zero = second_parts.shared_generation_zero = shared
    loop_a = LoopConfig(generations=1, train_size=20, synthetic_ratio=0.0, strength=0.0, keep_all=True)
    loop_b = LoopConfig(generations=1, train_size=20, synthetic_ratio=1.0, strength=1.0, keep_all=True)
    first = SelfConsumingLoop(loop_a, 10, first_parts, TrialDirectory(tmp_path / "a")).run()
    second = SelfConsumingLoop(loop_b, 10, second_parts, TrialDirectory(tmp_path / "b")).run()
    assert first_model.trained_sizes == [20, 20]
    assert second_model.trained_sizes == [40]  # generation 0 was loaded, not trained
    assert second[0]["distance"] == first[0]["distance"]
    assert "time/shared_generation_zero_s" in second[0]
    assert TrialDirectory(tmp_path / "b").done_generations() == [0, 1]
    assert (tmp_path / "b" / "gen_000" / "model.pt").read_text() == (tmp_path / "a" / "gen_000" / "model.pt").read_text()


def test_a_loop_waits_for_a_generation_zero_being_trained_by_another(tmp_path, monkeypatch):
    import threading
    import time

    from scl_ray.loop import lease

    monkeypatch.setattr(lease, "POLL_S", 0.02)

    class SlowModel(MeanModel):
        def train(self, items, steps, seed):
            time.sleep(0.5)
            return super().train(items, steps, seed)

    real = Values(np.linspace(0, 1, 20))
    shared = str(tmp_path / "_shared" / "gen0")
    loop = LoopConfig(generations=0, train_size=20)
    first_parts, second_parts = make_parts(SlowModel(), real), make_parts(MeanModel(), real)
    first_parts.shared_generation_zero = second_parts.shared_generation_zero = shared
    first = threading.Thread(target=SelfConsumingLoop(loop, 10, first_parts, TrialDirectory(tmp_path / "a")).run)
    first.start()
    while not (tmp_path / "_shared" / "gen0" / "CLAIMED.0").exists():
        time.sleep(0.01)
    SelfConsumingLoop(loop, 10, second_parts, TrialDirectory(tmp_path / "b")).run()
    first.join()
    assert second_parts.model.trained_sizes == []  # it waited and reused instead of training
    assert TrialDirectory(tmp_path / "b").done_generations() == [0]


def test_progress_line_names_the_generation_its_metrics_and_time():
    line = progress_line(3, {"fid": 0.51234, "diversity": 1.2, "correction/corrected": 30.0, "train/loss": 0.9,
                             "time/generation_s": 23.6})
    assert line == "generation 3: fid 0.512  diversity 1.2  corrected 30  (24 s)"


def test_generation_zero_is_shared_only_between_loops_of_one_seed_and_size():
    import dataclasses

    from scl_ray.config import Config
    from scl_ray.loop.plan import generation_zero_key

    def key(**loop):
        config = Config()
        return generation_zero_key(dataclasses.replace(config, loop=dataclasses.replace(config.loop, **loop)))

    assert key(seed=0, synthetic_ratio=0.0, strength=0.0) == key(seed=0, synthetic_ratio=1.0, strength=0.5)
    assert key(seed=0) != key(seed=1)
    assert key(train_size=64) != key(train_size=128)


def test_a_full_disk_mid_generation_marks_nothing_done_and_the_resume_recovers(tmp_path, monkeypatch):
    loop = LoopConfig(generations=3, train_size=20, synthetic_ratio=1.0, strength=0.5, steps_per_generation=5)
    real = Values(np.linspace(0, 1, 20))
    full = SelfConsumingLoop(loop, 10, make_parts(MeanModel(), real), TrialDirectory(tmp_path / "a")).run()

    directory = TrialDirectory(tmp_path / "b")
    replace = os.replace

    def disk_full_at_generation_2_model(source, target):
        # The rename that would publish gen_002/model.pt: the disk filled up while it was written.
        if str(target).endswith("gen_002/model.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full_at_generation_2_model)
    with pytest.raises(storage.StorageError, match="gen_002/model.pt: no space left on the device"):
        SelfConsumingLoop(loop, 10, make_parts(MeanModel(), real), directory).run()
    monkeypatch.undo()
    assert directory.done_generations() == [0, 1]
    assert not storage.exists(directory.file(2, "model.pt"))
    assert not [name for name in os.listdir(directory.generation(2)) if name.startswith(".")]  # no temporary

    resumed = SelfConsumingLoop(loop, 10, make_parts(MeanModel(), real), directory).run()
    assert [m["generation"] for m in resumed] == [2, 3]
    assert resumed[-1]["distance"] == full[-1]["distance"]


def test_status_counts_count_whatever_statuses_the_items_carry():
    items = Values(np.zeros(4), ["kept", "moved", "moved", "failed"])
    assert status_counts(items) == {"correction/kept": 1, "correction/moved": 2, "correction/failed": 1}
    # The known statuses are recorded every generation, 0 where no item has one.
    assert status_counts(items, ("moved", "lost")) == {"correction/moved": 2, "correction/lost": 0,
                                                         "correction/kept": 1, "correction/failed": 1}
