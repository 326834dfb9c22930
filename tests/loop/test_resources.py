"""The experiment's resources: built once by the driver, read by every trial, never rebuilt by one."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scl_ray import storage
from scl_ray.evaluation import evaluator as evaluator_module
from scl_ray.evaluation.evaluator import evaluator_hash
from scl_ray.loop import resources as resources_module
from scl_ray.loop.resources import EVALUATOR_FILE, MANIFEST, LoopResources, prepare_experiment


def no_building(*args, **kwargs):
    raise AssertionError("a trial built data or trained an evaluator")


def test_trials_read_what_the_driver_built_and_train_nothing(tiny_config, tmp_path, monkeypatch):
    config = tiny_config()
    experiment = f"file://{tmp_path}/experiment"  # a URI, as on object storage
    digest = prepare_experiment(config, experiment, progress=False)
    built = LoopResources.build(config, progress=False)
    assert digest == built.evaluator_hash == evaluator_hash(storage.read_bytes(storage.join(experiment, EVALUATOR_FILE)))
    monkeypatch.setattr(resources_module, "_build", no_building)
    monkeypatch.setattr(evaluator_module, "train_evaluator", no_building)
    loaded = LoopResources.load(config, experiment)
    assert loaded.evaluator_hash == digest
    for split in ("train", "test"):
        ours, theirs = getattr(loaded.real, split), getattr(built.real, split)
        assert ours.ids == theirs.ids and ours.captions == theirs.captions
        assert all(np.array_equal(a, b) for a, b in zip(ours.features, theirs.features))
    np.testing.assert_array_equal(loaded.real.normalizer.std, built.real.normalizer.std)
    assert loaded.bank.captions == built.bank.captions
    np.testing.assert_array_equal(loaded.bank.embeddings, built.bank.embeddings)
    motions = built.real.test.features[:4]
    np.testing.assert_array_equal(loaded.evaluator.embed_motions(motions), built.evaluator.embed_motions(motions))
    # A resumed experiment keeps its own resources (nothing is rebuilt: _build would raise).
    assert prepare_experiment(config, experiment, progress=False) == digest


def test_a_trial_without_the_drivers_files_fails_and_says_why(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluator_module, "train_evaluator", no_building)
    with pytest.raises(FileNotFoundError, match=f"{MANIFEST} does not exist.*never builds its own"):
        LoopResources.load(tiny_config(), str(tmp_path / "nothing"))


def test_other_settings_or_a_replaced_evaluator_are_refused(tiny_config, tmp_path):
    config = tiny_config()
    experiment = str(tmp_path / "experiment")
    prepare_experiment(config, experiment, progress=False)
    other = tiny_config("evaluate.evaluator.epochs=2")
    for call in (lambda: LoopResources.load(other, experiment), lambda: prepare_experiment(other, experiment)):
        with pytest.raises(ValueError, match="other data or evaluator settings"):
            call()
    # Where each node caches its own copies does not matter: trials read the experiment's.
    LoopResources.load(tiny_config(f"data.cache_dir={tmp_path / 'elsewhere'}"), experiment)
    storage.write_bytes(storage.join(experiment, EVALUATOR_FILE), b"another evaluator")
    with pytest.raises(ValueError, match="was replaced after its trials started"):
        LoopResources.load(config, experiment)


def test_the_driver_says_what_it_builds_before_the_first_trial(tiny_config, tmp_path, capsys):
    config = tiny_config()
    experiment = str(tmp_path / "experiment")
    prepare_experiment(config, experiment, progress=True)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("preparing the real data, caption embeddings and evaluator for ")
    assert config.data.cache_dir in first
    prepare_experiment(config, experiment, progress=True)  # a resumed experiment builds nothing and says nothing
    assert "preparing" not in capsys.readouterr().out


def test_a_cold_cache_says_what_it_builds_how_long_it_should_take_and_took(tiny_config, tmp_path, capsys):
    config = tiny_config(f"data.cache_dir={tmp_path / 'cold'}")
    prepare_experiment(config, str(tmp_path / "experiment"), progress=True)
    captured = capsys.readouterr()
    said = captured.err.splitlines()
    for what in ("the procedural dataset (200 motions)", "captions (hashing", "the evaluator (1 epochs on "):
        start = [line for line in said if line.startswith("building ") and what in line]
        end = [line for line in said if line.startswith("built ") and what in line]
        assert start and all(re.search(r": about \d+ s$", line) for line in start), (what, said)
        assert len(end) == len(start) and all(re.search(r" in \d+ s$", line) for line in end), (what, said)
    assert re.search(r"^prepared in \d+ s; the trials start now$", captured.out, re.MULTILINE)
