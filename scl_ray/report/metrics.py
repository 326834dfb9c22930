"""Which metrics a report shows, what they are called, and which direction is better.

Lower is better for FID, Matching score and every physics metric but speed (penetration, floating,
skating, jitter, bone-length deviation are errors); higher is better for R-precision. Diversity,
MultiModality and the physics speed should be close to the real data's, not as large or small as
possible, so they have no "best".
"""

from __future__ import annotations

import numpy as np

from scl_ray.evaluation.metrics import is_interval
from scl_ray.report.results import TrialResult

MAIN_METRICS = ("fid", "r_precision_top3", "matching_score", "diversity", "multimodality")
PHYSICS_PREFIX = "physics/"
NO_BEST = ("diversity", "multimodality", PHYSICS_PREFIX + "speed")
LABELS = {
    "fid": "FID",
    "r_precision_top1": "R-precision top-1",
    "r_precision_top2": "R-precision top-2",
    "r_precision_top3": "R-precision top-3",
    "matching_score": "Matching score",
    "diversity": "Diversity",
    "multimodality": "MultiModality",
}
SHORT_LABELS = {"fid": "FID", "r_precision_top3": "R@3", "matching_score": "Match", "diversity": "Div",
                "multimodality": "MModality"}


def reported_metrics(trials: list[TrialResult]) -> list[str]:
    """The main metrics any trial recorded, then every physics/* metric, sorted (not their intervals)."""
    recorded = {name for trial in trials for name in trial.metrics if not is_interval(name)}
    physics = sorted(name for name in recorded if name.startswith(PHYSICS_PREFIX))
    return [name for name in MAIN_METRICS if name in recorded] + physics


def better(metric: str) -> str | None:
    """'lower', 'higher', or None when neither extreme is good."""
    if metric in NO_BEST:
        return None
    if metric in ("fid", "matching_score") or metric.startswith(PHYSICS_PREFIX):
        return "lower"
    if metric.startswith("r_precision"):
        return "higher"
    return None


def best_value(metric: str, values: np.ndarray) -> float:
    """The best of a trial's per-generation values (NaN if none is finite or the metric has no best)."""
    finite = values[np.isfinite(values)]
    direction = better(metric)
    if direction is None or not len(finite):
        return float("nan")
    return float(finite.min() if direction == "lower" else finite.max())


def metric_label(metric: str) -> str:
    """Axis label: the field's name and, where one exists, which way is better."""
    label = LABELS.get(metric, metric)
    direction = better(metric)
    return f"{label} ({direction} is better)" if direction else label


def file_stem(metric: str) -> str:
    """A file-name-safe form: physics/penetration -> physics_penetration."""
    return metric.replace("/", "_")
