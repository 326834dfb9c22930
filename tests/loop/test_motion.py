"""The motion loop's evaluation of whole motion sets: what correction does to a synthetic set."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from scl_ray.loop.build import summarize_correction
from scl_ray.loop.resources import LoopResources
from scl_ray.loop.motion import MotionEvaluation


@pytest.fixture(scope="module")
def evaluation(tiny_cache):
    from scl_ray.config import load_config
    from tests.conftest import TINY_OVERRIDES

    config = load_config(None, [*TINY_OVERRIDES, f"data.cache_dir={tiny_cache}"])
    resources = LoopResources.build(config, progress=False)
    return MotionEvaluation(config, resources.real, resources.evaluator)


def _noised(motions, scale: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    features = [f + scale * rng.standard_normal(f.shape).astype(np.float32) * f.std(axis=0) for f in motions.features]
    return dataclasses.replace(motions, features=features)


def test_set_metrics_are_the_protocols_without_physics_and_place_the_real_test_split_closest(evaluation):
    test = evaluation.real.test
    clean = evaluation.set_metrics(test)
    assert {"fid", "r_precision_top3", "matching_score", "diversity", "fid_ci_low", "fid_ci_high"} <= set(clean)
    assert not any(name.startswith("physics/") for name in clean)
    # The 16 motions of the split's one full pool against the whole split, then the split noised.
    fids = [evaluation.set_metrics(_noised(test, scale))["fid"] for scale in (0.5, 4.0)]
    assert clean["fid"] < fids[0] < fids[1]


def test_set_metrics_skip_nonfinite_motions_and_need_two(evaluation):
    test = evaluation.real.test
    broken = dataclasses.replace(test, features=[np.full_like(test.features[0], np.nan), *test.features[1:]])
    assert evaluation.set_metrics(broken) == pytest.approx(evaluation.set_metrics(test.select(np.arange(1, len(test)))))
    assert evaluation.set_metrics(test.select(np.array([0]))) == {}


def test_correction_summary_compares_the_sets_before_and_after(evaluation):
    synthetic = _noised(evaluation.real.test, 2.0)
    unchanged = summarize_correction(synthetic, synthetic, evaluation)
    for name in ("fid", "matching_score", "diversity"):
        assert unchanged[f"correction/{name}_before"] == unchanged[f"correction/{name}_after"]
    real = evaluation.real.test
    corrected = dataclasses.replace(real, status=["corrected"] * len(real))
    towards_real = summarize_correction(synthetic, corrected, evaluation)
    assert towards_real["correction/fid_after"] < towards_real["correction/fid_before"]


@pytest.fixture(scope="module")
def tiny_model_parts(tiny_cache):
    """A tiny config, its real data and caption bank: what a MotionLoopModel needs, without an evaluator."""
    from scl_ray.config import load_config
    from scl_ray.text.encoders import get_text_encoder
    from scl_ray.loop.data import CaptionBank, RealData
    from tests.conftest import TINY_OVERRIDES

    config = load_config(None, [*TINY_OVERRIDES, f"data.cache_dir={tiny_cache}", "model.dropout=0.1"])
    real = RealData.load(config.data, progress=False)
    bank = CaptionBank.for_data(real, get_text_encoder(config.model.text_encoder), config.model.text_max_tokens,
                                None, progress=False)
    return config, real, bank


def _weights(model) -> dict:
    return {name: tensor.detach().clone() for name, tensor in model.trainer.model.state_dict().items()}


def _same(first: dict, second: dict) -> bool:
    return all(torch.equal(first[name], second[name]) for name in first)


def test_the_loop_seed_reaches_initial_weights_and_training(tiny_model_parts):
    from scl_ray.loop.motion import MotionLoopModel

    config, real, bank = tiny_model_parts
    items = real.subset(config.loop.train_size, 0)

    def run(init_seed: int, train_seed: int) -> tuple[dict, dict]:
        model = MotionLoopModel(config, real.normalizer, bank)
        model.reset(init_seed)
        initial = _weights(model)
        model.train(items, 2, train_seed)
        return initial, _weights(model)

    initial, trained = run(1, 1)
    again_initial, again_trained = run(1, 1)
    assert _same(initial, again_initial) and _same(trained, again_trained)  # bit for bit
    other_initial, other_trained = run(2, 2)
    assert not _same(initial, other_initial) and not _same(trained, other_trained)
    # The same initial weights trained with another seed (data order, noise, dropout) end elsewhere.
    _, other_training = run(1, 2)
    assert not _same(trained, other_training)


def test_the_real_set_is_normalised_once_per_loop(tiny_model_parts, monkeypatch):
    """Every generation trains on the same real motions: their normalised features are computed at
    the first generation and reused, bit for bit what normalising them again gives."""
    from scl_ray.loop.motion import MotionLoopModel
    from scl_ray.motion.features import Normalizer

    config, real, bank = tiny_model_parts
    items = real.subset(config.loop.train_size, 0)
    synthetic = dataclasses.replace(items.select(range(3)), source=["synthetic"] * 3,
                                    features=[f + np.float32(0.1) for f in items.features[:3]])
    model = MotionLoopModel(config, real.normalizer, bank)
    normalised = []
    normalize = Normalizer.normalize
    monkeypatch.setattr(Normalizer, "normalize", lambda self, x: normalised.append(x) or normalize(self, x))
    model.dataset(items)  # generation 0: real only
    assert len(normalised) == len(items)
    for generation in (1, 2):  # real and synthetic: only the synthetic motions are normalised again
        normalised.clear()
        both = items.concat([synthetic])
        dataset = model.dataset(both)
        assert len(normalised) == len(synthetic) and all(any(x is f for f in synthetic.features) for x in normalised)
        features = np.asarray(dataset.features)
        assert features.dtype == np.float32
        for row, raw in zip(features, both.features):
            assert np.array_equal(row[: len(raw)], normalize(real.normalizer, raw).astype(np.float32))


def test_scl_ray_evaluate_on_a_generations_files_gives_its_metrics_json(tiny_config, tmp_path):
    """One protocol: `scl-ray evaluate`'s function on gen_k/eval_samples.parquet gives that generation's
    metrics.json (evaluation, MultiModality, physics and every interval), and on gen_k/synthetic.parquet
    the loop's correction/*_before scores of that set."""
    from scl_ray.evaluation.metrics import is_interval, split_interval
    from scl_ray.loop.build import build_motion_loop
    from scl_ray.loop.state import EVAL_SAMPLES, SYNTHETIC, TrialDirectory
    from scl_ray.loop.tensorboard import render_sample_image
    from scl_ray.motion.store import read_motion_set
    from scl_ray.workflows import evaluate_motion_set

    config = tiny_config("loop.generations=1", "loop.synthetic_ratio=1", "loop.strength=0", "evaluate.bootstrap=50")
    resources = LoopResources.build(config, progress=False)
    directory = TrialDirectory(tmp_path / "trial")

    def uncorrected(synthetic, seed):
        return dataclasses.replace(synthetic, status=["uncorrected"] * len(synthetic))

    reported = {}  # the report gets the evaluation samples that eval_samples.parquet holds, from memory
    build_motion_loop(config, resources, directory, uncorrected,
                      report=lambda generation, metrics, path, samples: reported.update({generation: samples})).run()
    metrics = directory.read_metrics(1)
    on_disk = read_motion_set(directory.file(1, EVAL_SAMPLES))
    assert sorted(reported) == [0, 1] and reported[1].ids == on_disk.ids and reported[1].captions == on_disk.captions
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(reported[1].features, on_disk.features))
    assert np.array_equal(render_sample_image(reported[1]), render_sample_image(on_disk))  # the TensorBoard image
    evaluated = evaluate_motion_set(on_disk, config, resources.real, resources.evaluator, progress=False)
    assert evaluated.pop("motions") == 32 + 2 * 2  # the samples and the MultiModality samples
    assert {"multimodality", "r_precision_top3_ci_low", "fid_ci_high", "physics/phys_err_mm_ci_high"} <= set(evaluated)
    assert {name: metrics[name] for name in evaluated} == evaluated
    synthetic = evaluate_motion_set(read_motion_set(directory.file(1, SYNTHETIC)), config, resources.real,
                                    resources.evaluator, progress=False)
    scored = [name for name in synthetic if not name.startswith("physics/") and name != "motions"]
    assert any(is_interval(name) for name in scored)
    as_recorded = {name: "correction/{}_before{}".format(*split_interval(name)) for name in scored}
    assert as_recorded["fid_ci_low"] == "correction/fid_before_ci_low"
    assert {name: metrics[as_recorded[name]] for name in scored} == {name: synthetic[name] for name in scored}


def test_evaluate_every_skips_generations_but_never_the_first_or_last(tiny_config, tmp_path):
    """evaluate.every = 2 over 3 generations: generations 0, 2 and 3 are evaluated (metrics and
    eval_samples.parquet), generation 1 records its training and correction but no evaluation."""
    from scl_ray.loop.build import build_motion_loop
    from scl_ray.loop.state import EVAL_SAMPLES, TrialDirectory
    from scl_ray import storage

    config = tiny_config("loop.generations=3", "loop.synthetic_ratio=1", "loop.strength=0", "evaluate.every=2",
                         "evaluate.bootstrap=0")
    resources = LoopResources.build(config, progress=False)
    directory = TrialDirectory(tmp_path / "trial")

    def uncorrected(synthetic, seed):
        return dataclasses.replace(synthetic, status=["uncorrected"] * len(synthetic))

    build_motion_loop(config, resources, directory, uncorrected).run()
    evaluated = [g for g in range(4) if "fid" in directory.read_metrics(g)]
    assert evaluated == [0, 2, 3]
    assert [g for g in range(4) if storage.exists(directory.file(g, EVAL_SAMPLES))] == [0, 2, 3]
    skipped = directory.read_metrics(1)
    assert "train/loss" in skipped and "correction/uncorrected" in skipped and "time/evaluate_s" in skipped
