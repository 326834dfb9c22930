"""Paper-style figures as PNG: metric vs generation per arm, stage timings, and the toy's W2.

Drawn with matplotlib's object API (Figure + Agg), so nothing needs a screen and no pyplot state is
shared. Every curve is the mean over seeds. A metric's band is its 95% bootstrap interval (the mean
over seeds of each generation's bounds: how far one evaluation can move), with the seeds' min and max
as dotted lines; a metric recorded without intervals, and the toy, get a min-max band over seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from scl_ray.report.metrics import LABELS, file_stem, metric_label, reported_metrics
from scl_ray.report.results import (Condition, ToyResult, TrialResult, align, condition_label,
                                    group_by_condition, seed_spread)

DPI = 110
ARM_COLOURS = {"baseline": "#4d4d4d", "self-consuming": "#d62728"}
# One colour per corrected strength, weakest first, so several strengths stay apart.
CORRECTED_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#e377c2")
STAGES = ("sample", "correct", "train", "evaluate", "save")
STAGE_COLOURS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#bbbbbb")
BAND_ALPHA = 0.2
SPREAD_STYLE = {"linestyle": ":", "linewidth": 0.9}
MARKERS_UP_TO = 12  # generations; short curves get markers so a single generation still shows


def metric_figures(trials: list[TrialResult], out_dir: Path) -> list[Path]:
    """One figure per (train size n, metric): a panel per synthetic ratio, a line per arm."""
    groups = group_by_condition(trials)
    paths = []
    for train_size in sorted({condition.train_size for condition in groups}):
        at_size = {c: members for c, members in groups.items() if c.train_size == train_size}
        for metric in reported_metrics([trial for members in at_size.values() for trial in members]):
            path = out_dir / f"{file_stem(metric)}_n{train_size}.png"
            metric_figure(metric, train_size, at_size).savefig(path, dpi=DPI)
            paths.append(path)
    return paths


def _colour(condition: Condition, corrected_strengths: list[float]) -> str:
    if condition.arm == "corrected":
        return CORRECTED_COLOURS[corrected_strengths.index(condition.strength) % len(CORRECTED_COLOURS)]
    return ARM_COLOURS[condition.arm]


def _draw(axes, x: np.ndarray, matrix: np.ndarray, colour, label: str,
          interval: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Mean over the rows of `matrix` (seeds). interval: (low, high) bounds (S, G) of each seed's
    confidence interval, drawn as a band (their mean over seeds) with the seeds' min and max dotted;
    without one (or where none was recorded), a min-max band when there is more than one seed."""
    shown = np.isfinite(matrix).any(axis=0)  # generations some seed evaluated (evaluate.every may skip some)
    x, matrix = x[shown], matrix[:, shown]
    interval = None if interval is None else (interval[0][:, shown], interval[1][:, shown])
    mean, low, high = seed_spread(matrix)
    marker = "o" if len(x) <= MARKERS_UP_TO else None
    axes.plot(x, mean, color=colour, label=label, marker=marker, markersize=3, linewidth=1.5)
    if interval is not None and np.isfinite(interval[0]).any():
        axes.fill_between(x, seed_spread(interval[0])[0], seed_spread(interval[1])[0], color=colour,
                          alpha=BAND_ALPHA, linewidth=0)
        if len(matrix) > 1:
            axes.plot(x, low, color=colour, **SPREAD_STYLE)
            axes.plot(x, high, color=colour, **SPREAD_STYLE)
    elif len(matrix) > 1:
        axes.fill_between(x, low, high, color=colour, alpha=BAND_ALPHA, linewidth=0)


def metric_figure(metric: str, train_size: int, groups: dict[Condition, list[TrialResult]]) -> Figure:
    """The figure of one metric at one train size; groups: the conditions at that size and their trials."""
    ratios = sorted({c.synthetic_ratio for c in groups if c.synthetic_ratio > 0}) or [0.0]
    baselines = [c for c in groups if c.arm == "baseline"]
    corrected_strengths = sorted({c.strength for c in groups if c.arm == "corrected"})
    figure = Figure(figsize=(0.6 + 3.6 * len(ratios), 3.6), layout="constrained")
    panels = figure.subplots(1, len(ratios), sharey=True, squeeze=False)[0]
    for axes, ratio in zip(panels, ratios):
        # The baseline has no synthetic ratio: it is the reference drawn in every panel.
        drawn = baselines + [c for c in groups if c.synthetic_ratio == ratio and c.arm != "baseline"]
        for condition in drawn:
            members = groups[condition]
            x, matrix = align([(trial.generations, trial.series(metric)) for trial in members])
            if not np.isfinite(matrix).any():
                continue
            bounds = [trial.interval(metric) for trial in members]
            interval = tuple(align([(trial.generations, bound[side]) for trial, bound in zip(members, bounds)])[1]
                             for side in (0, 1))
            seeds = f"{len(members)} seed{'s' if len(members) > 1 else ''}"
            label = f"{condition_label(condition, set(corrected_strengths))} ({seeds})"
            _draw(axes, x, matrix, _colour(condition, corrected_strengths), label, interval)
        axes.set_title(f"λ = {ratio:g}" if ratio > 0 else "baseline only")
        axes.set_xlabel("generation")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    panels[0].set_ylabel(metric_label(metric))
    _legend(figure, panels)
    recorded = any(np.isfinite(trial.interval(metric)[0]).any() for members in groups.values() for trial in members)
    band = "band = 95% bootstrap CI, dotted = min-max over seeds" if recorded else "band = min-max over seeds"
    figure.suptitle(f"{LABELS.get(metric, metric)}, n = {train_size}: mean over seeds\n{band}", fontsize="medium")
    return figure


def _legend(figure: Figure, panels) -> None:
    """One legend for the figure, each label once (not every panel has every arm)."""
    entries: dict[str, object] = {}
    for axes in panels:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        # Two entries per panel's width at most: one row of four is wider than a single panel's figure.
        figure.legend(list(entries.values()), list(entries), loc="outside lower center",
                      ncols=min(len(entries), 4, 2 * len(panels)), fontsize="small", frameon=False)


def timing_figure(trials: list[TrialResult], out_dir: Path) -> Path | None:
    """Stacked bars: each trial's mean seconds per generation by stage; None if nothing was timed.

    The mean is over generations >= 1 (the loop's steady state; generation 0 trains from scratch)
    and over generation 0 only for trials that have nothing else yet.
    """
    names, seconds = [], []
    for trial in trials:
        used = trial.generations >= 1 if (trial.generations >= 1).any() else np.ones(len(trial.generations), bool)
        means = [_mean(trial.series(f"time/{stage}_s")[used]) for stage in STAGES]
        total = _mean(trial.series("time/generation_s")[used])
        means.append(max(total - sum(means), 0.0))
        names.append(trial.name)
        seconds.append(means)
    seconds = np.array(seconds)
    if not seconds.any():
        return None
    figure = Figure(figsize=(8.0, 1.5 + 0.28 * len(names)), layout="constrained")
    axes = figure.subplots()
    rows = np.arange(len(names))
    left = np.zeros(len(names))
    for column, (stage, colour) in enumerate(zip((*STAGES, "other"), STAGE_COLOURS)):
        if seconds[:, column].any():
            axes.barh(rows, seconds[:, column], left=left, color=colour, label=stage)
        left += seconds[:, column]
    axes.set_yticks(rows, names, fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel("seconds per generation (mean over generations >= 1)")
    axes.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=len(STAGE_COLOURS), fontsize="small", frameon=False)
    figure.suptitle("Where a generation's time goes, per trial")
    path = out_dir / "timing.png"
    figure.savefig(path, dpi=DPI)
    return path


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else 0.0


def toy_figure(toys: list[ToyResult], out_dir: Path) -> Path:
    """W2 vs generation, log y: a panel per corrector, a line per gamma (mean over seeds)."""
    correctors = sorted({toy.corrector for toy in toys})
    gammas = sorted({toy.gamma for toy in toys})
    colours = matplotlib.colormaps["viridis"]
    figure = Figure(figsize=(0.6 + 4.4 * len(correctors), 3.8), layout="constrained")
    panels = figure.subplots(1, len(correctors), sharey=True, squeeze=False)[0]
    for axes, corrector in zip(panels, correctors):
        for index, gamma in enumerate(gammas):
            runs = [toy for toy in toys if toy.corrector == corrector and toy.gamma == gamma]
            if runs:
                x, matrix = align([(np.arange(len(toy.w2)), toy.w2) for toy in runs])
                _draw(axes, x, matrix, colours(index / max(len(gammas) - 1, 1)), f"γ = {gamma:g}")
        axes.set_yscale("log", nonpositive="mask")
        axes.set_title(f"corrector: {corrector}")
        axes.set_xlabel("generation")
        axes.grid(alpha=0.3, which="both")
    panels[0].set_ylabel("W2 between N(0, I) and the fit")
    _legend(figure, panels)
    figure.suptitle("Gaussian toy: mean over seeds, band = min-max")
    path = out_dir / "toy_w2.png"
    figure.savefig(path, dpi=DPI)
    return path
