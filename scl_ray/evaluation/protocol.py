"""The one evaluation protocol of a motion set, with a bootstrap confidence interval for every metric.

It serves the loop's per-generation evaluation, the loop's scoring of its synthetic and corrected sets
(`set_metrics`) and `scl-ray evaluate`, so `scl-ray evaluate gen_k/eval_samples.parquet` gives that
generation's metrics.json values (with the same evaluator, settings and machine). An evaluation set
is a `MotionSet` whose first captions are the prompts:

1. Non-finite motions are left out. Rows whose `stats` hold `MULTIMODALITY_GROUP` are MultiModality
   samples (the loop's: `evaluate.mm_samples` samples of each of `evaluate.mm_prompts` prompts),
   grouped by that value; the other rows are the evaluation samples. A set without such rows (e.g.
   from `scl-ray sample --num K`) takes its MultiModality groups from rows that share a caption.
2. The samples are arranged into R-precision pools that never hold a caption twice (`arrange_pools`,
   seeded from `evaluate.seed`): a random partition, as upstream's shuffled test loader gives. Every
   metric uses the motions of the full pools, as upstream's drop_last loader does. A set with no
   full pool (fewer samples or distinct captions than `evaluate.r_precision_batch`) reports no
   R-precision; its other metrics use every sample.
3. Motions are embedded in row order and each distinct caption once (sorted), so the same set gives
   the same embeddings whoever evaluates it.
4. `compute_all` gives the protocol's metrics; physics metrics are averaged over the same motions.
5. Confidence intervals: `evaluate.bootstrap` resamples (with replacement) of the pooled samples,
   seeded from `evaluate.seed`; each metric is recomputed on every resample from the embeddings and
   per-motion values already computed (nothing is embedded again), and the interval is the 2.5 and
   97.5 percentiles (`<metric>_ci_low`, `<metric>_ci_high`). R-precision and Matching resample the
   samples' per-pair results within the pools drawn; MultiModality resamples its prompts. The
   interval says how much a metric would move with other samples of the same model against the same
   real test split; it does not cover the test split's own sampling. FID is biased upwards by a
   finite sample (roughly as 1/n) and a resample repeats rows, so FID's resamples sit higher than
   its value: its percentile interval can lie above it, and the half-width is the number to read.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scl_ray.config import EvaluateConfig
from scl_ray.evaluation.metrics import (R_PRECISION_TOP_K, FrechetReference, arrange_pools, compute_all, diversity,
                                        interval_names, multimodality, percentile_interval, r_precision_hits)
from scl_ray.motion.features import features_to_joints
from scl_ray.motion.store import MotionSet
from scl_ray.physics.metrics import METRIC_NAMES, physics_metrics
from scl_ray.rng import EVAL_BOOTSTRAP, EVAL_POOLS, stream

MULTIMODALITY_GROUP = "multimodality_group"  # stats key of a MultiModality sample: its prompt's index
PHYSICS_PREFIX = "physics/"


def evaluate_motions(motions: MotionSet, evaluator, real_embeddings: np.ndarray, settings: EvaluateConfig,
                     physics: bool = True) -> dict[str, float]:
    """The protocol's metrics of `motions` (see the module docstring) and their confidence intervals.

    evaluator: has embed_motions(list of (F, 263) raw features) and embed_texts(captions), both
    returning (N, E); real_embeddings: (M, E), the real test split's motions (the FID reference).
    Returns fid, r_precision_top1..3 (when a full pool forms), matching_score, diversity,
    multimodality (when MultiModality groups exist and evaluate.mm_prompts > 0), physics/<name>
    (with physics) and, with evaluate.bootstrap > 0, `<metric>_ci_low` / `<metric>_ci_high` of each.
    Raises ValueError with fewer than 2 finite evaluation samples.
    """
    finite = np.flatnonzero(motions.finite_mask())
    marks = {int(row): motions.stats[row][MULTIMODALITY_GROUP] for row in finite
             if MULTIMODALITY_GROUP in motions.stats[row]}
    samples = np.array([row for row in finite if row not in marks], dtype=np.int64)
    if len(samples) < 2:
        raise ValueError(f"{len(samples)} finite evaluation samples among {len(motions)} motions: the metrics "
                         "need at least 2")
    captions = [motions.captions[row][0] for row in samples]
    order = arrange_pools(captions, settings.r_precision_batch, stream(settings.seed, EVAL_POOLS))
    pooled = len(order) > 0
    rows = samples[order] if pooled else samples

    embedded = np.sort(np.concatenate([samples, np.array(list(marks), dtype=np.int64)]))
    motion_table = dict(zip(embedded.tolist(), evaluator.embed_motions([motions.features[r] for r in embedded])))
    distinct = sorted({motions.captions[row][0] for row in rows})
    text_table = dict(zip(distinct, evaluator.embed_texts(distinct)))
    motion_emb = np.stack([motion_table[row] for row in rows.tolist()])
    text_emb = np.stack([text_table[motions.captions[row][0]] for row in rows])
    mm_emb = _multimodality_embeddings(motions, samples, marks, motion_table, settings)

    metrics = compute_all(text_emb, motion_emb, real_embeddings, mm_emb, settings, pools=pooled)
    per_motion = None
    if physics:
        per_motion = np.array([[values[name] for name in METRIC_NAMES] for values in
                               (physics_metrics(features_to_joints(motions.features[row])) for row in rows)])
        metrics.update({PHYSICS_PREFIX + name: float(mean) for name, mean in zip(METRIC_NAMES, per_motion.mean(0))})
    if settings.bootstrap > 0:
        metrics.update(_intervals(text_emb, motion_emb, real_embeddings, mm_emb, per_motion, pooled, settings))
    return metrics


def _multimodality_embeddings(motions: MotionSet, samples: np.ndarray, marks: dict[int, object],
                              motion_table: dict[int, np.ndarray], settings: EvaluateConfig) -> np.ndarray | None:
    """(P, S, E): the first evaluate.mm_prompts groups (in row order) with >= 2 finite motions, each cut to
    S = min(evaluate.mm_samples, the smallest such group); None when there are none."""
    groups: dict[object, list[int]] = {}
    if marks:
        for row, group in marks.items():
            groups.setdefault(group, []).append(row)
    else:
        for row in samples.tolist():
            groups.setdefault(motions.captions[row][0], []).append(row)
    members = [rows for rows in groups.values() if len(rows) >= 2][: settings.mm_prompts]
    if not members:
        return None
    per_prompt = min(settings.mm_samples, min(len(rows) for rows in members))
    return np.stack([[motion_table[row] for row in rows[:per_prompt]] for rows in members])


def _intervals(text_emb: np.ndarray, motion_emb: np.ndarray, real_embeddings: np.ndarray, mm_emb: np.ndarray | None,
               per_motion: np.ndarray | None, pooled: bool, settings: EvaluateConfig) -> dict[str, float]:
    """Percentile bootstrap intervals of every metric `evaluate_motions` reports (see the module docstring)."""
    rng = stream(settings.seed, EVAL_BOOTSTRAP)
    count, resamples = len(motion_emb), settings.bootstrap
    draws = rng.integers(0, count, size=(resamples, count))
    reference = FrechetReference(real_embeddings)
    distances = np.linalg.norm(text_emb.astype(np.float64) - motion_emb, axis=1)
    replicates: dict[str, np.ndarray] = {
        "fid": np.array([reference.fid(motion_emb[draw]) for draw in draws]),
        "matching_score": distances[draws].mean(axis=1),
        "diversity": _each(draws, lambda draw: diversity(motion_emb[draw], settings.diversity_pairs, rng)),
    }
    if pooled:
        hits = r_precision_hits(text_emb, motion_emb, settings.r_precision_batch, R_PRECISION_TOP_K)
        for k, column in enumerate(hits[draws].mean(axis=1).T, start=1):
            replicates[f"r_precision_top{k}"] = column
    if mm_emb is not None:
        prompts = rng.integers(0, len(mm_emb), size=(resamples, len(mm_emb)))
        replicates["multimodality"] = _each(prompts, lambda draw: multimodality(mm_emb[draw], seed=rng))
    if per_motion is not None:
        for name, column in zip(METRIC_NAMES, per_motion[draws].mean(axis=1).T):
            replicates[PHYSICS_PREFIX + name] = column
    intervals = {}
    for metric, values in replicates.items():
        low_name, high_name = interval_names(metric)
        intervals[low_name], intervals[high_name] = percentile_interval(values)
    return intervals


def _each(draws: np.ndarray, statistic: Callable[[np.ndarray], float]) -> np.ndarray:
    return np.array([statistic(draw) for draw in draws])
