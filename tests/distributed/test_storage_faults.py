"""Storage faults met by `scl-ray sweep` before it starts anything: a damaged file of a finished
generation on resume, and a second sweep on an experiment that a running sweep writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scl_ray import storage
from scl_ray.cli import main
from scl_ray.config import ModelConfig, TrainConfig, config_to_yaml, load_config
from scl_ray.diffusion.training import DiffusionTrainer
from scl_ray.distributed.sweep import CONFIG_FILE, SWEEP_LOCK, expand_trials, experiment_dir
from scl_ray.loop.plan import trial_name
from scl_ray.loop.state import EVAL_SAMPLES, METRICS, MODEL, TrialDirectory
from scl_ray.motion.store import MotionSet, write_motion_set

QUICKSTART = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml")


@pytest.fixture
def sweep_words(tiny_overrides, tiny_cache, tmp_path):
    overrides = [*tiny_overrides, f"data.cache_dir={tiny_cache}", "sweep.synthetic_ratio=[0.5]", "sweep.strength=[1]"]
    words = ["sweep", QUICKSTART, "--storage", str(tmp_path / "results")]
    for override in overrides:
        words += ["--set", override]
    return words, load_config(QUICKSTART, overrides)


def finished_trial(config, experiment: str) -> TrialDirectory:
    """An experiment whose one trial finished generations 0 and 1 (small stand-in files)."""
    storage.write_text(storage.join(experiment, CONFIG_FILE), config_to_yaml(config))
    trial = TrialDirectory(storage.join(experiment, trial_name(expand_trials(config)[0])))
    trainer = DiffusionTrainer(ModelConfig(preset="tiny", layers=1, width=32, heads=2, ff_size=64, diffusion_steps=10),
                               TrainConfig(batch_size=2), "cpu", 16, 263, 8)
    samples = MotionSet(ids=["a"], captions=[("walks",)], features=[np.zeros((4, 263), np.float32)],
                        source=["synthetic"], generation=[0], status=[""], stats=[{}])
    for generation in (0, 1):
        trainer.save_checkpoint(trial.file(generation, MODEL))
        write_motion_set(samples, trial.file(generation, EVAL_SAMPLES))
        trial.write_metrics(generation, {"generation": float(generation), "fid": 1.0})
        trial.mark_done(generation)
    return trial


@pytest.mark.parametrize("damaged", [MODEL, EVAL_SAMPLES, METRICS])
def test_resume_names_a_damaged_file_of_a_finished_generation_and_what_to_do(sweep_words, capsys, damaged):
    words, config = sweep_words
    trial = finished_trial(config, experiment_dir(config, words[3]))
    location = trial.file(1, damaged)
    whole = storage.read_bytes(location)
    storage.write_bytes(location, whole[: len(whole) // 2])  # truncated, as by a full disk or a lost node

    assert main([*words, "--resume"]) == 2
    out, err = capsys.readouterr()
    assert "trial(s) in" not in out  # refused before Ray or any trial started
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"scl-ray: error: cannot resume: {location} is damaged (")
    assert f"delete {trial.generation(1)} and every later gen_* directory" in lines[0]
    assert not storage.exists(storage.join(experiment_dir(config, words[3]), SWEEP_LOCK))  # the lock is released


def test_a_second_sweep_on_a_running_experiment_is_refused(sweep_words, capsys):
    words, config = sweep_words
    experiment = experiment_dir(config, words[3])
    with storage.Lock(storage.join(experiment, SWEEP_LOCK), f"a sweep of {experiment}"):
        assert main(words) == 2
    out, err = capsys.readouterr()
    assert "trial(s) in" not in out
    assert err.startswith(f"scl-ray: error: a sweep of {experiment} is already running (")
    assert len(err.strip().splitlines()) == 1
