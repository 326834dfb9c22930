"""Finding and reading the results a report is made of: loop trials and Gaussian toy runs.

A loop trial is any directory holding `config.yaml` and finished generations
(`gen_NNN/metrics.json` with `gen_NNN/DONE`); its swept values come from the resolved config, and
each generation's `evaluator` entry names the evaluator that scored it (`check_evaluators`). A toy
run is any `toy_w2.json`: {"gamma", "corrector", "seed", "w2": [...]} or a list of such objects.
The results directory may be local or any pyarrow URI (s3://...); it is listed once, recursively.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs
import yaml

from scl_ray import storage
from scl_ray.config import ConfigError, config_from_dict
from scl_ray.errors import UserError
from scl_ray.evaluation.metrics import interval_names
from scl_ray.loop.plan import arm_name
from scl_ray.loop.state import DONE, EVALUATOR_METRIC, METRICS

TRIAL_CONFIG = "config.yaml"
TOY_FILE = "toy_w2.json"
TOY_KEYS = ("gamma", "corrector", "seed", "w2")
GENERATION_DIR = re.compile(r"^gen_(\d+)$")


class ReportError(UserError):
    """The results directory cannot be reported on; the message says where and what was expected."""


@dataclass(frozen=True)
class TrialResult:
    """One loop's finished generations.

    name: the trial's directory relative to the results directory. generations: (G,) int, ascending
    (those with metrics.json and DONE). metrics: name -> (G,) float64, NaN where a
    generation did not record that metric. evaluators: the hashes of the evaluators that scored its
    generations (None for a generation that recorded none, as results written before hashes were).
    """

    name: str
    train_size: int
    synthetic_ratio: float
    strength: float
    seed: int
    planned_generations: int
    generations: np.ndarray
    metrics: dict[str, np.ndarray]
    evaluators: frozenset = frozenset()

    @property
    def evaluator(self) -> str:
        """The evaluator's hash for tables: '' if none was recorded, hashes joined by '+' if they differ."""
        return "+".join(sorted(e or "unrecorded" for e in self.evaluators)) if any(self.evaluators) else ""

    @property
    def arm(self) -> str:
        return arm_name(self.synthetic_ratio, self.strength)

    @property
    def last_generation(self) -> int:
        return int(self.generations[-1])

    def series(self, metric: str) -> np.ndarray:
        """(G,) values of `metric`, all NaN if this trial never recorded it."""
        return self.metrics.get(metric, np.full(len(self.generations), np.nan))

    def interval(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(low, high), each (G,): the 95% bootstrap interval of `metric` per generation, NaN where none
        was recorded."""
        low, high = interval_names(metric)
        return self.series(low), self.series(high)


@dataclass(frozen=True)
class ToyResult:
    """One toy loop: W2 between N(0, I) and the fitted Gaussian, (G + 1,) float64 from generation 0."""

    name: str
    gamma: float
    corrector: str
    seed: int
    w2: np.ndarray


@dataclass(frozen=True)
class Results:
    trials: list[TrialResult]
    toys: list[ToyResult]


def load_results(results_dir: str | os.PathLike) -> Results:
    """Every loop trial and toy run under `results_dir`, in a stable order."""
    filesystem, base = storage.resolve(results_dir)
    info = filesystem.get_file_info(base)
    if info.type != pafs.FileType.Directory:
        raise ReportError(f"results directory {results_dir} does not exist or is not a directory")
    files = {posixpath.relpath(entry.path, base)
             for entry in filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
             if entry.type == pafs.FileType.File}
    done = _done_generations(files)
    trials, toys = [], []
    for path in sorted(files):
        directory, name = posixpath.split(path)
        if name == TRIAL_CONFIG and done.get(directory):
            trials.append(_read_trial(filesystem, base, directory, done[directory], results_dir))
        elif name == TOY_FILE:
            toys.extend(_read_toy(filesystem, base, path, results_dir))
    if not trials and not toys:
        raise ReportError(
            f"no results found under {results_dir}: expected loop trials (directories holding {TRIAL_CONFIG} "
            f"and finished generations gen_NNN/{METRICS} + gen_NNN/{DONE}, as `scl-ray sweep` writes them) "
            f"or Gaussian toy runs ({TOY_FILE}, as `scl-ray toy gaussian` writes them)")
    trials.sort(key=lambda t: (t.train_size, t.synthetic_ratio, t.strength, t.seed, t.name))
    toys.sort(key=lambda t: (t.corrector, t.gamma, t.seed, t.name))
    return Results(trials=trials, toys=toys)


def _done_generations(files: set[str]) -> dict[str, list[int]]:
    """Trial directory -> its generations with both metrics.json and DONE, ascending."""
    done: dict[str, list[int]] = {}
    for path in files:
        parts = path.rsplit("/", 2)
        if len(parts) < 2 or parts[-1] != DONE:
            continue
        match = GENERATION_DIR.match(parts[-2])
        directory = parts[0] if len(parts) == 3 else ""
        if match and f"{path[:-len(DONE)]}{METRICS}" in files:
            done.setdefault(directory, []).append(int(match.group(1)))
    return {directory: sorted(generations) for directory, generations in done.items()}


def _read(filesystem: pafs.FileSystem, base: str, path: str) -> bytes:
    with filesystem.open_input_stream(posixpath.join(base, path)) as stream:
        return stream.read()


def _display_name(directory: str, results_dir: str | os.PathLike) -> str:
    """The directory relative to the results directory; the results directory's own name if it is one."""
    return directory or posixpath.basename(str(results_dir).rstrip("/")) or "."


def _read_trial(filesystem, base: str, directory: str, generations: list[int],
                results_dir: str | os.PathLike) -> TrialResult:
    config_path = posixpath.join(directory, TRIAL_CONFIG)
    where = storage.join(results_dir, config_path)
    try:
        config = config_from_dict(yaml.safe_load(_read(filesystem, base, config_path)))
    except (ConfigError, yaml.YAMLError) as error:
        raise ReportError(f"{where} is not a valid scl-ray config: {error}") from None
    history, evaluators = [], set()
    for generation in generations:
        path = posixpath.join(directory, f"gen_{generation:03d}", METRICS)
        try:
            metrics = json.loads(_read(filesystem, base, path))
        except json.JSONDecodeError as error:
            raise ReportError(f"{storage.join(results_dir, path)} is not valid JSON: {error}") from None
        if not isinstance(metrics, dict):
            raise ReportError(f"{storage.join(results_dir, path)} must hold an object of metric names to numbers")
        if not isinstance(metrics.get(EVALUATOR_METRIC, ""), str):
            raise ReportError(f"{storage.join(results_dir, path)}: {EVALUATOR_METRIC!r} is "
                              f"{metrics[EVALUATOR_METRIC]!r}; it must be the evaluator's hash, a string")
        evaluators.add(metrics.pop(EVALUATOR_METRIC, None))
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ReportError(f"{storage.join(results_dir, path)}: metric {key!r} is {value!r}; "
                                  f"metrics.json must map names to numbers (and {EVALUATOR_METRIC!r} to a hash)")
        history.append(metrics)
    names = sorted({key for metrics in history for key in metrics if key != "generation"})
    series = {name: np.array([metrics.get(name, math.nan) for metrics in history], dtype=np.float64)
              for name in names}
    loop = config.loop
    return TrialResult(name=_display_name(directory, results_dir), train_size=loop.train_size,
                       synthetic_ratio=loop.synthetic_ratio, strength=loop.strength, seed=loop.seed,
                       planned_generations=loop.generations, generations=np.array(generations, dtype=np.int64),
                       metrics=series, evaluators=frozenset(evaluators))


def check_evaluators(trials: list[TrialResult]) -> None:
    """Raise ReportError, naming the trials behind each evaluator, if the trials were not all scored by one.

    FID, R-precision, Matching and Diversity of different evaluators are not comparable; a generation
    that recorded no evaluator counts as an evaluator of its own (unknown).
    """
    scored_by: dict[str | None, list[str]] = {}
    for trial in trials:
        for evaluator in trial.evaluators:
            scored_by.setdefault(evaluator, []).append(trial.name)
    if len(scored_by) <= 1:
        return
    lines = [f"  {evaluator or 'no evaluator recorded'}: {', '.join(names)}"
             for evaluator, names in sorted(scored_by.items(), key=lambda item: item[0] or "")]
    raise ReportError("these trials were scored by different evaluators, so their metrics are not comparable in "
                      "one figure or table:\n" + "\n".join(lines) + "\nreport each experiment on its own, or "
                      "pass --allow-mixed-evaluators (make_report(..., allow_mixed_evaluators=True)) to show them "
                      "together anyway")


def _read_toy(filesystem, base: str, path: str, results_dir: str | os.PathLike) -> list[ToyResult]:
    where = storage.join(results_dir, path)
    try:
        content = json.loads(_read(filesystem, base, path))
    except json.JSONDecodeError as error:
        raise ReportError(f"{where} is not valid JSON: {error}") from None
    runs = content if isinstance(content, list) else [content]
    toys = []
    for index, run in enumerate(runs):
        missing = [key for key in TOY_KEYS if not isinstance(run, dict) or key not in run]
        if missing or not isinstance(run["w2"], list) or not run["w2"]:
            what = f"lacks {', '.join(missing)}" if missing else "has no w2 values"
            raise ReportError(f"{where}: run {index} {what}; each toy run needs {', '.join(TOY_KEYS)} "
                              "(w2: a list of one value per generation)")
        toys.append(ToyResult(name=_display_name(posixpath.dirname(path), results_dir),
                              gamma=float(run["gamma"]), corrector=str(run["corrector"]), seed=int(run["seed"]),
                              w2=np.asarray(run["w2"], dtype=np.float64)))
    return toys


@dataclass(frozen=True, order=True)
class Condition:
    """What a line of a figure averages over seeds: (n, lambda, strength).

    The baseline (lambda 0) has strength 0 whatever its config says: with no synthetic data the
    strength changes nothing, so baseline trials of every strength are one condition.
    """

    train_size: int
    synthetic_ratio: float
    strength: float

    @property
    def arm(self) -> str:
        return arm_name(self.synthetic_ratio, self.strength)


def condition_of(trial: TrialResult) -> Condition:
    strength = trial.strength if trial.synthetic_ratio > 0 else 0.0
    return Condition(trial.train_size, trial.synthetic_ratio, strength)


def group_by_condition(trials: list[TrialResult]) -> dict[Condition, list[TrialResult]]:
    """Trials per condition (sorted), each list in seed order."""
    groups: dict[Condition, list[TrialResult]] = {}
    for trial in trials:
        groups.setdefault(condition_of(trial), []).append(trial)
    return {condition: sorted(groups[condition], key=lambda t: (t.seed, t.name)) for condition in sorted(groups)}


def condition_label(condition: Condition, corrected_strengths: set[float]) -> str:
    """The arm's name, with the strength when several corrected strengths are compared."""
    if condition.arm == "corrected" and len(corrected_strengths) > 1:
        return f"corrected (strength {condition.strength:g})"
    return condition.arm


def align(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """[(generations (G_i,), values (G_i,))] -> (x (G,) = 0..max generation, values (S, G) NaN-padded)."""
    length = max(int(generations.max()) + 1 for generations, _ in series if len(generations))
    matrix = np.full((len(series), length), np.nan)
    for row, (generations, values) in zip(matrix, series):
        row[np.asarray(generations, dtype=np.int64)] = values
    return np.arange(length), matrix


def seed_spread(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, G) values over seeds -> mean, min, max per column (G,), ignoring NaN; NaN where none is finite."""
    finite = np.isfinite(matrix)
    count = finite.sum(axis=0)
    seen = count > 0
    mean = np.where(seen, np.where(finite, matrix, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan)
    low = np.where(seen, np.where(finite, matrix, np.inf).min(axis=0), np.nan)
    high = np.where(seen, np.where(finite, matrix, -np.inf).max(axis=0), np.nan)
    return mean, low, high
