"""Ray Train: one long-lived `TorchTrainer.fit` per loop, and `scl-ray train` (a generation 0).

Every worker runs the whole loop (`scl_ray.loop`) with its model resident for all generations:
it samples its share of the prompts, rank 0 sends the synthetic set through its resident
corrector actor pool (or a Ray Data pipeline) and broadcasts the result, all ranks train with DDP (gloo on CPU, NCCL on GPU),
evaluate, and `ray.train.report` the metrics. The reported checkpoint is a pointer to the
generation directory (a small JSON file, not a copy of the model and motion sets): the run
directory's DONE markers are the source of truth, and a worker group restarted by `FailureConfig`
resumes from the newest finished generation through it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import ray.train
import ray.train.torch
from ray.train import Checkpoint, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from scl_ray import storage
from scl_ray.config import Config, config_from_dict
from scl_ray.distributed.runtime import ResourcePlan, ray_environment, run_interruptibly, verbose
from scl_ray.fields import to_dict
from scl_ray.loop.build import build_motion_loop
from scl_ray.loop.generation import progress_line
from scl_ray.loop.plan import trial_name
from scl_ray.loop.resources import LoopResources, prepare_experiment
from scl_ray.loop.state import MODEL, TrialDirectory
from scl_ray.loop.tensorboard import GenerationLogger
from scl_ray.motion.store import NONFINITE, UNCORRECTED, MotionSet

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


def gather_objects(items: list) -> list:
    """This rank's list -> every rank's lists, in rank order (all_gather over the process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [items]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return gathered


def broadcast_from_rank0(value):
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def uncorrected(synthetic: MotionSet) -> MotionSet:
    """The self-consuming arm (strength 0) trains on its samples as they are: no simulation needed. Each
    is uncorrected by design, or nonfinite (NaN or inf) as the corrector would have said."""
    count = len(synthetic)
    status = [UNCORRECTED if finite else NONFINITE for finite in synthetic.finite_mask()]
    return MotionSet(ids=list(synthetic.ids), captions=list(synthetic.captions), features=list(synthetic.features),
                     source=["corrected"] * count, generation=list(synthetic.generation),
                     status=status, stats=[{"skipped": "strength 0"} for _ in range(count)])


class RayCorrection:
    """A loop's correction: rank 0 corrects on Ray, and every rank receives the corrected set.

    With `correct.pool: resident` (the default) rank 0 starts a CorrectorPool at once, so its actors
    warm up while generation 0 trains, and keeps it for every generation; with `data` every generation
    streams through a fresh Ray Data pipeline. `close` stops the pool's actors.
    """

    def __init__(self, config: Config, plan: ResourcePlan, rank: int):
        self.config, self.plan, self.rank = config, plan, rank
        self.pool = None
        corrects = config.loop.strength > 0 and config.loop.synthetic_ratio > 0
        if rank == 0 and corrects and config.correct.pool == "resident":
            from scl_ray.distributed.data import CorrectorPool

            self.pool = CorrectorPool(config.correct, plan)

    def __call__(self, synthetic: MotionSet, seed: int) -> MotionSet:
        corrected = None
        if self.config.loop.strength == 0:
            corrected = uncorrected(synthetic)
        elif self.rank == 0:
            if self.pool is not None:
                corrected = self.pool.correct(synthetic)
            else:
                from scl_ray.distributed.data import correct_motion_set

                corrected = correct_motion_set(synthetic, self.config.correct, self.plan, progress=False)
        return broadcast_from_rank0(corrected)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def report_generation(rank: int, logger=None, announce: bool = False) -> Callable[[int, dict, str], None]:
    """ray.train.report each generation's metrics with a pointer checkpoint (rank 0 writes it);
    with `announce`, rank 0 also prints the generation's progress line (a loop without Tune)."""

    def report(generation: int, metrics: dict, generation_dir: str) -> None:
        if rank == 0 and logger is not None:
            logger(generation, metrics)
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
    correction = RayCorrection(config, plan, rank)  # first: its actors start while the rest loads
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


def generation_zero_worker(worker_config: dict) -> dict:
    """`scl-ray train`: train from scratch on the configured real subset, reporting as it goes."""
    from scl_ray.loop.motion import MotionLoopModel

    quiet_report_lines()
    config = config_from_dict(worker_config["config"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(worker_config["cpus"])))
    device = str(ray.train.torch.get_device()) if worker_config["use_gpu"] else "cpu"
    resources = LoopResources.load(config, worker_config["experiment"], evaluator=False)
    model = MotionLoopModel(config, resources.real.normalizer, resources.bank, device, rank, world_size,
                            gather_objects)
    items = resources.real.subset(config.loop.train_size, config.loop.seed)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            model.load(storage.join(folder, MODEL))
    chunk = max(1, worker_config["report_every"])
    while model.trainer.step < config.train.steps:
        steps = min(chunk, config.train.steps - model.trainer.step)
        stats = model.train(items, steps, seed=config.train.seed)
        if rank == 0:
            print(f"step {model.trainer.step}/{config.train.steps}: loss {stats['loss']:.4f}", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                model.save(storage.join(folder, MODEL))
            ray.train.report({"loss": stats["loss"], "step": model.trainer.step},
                             checkpoint=Checkpoint.from_directory(folder) if rank == 0 else None)
    return {"step": model.trainer.step}


def train_generation_zero(config: Config, out_dir: str, plan: ResourcePlan, report_every: int = 200) -> str:
    """Run `scl-ray train`; returns the location of the final checkpoint (out_dir/model.pt).

    out_dir: a local path or URI. The driver writes the data and caption embeddings into it first
    (`prepare_experiment`, no evaluator: training does not evaluate), and every worker reads them from there.
    """
    out = storage.absolute(out_dir)
    parent, name = storage.split(out)
    prepare_experiment(config, out, evaluator=False)
    trainer = TorchTrainer(
        generation_zero_worker,
        train_loop_config={"config": to_dict(config), "cpus": plan.worker_cpus, "use_gpu": plan.use_gpu,
                           "report_every": report_every, "experiment": str(out)},
        scaling_config=ScalingConfig(num_workers=plan.num_workers, use_gpu=plan.use_gpu,
                                     resources_per_worker={"CPU": plan.worker_cpus}),
        run_config=RunConfig(name=name, storage_path=parent, logging_config=train_logging(),
                             worker_runtime_env={"env_vars": ray_environment()}),
    )
    result = run_interruptibly(trainer.fit)
    if result.checkpoint is None:
        raise RuntimeError(f"training reported no checkpoint: {result.error}")
    final = storage.join(out, MODEL)
    with result.checkpoint.as_directory() as folder:
        storage.write_bytes(final, storage.read_bytes(storage.join(folder, MODEL)))
    return final

