"""Assemble a motion loop from a Config: data, text, evaluator, model, evaluation and corrector.

`LoopResources` (resources.py) is what every loop of an experiment shares (the dataset, caption
embeddings and the evaluator); `build_motion_loop` adds one loop's model and parts. The corrector
and the cross-rank gather are injected, so the same assembly serves the local in-process backend
and the Ray backend.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scl_ray import storage
from scl_ray.config import Config
from scl_ray.evaluation.metrics import split_interval
from scl_ray.loop.generation import LoopParts, SelfConsumingLoop
from scl_ray.loop.generation_zero import shared_name
from scl_ray.loop.motion import Gather, MotionEvaluation, MotionLoopModel, single_process_gather
from scl_ray.loop.resources import LoopResources
from scl_ray.loop.state import EVALUATOR_METRIC, TrialDirectory
from scl_ray.motion.store import CORRECTED, STATUSES, MotionSet, read_motion_set, write_motion_set

CORRECTION_METRICS = ("penetration_mm", "float_mm", "skate_mm", "phys_err_mm", "jitter", "peak_jerk", "bone_mm")
# Per-motion numbers of a correction averaged over the corrected motions (`PhysicsCorrector` columns).
CORRECTION_REPORT = ("tracking_error", "help_frames", "help_max", "residual")


def concat_sets(sets: list[MotionSet]) -> MotionSet:
    return sets[0].concat(sets[1:])


def summarize_correction(synthetic: MotionSet, corrected: MotionSet,
                         evaluation: MotionEvaluation | None = None) -> dict[str, float]:
    """Mean physics metrics of the synthetic motions before and after correction, and tracking error;
    with `evaluation`, also the sets' FID, Matching and Diversity before and after (`set_metrics`)."""
    summary: dict[str, float] = {}
    if evaluation is not None:
        before = evaluation.set_metrics(synthetic)
        # Only a corrected motion differs from its sample (the other statuses return it unchanged),
        # so a set with none, e.g. every generation of the self-consuming arm, is not scored twice.
        after = evaluation.set_metrics(corrected) if CORRECTED in corrected.status else before
        for phase, metrics in (("before", before), ("after", after)):
            for name, value in metrics.items():
                metric, bound = split_interval(name)  # an interval follows its metric: fid_before_ci_low
                summary[f"correction/{metric}_{phase}{bound}"] = value
    for name in CORRECTION_METRICS + CORRECTION_REPORT:
        for phase in ("before", "after") if name not in CORRECTION_REPORT else ("",):
            key = f"{name}_{phase}" if phase else name
            values = [stats[key] for stats in corrected.stats if isinstance(stats.get(key), (int, float))]
            values = [v for v in values if np.isfinite(v)]
            if values:
                summary[f"correction/{key}"] = float(np.mean(values))
    return summary


def build_motion_loop(config: Config, resources: LoopResources, directory: TrialDirectory | None,
                      correct: Callable[[MotionSet, int], MotionSet], device: str = "cpu", rank: int = 0,
                      world_size: int = 1, gather: Gather = single_process_gather,
                      report: Callable[[int, dict, str, MotionSet | None], None] | None = None,
                      progress: bool = False, shared_root: str | None = None,
                      broadcast: Callable | None = None) -> SelfConsumingLoop:
    """One self-consuming loop of the diffusion model over the configured real subset.

    shared_root: where loops of one sweep share their generation 0 (see `generation_zero_key`).
    report(generation, metrics, generation_dir, samples): after each generation is DONE, with the
    evaluation samples it was scored on (None for a generation 0 reused from the shared place, which
    this loop did not evaluate: eval_samples.parquet has them).
    """
    model = MotionLoopModel(config, resources.real.normalizer, resources.bank, device, rank, world_size,
                            gather, progress)
    if resources.evaluator is None:
        raise ValueError("a motion loop needs an evaluator: load the experiment's resources with evaluator=True")
    evaluation = MotionEvaluation(config, resources.real, resources.evaluator, directory, is_writer=rank == 0)

    def evaluate(model: MotionLoopModel, generation: int, seed: int) -> dict:
        return {**evaluation(model, generation, seed), EVALUATOR_METRIC: resources.evaluator_hash}

    parts = LoopParts(
        model=model,
        real=resources.real.subset(config.loop.train_size, config.loop.seed),
        concat=concat_sets,
        correct=correct,
        evaluate=evaluate,
        write_items=write_motion_set,
        read_items=read_motion_set,
        summarize_correction=lambda synthetic, corrected: summarize_correction(synthetic, corrected, evaluation),
        is_writer=rank == 0,
        keep_failed=config.correct.on_failure == "raw",
        statuses=STATUSES,
        shared_generation_zero=storage.join(shared_root, shared_name(config)) if shared_root else None,
    )
    if report is not None:
        parts.report = lambda generation, metrics, path: report(generation, metrics, path,
                                                                 evaluation.samples(generation))
    if broadcast is not None:
        parts.broadcast = broadcast
    return SelfConsumingLoop(config.loop, config.train.steps, parts, directory)
