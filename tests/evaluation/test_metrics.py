"""The HumanML3D protocol metrics against closed forms, chance levels and degenerate generators."""

from __future__ import annotations

import numpy as np
import pytest

from scl_ray.config import EvaluateConfig
from scl_ray.evaluation.metrics import (
    FrechetReference, arrange_pools, compute_all, diversity, draw_pools, fid, frechet_distance, matching_score,
    multimodality, r_precision,
)


def gaussian_set(rng, mean, cov, num):
    return rng.multivariate_normal(mean, cov, size=num)


def test_frechet_distance_closed_form_for_commuting_covariances():
    # Diagonal covariances commute: the trace term is sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)


def test_fid_of_samples_approaches_the_distance_of_the_true_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.zeros(4), np.array([0.5, -0.5, 0.0, 1.0])
    cov1 = np.eye(4)
    root = rng.normal(size=(4, 4)) * 0.5
    cov2 = root @ root.T + 0.5 * np.eye(4)
    truth = frechet_distance(mu1, cov1, mu2, cov2)
    estimate = fid(gaussian_set(rng, mu1, cov1, 40_000), gaussian_set(rng, mu2, cov2, 40_000))
    assert truth > 1.0
    assert estimate == pytest.approx(truth, rel=0.03)


def test_fid_of_identical_sets_is_zero_and_is_symmetric():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 16))
    b = rng.normal(size=(300, 16)) + 0.3
    assert abs(fid(a, a)) < 1e-8
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-8)


def test_fid_grows_monotonically_with_added_noise():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(2000, 8))
    noise = rng.normal(size=real.shape)
    values = [fid(real, real + scale * noise) for scale in (0.0, 0.1, 0.3, 1.0, 3.0)]
    assert np.all(np.diff(values) > 0), values


def test_fid_on_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(3)
    value = fid(rng.normal(size=(20, 64)), rng.normal(size=(20, 64)))
    assert np.isfinite(value) and value > 0


def test_r_precision_is_one_for_perfectly_aligned_embeddings():
    rng = np.random.default_rng(4)
    text = rng.normal(size=(96, 32))
    assert r_precision(text, text + 1e-3 * rng.normal(size=text.shape)) == (1.0, 1.0, 1.0)
    assert matching_score(text, text) == 0.0


def test_r_precision_of_unrelated_embeddings_is_at_chance():
    rng = np.random.default_rng(5)
    text, motion = rng.normal(size=(32 * 400, 16)), rng.normal(size=(32 * 400, 16))
    top = r_precision(text, motion)
    assert top == pytest.approx((1 / 32, 2 / 32, 3 / 32), abs=0.01)
    assert top[0] <= top[1] <= top[2]


def test_r_precision_drops_the_last_partial_pool():
    rng = np.random.default_rng(6)
    text = rng.normal(size=(40, 8))
    motion = text.copy()
    motion[32:] = rng.normal(size=(8, 8)) * 100  # only in the dropped remainder
    assert r_precision(text, motion) == (1.0, 1.0, 1.0)
    assert matching_score(text, motion) == 0.0


def test_matching_score_is_the_mean_distance_of_pairs():
    text = np.zeros((32, 3))
    motion = np.zeros((32, 3))
    motion[:, 0] = np.arange(32)
    assert matching_score(text, motion) == pytest.approx(np.arange(32).mean())


def test_diversity_is_zero_for_copies_and_positive_for_a_spread_set():
    rng = np.random.default_rng(7)
    copies = np.tile(rng.normal(size=(1, 8)), (500, 1))
    spread = rng.normal(size=(500, 8))
    assert diversity(copies, seed=0) == 0.0
    # Mean distance of two independent N(0, I_8) points is about sqrt(2 * 8) = 4.
    assert diversity(spread, seed=0) == pytest.approx(4.0, rel=0.1)


def test_diversity_is_seeded_and_works_below_300_embeddings():
    rng = np.random.default_rng(8)
    emb = rng.normal(size=(100, 8))
    assert diversity(emb, seed=3) == diversity(emb, seed=3)
    assert diversity(emb, seed=3) != diversity(emb, seed=4)
    assert np.isfinite(diversity(emb, seed=3))


def test_multimodality_is_zero_for_a_deterministic_generator():
    rng = np.random.default_rng(9)
    per_prompt = rng.normal(size=(16, 1, 8))
    deterministic = np.repeat(per_prompt, 30, axis=1)
    stochastic = per_prompt + rng.normal(size=(16, 30, 8))
    assert multimodality(deterministic, seed=0) == 0.0
    assert multimodality(stochastic, seed=0) > 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: fid(np.zeros((10, 4)), np.zeros((10, 5))),
        lambda: fid(np.zeros(10), np.zeros((10, 4))),
        lambda: r_precision(np.zeros((64, 4)), np.zeros((63, 4))),
        lambda: r_precision(np.zeros((16, 4)), np.zeros((16, 4))),
        lambda: matching_score(np.zeros((64, 4)), np.zeros((64, 5))),
        lambda: diversity(np.zeros((5, 2, 3))),
        lambda: multimodality(np.zeros((5, 3))),
        lambda: fid(np.full((10, 4), np.nan), np.zeros((10, 4))),
    ],
)
def test_wrong_shapes_and_values_are_rejected_with_a_message(call):
    with pytest.raises(ValueError, match=r"\w+"):
        call()


def test_r_precision_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(64, 4\).*\(63, 4\)"):
        r_precision(np.zeros((64, 4)), np.zeros((63, 4)))


def test_compute_all_returns_every_metric_by_flat_name():
    rng = np.random.default_rng(10)
    text = rng.normal(size=(256, 16))
    motion = text + 0.2 * rng.normal(size=text.shape)
    real = rng.normal(size=(512, 16))
    mm = rng.normal(size=(16, 10, 16))
    metrics = compute_all(text, motion, real, mm, EvaluateConfig(seed=1))
    assert set(metrics) == {"fid", "r_precision_top1", "r_precision_top2", "r_precision_top3",
                            "matching_score", "diversity", "multimodality"}
    assert all(isinstance(value, float) and np.isfinite(value) for value in metrics.values())
    assert metrics["r_precision_top3"] > 0.9
    assert metrics == compute_all(text, motion, real, mm, EvaluateConfig(seed=1))
    assert "multimodality" not in compute_all(text, motion, real, None, EvaluateConfig(seed=1))


def _pools_of(drawn, batch):
    return [drawn[start:start + batch] for start in range(0, len(drawn), batch)]


def test_drawn_pools_never_hold_a_caption_twice():
    # 20 candidates, 12 distinct captions (some shared by several motions), 5x more draws than candidates.
    keys = [f"caption {i % 12}" for i in range(20)]
    drawn = draw_pools(keys, 100, 8, np.random.default_rng(0))
    assert len(drawn) == 100 and drawn.min() >= 0 and drawn.max() < 20
    for pool in _pools_of(drawn, 8):  # the trailing pool of 4 too
        assert len({keys[i] for i in pool}) == len(pool)
    counts = np.bincount(drawn, minlength=20)
    assert counts.min() >= 3 and counts.max() <= 7  # every candidate is used, about equally (5 each)
    # With replacement, as before, a pool of 8 among 12 captions holds one twice nearly always.
    naive = np.random.default_rng(0).choice(20, 100)
    assert any(len({keys[i] for i in pool}) < len(pool) for pool in _pools_of(naive, 8))


def test_drawn_pools_are_a_seeded_draw_without_replacement_when_the_split_suffices():
    keys = [f"caption {i}" for i in range(50)]
    drawn = draw_pools(keys, 32, 32, np.random.default_rng(1))
    assert len(set(drawn.tolist())) == 32
    assert drawn.tolist() == draw_pools(keys, 32, 32, np.random.default_rng(1)).tolist()
    assert drawn.tolist() != draw_pools(keys, 32, 32, np.random.default_rng(2)).tolist()


def test_a_pool_larger_than_the_distinct_captions_is_refused():
    keys = [f"caption {i % 10}" for i in range(40)]
    with pytest.raises(ValueError, match="only 10 distinct captions"):
        draw_pools(keys, 64, 32, np.random.default_rng(0))
    assert len(draw_pools(keys, 64, 10, np.random.default_rng(0))) == 64


def test_compute_all_without_pools_reports_no_r_precision_and_uses_every_pair():
    rng = np.random.default_rng(11)
    text, motion, real = rng.normal(size=(10, 8)), rng.normal(size=(10, 8)), rng.normal(size=(50, 8))
    metrics = compute_all(text, motion, real, None, EvaluateConfig(r_precision_batch=32), pools=False)
    assert set(metrics) == {"fid", "matching_score", "diversity"}
    assert metrics["fid"] == fid(motion, real)
    assert metrics["matching_score"] == pytest.approx(np.linalg.norm(text - motion, axis=1).mean())
    with pytest.raises(ValueError, match="at least 2"):
        compute_all(text[:1], motion[:1], real, None, EvaluateConfig(), pools=False)


def test_arranged_pools_are_full_distinct_and_use_each_row_once():
    # 60 rows, 25 distinct captions, one caption on 9 rows: with pools of 8 it fits in at most 7 pools.
    keys = [f"caption {i % 24}" for i in range(51)] + ["common"] * 9
    arranged = arrange_pools(keys, 8, np.random.default_rng(0))
    assert len(arranged) == 56 and len(set(arranged.tolist())) == 56  # 7 full pools, no row twice
    for pool in _pools_of(arranged, 8):
        assert len({keys[i] for i in pool}) == 8
    assert sum(keys[i] == "common" for i in arranged) <= 7  # at most one per pool
    assert arranged.tolist() == arrange_pools(keys, 8, np.random.default_rng(0)).tolist()
    assert arranged.tolist() != arrange_pools(keys, 8, np.random.default_rng(1)).tolist()
    # Prompts drawn by draw_pools always arrange without losing a row.
    for seed in range(20):
        drawn = [keys[i] for i in draw_pools(keys[:51], 64, 16, np.random.default_rng(seed))]
        assert len(arrange_pools(drawn, 16, np.random.default_rng(seed))) == 64
    assert len(arrange_pools(["a", "b", "a"], 3, np.random.default_rng(0))) == 0


def test_the_frechet_reference_gives_fid_without_a_general_square_root():
    rng = np.random.default_rng(12)
    real = rng.normal(size=(300, 24)) @ rng.normal(size=(24, 24))
    reference = FrechetReference(real)
    for generated in (rng.normal(size=(500, 24)) + 0.2, rng.normal(size=(10, 24))):  # N > E and N < E
        assert reference.fid(generated) == pytest.approx(fid(generated, real), rel=1e-6)
    with pytest.raises(ValueError, match="one size"):
        reference.fid(np.zeros((5, 3)))


def test_golden_values_of_the_original_t2m_protocol():
    """Our metrics reproduce the original protocol's functions on the same inputs.

    The values were computed once, outside this repository, by EricGuo5513/text-to-motion at commit
    72df96e: utils/metrics.py run unmodified (euclidean_distance_matrix, calculate_top_k,
    calculate_activation_statistics, calculate_frechet_distance, calculate_diversity,
    calculate_multimodality; MDM's eval/ uses copies of them) and final_evaluations.py's
    evaluate_matching_score batch loop over a drop_last loader of 32 (R-precision and Matching are
    summed over the batches and divided by the pairs seen). The inputs are the arrays drawn below,
    in this order, from numpy's default_rng(2024); upstream's diversity and MultiModality drew their
    pairs with np.random.seed(7) and np.random.seed(11), which a RandomState(7) / (11) repeats.
    """
    rng = np.random.default_rng(2024)
    text = rng.normal(size=(100, 16))
    motion = 0.5 * text + rng.normal(size=(100, 16))
    generated = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16)) * 0.3 + 0.2
    real = rng.normal(size=(150, 16))
    few = rng.normal(size=(12, 16)) + 0.1  # fewer samples than dimensions: a singular covariance
    spread = rng.normal(size=(400, 16))
    per_prompt = rng.normal(size=(8, 12, 16))

    assert r_precision(text, motion) == pytest.approx((0.34375, 0.5416666666666666, 0.6354166666666666), abs=1e-12)
    assert matching_score(text, motion) == pytest.approx(4.3036240491836075, rel=1e-12)
    assert fid(generated, real) == pytest.approx(10.786127216183246, rel=1e-9)
    assert fid(few, real) == pytest.approx(10.78549319056604, rel=1e-7)
    assert diversity(spread, 300, np.random.RandomState(7)) == pytest.approx(5.542077788264964, rel=1e-12)
    assert multimodality(per_prompt, 10, np.random.RandomState(11)) == pytest.approx(5.323118067402071, rel=1e-12)
