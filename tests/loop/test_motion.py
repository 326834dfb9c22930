"""The motion loop's evaluation of whole motion sets: what correction does to a synthetic set."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scl_ray.loop.build import LoopResources, summarize_correction
from scl_ray.loop.motion import MotionEvaluation


@pytest.fixture(scope="module")
def evaluation(tiny_cache):
    from scl_ray.config import load_config
    from tests.conftest import TINY_OVERRIDES

    config = load_config(None, [*TINY_OVERRIDES, f"data.cache_dir={tiny_cache}"])
    resources = LoopResources.load(config, progress=False)
    return MotionEvaluation(config, resources.real, resources.evaluator)


def _noised(motions, scale: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    features = [f + scale * rng.standard_normal(f.shape).astype(np.float32) * f.std(axis=0) for f in motions.features]
    return dataclasses.replace(motions, features=features)


def test_set_metrics_place_the_real_test_split_at_zero_fid_and_noise_further(evaluation):
    test = evaluation.real.test
    clean = evaluation.set_metrics(test)
    assert set(clean) == {"fid", "matching_score", "diversity"}
    assert clean["fid"] == pytest.approx(0.0, abs=1e-6)  # the split is its own reference
    fids = [evaluation.set_metrics(_noised(test, scale))["fid"] for scale in (0.5, 4.0)]
    assert 0 < fids[0] < fids[1]


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
