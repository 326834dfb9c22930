"""Corrected against self-consuming, paired by seed: does correction keep the loop closer to the baseline?

Every seed of a sweep runs each arm from the same generation 0 with the same seed, so the arms are
compared within a seed: for a corrected trial (n, λ, strength s > 0, seed) its partner is the
self-consuming trial (n, λ, strength 0, seed) and its reference the baseline (n, λ = 0, seed). Per
metric, on late values (`tables.late_mean`: the last quarter of the generations):

  difference   late(corrected) - late(self-consuming), per seed; its mean over seeds and a 95% Student-t
               interval over seeds (needs two or more seeds), and in how many seeds correction did better
               (for metrics with a direction, `report.metrics.better`).
  gap change   |late(corrected) - late(baseline)| - |late(self-consuming) - late(baseline)| per seed: negative
               when correction ends nearer to the baseline. Mean, 95% t-interval, and the verdict
               "closer" (interval below 0), "farther" (above 0) or "not resolved" (it holds 0, or one seed).

The t-interval over seeds carries both the loop's own variation and the evaluation's sampling noise,
since each seed's late value is one measurement of both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from scl_ray.report.metrics import SHORT_LABELS, better
from scl_ray.report.results import Condition, TrialResult, group_by_condition
from scl_ray.report.tables import late_mean, markdown_table

CONFIDENCE = 0.95
CLOSER, FARTHER, UNRESOLVED = "closer", "farther", "not resolved"


@dataclass(frozen=True)
class Interval:
    """Mean of per-seed values and its 95% t-interval over seeds (NaN bounds with fewer than two)."""

    mean: float
    low: float
    high: float
    seeds: int

    @classmethod
    def of(cls, values) -> Interval:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            return cls(math.nan, math.nan, math.nan, 0)
        mean = float(values.mean())
        if len(values) < 2:
            return cls(mean, math.nan, math.nan, len(values))
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
        return cls(mean, mean - half, mean + half, len(values))

    def text(self) -> str:
        if math.isnan(self.mean):
            return "—"
        if math.isnan(self.low):
            return f"{self.mean:+.3g}"
        return f"{self.mean:+.3g} [{self.low:+.3g}, {self.high:+.3g}]"


def verdict(gap_change: Interval) -> str:
    """'closer' if the whole interval of the gap change is below 0, 'farther' if above, else 'not resolved'."""
    if math.isnan(gap_change.low):
        return UNRESOLVED
    if gap_change.high < 0:
        return CLOSER
    if gap_change.low > 0:
        return FARTHER
    return UNRESOLVED


@dataclass(frozen=True)
class Comparison:
    """One corrected condition against its self-consuming partner, for one metric."""

    train_size: int
    synthetic_ratio: float
    strength: float
    metric: str
    seeds: tuple[int, ...]  # seeds with both arms finished and the metric recorded in both
    difference: Interval
    better_in: int | None  # seeds where corrected did better; None if the metric has no direction
    gap_change: Interval  # over the seeds that also have a baseline
    verdict: str


def _late(trial: TrialResult | None, metric: str) -> float:
    return late_mean(trial.series(metric)) if trial is not None else math.nan


def compare(trials: list[TrialResult], metrics: list[str]) -> list[Comparison]:
    """Every (corrected condition, metric) with at least one seed that also ran the self-consuming arm."""
    by_seed = {condition: {trial.seed: trial for trial in members}
               for condition, members in group_by_condition(trials).items()}
    comparisons = []
    for condition, members in by_seed.items():
        if condition.arm != "corrected":
            continue
        partners = by_seed.get(replace(condition, strength=0.0), {})
        baselines = by_seed.get(Condition(condition.train_size, 0.0, 0.0), {})
        for metric in metrics:
            seeds, differences, gaps, wins = [], [], [], 0
            for seed, trial in members.items():
                ours, theirs = _late(trial, metric), _late(partners.get(seed), metric)
                if not (math.isfinite(ours) and math.isfinite(theirs)):
                    continue
                seeds.append(seed)
                differences.append(ours - theirs)
                wins += (ours < theirs) if better(metric) == "lower" else (ours > theirs)
                reference = _late(baselines.get(seed), metric)
                if math.isfinite(reference):
                    gaps.append(abs(ours - reference) - abs(theirs - reference))
            if not seeds:
                continue
            gap_change = Interval.of(gaps)
            comparisons.append(Comparison(condition.train_size, condition.synthetic_ratio, condition.strength, metric,
                                          tuple(seeds), Interval.of(differences), wins if better(metric) else None,
                                          gap_change, verdict(gap_change)))
    return comparisons


def paired_markdown(trials: list[TrialResult], metrics: list[str]) -> str:
    """The comparisons as a Markdown table ('' if no corrected trial has a self-consuming partner)."""
    rows = []
    for c in compare(trials, metrics):
        wins = "—" if c.better_in is None else f"{c.better_in} of {len(c.seeds)}"
        rows.append([c.train_size, c.synthetic_ratio, c.strength, SHORT_LABELS.get(c.metric, c.metric), len(c.seeds),
                     c.difference.text(), wins, c.gap_change.text(), c.verdict])
    if not rows:
        return ""
    return markdown_table(["n", "λ", "strength", "metric", "seeds", "corrected − self-consuming [95% CI]",
                           "corrected better in", "gap to baseline: change [95% CI]", "closer to baseline?"], rows)
