"""`scl-ray sweep CONFIG --dry-run`: the cost of a sweep for the device its config names, at the
concurrency it will run with (no Ray is started)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from scl_ray.cli import main
from scl_ray.config import load_config
from scl_ray.distributed import costs
from scl_ray.distributed.sweep import expand_trials

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def dry_run(capsys, config: str, *overrides: str) -> str:
    arguments = ["sweep", str(CONFIGS / config), "--dry-run"]
    for override in overrides:
        arguments += ["--set", override]
    assert main(arguments) == 0
    return capsys.readouterr().out


def test_paper_grid_is_costed_in_gpu_hours_on_any_machine(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # as on a laptop without a GPU
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    out = dry_run(capsys, "paper_grid.yaml")
    assert "estimated cost on cuda (resources.device=cuda)" in out
    assert "measured on one H100" in out
    assert "CPU-hours" not in out
    gpu_hours = float(re.search(r"([\d.]+) GPU-hours \(1 GPU per trial\)", out).group(1))
    assert 30 < gpu_hours < 120  # 27 loops of 50 generations; docs/cluster.md gives about 59
    # The cluster's size is unknown before it starts: the wall time is a bound, and says what to set.
    assert "wall time at least" in out and "sweep.max_concurrent_trials" in out


def test_a_cpu_config_is_costed_in_cpu_hours_at_its_concurrency(capsys):
    out = dry_run(capsys, "cpu_study.yaml")
    assert "estimated cost on cpu (resources.device=cpu)" in out and "GPU-hours" not in out
    config = load_config(CONFIGS / "cpu_study.yaml")
    loops = expand_trials(config)
    hours = [costs.trial_seconds(config, loop, costs.unit_costs("cpu", "small", config.correct.sim_hz)) / 3600
             for loop in loops]
    cpu_hours = float(re.search(r"([\d.]+) CPU-hours \(3.01 CPU per trial\)", out).group(1))
    assert cpu_hours == pytest.approx(sum(hours) * 3.01, abs=0.06)
    wall = float(re.search(r"wall time about ([\d.]+) h at 2 trial\(s\) at once", out).group(1))
    assert wall == pytest.approx(sum(hours) / 2, rel=0.05)  # 28 similar trials share 2 slots evenly


def test_unset_concurrency_is_what_fits_the_machine(capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 7)  # 2 trials of 3.01 CPU
    out = dry_run(capsys, "quickstart.yaml", "resources.device=cpu", "sweep.max_concurrent_trials=null")
    assert "at 2 trial(s) at once (as many as fit this machine's resources (7 CPU, 0 GPU))" in out


def test_wall_time_schedules_the_longest_trials_first():
    assert costs.wall_seconds([1.0, 2.0, 3.0, 2.0], slots=2) == 4.0
    assert costs.wall_seconds([1.0, 2.0], slots=8) == 2.0
    assert costs.wall_seconds([1.0, 2.0, 3.0], slots=1) == 6.0


def test_unit_costs_of_the_small_cpu_model_are_the_measured_ones():
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    small = costs.unit_costs("cpu", "small", 300)
    assert small.train == pytest.approx(1 / 0.832)  # benchmarks/results/train_throughput_cpu.json
    corrector = json.loads((results / "corrector_throughput.json").read_text())["by_sim_hz"]
    for row in corrector:  # the corrector's rates are the latest measured ones
        assert costs.unit_costs("cpu", "small", row["sim_hz"]).correct == pytest.approx(
            1 / row["motions_per_s_per_core"], rel=0.01), row["sim_hz"]
    assert costs.unit_costs("cpu", "custom", 450).train == small.train


def test_a_sweep_starts_its_longest_trials_first():
    from scl_ray.distributed.sweep import longest_first

    config = load_config(CONFIGS / "paper_grid.yaml")
    started = [(loop.train_size, loop.synthetic_ratio, loop.strength) for loop in longest_first(config, expand_trials(config))]
    assert started[0] == (256, 1.0, 1.0) and started[1][0] == 256
    assert {loop[1] for loop in started[-3:]} == {0.0}  # the baselines sample nothing: last
    assert sorted(started) == sorted((loop.train_size, loop.synthetic_ratio, loop.strength) for loop in expand_trials(config))


def test_generations_evaluate_every_skips_are_not_costed():
    config = load_config(CONFIGS / "cpu_study.yaml")
    loop = expand_trials(config)[0]
    unit = costs.unit_costs("cpu", "small", config.correct.sim_hz)
    every = [costs.trial_seconds(dataclasses.replace(config, evaluate=dataclasses.replace(config.evaluate, every=k)),
                                 loop, unit) for k in (1, 5)]
    steps = config.sample.steps
    one_evaluation = (config.evaluate.num_samples + config.evaluate.mm_prompts * config.evaluate.mm_samples) \
        * unit.sample * steps
    # 20 generations: every generation and generation 0 is 21 evaluations; every 5th (0, 5, 10, 15, 20) is 5.
    assert every[0] - every[1] == pytest.approx(16 * one_evaluation)
