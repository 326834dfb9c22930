"""Generation 0 cached across runs: the same settings reuse it without training, another setting retrains."""

from __future__ import annotations

import dataclasses

import yaml

from scl_ray import storage
from scl_ray.config import config_from_dict, config_to_yaml
from scl_ray.loop.generation_zero import cache_location, restore_from_cache, shared_name, store_in_cache
from scl_ray.loop.resources import LoopResources
from scl_ray.loop.state import DONE, TrialDirectory


def run_loop(config, resources, experiment, reported=None):
    """One in-process loop of `experiment` sharing generation 0 under <experiment>/_shared; returns
    (its metrics, how many times the model trained). reported: generation -> the evaluation samples
    its report got."""
    from scl_ray.loop.build import build_motion_loop

    reported = {} if reported is None else reported
    loop = build_motion_loop(config, resources, TrialDirectory(experiment / "trial"), lambda synthetic, seed: synthetic,
                             shared_root=str(experiment / "_shared"),
                             report=lambda generation, metrics, path, samples: reported.update({generation: samples}))
    trained = []
    train = loop.parts.model.train
    loop.parts.model.train = lambda *args: trained.append(args[1]) or train(*args)
    return loop.run(), trained


def test_a_second_run_with_the_same_settings_reuses_the_cached_generation_zero(tiny_config, tmp_path):
    resources = LoopResources.build(tiny_config(), progress=False)
    # The data and evaluator from the tests' shared cache; generation 0 cached in this test's own.
    config = tiny_config("loop.generations=0", f"data.cache_dir={tmp_path / 'cache'}")
    reported = {}
    first, trained = run_loop(config, resources, tmp_path / "first", reported)
    assert trained == [config.train.steps] and reported[0] is not None  # evaluated here: in memory
    assert store_in_cache([config], str(tmp_path / "first" / "_shared"), resources.evaluator_hash) == \
        [cache_location(config, resources.evaluator_hash)]

    lines = []
    used = restore_from_cache([config, config], str(tmp_path / "second" / "_shared"), resources.evaluator_hash,
                              log=lines.append)
    assert used == [cache_location(config, resources.evaluator_hash)]
    assert lines == [f"generation 0: reused from cache {used[0]}"]
    second, trained = run_loop(config, resources, tmp_path / "second", reported)
    assert trained == []  # loaded, not trained
    assert reported[0] is None  # nor evaluated: the TensorBoard image reads the copied eval_samples.parquet
    assert (tmp_path / "second" / "trial" / "gen_000" / "eval_samples.parquet").is_file()
    assert {k: v for k, v in second[0].items() if not k.startswith("time/")} == \
        {k: v for k, v in first[0].items() if not k.startswith("time/")}
    assert (tmp_path / "second" / "trial" / "gen_000" / "model.pt").read_bytes() == \
        (tmp_path / "first" / "trial" / "gen_000" / "model.pt").read_bytes()

    changed = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=9))
    assert restore_from_cache([changed], str(tmp_path / "third" / "_shared"), resources.evaluator_hash) == []
    _, trained = run_loop(changed, resources, tmp_path / "third")
    assert trained == [9]


def test_the_cache_key_follows_what_determines_generation_zero(tiny_config, tmp_path):
    config = tiny_config()
    location = cache_location(config, "evaluator_a")

    def key(**sections):
        return cache_location(dataclasses.replace(config, **sections), "evaluator_a")

    assert cache_location(config, "evaluator_b") != location  # scored by another evaluator
    assert key(train=dataclasses.replace(config.train, steps=9)) != location
    assert key(loop=dataclasses.replace(config.loop, seed=1)) != location
    assert key(resources=dataclasses.replace(config.resources, num_workers=2)) != location
    assert key(loop=dataclasses.replace(config.loop, synthetic_ratio=0.25, strength=0.5, generations=7)) == location
    elsewhere = dataclasses.replace(config, data=dataclasses.replace(config.data, cache_dir=str(tmp_path / "other")))
    assert cache_location(elsewhere, "evaluator_a").split("/")[-1] == location.split("/")[-1]
    # A trial reads the sweep's config back from its config.yaml: it must name the same shared place.
    assert shared_name(config_from_dict(yaml.safe_load(config_to_yaml(config)))) == shared_name(config)


def test_nothing_is_cached_from_an_unfinished_generation_zero(tiny_config, tmp_path):
    config = tiny_config()
    shared = tmp_path / "_shared" / shared_name(config)
    storage.write_text(str(shared / "model.pt"), "half\n")  # no DONE: interrupted while publishing
    assert store_in_cache([config], str(tmp_path / "_shared"), "evaluator_a") == []
    assert not storage.exists(storage.join(cache_location(config, "evaluator_a"), DONE))
