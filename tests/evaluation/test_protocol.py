"""The evaluation protocol: on real (procedural) data with a trained evaluator, and how it treats a set.

One evaluator is trained for the module on 1000 procedural motions (hashing text encoder, so no model
package is loaded); the checks are the ones a sound text-to-motion evaluator must pass. The tests of
how a set is pooled, what MultiModality uses and the confidence intervals use a stand-in evaluator.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest

from scl_ray.config import EvaluateConfig, load_config
from scl_ray.evaluation.metrics import (arrange_pools, compute_all, diversity, fid, interval_names, is_interval,
                                        r_precision)
from scl_ray.evaluation.protocol import MULTIMODALITY_GROUP, evaluate_motions
from scl_ray.loop.data import RealData
from scl_ray.motion.store import MotionSet
from scl_ray.rng import EVAL_POOLS, stream
from scl_ray.workflows import dataset_evaluator, evaluate_motion_set


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("protocol_cache")
    config = load_config(None, ["data.procedural_num=1000", f"data.cache_dir={cache}", "model.text_encoder=hashing",
                                "evaluate.evaluator.epochs=12"])
    real = RealData.load(config.data, progress=False)
    return config, real, dataset_evaluator(config, real, progress=False)


def test_real_test_split_is_retrieved_by_its_captions(trained):
    config, real, evaluator = trained
    metrics = evaluate_motion_set(real.test, config, real, evaluator, progress=False)
    assert metrics["r_precision_top3"] >= 0.8, metrics
    assert metrics["fid"] < 0.1 * metrics["diversity"] ** 2

    rng = np.random.default_rng(0)
    motions = evaluator.embed_motions(real.test.features)
    texts = evaluator.embed_texts([captions[0] for captions in real.test.captions])
    shuffled = texts[rng.permutation(len(texts))]
    chance = np.mean([r_precision(shuffled[rng.permutation(len(texts))], motions)[2] for _ in range(20)])
    assert abs(chance - 3 / 32) < 0.05


def test_fid_separates_real_from_noised_real_and_grows_with_noise(trained):
    _, real, evaluator = trained
    test = evaluator.embed_motions(real.test.features)
    train = evaluator.embed_motions(real.train.features)
    rng = np.random.default_rng(1)
    noised = []
    for level in (1.0, 2.0, 4.0, 8.0):  # white noise in units of each feature's std
        features = [f + rng.normal(0, level, f.shape).astype(np.float32) * real.normalizer.std
                    for f in real.test.features]
        noised.append(fid(test, evaluator.embed_motions(features)))
    baseline = fid(test, train)
    # The evaluator averages frame noise out (the conv + GRU encoder): below ~2 std it barely moves.
    assert baseline < 0.5 * noised[2]
    assert noised == sorted(noised), noised


def test_diversity_of_real_data_exceeds_copies_of_one_motion(trained):
    _, real, evaluator = trained
    embeddings = evaluator.embed_motions(real.test.features)
    copies = np.repeat(embeddings[:1], len(embeddings), axis=0)
    assert diversity(embeddings) > 0.1 > diversity(copies)


# ---- the protocol of a motion set (scl_ray/evaluation/protocol.py), with a stand-in evaluator --------

class LinearEvaluator:
    """Motions: a fixed projection of their mean feature vector; captions: a vector seeded by the text."""

    def __init__(self, dim: int = 8):
        self.projection = np.random.default_rng(0).normal(size=(263, dim)) / 10

    def embed_motions(self, motions):
        return np.stack([np.asarray(m, np.float64).mean(0) @ self.projection for m in motions])

    def embed_texts(self, captions):
        return np.stack([np.random.default_rng(zlib.crc32(c.encode())).normal(size=self.projection.shape[1])
                         for c in captions])


def motion_set(num: int, seed: int, captions=None, stats=None) -> MotionSet:
    rng = np.random.default_rng(seed)
    features = [rng.normal(size=(30, 263)).astype(np.float32) + 0.1 * (i % 5) for i in range(num)]
    captions = captions or [f"caption {i}" for i in range(num)]
    return MotionSet(ids=[f"m{i}" for i in range(num)], captions=[(c,) for c in captions], features=features,
                     source=["synthetic"] * num, generation=[0] * num, status=[""] * num,
                     stats=stats or [{} for _ in range(num)])


SETTINGS = EvaluateConfig(r_precision_batch=8, diversity_pairs=50, mm_prompts=3, mm_samples=4, bootstrap=100)
REAL = np.random.default_rng(1).normal(size=(60, 8))


def test_every_metric_uses_the_pooled_samples_and_multimodality_its_marked_rows():
    samples = motion_set(21, 2)  # 2 full pools of 8; 5 samples left out
    marked = motion_set(12, 3, [f"mm {i // 4}" for i in range(12)],
                        [{MULTIMODALITY_GROUP: i // 4} for i in range(12)])
    evaluator = LinearEvaluator()
    metrics = evaluate_motions(samples.concat([marked]), evaluator, REAL, SETTINGS, physics=False)
    order = arrange_pools([c[0] for c in samples.captions], 8, stream(SETTINGS.seed, EVAL_POOLS))
    assert len(order) == 16
    motions = evaluator.embed_motions([samples.features[i] for i in order])
    texts = evaluator.embed_texts([samples.captions[i][0] for i in order])
    groups = evaluator.embed_motions(marked.features).reshape(3, 4, -1)
    expected = compute_all(texts, motions, REAL, groups, SETTINGS)
    assert {name: metrics[name] for name in expected} == pytest.approx(expected, rel=1e-9)
    # Without marked rows, a set's MultiModality groups are its samples that share a caption.
    repeated = motion_set(24, 4, [f"caption {i % 12}" for i in range(24)])
    assert "multimodality" in evaluate_motions(repeated, evaluator, REAL, SETTINGS, physics=False)
    assert "multimodality" not in evaluate_motions(samples, evaluator, REAL, SETTINGS, physics=False)


def test_nonfinite_motions_are_left_out_before_anything_is_drawn():
    samples = motion_set(20, 5)
    broken = dataclasses.replace(samples, features=[np.full_like(samples.features[0], np.nan), *samples.features[1:]])
    evaluator = LinearEvaluator()
    assert (evaluate_motions(broken, evaluator, REAL, SETTINGS, physics=False)
            == evaluate_motions(samples.select(np.arange(1, 20)), evaluator, REAL, SETTINGS, physics=False))
    with pytest.raises(ValueError, match="1 finite evaluation samples"):
        evaluate_motions(broken.select(np.arange(2)), evaluator, REAL, SETTINGS)


def test_a_set_without_a_full_pool_has_no_r_precision():
    metrics = evaluate_motions(motion_set(6, 6), LinearEvaluator(), REAL, SETTINGS, physics=False)
    assert "fid" in metrics and "fid_ci_low" in metrics
    assert not any(name.startswith("r_precision") for name in metrics)


def test_every_metric_has_a_seeded_interval_that_narrows_with_more_samples():
    evaluator = LinearEvaluator()
    small, large = motion_set(32, 7), motion_set(512, 7)
    metrics = evaluate_motions(small, evaluator, REAL, SETTINGS)
    values = {name: value for name, value in metrics.items() if not is_interval(name)}
    assert set(metrics) == {name for metric in values for name in (metric, *interval_names(metric))}
    for metric, value in values.items():
        low, high = (metrics[name] for name in interval_names(metric))
        assert low <= high, metric
        if metric == "matching_score" or metric.startswith("physics/"):  # means: the value lies inside
            assert low <= value <= high, metric
    assert metrics == evaluate_motions(small, evaluator, REAL, SETTINGS)
    other_seed = evaluate_motions(small, evaluator, REAL, dataclasses.replace(SETTINGS, seed=1))
    assert other_seed["matching_score_ci_low"] != metrics["matching_score_ci_low"]
    wide = metrics["matching_score_ci_high"] - metrics["matching_score_ci_low"]
    many = evaluate_motions(large, evaluator, REAL, SETTINGS, physics=False)
    narrow = many["matching_score_ci_high"] - many["matching_score_ci_low"]
    assert 2 < wide / narrow < 8  # 16 times the samples: about 4 times narrower
    without = evaluate_motions(small, evaluator, REAL, dataclasses.replace(SETTINGS, bootstrap=0))
    assert without == values
