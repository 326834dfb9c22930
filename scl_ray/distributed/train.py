"""Ray Train, the loop worker: one long-lived `TorchTrainer.fit` per loop.

Every worker runs the whole loop (`scl_ray.loop`) with its model resident for all generations:
it samples its share of the prompts, rank 0 sends the synthetic set through its resident
corrector actor pool (or a Ray Data pipeline) and broadcasts the result, all ranks train with DDP (gloo on CPU, NCCL on GPU),
evaluate, and `ray.train.report` the metrics. The reported checkpoint is a pointer to the
generation directory (a small JSON file, not a copy of the model and motion sets): the run
directory's DONE markers are the source of truth, and a worker group restarted by `FailureConfig`
resumes from the newest finished generation through it.

Also here: the Train logging both trainers share (`train_logging`, `quiet_report_lines`; the other
trainer, `scl-ray train`, is `initial_training.py`) and the fault-injection hook of the recovery tests.
The loop's correction is `data.RayCorrection`; its collectives are `collectives.py`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import ray.train
import ray.train.torch
from ray.train import Checkpoint, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from scl_ray import storage
from scl_ray.config import Config, config_from_dict
from scl_ray.distributed.collectives import broadcast_from_rank0, gather_objects
from scl_ray.distributed.data import RayCorrection
from scl_ray.distributed.runtime import ResourcePlan, ray_environment, verbose
from scl_ray.fields import to_dict
from scl_ray.loop.build import build_motion_loop
from scl_ray.loop.generation import progress_line
from scl_ray.loop.plan import trial_name
from scl_ray.loop.resources import LoopResources
from scl_ray.loop.state import TrialDirectory
from scl_ray.loop.tensorboard import GenerationLogger
from scl_ray.motion.store import MotionSet

POINTER = "generation.json"


def train_logging() -> LoggingConfig:
    """Train's INFO lines (every report with all its metrics, every checkpoint) would bury the one line
    per generation that the loop prints; they stay in the session's log files unless `scl-ray -v`."""
    return LoggingConfig(log_level="INFO" if verbose() else "WARNING")


def quiet_report_lines() -> None:
    """In a Train worker: drop Train's INFO line for every report (its whole metrics dict).

    Ray 2.60 logs it under a logger named by the file path of its module, outside `ray.train`, so
    `train_logging()` does not reach it; the logger is looked up the same way here.
    """
    import logging

    if verbose():
        return

    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:  # another Ray layout: nothing to quiet
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def report_generation(rank: int, logger: GenerationLogger | None = None,
                      announce: bool = False) -> Callable[[int, dict, str, MotionSet | None], None]:
    """ray.train.report each generation's metrics with a pointer checkpoint (rank 0 writes it);
    rank 0's TensorBoard `logger` renders an image of the generation's evaluation samples; with
    `announce`, rank 0 also prints the generation's progress line (a loop without Tune)."""

    def report(generation: int, metrics: dict, generation_dir: str, samples: MotionSet | None) -> None:
        if rank == 0 and logger is not None:
            logger(generation, metrics, samples)
        if rank == 0 and announce:
            print(progress_line(generation, metrics), flush=True)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                storage.write_json(storage.join(folder, POINTER), {"generation": generation, "directory": generation_dir})
                checkpoint = Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)

    return report


def inject_fault(loop, config: Config) -> None:
    """Failure-recovery testing hook, off unless the test-only `testing.fault` is set (config.py says
    what it holds): the evaluation of one generation raises once, or its synthetic samples are all NaN."""
    fault = config.testing.parsed_fault()
    if fault is None or fault[0] != trial_name(config.loop):
        return
    _, generation, kind, marker = fault
    parts = loop.parts
    if kind == "raise":
        marker, evaluate = Path(marker), parts.evaluate

        def failing_evaluate(model, g, seed):
            if g == generation and not marker.exists():
                marker.write_text(f"failed generation {g}\n")
                raise RuntimeError(f"injected failure at generation {g} (testing.fault)")
            return evaluate(model, g, seed)

        parts.evaluate = failing_evaluate
    else:  # nonfinite
        sample = parts.model.sample

        def nan_sample(prompts, seed, g):
            synthetic = sample(prompts, seed, g)
            if g == generation:
                synthetic.features = [np.full_like(f, np.nan) for f in synthetic.features]
            return synthetic

        parts.model.sample = nan_sample


def loop_worker(worker_config: dict) -> dict:
    """`train_loop_per_worker` of a loop: thin; the loop itself is `scl_ray.loop`.

    Progress is one line per generation (printed here, or by the sweep's Tune callback), not
    per-step bars: Ray forwards each refresh of a worker's bar as a line of its own.
    """
    quiet_report_lines()
    config = config_from_dict(worker_config["config"])
    plan = ResourcePlan(**worker_config["plan"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(plan.worker_cpus)))
    device = str(ray.train.torch.get_device()) if plan.use_gpu else "cpu"
    directory = TrialDirectory(worker_config["trial_dir"])
    correction = RayCorrection(config, plan, rank, broadcast_from_rank0)  # first: its actors start while the rest loads
    logger = None
    try:
        resources = LoopResources.load(config, worker_config["experiment"])
        if rank == 0 and worker_config.get("tensorboard", True):
            logger = GenerationLogger(directory.root, config.loop, evaluator=resources.evaluator_hash)
        loop = build_motion_loop(config, resources, directory, correction, device, rank, world_size,
                                 gather_objects, report_generation(rank, logger, worker_config.get("announce", False)),
                                 shared_root=worker_config.get("shared_root"), broadcast=broadcast_from_rank0)
        inject_fault(loop, config)
        ran = loop.run()
    finally:
        correction.close()
        if logger is not None:
            logger.close()
    return {"generations_run": len(ran), "last": ran[-1] if ran else None}


def loop_trainer(config: Config, trial_dir: str, plan: ResourcePlan, name: str, storage_path: str,
                 experiment: str, callbacks: list | None = None, max_failures: int = 0, tensorboard: bool = True,
                 shared_root: str | None = None, announce: bool = False) -> TorchTrainer:
    """The TorchTrainer whose single `fit` runs every generation of one loop.

    experiment: where the driver wrote the experiment's data, caption embeddings and evaluator
    (`prepare_experiment`); every worker reads them from there.
    shared_root: where the loops of a sweep share generation 0 (None: every loop trains its own).
    announce: print a line per finished generation (a loop run without Tune's callback).
    """
    return TorchTrainer(
        loop_worker,
        train_loop_config={"config": to_dict(config), "plan": dict(plan.__dict__), "trial_dir": str(trial_dir),
                           "experiment": str(experiment), "tensorboard": tensorboard, "shared_root": shared_root,
                           "announce": announce},
        scaling_config=ScalingConfig(
            num_workers=plan.num_workers, use_gpu=plan.use_gpu,
            resources_per_worker={"CPU": plan.worker_cpus, **({"GPU": plan.worker_gpus} if plan.use_gpu else {})}),
        run_config=RunConfig(name=name, storage_path=storage_path, callbacks=callbacks or [],
                             failure_config=FailureConfig(max_failures=max_failures), logging_config=train_logging(),
                             worker_runtime_env={"env_vars": ray_environment()}),
    )
