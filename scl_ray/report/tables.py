"""Summary tables: one row per trial (CSV and Markdown), means over seeds, and the toy's final W2.

`summary.csv` columns: trial, arm, synthetic_ratio, strength, train_size, seed, last_generation,
planned_generations, evaluator (the hash of the evaluator that scored the trial, empty if none was
recorded), then `<metric>_final` (value at the last finished generation),
`<metric>_late` (mean over the last quarter of the finished generations: one generation's evaluation
is noisy, and a drift shows more clearly in this), for metrics with a direction, `<metric>_best`
(min for FID, Matching and physics, max for R-precision) over all finished generations, and
`<metric>_ci_low_final` / `<metric>_ci_high_final`, the last generation's 95% bootstrap interval.
Missing values are empty cells. Wall times are left out (they are in timing.png), so that two runs of
one experiment give the same file.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from scl_ray import storage
from scl_ray.evaluation.metrics import interval_names
from scl_ray.report.metrics import SHORT_LABELS, best_value, better, metric_label
from scl_ray.report.results import (
    ReportError,
    ToyResult,
    TrialResult,
    condition_label,
    group_by_condition,
)

SUMMARY_CSV = "summary.csv"
TOY_CSV = "toy_summary.csv"
TERMINAL_COLUMNS = {"arm": "arm", "train_size": "n", "synthetic_ratio": "λ", "strength": "strength",
                    "seed": "seed", "last_generation": "gen", "fid_final": "FID", "fid_best": "FID best",
                    "r_precision_top3_final": "R@3", "matching_score_final": "Match",
                    "diversity_final": "Div"}


def trial_rows(trials: list[TrialResult], metrics: list[str]) -> list[dict]:
    """One dict per trial with the columns described in the module docstring."""
    rows = []
    for trial in trials:
        row = {"trial": trial.name, "arm": trial.arm, "synthetic_ratio": trial.synthetic_ratio,
               "strength": trial.strength, "train_size": trial.train_size, "seed": trial.seed,
               "last_generation": trial.last_generation, "planned_generations": trial.planned_generations,
               "evaluator": trial.evaluator}
        for metric in metrics:
            values = trial.series(metric)
            row[f"{metric}_final"] = float(values[-1])
            row[f"{metric}_late"] = late_mean(values)
            if better(metric):
                row[f"{metric}_best"] = best_value(metric, values)
            for name, bound in zip(interval_names(metric), trial.interval(metric)):
                row[f"{name}_final"] = float(bound[-1])
        rows.append(row)
    return rows


def late_mean(values: np.ndarray) -> float:
    """Mean of the finite values among the last quarter of a series (at least its last value)."""
    tail = np.asarray(values, dtype=float)[-max(1, len(values) // 4):]
    tail = tail[np.isfinite(tail)]
    return float(tail.mean()) if len(tail) else math.nan


STATISTICS = {"final": lambda values: float(values[-1]), "late": late_mean}


def toy_rows(toys: list[ToyResult]) -> list[dict]:
    """Per (corrector, gamma): seeds and the final W2's mean and standard deviation over seeds."""
    rows = []
    for corrector, gamma in sorted({(toy.corrector, toy.gamma) for toy in toys}):
        final = np.array([toy.w2[-1] for toy in toys if toy.corrector == corrector and toy.gamma == gamma])
        rows.append({"corrector": corrector, "gamma": gamma, "seeds": len(final), "final_w2_mean": float(final.mean()),
                     "final_w2_std": float(final.std(ddof=1)) if len(final) > 1 else math.nan})
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    """Floats keep full precision (repr); NaN becomes an empty cell."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if isinstance(value, float) and math.isnan(value) else value
                             for key, value in row.items()})
    return path


def number(value) -> str:
    """Four significant digits for floats; '—' for missing values."""
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(number(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _column_title(column: str) -> str:
    for suffix in ("_final", "_late", "_best"):
        if column.endswith(suffix):
            metric = column[: -len(suffix)]
            return f"{SHORT_LABELS.get(metric, metric)} {suffix[1:]}"
    return column


def trials_markdown(rows: list[dict]) -> str:
    return markdown_table([_column_title(column) for column in rows[0]], [list(row.values()) for row in rows])


def half_width(trial: TrialResult, metric: str) -> np.ndarray:
    """(G,) half the width of each generation's 95% bootstrap interval of `metric` (NaN if none)."""
    low, high = trial.interval(metric)
    return (high - low) / 2


def seeds_markdown(trials: list[TrialResult], metrics: list[str], statistic: str = "final") -> str:
    """Mean ± standard deviation over seeds of each metric's final (or late, see late_mean) value, then
    `(CI ± h)`: h, the mean over seeds of the same statistic of the 95% intervals' half-widths."""
    groups = group_by_condition(trials)
    header = ["n", "λ", "arm", "seeds", "last generation"] + [metric_label(m) for m in metrics]
    rows = []
    for condition, members in groups.items():
        strengths = {c.strength for c in groups if c.arm == "corrected" and c.train_size == condition.train_size}
        last = sorted({trial.last_generation for trial in members})
        row = [condition.train_size, condition.synthetic_ratio, condition_label(condition, strengths), len(members),
               f"{last[0]}" if len(last) == 1 else f"{last[0]}–{last[-1]}"]
        for metric in metrics:
            final = np.array([STATISTICS[statistic](trial.series(metric)) for trial in members])
            final = final[np.isfinite(final)]
            widths = np.array([STATISTICS[statistic](half_width(trial, metric)) for trial in members])
            widths = widths[np.isfinite(widths)]
            interval = f" (CI ± {widths.mean():.2g})" if len(widths) else ""
            if not len(final):
                row.append("—")
            elif len(final) == 1:
                row.append(f"{final[0]:.4g}{interval}")
            else:
                row.append(f"{final.mean():.4g} ± {final.std(ddof=1):.2g}{interval}")
        rows.append(row)
    return markdown_table(header, rows)


def format_summary(report_dir: str | os.PathLike) -> str:
    """A compact terminal table of a report's summary.csv (and toy_summary.csv) written by make_report."""
    blocks = []
    summary, toy = storage.join(report_dir, SUMMARY_CSV), storage.join(report_dir, TOY_CSV)
    if storage.exists(summary):
        rows = list(csv.DictReader(io.StringIO(storage.read_text(summary), newline="")))
        columns = [column for column in TERMINAL_COLUMNS if rows and column in rows[0]]
        blocks.append(_aligned([TERMINAL_COLUMNS[c] for c in columns],
                               [[_cell(row[c]) for c in columns] for row in rows]))
    if storage.exists(toy):
        rows = list(csv.DictReader(io.StringIO(storage.read_text(toy), newline="")))
        blocks.append("Gaussian toy, final W2 (mean over seeds)\n" + _aligned(
            ["corrector", "γ", "seeds", "W2"],
            [[row["corrector"], _cell(row["gamma"]), row["seeds"], _cell(row["final_w2_mean"])] for row in rows]))
    if not blocks:
        raise ReportError(f"{report_dir} holds neither {SUMMARY_CSV} nor {TOY_CSV}: make the report first "
                          "(`scl-ray report RESULTS`)")
    return "\n\n".join(blocks)


def _cell(text: str) -> str:
    try:
        return number(float(text)) if text else "—"
    except ValueError:
        return text


def _aligned(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
             for line in [header, *rows]]
    return "\n".join(lines)
