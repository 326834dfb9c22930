"""Ray Data correction: a motion set streamed through a pool of physics corrector actors.

    motion set (in memory, or a Parquet file)
      -> blocks of at most `batch_size` motions, about two per actor
      -> map_batches(CorrectorActor) on an actor pool (one corrector, e.g. one MuJoCo model, per actor)
      -> every motion back on the driver, in input order
      -> MotionSet with source "corrected", a status per motion and the corrector's numbers in `stats`
         (`correct_file` also writes it as one Parquet file)

The actor is `scl_ray.distributed.correction.CorrectorActor`, the same one a loop keeps resident
(`CorrectorPool`), with the same restarts, retries and per-motion failure handling: no motion is
ever lost, and the driver checks that every input id came back exactly once. A loop runs through Ray
Data instead of its resident pool with `correct.pool: data`.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.data import ExecutionResources

from scl_ray import storage
from scl_ray.config import Config, CorrectConfig, ResourcesConfig
from scl_ray.distributed import runtime
from scl_ray.distributed.correction import (
    ACTOR_RESTARTS, TASK_RETRIES, CorrectorActor, CorrectorFactory, CorrectorPool, actor_deaths_explained,
    in_input_order, rows_per_block,
)
from scl_ray.distributed.runtime import ResourcePlan
from scl_ray.motion.store import NONFINITE, UNCORRECTED, MotionSet, check_motion_set_file, write_motion_set


def default_plan() -> ResourcePlan:
    """A pool that fills the connected Ray (started locally if there is none), for standalone runs.

    One CPU stays with Ray Data's read and write tasks; every other CPU gets a corrector actor.
    """
    resources = ResourcesConfig()
    if not ray.is_initialized():
        runtime.init_ray(resources)
    cpus, _ = runtime.cluster_size()
    actors = max(1, math.floor((cpus - resources.data_cpus) / resources.cpus_per_actor))
    return ResourcePlan(use_gpu=False, trial_cpus=0.0, worker_cpus=0.0, worker_gpus=0.0, num_workers=0,
                        actor_cpus=resources.cpus_per_actor, num_actors=actors, data_cpus=resources.data_cpus,
                        max_concurrent_trials=1)


def correct_motion_set(motion_set: MotionSet, config: CorrectConfig, plan: ResourcePlan | None = None,
                       corrector_factory: CorrectorFactory | None = None, progress: bool = True) -> MotionSet:
    """Correct an in-memory set on an actor pool; returns every motion, in input order.

    plan: the trial's resources (pool size, CPUs per actor, Ray Data's CPU limit); None = defaults.
    corrector_factory: see CorrectorActor (None = the MuJoCo PhysicsCorrector).
    progress: show Ray Data's progress bars.
    """
    if len(motion_set) == 0:
        return MotionSet()
    plan = plan if plan is not None else default_plan()
    rows = rows_per_block(len(motion_set), config.batch_size, plan.num_actors)
    table = motion_set.to_table()
    # from_arrow makes one block per table: slice it so the actors can share the work.
    dataset = ray.data.from_arrow([table.slice(start, rows) for start in range(0, table.num_rows, rows)])
    return _run(dataset, motion_set.ids, rows, config, plan, corrector_factory, progress)


def correct_file(in_uri: str, out_uri: str, config: CorrectConfig, plan: ResourcePlan | None = None,
                 corrector_factory: CorrectorFactory | None = None, progress: bool = True) -> MotionSet:
    """Correct a motion-set Parquet file (local path or URI) into one Parquet file at `out_uri`.

    Reads with ray.data.read_parquet, writes atomically with store.write_motion_set; returns the
    corrected set (every input motion, in input order). Other arguments as in correct_motion_set.
    """
    check_motion_set_file(in_uri)
    filesystem, path = storage.resolve(in_uri)
    ids = pq.read_table(path, columns=["id"], filesystem=filesystem).column("id").to_pylist()
    if not ids:
        corrected = MotionSet()
    else:
        plan = plan if plan is not None else default_plan()
        rows = rows_per_block(len(ids), config.batch_size, plan.num_actors)
        # One file reads as one block: split it so the actors can share the work.
        dataset = ray.data.read_parquet(path, filesystem=filesystem).repartition(
            target_num_rows_per_block=rows, strict=True)
        corrected = _run(dataset, ids, rows, config, plan, corrector_factory, progress)
    write_motion_set(corrected, out_uri)
    return corrected


def _run(dataset, input_ids: Sequence[str], rows: int, config: CorrectConfig, plan: ResourcePlan,
         corrector_factory: CorrectorFactory | None, progress: bool) -> MotionSet:
    """Map the dataset through the corrector pool and collect it on the driver in input order."""
    with warnings.catch_warnings():
        # Ray 2.60 deprecates extra remote args but offers no named parameter for actor restarts,
        # and its default (restart forever) would hang on a motion that kills the simulator.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        dataset = dataset.map_batches(
            CorrectorActor, fn_constructor_args=(corrector_factory, config), batch_format="pyarrow",
            batch_size=rows, compute=ray.data.ActorPoolStrategy(size=plan.num_actors),
            num_cpus=plan.actor_cpus, max_restarts=ACTOR_RESTARTS, max_task_retries=TASK_RETRIES,
        )
    # Set on this dataset's own context, not the process's: the limit keeps a pipeline inside a
    # trial from waiting on CPUs that other trials hold, and must not leak into other pipelines.
    context = dataset.context
    context.execution_options.resource_limits = ExecutionResources(cpu=plan.data_cpu_limit)
    # Output is put back in input order by id anyway; preserving order keeps repeated ids in turn.
    context.execution_options.preserve_order = True
    context.enable_progress_bars = progress
    with actor_deaths_explained():
        tables = list(dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
    return in_input_order(MotionSet.from_table(pa.concat_tables(tables), where="corrector pool output"), input_ids)


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
    streams through a fresh Ray Data pipeline. Both hand the MotionSet to the same CorrectorActor.
    broadcast(value) -> rank 0's value on every rank (`collectives.broadcast_from_rank0`, passed in: the
    collectives import torch). `close` stops the pool's actors.
    """

    def __init__(self, config: Config, plan: ResourcePlan, rank: int, broadcast: Callable):
        self.config, self.plan, self.rank, self.broadcast = config, plan, rank, broadcast
        self.pool = None
        corrects = config.loop.strength > 0 and config.loop.synthetic_ratio > 0
        if rank == 0 and corrects and config.correct.pool == "resident":
            self.pool = CorrectorPool(config.correct, plan)

    def __call__(self, synthetic: MotionSet, seed: int) -> MotionSet:
        corrected = None
        if self.config.loop.strength == 0:
            corrected = uncorrected(synthetic)
        elif self.rank == 0:
            if self.pool is not None:
                corrected = self.pool.correct(synthetic)
            else:
                corrected = correct_motion_set(synthetic, self.config.correct, self.plan, progress=False)
        return self.broadcast(corrected)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
