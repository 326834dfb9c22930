"""The evaluation protocol on real (procedural) data with a trained evaluator.

One evaluator is trained for the module on 1000 procedural motions (hashing text encoder, so no model
package is loaded); the checks are the ones a sound text-to-motion evaluator must pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from scl_ray.config import load_config
from scl_ray.evaluation.metrics import diversity, fid, r_precision
from scl_ray.loop.data import RealData
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
