"""Ray Train: a whole loop in one TorchTrainer.fit, and `scl-ray train` with 1 and 2 CPU workers (DDP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scl_ray.distributed.data import uncorrected
from scl_ray.distributed.initial_training import train_generation_zero
from scl_ray.distributed.runtime import ResourcePlan
from scl_ray.distributed.sweep import run_single
from scl_ray.loop.state import TrialDirectory
from scl_ray.motion.store import STATUSES, MotionSet


def test_three_generation_loop_through_ray_train(ray_local, tiny_config):
    config = tiny_config("loop.generations=3", "loop.synthetic_ratio=0.5", "loop.strength=1.0")
    trial = TrialDirectory(run_single(config))
    assert trial.done_generations() == [0, 1, 2, 3]
    history = trial.metrics_history()
    assert [m["generation"] for m in history] == [0, 1, 2, 3]
    for metrics in history[1:]:
        statuses = sum(metrics[f"correction/{s}"] for s in STATUSES)
        assert statuses == 8  # floor(0.5 * 16) synthetic motions, every one accounted for
        assert metrics["time/correct_s"] > 0 and "fid" in metrics
        assert {"correction/fid_before", "correction/fid_after", "correction/diversity_after"} <= set(metrics)
    root = Path(trial.root)
    assert (root / "gen_003" / "corrected.parquet").is_file()
    assert list(root.glob("events.out.tfevents.*")), "TensorBoard events are written per trial"


def test_an_arm_that_does_not_correct_labels_its_motions_uncorrected_not_corrected():
    features = [np.zeros((40, 263), np.float32), np.full((40, 263), np.nan, np.float32)]
    synthetic = MotionSet(ids=["a", "b"], captions=[("walks",)] * 2, features=features, source=["synthetic"] * 2,
                          generation=[1, 1], status=["", ""], stats=[{}, {}])
    assert uncorrected(synthetic).status == ["uncorrected", "nonfinite"]  # by design, and a failure


def _plan(workers: int) -> ResourcePlan:
    return ResourcePlan(use_gpu=False, trial_cpus=0.01, worker_cpus=1.0, worker_gpus=0.0, num_workers=workers,
                        actor_cpus=1.0, num_actors=0, data_cpus=1.0, max_concurrent_trials=1)


def test_generation_zero_with_one_and_two_ddp_workers_agree(ray_local, tiny_config, tmp_path):
    config = tiny_config("train.steps=6", "train.batch_size=8")
    weights = []
    for workers in (1, 2):
        checkpoint = train_generation_zero(config, str(tmp_path / f"w{workers}"), _plan(workers), report_every=3)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        assert state["step"] == 6
        weights.append(state["model"])
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=1e-4, atol=1e-4, msg=f"parameter {name}")
