"""Text-to-motion metrics of the standard HumanML3D protocol (T2M; MDM's eval/eval_humanml.py).

Every function takes evaluator embeddings (numpy arrays, any float dtype, computed in float64) and
follows the protocol's arithmetic, constants included:

- R-precision and Matching score are computed in pools of 32 (text, motion) pairs, consecutive in the
  order given; a trailing pool smaller than 32 is dropped, as upstream's `drop_last=True` loader does.
  Upstream's loader is shuffled, so callers pass pairs in a random order (e.g. prompts drawn at random).
  Upstream's pools are distinct test motions, so no pool holds a caption twice; `draw_pools` draws
  prompts that way, also when more prompts are wanted than the test split holds.
  Distances are Euclidean. Upstream expands |a-b|^2 = a^2 - 2ab + b^2, which can go negative (NaN) for
  identical vectors; `scipy.spatial.distance.cdist` gives the same distances without that hazard.
- FID: mean and covariance (`np.cov`, N-1 normalisation) of each set, then the Frechet distance with
  `scipy.linalg.sqrtm`, retried with 1e-6 added to both covariance diagonals if the square root is not
  finite, and imaginary parts below 1e-3 on the diagonal discarded (Dougal Sutherland's stable version).
- Diversity: mean distance of 300 random pairs, the two index lists drawn independently, each without
  replacement (upstream asserts more than 300 embeddings; with fewer we draw with replacement, which
  keeps the expected value: in both schemes a pair repeats an index with probability 1/N).
- MultiModality: per prompt, mean distance of 10 random pairs among that prompt's samples, drawn the
  same way (upstream: 100 prompts x 30 samples each), averaged over prompts.

Reference values on HumanML3D test with the original evaluator: real data FID 0.002, top-3 R-precision
0.797, Matching 2.974, Diversity 9.503 (PAPER.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist

from scl_ray.config import EvaluateConfig

# The protocol's constants (MDM eval_humanml.py: batch_size "must be 32", diversity_times = 300,
# mm_num_times = 10; calculate_frechet_distance's eps = 1e-6 and imaginary tolerance 1e-3).
R_PRECISION_BATCH = 32
R_PRECISION_TOP_K = 3
DIVERSITY_PAIRS = 300
MULTIMODALITY_PAIRS = 10
FID_EPS = 1e-6
FID_IMAGINARY_TOLERANCE = 1e-3


def _embeddings(name: str, values, ndim: int, min_rows: int = 1) -> np.ndarray:
    """values as a finite float64 array of `ndim` dimensions with at least `min_rows` rows."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim:
        shape = "(N, E)" if ndim == 2 else "(prompts, samples, E)"
        raise ValueError(f"{name} must have shape {shape}, got an array of shape {array.shape}")
    if array.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(array)).sum())} non-finite values (NaN or inf)")
    return array


def _paired(text_emb, motion_emb, batch: int) -> tuple[np.ndarray, np.ndarray]:
    text = _embeddings("text_emb", text_emb, 2)
    motion = _embeddings("motion_emb", motion_emb, 2)
    if text.shape != motion.shape:
        raise ValueError(f"text_emb {text.shape} and motion_emb {motion.shape} must pair up row for row "
                         "with the same embedding size")
    if batch < 2:
        raise ValueError(f"the R-precision pool must hold at least 2 pairs, got batch={batch}")
    if len(text) < batch:
        raise ValueError(f"R-precision and Matching score use pools of {batch} pairs; got only {len(text)}")
    return text, motion


def _pools(num: int, batch: int) -> list[slice]:
    """Consecutive full pools; the remainder is dropped like upstream's drop_last loader."""
    return [slice(start, start + batch) for start in range(0, num - batch + 1, batch)]


def draw_pools(keys: Sequence[Hashable], num: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `num` draws from the candidates whose captions are `keys`, such that no pool of `batch`
    consecutive draws (nor the trailing partial pool) holds a key twice.

    Candidates are drawn epoch by epoch, each epoch a fresh random permutation: with distinct keys and
    num <= len(keys) this is a draw without replacement, and beyond it every candidate is used about
    equally often. A candidate whose key its pool already holds waits and goes first into the next
    pool. Raises ValueError when there are fewer distinct keys than a pool's size.
    """
    if batch < 1 or num < 0:
        raise ValueError(f"draw_pools needs batch >= 1 and num >= 0, got batch={batch}, num={num}")
    distinct = len(set(keys))
    if num and distinct < min(batch, num):
        raise ValueError(f"an R-precision pool of {min(batch, num)} never holds a caption twice, but the "
                         f"{len(keys)} candidates have only {distinct} distinct captions: lower "
                         "evaluate.r_precision_batch or use a bigger test split")
    drawn: list[int] = []
    waiting: list[int] = []
    epoch: list[int] = []
    while len(drawn) < num:
        size, pool, held, later = min(batch, num - len(drawn)), [], set(), []
        for index in waiting:
            if len(pool) < size and keys[index] not in held:
                pool.append(index)
                held.add(keys[index])
            else:
                later.append(index)
        waiting = later
        while len(pool) < size:
            if not epoch:
                epoch = rng.permutation(len(keys)).tolist()[::-1]
            index = epoch.pop()
            if keys[index] in held:
                waiting.append(index)
            else:
                pool.append(index)
                held.add(keys[index])
        drawn.extend(pool)
    return np.array(drawn, dtype=np.int64)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = FID_EPS) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu: (E,), sigma: (E, E). Returns |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)),
    in squared embedding units (this is what FID reports; it is not square-rooted).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"frechet_distance needs means (E,) and covariances (E, E) of one size E, got "
                         f"mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # The product is (near) singular, e.g. fewer samples than embedding dimensions.
        offset = np.eye(len(sigma1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=FID_IMAGINARY_TOLERANCE):
            raise ValueError(f"the matrix square root in the Frechet distance has an imaginary part of "
                             f"{np.max(np.abs(covmean.imag)):.3g}: the covariances are not valid")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(emb_a, emb_b) -> float:
    """FID between two embedding sets (N_a, E) and (N_b, E): the Frechet distance of their Gaussians."""
    a = _embeddings("emb_a", emb_a, 2, min_rows=2)
    b = _embeddings("emb_b", emb_b, 2, min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"FID compares embeddings of one size: emb_a has {a.shape[1]}, emb_b {b.shape[1]}")
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def r_precision(text_emb, motion_emb, batch: int = R_PRECISION_BATCH,
                top_k: int = R_PRECISION_TOP_K) -> tuple[float, ...]:
    """Top-1..top-k retrieval accuracy of each text's own motion among its pool of `batch` motions.

    text_emb, motion_emb: (N, E), row i of each belongs together; N >= batch. Returns top_k floats in
    [0, 1] (cumulative: top-2 counts top-1 hits too). Chance level is k / batch.
    """
    text, motion = _paired(text_emb, motion_emb, batch)
    hits = np.zeros(top_k)
    pools = _pools(len(text), batch)
    for pool in pools:
        order = np.argsort(cdist(text[pool], motion[pool]), axis=1, kind="stable")
        rank = np.argmax(order == np.arange(batch)[:, None], axis=1)
        hits += (rank[:, None] < np.arange(1, top_k + 1)).sum(axis=0)
    return tuple(float(h) for h in hits / (len(pools) * batch))


def matching_score(text_emb, motion_emb, batch: int = R_PRECISION_BATCH) -> float:
    """Mean Euclidean distance of matching (text, motion) pairs (N, E), over the full R-precision pools."""
    text, motion = _paired(text_emb, motion_emb, batch)
    used = len(_pools(len(text), batch)) * batch
    return float(np.linalg.norm(text[:used] - motion[:used], axis=1).mean())


def _pair_indices(rng: np.random.Generator, population: int, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    replace = population < pairs
    return (rng.choice(population, pairs, replace=replace), rng.choice(population, pairs, replace=replace))


def diversity(emb, pairs: int = DIVERSITY_PAIRS, seed: int = 0) -> float:
    """Mean distance between `pairs` random pairs of embeddings (N, E), N >= 2; seeded."""
    emb = _embeddings("emb", emb, 2, min_rows=2)
    first, second = _pair_indices(np.random.default_rng(seed), len(emb), pairs)
    return float(np.linalg.norm(emb[first] - emb[second], axis=1).mean())


def multimodality(emb, pairs: int = MULTIMODALITY_PAIRS, seed: int = 0) -> float:
    """Mean distance between `pairs` random pairs of samples of the same prompt; seeded.

    emb: (P, S, E), S >= 2 samples for each of P prompts. One pair of index lists serves every prompt,
    as upstream. 0 for a deterministic generator.
    """
    emb = _embeddings("mm_emb", emb, 3)
    if emb.shape[1] < 2:
        raise ValueError(f"MultiModality needs at least 2 samples per prompt, got mm_emb of shape {emb.shape}")
    first, second = _pair_indices(np.random.default_rng(seed), emb.shape[1], pairs)
    return float(np.linalg.norm(emb[:, first] - emb[:, second], axis=2).mean())


def compute_all(text_emb, motion_emb, real_motion_emb, mm_emb=None,
                config: EvaluateConfig | None = None) -> dict[str, float]:
    """Every protocol metric of one evaluation, flat names for metrics.json and TensorBoard.

    text_emb, motion_emb: (N, E) pairs of the generated motions, in random prompt order;
    real_motion_emb: (M, E) real test motions, the FID reference; mm_emb: (P, S, E) or None.
    As upstream, FID and Diversity use the generated motions of the full R-precision pools only.
    Returns fid, r_precision_top1..3, matching_score, diversity and, when mm_emb is given,
    multimodality.
    """
    config = config or EvaluateConfig()
    batch = config.r_precision_batch
    text, motion = _paired(text_emb, motion_emb, batch)
    used = motion[: len(_pools(len(motion), batch)) * batch]
    top = r_precision(text, motion, batch=batch, top_k=R_PRECISION_TOP_K)
    metrics = {
        "fid": fid(used, _embeddings("real_motion_emb", real_motion_emb, 2, min_rows=2)),
        **{f"r_precision_top{k}": value for k, value in enumerate(top, start=1)},
        "matching_score": matching_score(text, motion, batch=batch),
        "diversity": diversity(used, pairs=config.diversity_pairs, seed=config.seed),
    }
    if mm_emb is not None:
        metrics["multimodality"] = multimodality(mm_emb, pairs=MULTIMODALITY_PAIRS, seed=config.seed)
    return metrics
