"""The Gaussian toy: closed forms, the correctors' invariants, and the paper's claims over seeds."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from scipy import linalg

from scl_ray.config import ToyConfig
from scl_ray.toy.gaussian import (
    COVARIANCE_JITTER, GaussianModel, HistogramCorrector, MixtureCorrector, accumulated_counts,
    make_corrector, run_toy, run_toy_grid, w2_gaussian,
)

SEEDS = range(16)
# A shorter loop than the paper's 500 generations keeps the test quick; the ordering is already there.
SHORT = ToyConfig(generations=100)
GAMMAS = (0.0, 0.1, 1.0, 5.0)


@lru_cache(maxsize=None)
def final_w2(gamma, corrector, config, seeds=SEEDS):
    """Mean over seeds of the last generation's W2 (cached: several tests share runs)."""
    return np.mean([run_toy(gamma, corrector, seed, config)["w2"][-1] for seed in seeds])


def test_w2_closed_form_in_one_dimension():
    # W2(N(m1, s1^2), N(m2, s2^2)) = sqrt((m1 - m2)^2 + (s1 - s2)^2).
    assert w2_gaussian([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(np.sqrt(9 + 1))


def test_w2_matches_the_general_formula_for_non_commuting_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(3), b @ b.T + 0.1 * np.eye(3)
    mu1, mu2 = rng.normal(size=3), rng.normal(size=3)
    root = linalg.sqrtm(cov2).real
    expected = np.sqrt(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * linalg.sqrtm(root @ cov1 @ root).real))
    assert w2_gaussian(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)
    assert w2_gaussian(mu2, cov2, mu1, cov1) == pytest.approx(expected, rel=1e-9)
    assert w2_gaussian(mu1, cov1, mu1, cov1) == pytest.approx(0.0, abs=1e-6)
    batched = w2_gaussian(np.stack([mu1, mu2]), np.stack([cov1, cov2]), np.zeros(3), np.eye(3))
    assert batched == pytest.approx([w2_gaussian(mu1, cov1, np.zeros(3), np.eye(3)),
                                     w2_gaussian(mu2, cov2, np.zeros(3), np.eye(3))])


def test_fit_is_the_mle_with_the_authors_ridge_and_sampling_matches_it():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(50, 2)) * [1.0, 3.0] + [2.0, -1.0]
    model = GaussianModel.fit(points)
    assert model.mean == pytest.approx(points.mean(axis=0))
    assert model.cov == pytest.approx(np.cov(points, rowvar=False, bias=True) + COVARIANCE_JITTER * np.eye(2))
    draws = model.sample(200_000, np.random.default_rng(2))
    assert draws.mean(axis=0) == pytest.approx(model.mean, abs=0.03)
    assert np.cov(draws, rowvar=False) == pytest.approx(model.cov, rel=0.03, abs=0.03)


def test_accumulated_counts_follow_floor_j_over_k():
    assert accumulated_counts(1, 25).tolist() == [25]
    assert accumulated_counts(3, 25).tolist() == [8, 16, 25]
    assert accumulated_counts(500, 25)[-1] == 25
    assert accumulated_counts(500, 25).sum() == sum(j * 25 // 500 for j in range(1, 501))


def test_mixture_corrector_replaces_a_fraction_t_by_target_draws():
    rng = np.random.default_rng(3)
    samples = np.full((20_000, 2), 10.0)
    assert np.array_equal(MixtureCorrector(0.0)(samples, rng), samples)
    corrected = MixtureCorrector(1.0)(samples, rng)  # t = 1/2
    replaced = corrected[:, 0] != 10.0
    assert replaced.mean() == pytest.approx(0.5, abs=0.02)
    assert corrected[replaced].std(axis=0) == pytest.approx([1.0, 1.0], abs=0.05)


def test_histogram_corrector_without_correction_stays_in_the_samples_box_and_one_bin_below_it():
    rng = np.random.default_rng(4)
    samples = rng.uniform(size=(2000, 2)) * 0.8 + 0.3
    low, high = samples.min(axis=0), samples.max(axis=0)
    width = (high - low) / 10
    corrected = HistogramCorrector(0.0, bins=10)(samples, rng)
    assert corrected.shape == (2000, 2)
    assert np.all(corrected >= low - width) and np.all(corrected <= high)
    # The script's truncated bin index gives the strip one bin below the box the first bin's mass.
    assert (corrected < low).any(axis=1).mean() > 0.05


def test_proposal_bins_truncate_toward_zero_as_the_authors_script_does():
    corrector = HistogramCorrector(0.0, bins=10)
    low, delta = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    # (x - low) / delta per axis: -0.5 and 2.4 / -1.5 and 2.4 / 9.98 and 0 / 10 and 0
    points = low + delta * np.array([[-0.5, 2.4], [-1.5, 2.4], [9.98, 0.0], [10.0, 0.0]])
    bins = HistogramCorrector.proposal_bins(points, low, delta)
    assert bins.tolist() == [[0, 2], [-1, 2], [9, 0], [10, 0]]
    assert corrector._cells(bins).tolist() == [2, -1, 90, -1]  # half a bin below: bin 0; 1.5 below: rejected


def test_histogram_corrector_with_strong_correction_draws_near_the_target():
    rng = np.random.default_rng(5)
    corrector = HistogramCorrector(100.0, bins=10)
    corrected = np.concatenate([corrector(rng.normal(size=(25, 2)) * 0.1 + 3.0, rng) for _ in range(200)])
    assert corrected.mean(axis=0) == pytest.approx([0.0, 0.0], abs=0.15)
    assert corrected.std(axis=0) == pytest.approx([1.0, 1.0], abs=0.1)


def test_run_toy_is_seeded_and_shares_the_real_points_across_gammas():
    config = ToyConfig(generations=20)
    first = run_toy(0.3, "histogram", 7, config)
    assert first == run_toy(0.3, "histogram", 7, config)
    assert len(first["w2"]) == 21
    assert {k: first[k] for k in ("gamma", "corrector", "seed", "accumulate")} == {
        "gamma": 0.3, "corrector": "histogram", "seed": 7, "accumulate": True}
    assert run_toy(2.0, "mixture", 7, config)["w2"][0] == first["w2"][0]
    assert run_toy(0.3, "histogram", 8, config)["w2"] != first["w2"]


def test_generation_zero_matches_the_sampling_theory_for_50_points():
    # Fitting n points of N(0, I_d): E|mean|^2 = d/n and, to first order, E|cov^1/2 - I|_F^2 =
    # d(d+1)/(4n), so E[W2^2] ~ 3.5/50 = 0.07 in 2-D and E[W2] is a little below its root, ~0.25.
    config = ToyConfig(generations=1)
    w2 = np.array([run_toy(0.0, "mixture", seed, config)["w2"][0] for seed in range(1000)])
    assert np.mean(w2**2) == pytest.approx(3.5 / 50, rel=0.1)
    assert np.mean(w2) == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("corrector", ["histogram", "mixture"])
def test_final_w2_falls_as_gamma_grows(corrector):
    finals = [final_w2(gamma, corrector, SHORT) for gamma in GAMMAS]
    assert np.all(np.diff(finals) < 0), dict(zip(GAMMAS, finals))


def test_uncorrected_histogram_loop_drifts_away_from_its_generation_0():
    generation_0 = np.mean([run_toy(0.0, "histogram", seed, ToyConfig(generations=1))["w2"][0] for seed in SEEDS])
    assert final_w2(0.0, "histogram", SHORT) > 1.5 * generation_0


@pytest.mark.parametrize("corrector", ["histogram", "mixture"])
def test_without_accumulation_gamma_matters_less(corrector):
    fresh_only = ToyConfig(generations=SHORT.generations, accumulate=False)
    spread = final_w2(0.0, corrector, SHORT) - final_w2(5.0, corrector, SHORT)
    spread_fresh = final_w2(0.0, corrector, fresh_only) - final_w2(5.0, corrector, fresh_only)
    assert spread > 0.2
    assert spread_fresh < 0.5 * spread


def test_without_synthetic_data_every_generation_refits_the_real_points():
    w2 = run_toy(1.0, "histogram", 3, ToyConfig(generations=5, synthetic_ratio=0.0))["w2"]
    assert w2 == [w2[0]] * 6


def test_grid_runs_every_combination_in_order():
    config = ToyConfig(generations=3, gammas=(0.0, 1.0), corrector=("histogram", "mixture"), seeds=(0, 1))
    rows = run_toy_grid(config)
    assert [(r["corrector"], r["gamma"], r["seed"]) for r in rows] == [
        (c, g, s) for c in ("histogram", "mixture") for g in (0.0, 1.0) for s in (0, 1)]


def test_unknown_corrector_and_negative_gamma_are_rejected():
    with pytest.raises(ValueError, match="histogram, mixture"):
        make_corrector("ideal", 1.0)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        run_toy(-0.5, "mixture", 0, SHORT)


@pytest.mark.slow
@pytest.mark.parametrize("corrector", ["histogram", "mixture"])
def test_paper_protocol_final_w2_is_monotone_in_gamma(corrector):
    """The authors' full protocol (500 generations, the whole gamma grid), 20 seeds."""
    config = ToyConfig()
    finals = [final_w2(gamma, corrector, config, seeds=range(20)) for gamma in config.gammas]
    assert np.all(np.diff(finals) < 0.005), dict(zip(config.gammas, finals))
    assert finals[0] > 2 * finals[-1]


# The authors' script (exp_scripts/gaussian_toy_example.py of nate-gillman/self-correcting-self-consuming,
# commit 97d1ea7), run unchanged outside this repository: PointwiseCorrection(n_samples_gt=50,
# accumulate_synth_examples=True, projection_strength=gamma / (1 + gamma)), 500 generations, synth_aug_percent
# 0.5, its generator seeded default_rng([seed, round(100 * gamma)]) for seeds 0-9 (61 CPU-minutes). Final W2,
# (mean, standard error) over the 10 seeds.
AUTHORS_FINAL_W2 = {
    0.0: (0.5745, 0.0133), 0.01: (0.5559, 0.0089), 0.03: (0.5136, 0.0060), 0.1: (0.4082, 0.0086),
    0.3: (0.2801, 0.0052), 1.0: (0.1294, 0.0028), 2.0: (0.0794, 0.0031), 5.0: (0.0408, 0.0022),
}


def test_histogram_toy_over_10_seeds_matches_the_authors_script_within_3_standard_errors():
    config = ToyConfig(corrector=("histogram",), seeds=tuple(range(10)))
    finals: dict[float, list[float]] = {}
    for run in run_toy_grid(config):
        finals.setdefault(run["gamma"], []).append(run["w2"][-1])
    assert sorted(finals) == sorted(AUTHORS_FINAL_W2)
    for gamma, values in finals.items():
        mean, error = np.mean(values), np.std(values, ddof=1) / np.sqrt(len(values))
        theirs, their_error = AUTHORS_FINAL_W2[gamma]
        assert abs(mean - theirs) <= 3 * np.hypot(error, their_error), (gamma, mean, error, theirs, their_error)
