"""configs/*.yaml: every file loads, says where each value comes from, and holds the paper's numbers.

The paper's values (docs/method.md, "The motion experiment" and "The theory, and the toy that checks it") are written out here once more,
independently of the YAML files, so that an edit that drifts from the paper fails.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from scl_ray.config import load_config
from scl_ray.distributed.sweep import expand_trials
from scl_ray.loop.plan import arm_name
from scl_ray.motion.procedural import write_procedural_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPECTED = {"quickstart", "paper_n64", "paper_n128", "paper_n256", "paper_n2794", "paper_grid", "toy_gaussian"}
# n -> (generation-0 steps, steps per later generation)
PAPER_BUDGETS = {64: (5000, 1000), 128: (10000, 1000), 256: (20000, 1000), 2794: (200000, 40000)}
PAPER_LAMBDAS = {0.25, 0.5, 0.75, 1.0}
ALL_CONFIGS = sorted(CONFIGS.glob("*.yaml"))


def _paper(n: int) -> Path:
    return CONFIGS / f"paper_n{n}.yaml"


def test_the_expected_configs_exist():
    assert EXPECTED <= {path.stem for path in ALL_CONFIGS}


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda path: path.stem)
def test_every_config_loads_also_with_procedural_data(path):
    load_config(path)
    load_config(path, ["data.source=procedural"])


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda path: path.stem)
def test_every_value_says_where_it_comes_from(path):
    """Each `key: value` line carries a `# paper: ...` or `# ours: ...` comment."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if re.match(r"^\s*\w+:\s*[^\s#]", line):
            assert re.search(r"#\s*(paper|ours):", line), f"{path.name}:{number} has no paper/ours comment: {line}"


@pytest.mark.parametrize("n", sorted(PAPER_BUDGETS))
def test_paper_configs_hold_the_papers_values(n):
    config = load_config(_paper(n))
    model = config.model
    assert (model.layers, model.width, model.heads, model.ff_size) == (8, 512, 4, 1024)
    assert (model.diffusion_steps, model.noise_schedule, model.cond_mask_prob) == (1000, "cosine", 0.1)
    assert (config.train.batch_size, config.train.lr) == (64, 1e-4)
    assert (config.sample.sampler, config.sample.steps, config.sample.guidance) == ("ddpm", 1000, 2.5)
    assert (config.correct.sim_hz, config.correct.control_hz) == (450, 30)
    assert config.data.source == "humanml3d"
    assert (config.loop.generations, config.loop.accumulate) == (50, False)
    assert (config.train.steps, config.loop.steps_per_generation) == PAPER_BUDGETS[n]
    assert config.loop.train_size == n and config.sweep.train_size == (n,)


@pytest.mark.parametrize("name", ["paper_n64", "paper_n128", "paper_n256", "paper_n2794", "paper_grid"])
def test_paper_sweeps_run_every_arm_at_every_lambda_once(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    trials = expand_trials(config)
    arms = Counter((arm_name(t.synthetic_ratio, t.strength), t.train_size) for t in trials)
    for n in config.sweep.train_size:
        assert arms[("baseline", n)] == len(config.sweep.seeds)
        for arm in ("self-consuming", "corrected"):
            lambdas = {t.synthetic_ratio for t in trials
                       if t.train_size == n and arm_name(t.synthetic_ratio, t.strength) == arm}
            assert lambdas == PAPER_LAMBDAS, (name, n, arm)
    assert len(trials) == len(set(trials)) == 9 * len(config.sweep.train_size) * len(config.sweep.seeds)


def test_paper_configs_differ_only_where_n_does():
    """Shared values stay in sync across the per-n files and the grid."""
    reference = load_config(_paper(64))

    def with_reference_n(config):
        return dataclasses.replace(
            config,
            data=dataclasses.replace(config.data, procedural_num=reference.data.procedural_num),
            train=dataclasses.replace(config.train, steps=reference.train.steps),
            loop=dataclasses.replace(config.loop, train_size=64,
                                     steps_per_generation=reference.loop.steps_per_generation),
            sweep=dataclasses.replace(config.sweep, name=reference.sweep.name, train_size=(64,)),
            resources=dataclasses.replace(config.resources, corrector_actors=reference.resources.corrector_actors),
        )

    for name in ("paper_n128", "paper_n256", "paper_n2794", "paper_grid"):
        assert with_reference_n(load_config(CONFIGS / f"{name}.yaml")) == reference, name
    grid, n256 = load_config(CONFIGS / "paper_grid.yaml"), load_config(_paper(256))
    assert grid.sweep.train_size == (64, 128, 256)
    assert grid.train.steps == n256.train.steps  # no n of the grid trains less than the paper says


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda path: path.stem)
def test_the_procedural_dataset_is_big_enough(path):
    """With data.source=procedural the train split must hold every n of the sweep."""
    config = load_config(path, ["data.source=procedural"])
    train_fraction = inspect.signature(write_procedural_dataset).parameters["splits"].default[0]
    largest = max(config.sweep.train_size + (config.loop.train_size,))
    # 5% margin: each motion family rounds its test and validation shares up
    assert config.data.procedural_num * train_fraction >= 1.05 * largest, path.name


def test_quickstart_runs_the_three_arms_at_two_ratios():
    config = load_config(CONFIGS / "quickstart.yaml")
    assert config.data.source == "procedural" and config.model.preset == "small"
    assert config.loop.train_size == 64 and config.loop.generations <= 5
    trials = expand_trials(config)
    assert sorted((arm_name(t.synthetic_ratio, t.strength), t.synthetic_ratio) for t in trials) == [
        ("baseline", 0.0), ("corrected", 0.5), ("corrected", 1.0), ("self-consuming", 0.5), ("self-consuming", 1.0)]


def test_toy_config_is_the_authors_protocol():
    toy = load_config(CONFIGS / "toy_gaussian.yaml").toy
    assert (toy.dims, toy.real_points, toy.generations, toy.histogram_bins) == (2, 50, 500, 10)
    assert int(toy.synthetic_ratio * toy.real_points) == 25
    assert toy.gammas == (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 5.0)
    assert "histogram" in toy.corrector and toy.accumulate


def test_cpu_study_runs_every_arm_of_the_study_with_four_seeds_and_enough_samples():
    config = load_config(CONFIGS / "cpu_study.yaml")
    trials = expand_trials(config)
    assert config.loop.generations >= 20 and sorted({t.seed for t in trials}) == [0, 1, 2, 3]
    assert {(arm_name(t.synthetic_ratio, t.strength), t.synthetic_ratio, t.strength) for t in trials} == {
        ("baseline", 0.0, 0.0), *{("self-consuming", ratio, 0.0) for ratio in (0.5, 1.0)},
        *{("corrected", ratio, strength) for ratio in (0.5, 1.0) for strength in (0.5, 1.0)}}
    # The header's measurement: FID's half-width is about 0.77 / sqrt(n), to be at most 0.21 / 4.
    assert 0.77 / np.sqrt(config.evaluate.num_samples) <= 0.21 / 4 and config.evaluate.bootstrap > 0
