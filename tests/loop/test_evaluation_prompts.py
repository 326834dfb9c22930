"""The loop's evaluation prompts: R-precision pools never hold a caption twice, even when more prompts
are drawn than the test split holds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest


class NoEvaluator:
    """Embeddings are not what these tests look at."""

    def embed_texts(self, captions):
        return np.zeros((len(captions), 4), np.float32)

    def embed_motions(self, motions):
        return np.zeros((len(motions), 4), np.float32)


@pytest.fixture(scope="module")
def tiny(tiny_cache):
    from scl_ray.config import load_config
    from scl_ray.loop.data import RealData
    from tests.conftest import TINY_OVERRIDES

    config = load_config(None, [*TINY_OVERRIDES, f"data.cache_dir={tiny_cache}"])
    return config, RealData.load(config.data, progress=False)


def _evaluation(config, real, **evaluate):
    from scl_ray.loop.motion import MotionEvaluation

    config = dataclasses.replace(config, evaluate=dataclasses.replace(config.evaluate, **evaluate))
    return MotionEvaluation(config, real, NoEvaluator())


def test_evaluation_pools_hold_distinct_captions_when_prompts_outnumber_the_test_split(tiny):
    config, real = tiny
    batch, num = 16, 4 * len(real.test) + 5
    evaluation = _evaluation(config, real, num_samples=num, r_precision_batch=batch)
    assert len(evaluation.captions) == num and len(evaluation.prompts) == num
    for start in range(0, num, batch):
        pool = evaluation.captions[start:start + batch]
        assert len(set(pool)) == len(pool)
        ids = evaluation.prompts.ids[start:start + batch]
        assert len(set(ids)) == len(ids)
    # Each prompt's caption is one of its motion's own.
    for caption, captions in zip(evaluation.captions, evaluation.prompts.captions):
        assert caption in captions


def test_a_pool_larger_than_the_test_split_is_refused(tiny):
    config, real = tiny
    with pytest.raises(ValueError, match="never holds a caption twice"):
        _evaluation(config, real, num_samples=64, r_precision_batch=len(real.test) + 1)
