"""Text-to-motion metrics of the standard HumanML3D protocol (T2M; MDM's eval/eval_humanml.py).

Every function takes evaluator embeddings (numpy arrays, any float dtype, computed in float64) and
follows the protocol's arithmetic, constants included:

- R-precision and Matching score are computed in pools of 32 (text, motion) pairs, consecutive in the
  order given; a trailing pool smaller than 32 is dropped, as upstream's `drop_last=True` loader does.
  Upstream's loader is shuffled, so callers pass pairs in a random order (e.g. prompts drawn at random).
  Upstream's pools are distinct test motions, so no pool holds a caption twice; `draw_pools` draws
  prompts that way, also when more prompts are wanted than the test split holds, and
  `arrange_pools` partitions any set into such pools (scl_ray/evaluation/protocol.py uses it).
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
0.797, Matching 2.974, Diversity 9.503 (docs/method.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist

from scl_ray.arrays import finite_array
from scl_ray.config import EvaluateConfig

# The protocol's constants (MDM eval_humanml.py: batch_size "must be 32", diversity_times = 300,
# mm_num_times = 10; calculate_frechet_distance's eps = 1e-6 and imaginary tolerance 1e-3).
R_PRECISION_BATCH = 32
R_PRECISION_TOP_K = 3
DIVERSITY_PAIRS = 300
MULTIMODALITY_PAIRS = 10
FID_EPS = 1e-6
FID_IMAGINARY_TOLERANCE = 1e-3


# Confidence intervals (scl_ray/evaluation/protocol.py): their level and their metrics.json keys.
CI_LEVEL = 0.95
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"


def interval_names(metric: str) -> tuple[str, str]:
    """metrics.json keys of a metric's confidence interval: (`<metric>_ci_low`, `<metric>_ci_high`)."""
    return metric + CI_LOW, metric + CI_HIGH


def is_interval(name: str) -> bool:
    """Whether a metrics.json key is a confidence interval's bound rather than a metric."""
    return name.endswith(CI_LOW) or name.endswith(CI_HIGH)


def split_interval(name: str) -> tuple[str, str]:
    """(metric, bound suffix): `fid_ci_low` -> (`fid`, `_ci_low`); a metric's own name -> (name, "")."""
    for suffix in (CI_LOW, CI_HIGH):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def percentile_interval(replicates) -> tuple[float, float]:
    """The CI_LEVEL percentile interval of a statistic's bootstrap replicates (B,)."""
    tail = 100 * (1 - CI_LEVEL) / 2
    low, high = np.percentile(np.asarray(replicates, dtype=np.float64), [tail, 100 - tail])
    return float(low), float(high)


def _embeddings(name: str, values, ndim: int, min_rows: int = 1) -> np.ndarray:
    """values as a finite float64 array of `ndim` dimensions with at least `min_rows` rows."""
    return finite_array(values, name, "(N, E)" if ndim == 2 else "(prompts, samples, E)",
                        lambda shape: len(shape) == ndim, min_rows)


def _paired(text_emb, motion_emb, batch: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The pairs as float64 arrays; batch: the pool size they must fill at least once (None: no pools)."""
    text = _embeddings("text_emb", text_emb, 2)
    motion = _embeddings("motion_emb", motion_emb, 2)
    if text.shape != motion.shape:
        raise ValueError(f"text_emb {text.shape} and motion_emb {motion.shape} must pair up row for row "
                         "with the same embedding size")
    if batch is None:
        return text, motion
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


def arrange_pools(keys: Sequence[Hashable], batch: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a set's rows (captions `keys`) in as many full pools of `batch` as can be formed
    without a key twice in a pool, each row used once; pool after pool, a random partition.

    The rows are shuffled and grouped by key (groups in random order); with P pools, a key's rows
    beyond P are left out, then rows at random until P * batch remain, and row j of the list goes
    to pool j mod P, so a key's rows land in different pools. P is the largest number for which
    enough rows remain. Rows left out are like upstream's dropped last batch. Empty when not even
    one full pool forms (fewer distinct keys than `batch`).
    """
    if batch < 1:
        raise ValueError(f"arrange_pools needs batch >= 1, got {batch}")
    groups: dict[Hashable, list[int]] = {}
    for index in rng.permutation(len(keys)).tolist():
        groups.setdefault(keys[index], []).append(index)
    sizes = np.array([len(rows) for rows in groups.values()], dtype=np.int64)
    pools = next((p for p in range(len(keys) // batch, 0, -1) if np.minimum(sizes, p).sum() >= p * batch), 0)
    if pools == 0:
        return np.zeros(0, dtype=np.int64)
    usable = np.array([index for rows in groups.values() for index in rows[:pools]], dtype=np.int64)
    kept = usable[np.sort(rng.choice(len(usable), pools * batch, replace=False))]
    return np.concatenate([kept[pool::pools] for pool in range(pools)])


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


class FrechetReference:
    """FID of many embedding sets against one reference set, e.g. the bootstrap's resamples.

    The reference's mean, covariance and the covariance's symmetric square root R are computed once.
    Tr sqrt(S_a S_ref) = Tr sqrt(R S_a R), and R S_a R = B^T B with B = (A - mean(A)) R / sqrt(N_a - 1),
    so the trace is the sum of B's singular values: one symmetric eigenvalue problem of size
    min(N_a, E) per set instead of a general matrix square root. It equals `fid(a, reference)` up to rounding and the eps that
    `frechet_distance` adds to singular products (an effect of order eps * E).
    """

    def __init__(self, reference):
        reference = _embeddings("reference", reference, 2, min_rows=2)
        self.mean = reference.mean(0)
        covariance = np.cov(reference, rowvar=False)
        values, vectors = np.linalg.eigh(covariance)
        self.root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
        self.trace = float(np.trace(covariance))

    def fid(self, emb) -> float:
        """FID of `emb` (N, E), N >= 2, against the reference."""
        emb = _embeddings("emb", emb, 2, min_rows=2)
        if emb.shape[1] != len(self.mean):
            raise ValueError(f"FID compares embeddings of one size: the reference has {len(self.mean)}, "
                             f"emb {emb.shape[1]}")
        centred = emb - emb.mean(0)
        rotated = centred @ self.root
        # B's singular values are the square roots of the eigenvalues of its smaller Gram matrix.
        gram = rotated @ rotated.T if len(rotated) < rotated.shape[1] else rotated.T @ rotated
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None)).sum() / np.sqrt(len(emb) - 1)
        diff = emb.mean(0) - self.mean
        return float(diff @ diff + (centred ** 2).sum() / (len(emb) - 1) + self.trace - 2 * cross)


def r_precision_hits(text_emb, motion_emb, batch: int = R_PRECISION_BATCH,
                     top_k: int = R_PRECISION_TOP_K) -> np.ndarray:
    """(U, top_k) booleans, U = the rows of the full pools: whether row i's motion is among the k
    nearest of its pool's motions to row i's text, for k = 1..top_k. See `r_precision`."""
    text, motion = _paired(text_emb, motion_emb, batch)
    hits = []
    for pool in _pools(len(text), batch):
        order = np.argsort(cdist(text[pool], motion[pool]), axis=1, kind="stable")
        rank = np.argmax(order == np.arange(batch)[:, None], axis=1)
        hits.append(rank[:, None] < np.arange(1, top_k + 1))
    return np.concatenate(hits)


def r_precision(text_emb, motion_emb, batch: int = R_PRECISION_BATCH,
                top_k: int = R_PRECISION_TOP_K) -> tuple[float, ...]:
    """Top-1..top-k retrieval accuracy of each text's own motion among its pool of `batch` motions.

    text_emb, motion_emb: (N, E), row i of each belongs together; N >= batch. Returns top_k floats in
    [0, 1] (cumulative: top-2 counts top-1 hits too). Chance level is k / batch.
    """
    return tuple(float(h) for h in r_precision_hits(text_emb, motion_emb, batch, top_k).mean(axis=0))


def matching_score(text_emb, motion_emb, batch: int = R_PRECISION_BATCH) -> float:
    """Mean Euclidean distance of matching (text, motion) pairs (N, E), over the full R-precision pools."""
    text, motion = _paired(text_emb, motion_emb, batch)
    used = len(_pools(len(text), batch)) * batch
    return float(np.linalg.norm(text[:used] - motion[:used], axis=1).mean())


Seed = int | np.random.Generator | np.random.RandomState


def _pair_indices(seed: Seed, population: int, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    rng = seed if isinstance(seed, (np.random.Generator, np.random.RandomState)) else np.random.default_rng(seed)
    replace = population < pairs
    return (rng.choice(population, pairs, replace=replace), rng.choice(population, pairs, replace=replace))


def diversity(emb, pairs: int = DIVERSITY_PAIRS, seed: Seed = 0) -> float:
    """Mean distance between `pairs` random pairs of embeddings (N, E), N >= 2.

    seed: an int, or the generator to draw the pairs from (a legacy RandomState draws them as
    upstream's np.random.choice does).
    """
    emb = _embeddings("emb", emb, 2, min_rows=2)
    first, second = _pair_indices(seed, len(emb), pairs)
    return float(np.linalg.norm(emb[first] - emb[second], axis=1).mean())


def multimodality(emb, pairs: int = MULTIMODALITY_PAIRS, seed: Seed = 0) -> float:
    """Mean distance between `pairs` random pairs of samples of the same prompt; seeded as `diversity`.

    emb: (P, S, E), S >= 2 samples for each of P prompts. One pair of index lists serves every prompt,
    as upstream. 0 for a deterministic generator.
    """
    emb = _embeddings("mm_emb", emb, 3)
    if emb.shape[1] < 2:
        raise ValueError(f"MultiModality needs at least 2 samples per prompt, got mm_emb of shape {emb.shape}")
    first, second = _pair_indices(seed, emb.shape[1], pairs)
    return float(np.linalg.norm(emb[:, first] - emb[:, second], axis=2).mean())


def compute_all(text_emb, motion_emb, real_motion_emb, mm_emb=None,
                config: EvaluateConfig | None = None, pools: bool = True) -> dict[str, float]:
    """Every protocol metric of one evaluation, flat names for metrics.json and TensorBoard.

    text_emb, motion_emb: (N, E) pairs of the generated motions, pool after pool (see `arrange_pools`);
    real_motion_emb: (M, E) real test motions, the FID reference; mm_emb: (P, S, E) or None.
    As upstream, every metric uses the generated motions of the full R-precision pools only.
    pools=False: the pairs form no pool (a set too small or with too few distinct captions for one):
    R-precision is not reported and the other metrics use every pair.
    Returns fid, r_precision_top1..3 (with pools), matching_score, diversity and, when mm_emb is
    given, multimodality.
    """
    config = config or EvaluateConfig()
    batch = config.r_precision_batch
    if pools:
        text, motion = _paired(text_emb, motion_emb, batch)
        used = len(_pools(len(motion), batch)) * batch
        text, motion = text[:used], motion[:used]
        top = r_precision(text, motion, batch=batch, top_k=R_PRECISION_TOP_K)
    else:
        text, motion = _paired(text_emb, motion_emb, None)
        if len(text) < 2:
            raise ValueError(f"the metrics need at least 2 (text, motion) pairs, got {len(text)}")
        top = ()
    metrics = {
        "fid": fid(motion, _embeddings("real_motion_emb", real_motion_emb, 2, min_rows=2)),
        **{f"r_precision_top{k}": value for k, value in enumerate(top, start=1)},
        "matching_score": float(np.linalg.norm(text - motion, axis=1).mean()),
        "diversity": diversity(motion, pairs=config.diversity_pairs, seed=config.seed),
    }
    if mm_emb is not None:
        metrics["multimodality"] = multimodality(mm_emb, pairs=MULTIMODALITY_PAIRS, seed=config.seed)
    return metrics
