"""The self-consuming loop, generation by generation, over injected parts.

The same code runs the motion diffusion model (locally in-process or inside a Ray Train worker) and
the Gaussian toy: what a generation *does* is here, how each stage runs is in the parts.

  g = 0:  train from scratch on the real set
  g >= 1: pick floor(lambda * n) training items as prompts -> sample -> correct -> replace each
          synthetic item by its correction with probability `strength` (drop non-finite ones)
          -> train a fixed budget on real + synthetic (continuing from g-1's weights)
  every g: evaluate -> metrics.json, model, DONE -> report
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from scl_ray.config import LoopConfig
from scl_ray.loop.plan import GenerationPlan, arm_name, plan_generation, replacement_mask
from scl_ray import storage
from scl_ray.loop.generation_zero import copy_generation_zero
from scl_ray.loop.lease import Lease
from scl_ray.loop.state import CORRECTED, DONE, EVAL_SAMPLES, METRICS, MODEL, SYNTHETIC, TrialDirectory
from scl_ray.rng import PROMPTS, stream

class LoopError(RuntimeError):
    """A loop cannot go on (e.g. every synthetic sample of a generation is non-finite)."""


class ItemSet(Protocol):
    """A set of training items (motions with captions, or toy points); `status` says what the
    corrector did with each (the loop counts them, whatever they are)."""

    status: list[str]

    def __len__(self) -> int: ...
    def select(self, indices: np.ndarray) -> "ItemSet": ...
    def finite_mask(self) -> np.ndarray: ...
    def failed_mask(self) -> np.ndarray: ...  # items whose correction failed (they come back as sampled)


class LoopModel(Protocol):
    """The generative model of a loop; `train` continues from the current weights."""

    def reset(self, seed: int) -> None: ...
    def train(self, items: ItemSet, steps: int, seed: int) -> dict[str, float]: ...
    def sample(self, prompts: ItemSet, seed: int, generation: int) -> ItemSet: ...
    def save(self, location: str) -> None: ...
    def load(self, location: str) -> None: ...


@dataclass
class LoopParts:
    """Everything a loop needs besides its configuration.

    real: the n real training items. concat: joins item sets. correct(synthetic, seed) -> the
    corrected set, item for item, with `status`. evaluate(model, generation, seed) -> metrics.
    write_items / read_items persist synthetic and corrected sets in the generation directory.
    report(generation, metrics, generation_dir) is called after each generation is DONE.
    """

    model: LoopModel
    real: ItemSet
    concat: Callable[[list[Any]], Any]
    correct: Callable[[Any, int], Any]
    evaluate: Callable[[LoopModel, int, int], dict[str, float]]
    write_items: Callable[[Any, str], None]
    read_items: Callable[[str], Any]
    summarize_correction: Callable[[Any, Any], dict[str, float]] = field(default=lambda synthetic, corrected: {})
    report: Callable[[int, dict[str, float], str], None] = field(default=lambda generation, metrics, path: None)
    # Rank 0 of a distributed loop writes files; the other ranks compute the same things and skip writing.
    is_writer: bool = True
    # Where generation 0 is shared between the loops of a sweep that differ only in lambda and
    # strength (generation 0 trains on real data only, so they would all compute the same model).
    shared_generation_zero: str | None = None
    # Rank 0's decision, given to every rank (identity in one process; a broadcast under DDP).
    broadcast: Callable[[Any], Any] = field(default=lambda value: value)
    # Train on items whose correction failed, as sampled (`correct.on_failure: raw`), instead of leaving them out.
    keep_failed: bool = False
    # The statuses `correct` gives, each counted in every generation (0 where no item has it).
    statuses: tuple[str, ...] = ()


def choose_prompts(num_real: int, num: int, seed: int) -> np.ndarray:
    """Indices of the training items whose captions/lengths prompt the synthetic samples."""
    rng = stream(seed, PROMPTS)
    return rng.choice(num_real, size=num, replace=num > num_real)


def mix(synthetic: ItemSet, corrected: ItemSet, strength: float, seed: int, concat,
        keep_failed: bool = False) -> ItemSet:
    """Each synthetic item replaced by its correction with probability `strength`; non-finite items
    dropped, and so are replaced items whose correction failed unless `keep_failed` (then they are
    trained on as sampled)."""
    if len(synthetic) != len(corrected):
        raise LoopError(f"the corrector returned {len(corrected)} items for {len(synthetic)} synthetic ones")
    replace = replacement_mask(len(synthetic), strength, seed)
    if not keep_failed:
        replaced = np.flatnonzero(replace & ~corrected.failed_mask())
    else:
        replaced = np.flatnonzero(replace)
    chosen = concat([synthetic.select(np.flatnonzero(~replace)), corrected.select(replaced)])
    return chosen.select(np.flatnonzero(chosen.finite_mask()))


def accumulated(mixed_sets: list[ItemSet], concat) -> ItemSet:
    """The paper's toy accumulation: at generation k, set S_j contributes its first floor(j/k |S_j|)."""
    k = len(mixed_sets)
    parts = [items.select(np.arange(int(np.floor(j / k * len(items) + 1e-9))))
             for j, items in enumerate(mixed_sets, start=1)]
    return concat(parts)


PROGRESS_METRICS = ("fid", "r_precision_top3", "diversity", "physics/phys_err_mm", "correction/corrected")


def progress_line(generation: int, metrics: dict) -> str:
    """One line that says how a finished generation went (a few metrics and its time)."""
    values = "  ".join(f"{key.split('/')[-1]} {metrics[key]:.3g}" for key in PROGRESS_METRICS if key in metrics)
    return f"generation {generation}: {values}  ({metrics.get('time/generation_s', 0.0):.0f} s)"


def status_counts(corrected: ItemSet, known: tuple[str, ...] = ()) -> dict[str, float]:
    """`correction/<status>`: how many items carry each status, and 0 for each `known` one that none
    carries (so that a metric is recorded in every generation)."""
    counts = Counter(corrected.status)
    return {f"correction/{name}": float(counts[name]) for name in dict.fromkeys([*known, *counts])}


class SelfConsumingLoop:
    """Runs generations start..G of one loop in `directory`, resuming after the newest DONE."""

    def __init__(self, loop: LoopConfig, initial_steps: int, parts: LoopParts,
                 directory: TrialDirectory | None):
        """directory None keeps nothing on disk (the toy's thousands of tiny generations)."""
        self.loop = loop
        self.initial_steps = initial_steps
        self.parts = parts
        self.directory = directory
        self.mixed_history: list[ItemSet] = []

    @property
    def arm(self) -> str:
        return arm_name(self.loop.synthetic_ratio, self.loop.strength)

    def plan(self, generation: int) -> GenerationPlan:
        return plan_generation(self.loop, generation, self.initial_steps, len(self.parts.real))

    def resume(self) -> int:
        """Restore the newest finished generation; returns the first generation still to run."""
        latest = None if self.directory is None else self.directory.latest_done()
        if latest is None:
            return 0
        self.parts.model.load(self.directory.file(latest, MODEL))
        if self.loop.accumulate:
            self.mixed_history = [self._mixed_from_disk(g) for g in range(1, latest + 1)]
        return latest + 1

    def _mixed_from_disk(self, generation: int) -> ItemSet:
        plan = self.plan(generation)
        synthetic = self.parts.read_items(self.directory.file(generation, SYNTHETIC))
        corrected = self.parts.read_items(self.directory.file(generation, CORRECTED))
        return mix(synthetic, corrected, plan.strength, plan.seed, self.parts.concat, self.parts.keep_failed)

    def run(self, progress: Callable[[int, dict], None] | None = None) -> list[dict]:
        """Run every generation not yet DONE; returns the metrics of those it ran."""
        ran = []
        for generation in range(self.resume(), self.loop.generations + 1):
            metrics = self.run_generation(self.plan(generation))
            ran.append(metrics)
            if progress is not None:
                progress(generation, metrics)
        return ran

    def run_generation(self, plan: GenerationPlan) -> dict[str, float]:
        started = time.perf_counter()
        lease = None
        if plan.from_scratch and self.parts.shared_generation_zero and self.directory is not None:
            decision = None
            if self.parts.is_writer:
                lease = self._shared_lease()
                decision = "train" if lease is not None else "reuse"
            if self.parts.broadcast(decision) == "reuse":
                return self._reuse_generation_zero(started)
        try:
            return self._train_generation(plan, started)
        finally:
            if lease is not None:  # after publishing, or on an error (then a waiting loop takes over at once)
                lease.release()

    def _train_generation(self, plan: GenerationPlan, started: float) -> dict[str, float]:
        parts, directory, g = self.parts, self.directory, plan.generation
        writer = parts.is_writer and directory is not None
        timings: dict[str, float] = {}
        metrics: dict[str, float] = {"generation": float(g)}
        training_set = parts.real
        if plan.from_scratch:
            parts.model.reset(plan.seed)
        elif plan.num_synthetic > 0:
            prompts = parts.real.select(choose_prompts(len(parts.real), plan.num_synthetic, plan.seed))
            tic = time.perf_counter()
            synthetic = parts.model.sample(prompts, plan.seed, g)
            timings["sample_s"] = time.perf_counter() - tic
            finite = synthetic.finite_mask()
            metrics["synthetic/nonfinite"] = float(len(synthetic) - finite.sum())
            if not finite.any():
                raise LoopError(f"generation {g}: all {len(synthetic)} synthetic samples are non-finite "
                                "(NaN or inf): the model has diverged")
            tic = time.perf_counter()
            corrected = parts.correct(synthetic, plan.seed)
            timings["correct_s"] = time.perf_counter() - tic
            metrics.update(status_counts(corrected, parts.statuses))
            metrics.update(parts.summarize_correction(synthetic, corrected))
            if writer:
                parts.write_items(synthetic, directory.file(g, SYNTHETIC))
                parts.write_items(corrected, directory.file(g, CORRECTED))
            mixed = mix(synthetic, corrected, plan.strength, plan.seed, parts.concat, parts.keep_failed)
            if self.loop.accumulate:
                self.mixed_history.append(mixed)
                mixed = accumulated(self.mixed_history, parts.concat)
            metrics["synthetic/trained_on"] = float(len(mixed))
            training_set = parts.concat([parts.real, mixed])
        tic = time.perf_counter()
        for key, value in parts.model.train(training_set, plan.train_steps, plan.seed).items():
            metrics[f"train/{key}"] = value
        timings["train_s"] = time.perf_counter() - tic
        tic = time.perf_counter()
        metrics.update(parts.evaluate(parts.model, g, plan.seed))
        timings["evaluate_s"] = time.perf_counter() - tic
        tic = time.perf_counter()
        if writer:
            parts.model.save(directory.file(g, MODEL))
        timings["save_s"] = time.perf_counter() - tic
        timings["generation_s"] = time.perf_counter() - started
        metrics.update({f"time/{key}": value for key, value in timings.items()})
        if writer:
            directory.write_metrics(g, metrics)
            directory.mark_done(g)
            if plan.from_scratch and parts.shared_generation_zero:
                self._publish_generation_zero()
            self._prune(g - 1)
        parts.report(g, metrics, directory.generation(g) if directory is not None else "")
        return metrics

    def _prune(self, generation: int) -> None:
        """Once the next generation is DONE, drop what only `generation` itself needed (unless
        `loop.keep_all`): its model (a resume loads the newest one), and its synthetic and corrected
        sets unless the loop accumulates them (a resume rebuilds the accumulated set from every one).
        metrics.json (the report), eval_samples.parquet (`scl-ray evaluate` reproduces metrics.json
        from it) and DONE stay."""
        if self.loop.keep_all or generation < 0:
            return
        for name in (MODEL, *(() if self.loop.accumulate else (SYNTHETIC, CORRECTED))):
            storage.remove(self.directory.file(generation, name))

    def _shared_ready(self) -> bool:
        return storage.exists(storage.join(self.parts.shared_generation_zero, DONE))

    def _shared_lease(self) -> Lease | None:
        """The claim on the shared generation 0 if this loop is to train it (it must release it),
        None if another loop has finished it (then reuse it).

        The first loop to claim it trains; the others wait for its DONE rather than compute the same
        model again, and take over a claim whose holder is gone (`loop/lease.py`).
        """
        shared = self.parts.shared_generation_zero
        lease = Lease(shared, what=f"generation 0 of {shared.rstrip('/').rsplit('/', 1)[-1]}")
        return lease if lease.acquire_or_wait(self._shared_ready) else None

    def _publish_generation_zero(self) -> None:
        """Copy this loop's finished generation 0 to the shared place (DONE last)."""
        copy_generation_zero(self.directory.generation(0), self.parts.shared_generation_zero)

    def _reuse_generation_zero(self, started: float) -> dict[str, float]:
        """Generation 0 from the shared place: same weights, same metrics, no training."""
        shared, directory, parts = self.parts.shared_generation_zero, self.directory, self.parts
        parts.model.load(storage.join(shared, MODEL))
        metrics = storage.read_json(storage.join(shared, METRICS))
        metrics["time/shared_generation_zero_s"] = time.perf_counter() - started
        if parts.is_writer:
            for name in (MODEL, EVAL_SAMPLES):
                if storage.exists(storage.join(shared, name)):
                    storage.write_bytes(directory.file(0, name), storage.read_bytes(storage.join(shared, name)))
            directory.write_metrics(0, metrics)
            directory.mark_done(0)
        parts.report(0, metrics, directory.generation(0))
        return metrics
