"""Named random streams: the same numbers as the bare [seed, id] entropy that recorded runs used."""

from __future__ import annotations

import numpy as np

from scl_ray import rng


def test_streams_keep_their_recorded_ids():
    # Changing an id changes every result drawn from it; these are the ids before they had names.
    loop = (rng.PROMPTS, rng.REPLACEMENT, rng.CAPTIONS, rng.EVAL_POOLS, rng.TRAIN_SUBSET, rng.EVAL_PROMPTS,
            rng.EVAL_BOOTSTRAP)
    assert loop == (0, 1, 3, 5, 7, 11, 13)
    assert (rng.PROCEDURAL_SCHEDULE, rng.PROCEDURAL_MOTION, rng.PROCEDURAL_SPLITS) == (0, 1, 2)
    assert (rng.TOY_REAL, rng.TOY_MODEL, rng.TOY_CORRECTOR) == (0, 1, 2)
    assert (rng.TRAIN_INIT, rng.TRAIN_DATA, rng.TRAIN_NOISE, rng.TRAIN_DROPOUT, rng.EVAL_MULTIMODALITY) == (0, 1, 2, 3, 1)


def test_stream_is_default_rng_on_seed_and_id():
    assert rng.stream(42, rng.TRAIN_SUBSET).integers(1 << 62) == np.random.default_rng([42, 7]).integers(1 << 62)
    assert rng.stream(3, rng.PROCEDURAL_MOTION, 9).random() == np.random.default_rng([3, 1, 9]).random()
