"""The paper's Gaussian toy (docs/method.md, "The theory, and the toy that checks it"), as its authors ran it, with pluggable parts.

Target and real data N(0, I) in `dims` dimensions; `real_points` real points drawn once and reused.
The model is one Gaussian refit from scratch each generation by maximum likelihood (mean, 1/N
covariance + 1e-6 I). Generation k >= 1 draws floor(lambda * n) points from the current fit, corrects
them into S_k, and refits on the real points plus either S_k alone or, accumulating as the authors
did, the first floor(j / k * |S_j|) points of every S_j, j = 1..k. The metric is the closed-form
Wasserstein-2 distance (not squared) between N(0, I) and each fit, generation 0 being the fit on the
real points alone.

Correction of strength gamma moves t = gamma / (1 + gamma) of the synthetic mass to the target:
- MixtureCorrector, the theory's exact pi_gamma: each sample is kept with probability 1 - t, otherwise
  replaced by a fresh N(0, I) draw.
- HistogramCorrector, the authors' script: a density histogram (bins per axis) over the samples'
  bounding box, then rejection sampling of as many points from (1 - t) hist + t phi, proposal
  phi = N(0, I), bound M = ((1 - t) max hist + t phi(0)) / phi(0). M is not an envelope (hist/phi
  exceeds it away from the origin), so acceptance saturates at 1 there: tails are clipped towards
  N(0, I) and even gamma = 0 contracts the samples. A proposal's bin is found as the script finds
  it, int((x - edge0) / delta) per axis, which truncates toward zero: a proposal up to one bin width
  below the box's lower edge counts in the first bin.

The parts plug into any loop: `GaussianModel.fit(points)`, `model.sample(n, rng)`,
`corrector(samples, rng)`. `run_toy` chains them for one (gamma, corrector, seed), vectorised
(a 500-generation run takes tens of milliseconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scl_ray.config import ToyConfig
from scl_ray.rng import TOY_CORRECTOR, TOY_MODEL, TOY_REAL, stream

COVARIANCE_JITTER = 1e-6  # the authors' ridge on the MLE covariance
MAX_PROPOSALS = 10_000_000  # rejection sampling gives up (with an error) beyond this many draws
CORRECTORS = ("histogram", "mixture")


def _sqrtm_psd(matrices: np.ndarray) -> np.ndarray:
    """Symmetric square roots of positive semi-definite matrices (..., d, d)."""
    values, vectors = np.linalg.eigh(matrices)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def w2_gaussian(mu1, cov1, mu2, cov2) -> np.ndarray | float:
    """Wasserstein-2 distance (not squared) between N(mu1, cov1) and N(mu2, cov2).

    mu: (..., d), cov: (..., d, d) symmetric positive semi-definite, batched over leading axes.
    W2^2 = |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov2^1/2 cov1 cov2^1/2)^1/2).
    Returns a float for single Gaussians, else an array of the batch shape; units of the data.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if cov1.shape[-2:] != (mu1.shape[-1],) * 2 or cov2.shape[-2:] != (mu2.shape[-1],) * 2:
        raise ValueError(f"w2_gaussian needs means (..., d) and covariances (..., d, d), got mu1 {mu1.shape}, "
                         f"cov1 {cov1.shape}, mu2 {mu2.shape}, cov2 {cov2.shape}")
    root2 = _sqrtm_psd(cov2)
    cross = _sqrtm_psd(root2 @ cov1 @ root2)
    trace = np.trace(cov1, axis1=-2, axis2=-1) + np.trace(cov2, axis1=-2, axis2=-1)
    squared = np.sum((mu1 - mu2) ** 2, axis=-1) + trace - 2 * np.trace(cross, axis1=-2, axis2=-1)
    distance = np.sqrt(np.clip(squared, 0.0, None))
    return float(distance) if distance.ndim == 0 else distance


@dataclass(frozen=True)
class GaussianModel:
    """One Gaussian: mean (d,) and covariance (d, d)."""

    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def fit(cls, points: np.ndarray) -> "GaussianModel":
        """Maximum likelihood fit to points (N, d): mean, 1/N covariance + 1e-6 I."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or len(points) == 0:
            raise ValueError(f"GaussianModel.fit needs points of shape (N >= 1, d), got {points.shape}")
        return cls.from_moments(len(points), points.sum(axis=0), points.T @ points)

    @classmethod
    def from_moments(cls, count: int, total: np.ndarray, outer: np.ndarray) -> "GaussianModel":
        """The same fit from N, the sum of the points (d,) and the sum of their outer products (d, d)."""
        mean = total / count
        cov = outer / count - np.outer(mean, mean) + COVARIANCE_JITTER * np.eye(len(mean))
        return cls(mean, cov)

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """num points (num, d) drawn from the Gaussian."""
        return self.mean + rng.standard_normal((num, len(self.mean))) @ np.linalg.cholesky(self.cov).T


def correction_fraction(gamma: float) -> float:
    """t = gamma / (1 + gamma): the share of synthetic mass the corrector moves to the target."""
    if not gamma >= 0:
        raise ValueError(f"correction strength gamma must be >= 0, got {gamma}")
    return gamma / (1.0 + gamma)


class MixtureCorrector:
    """The exact pi_gamma: keep each sample with probability 1 - t, else draw it fresh from N(0, I)."""

    def __init__(self, gamma: float):
        self.gamma = gamma
        self.fraction = correction_fraction(gamma)

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """samples (n, d) -> corrected (n, d)."""
        replace = rng.random(len(samples)) < self.fraction
        fresh = rng.standard_normal(samples.shape)
        return np.where(replace[:, None], fresh, samples)


class HistogramCorrector:
    """The authors' corrector: rejection sampling from (1 - t) histogram + t N(0, I) (module docstring)."""

    def __init__(self, gamma: float, bins: int = 10):
        self.gamma = gamma
        self.bins = bins
        self.fraction = correction_fraction(gamma)

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """samples (n, d) -> n points drawn by rejection from the corrected density."""
        num, dims = samples.shape
        low = samples.min(axis=0)
        # The edges and widths of np.histogram2d(..., bins), which the script reads its deltas from.
        delta = np.linspace(low, samples.max(axis=0), self.bins + 1)[1] - low
        # Samples lie in the box, so truncation is floor; the largest closes the last bin, as in histogram2d.
        cells = self._cells(np.minimum(((samples - low) / delta).astype(np.int64), self.bins - 1))
        density = np.bincount(cells, minlength=self.bins**dims) / (num * np.prod(delta))
        phi_0 = (2 * np.pi) ** (-dims / 2)
        t = self.fraction
        bound = ((1 - t) * density.max() + t * phi_0) / phi_0
        accepted: list[np.ndarray] = []
        found, drawn, batch = 0, 0, 32 * num
        while found < num:
            if drawn >= MAX_PROPOSALS:
                raise RuntimeError(f"histogram corrector (gamma={self.gamma}) accepted {found} of {num} points "
                                   f"in {drawn} proposals: the model's samples lie far outside N(0, I)")
            proposals = rng.standard_normal((batch, dims))
            phi = phi_0 * np.exp(-0.5 * np.sum(proposals**2, axis=1))
            cells = self._cells(self.proposal_bins(proposals, low, delta))
            hist = np.where(cells >= 0, density[np.maximum(cells, 0)], 0.0)
            target = (1 - t) * hist + t * phi
            keep = proposals[rng.random(batch) * bound * phi < target]
            accepted.append(keep)
            found, drawn = found + len(keep), drawn + batch
            # Low acceptance (a fit far from N(0, I)) gets ever larger batches, so it stays vectorised.
            batch = min(4 * batch, 1 << 20)
        return np.concatenate(accepted)[:num]

    @staticmethod
    def proposal_bins(points: np.ndarray, low: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Per-axis bin index (m, d) of each proposal, exactly as the authors' script finds it.

        The script computes int((x - edge0) / delta), and Python's int truncates toward zero (so does
        astype here): a proposal less than one bin width below the box's lower edge lands in bin 0,
        where floor would put it outside and give it no histogram mass. Kept because the toy is to give
        the script's numbers, and this alone lowers the final W2 measurably (docs/results.md).
        """
        return ((points - low) / delta).astype(np.int64)

    def _cells(self, index: np.ndarray) -> np.ndarray:
        """Flat histogram cell of per-axis bin indices (m, d), -1 where one is outside 0..bins-1.

        A bincount over these cells replaces histogramdd, which alone cost more than the rest of a generation.
        """
        inside = np.all((index >= 0) & (index < self.bins), axis=1)
        flat = np.ravel_multi_index(tuple(np.clip(index, 0, self.bins - 1).T), (self.bins,) * index.shape[1])
        return np.where(inside, flat, -1)


def make_corrector(name: str, gamma: float, bins: int = 10):
    """A corrector by name: 'histogram' (the authors') or 'mixture' (the exact theory)."""
    if name == "histogram":
        return HistogramCorrector(gamma, bins)
    if name == "mixture":
        return MixtureCorrector(gamma)
    raise ValueError(f"unknown toy corrector {name!r}; choose one of {', '.join(CORRECTORS)}")


def accumulated_counts(generation: int, size: int) -> np.ndarray:
    """(generation,) points that S_1..S_k contribute at generation k: floor(j / k * size)."""
    return np.arange(1, generation + 1) * size // generation


def run_toy(gamma: float, corrector: str, seed: int, config: ToyConfig | None = None) -> dict:
    """One self-consuming loop of the toy; returns {"gamma", "corrector", "seed", "accumulate", "w2"}.

    w2: config.generations + 1 floats, W2 between N(0, I) and each generation's fit (index 0: the fit
    on the real points). Independent random streams for the real points, the model's samples and the
    corrector, all from `seed`: the same seed gives the same numbers, and every gamma of a seed shares
    the real points.
    """
    config = config or ToyConfig()
    correct = make_corrector(corrector, gamma, config.histogram_bins)
    real_rng, model_rng, corrector_rng = (stream(seed, name) for name in (TOY_REAL, TOY_MODEL, TOY_CORRECTOR))
    real = real_rng.standard_normal((config.real_points, config.dims))
    size = math.floor(config.synthetic_ratio * config.real_points + 1e-9)
    means = np.empty((config.generations + 1, config.dims))
    covs = np.empty((config.generations + 1, config.dims, config.dims))
    # Prefix sums of each corrected set's points and outer products: the moments of S_j's first c
    # points are one lookup, so an accumulated refit costs O(k), not a concatenation of k sets.
    prefix_sum = np.zeros((config.generations, size + 1, config.dims))
    prefix_outer = np.zeros((config.generations, size + 1, config.dims, config.dims))
    model = GaussianModel.fit(real)
    means[0], covs[0] = model.mean, model.cov
    for generation in range(1, config.generations + 1):
        if size:
            corrected = correct(model.sample(size, model_rng), corrector_rng)
            prefix_sum[generation - 1, 1:] = np.cumsum(corrected, axis=0)
            prefix_outer[generation - 1, 1:] = np.cumsum(corrected[:, :, None] * corrected[:, None, :], axis=0)
            if config.accumulate:
                sets, counts = np.arange(generation), accumulated_counts(generation, size)
            else:
                sets, counts = np.array([generation - 1]), np.array([size])
            model = GaussianModel.from_moments(len(real) + counts.sum(),
                                               real.sum(axis=0) + prefix_sum[sets, counts].sum(axis=0),
                                               real.T @ real + prefix_outer[sets, counts].sum(axis=0))
        means[generation], covs[generation] = model.mean, model.cov
    target_mean, target_cov = np.zeros(config.dims), np.eye(config.dims)
    w2 = w2_gaussian(means, covs, target_mean, target_cov)
    return {"gamma": gamma, "corrector": corrector, "seed": seed, "accumulate": config.accumulate,
            "w2": [float(value) for value in np.atleast_1d(w2)]}


def run_toy_grid(config: ToyConfig | None = None) -> list[dict]:
    """run_toy for every corrector x gamma x seed of the config, in that order."""
    config = config or ToyConfig()
    return [run_toy(gamma, corrector, seed, config)
            for corrector in config.corrector for gamma in config.gammas for seed in config.seeds]
