"""Ray Data correction: a motion set streamed through a pool of physics corrector actors.

    motion set (in memory, or a Parquet file)
      -> blocks of at most `batch_size` motions, about two per actor
      -> map_batches(CorrectorActor) on an actor pool (one corrector, e.g. one MuJoCo model, per actor)
      -> every motion back on the driver, in input order
      -> MotionSet with source "corrected", a status per motion and the corrector's numbers in `stats`
         (`correct_file` also writes it as one Parquet file)

No motion is ever lost: if the corrector raises for a batch, its motions are retried one by one and
those that still fail come back uncorrected with status "failed" and the error text in
`stats["error"]`; an actor process that dies is replaced and its batch retried; the driver checks
that every input id came back exactly once.

A self-consuming loop corrects a small set every generation, so it keeps its own actors instead
(`CorrectorPool`): Ray Data starts a fresh pool for every pipeline, and each new actor spawns a
process, imports torch and MuJoCo and builds its humanoids again, seconds of every generation for a
few seconds of simulation. The pool is the same `CorrectorActor`, with the same restarts, retries
and per-motion failure handling; `correct.pool: data` runs the loop through Ray Data instead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections import defaultdict, deque
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.data import ExecutionResources
from ray.util import ActorPool

from scl_ray import storage
from scl_ray.config import CorrectConfig, ResourcesConfig
from scl_ray.distributed import runtime
from scl_ray.distributed.runtime import ResourcePlan
from scl_ray.motion.store import (
    FAILED, STATUSES, MotionSet, check_motion_set_file, from_padded_batch, to_padded_batch, write_motion_set,
)

logger = logging.getLogger(__name__)

# Finite, unlike Ray Data's default of forever: a motion that kills the simulator process every
# time must fail the run with an error rather than retry it without end.
ACTOR_RESTARTS = 3
# Unbounded: a task is retried for as long as its actor can be restarted (ACTOR_RESTARTS bounds the
# crashes). A lost node makes its actors unavailable to several retries in a row before Ray restarts
# them elsewhere; three retries were used up in that gap and stopped the run (tested on a cluster).
TASK_RETRIES = -1
# Corrector output keys that become MotionSet columns; every other key goes into `stats`.
_COLUMN_KEYS = ("ids", "features", "lengths", "status")

CorrectorFactory = Callable[[CorrectConfig], Callable[[dict], dict]]


def physics_corrector_factory() -> CorrectorFactory:
    """The MuJoCo PhysicsCorrector class, imported only where it runs (inside the actors)."""
    from scl_ray.physics.corrector import PhysicsCorrector

    return PhysicsCorrector


class CorrectorActor:
    """The callable class given to `map_batches`: one corrector per actor process, built once.

    corrector_factory(config) -> corrector; corrector(batch) -> batch, where the input batch is
    ids (N,) object, features (N, 196, 263) float32 zero-padded, lengths (N,) int32, and the output
    has the same keys (features corrected), status (N,) str in STATUSES, and any per-motion columns
    (error, tracking_error, falls, penetration_before, …), all of which land in `stats`.
    None means the PhysicsCorrector.
    """

    def __init__(self, corrector_factory: CorrectorFactory | None, config: CorrectConfig):
        factory = corrector_factory if corrector_factory is not None else physics_corrector_factory()
        self.corrector = factory(config)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Motion-set rows (store.SCHEMA) -> the same motions as corrected rows (store.SCHEMA).

        If the corrector fails on the whole batch, each motion is retried alone, so that only the
        motions it really cannot handle come back as failed.
        """
        motions = MotionSet.from_table(batch, where="Ray Data batch")
        try:
            return self._correct(motions)
        except Exception as error:  # whatever the corrector's failure, its motions must come back
            if len(motions) == 1:
                return _failed(motions, error)
            logger.warning("corrector failed on a batch of %d motions (%s … %s); retrying them one by one: %s",
                           len(motions), motions.ids[0], motions.ids[-1], _describe(error))
        return pa.concat_tables([self._correct_or_pass(motions.select([index])) for index in range(len(motions))])

    def correct(self, batch: pa.Table) -> pa.Table:
        """The same as calling the actor: a named method for `CorrectorPool`'s remote calls."""
        return self(batch)

    def _correct(self, motions: MotionSet) -> pa.Table:
        padded = to_padded_batch(motions)
        result = self.corrector({key: padded[key] for key in ("ids", "features", "lengths")})
        return _corrected_set(motions, result).to_table()

    def _correct_or_pass(self, motion: MotionSet) -> pa.Table:
        try:
            return self._correct(motion)
        except Exception as error:  # see __call__
            return _failed(motion, error)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _failed(motions: MotionSet, error: BaseException) -> pa.Table:
    """The motions uncorrected, marked failed, with the error text in `stats["error"]`."""
    text = _describe(error)
    logger.warning("corrector failed on motion(s) %s; returning them uncorrected, marked failed", motions.ids,
                   exc_info=error)
    return MotionSet(ids=motions.ids, captions=motions.captions, features=motions.features,
                     source=["corrected"] * len(motions), generation=motions.generation,
                     status=[FAILED] * len(motions),
                     stats=[{**before, "error": text} for before in motions.stats]).to_table()


def _plain(value):
    """A per-motion value from a numpy column as JSON-ready Python data."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _corrected_set(motions: MotionSet, result: dict) -> MotionSet:
    """The corrector's output batch as a MotionSet, after checking that it kept every motion."""
    missing = [key for key in _COLUMN_KEYS if key not in result]
    if missing:
        raise ValueError(f"corrector output lacks {missing}; it has {sorted(result)}")
    ids = [str(i) for i in result["ids"]]
    if ids != motions.ids:
        raise ValueError(f"corrector returned ids {ids} for input ids {motions.ids}; it must keep "
                         "every motion, in order")
    statuses = [str(s) for s in result["status"]]
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise ValueError(f"corrector returned status {unknown}; allowed: {list(STATUSES)}")
    pieces = from_padded_batch({"ids": ids, "captions": motions.captions, "features": result["features"],
                                "lengths": result["lengths"]})
    extra = [key for key in result if key not in _COLUMN_KEYS]
    for key in extra:
        if len(result[key]) != len(ids):
            raise ValueError(f"corrector column {key!r} has {len(result[key])} values for {len(ids)} motions")
    stats = [{**before, **{key: _plain(result[key][index]) for key in extra}}
             for index, before in enumerate(motions.stats)]
    return MotionSet(ids=ids, captions=motions.captions, features=pieces["features"],
                     source=["corrected"] * len(ids), generation=motions.generation, status=statuses,
                     stats=stats)


def rows_per_block(count: int, batch_size: int, num_actors: int) -> int:
    """Motions per block and per batch: at most `batch_size`, small enough for ~2 blocks per actor.

    Two blocks per actor lets a fast actor take over work from a slow one.
    """
    return max(1, min(batch_size, math.ceil(count / (2 * num_actors))))


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
    with _actor_deaths_explained():
        tables = list(dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
    return _collect(tables, input_ids)


def _collect(tables: Sequence[pa.Table], input_ids: Sequence[str]) -> MotionSet:
    """The corrected blocks as one set, in input order, after checking every motion came back once."""
    corrected = MotionSet.from_table(pa.concat_tables(tables), where="corrector pool output")
    return corrected.select(_input_order(corrected.ids, input_ids))


@contextlib.contextmanager
def _actor_deaths_explained():
    """Turn a corrector actor that died for good into an error that says what to look for."""
    try:
        yield
    except ray.exceptions.RayActorError as error:
        if error.actor_init_failed:  # the corrector's own constructor error says it best
            raise
        raise RuntimeError(
            f"correction stopped: a corrector actor process died {ACTOR_RESTARTS + 1} times "
            f"({type(error).__name__}). A motion that crashes the simulator process "
            "(a segfault, not a Python exception, which would mark the motion failed) is the likely cause; the "
            "corrector actors' logs show the crash") from error


class CorrectorPool:
    """Corrector actors started once and reused for every set they are given (a loop's generations).

    `correct` splits a set into blocks of at most `config.batch_size` motions, about two per actor,
    hands each block to the next free actor, and returns every motion in input order, like
    `correct_motion_set`. An actor whose process dies, or whose node is lost, is restarted (up to
    ACTOR_RESTARTS times, on another node if need be) and its block retried; a corrector error on a
    motion marks it failed.
    The actors start when the pool is made (their start-up overlaps whatever the caller does next)
    and hold their CPUs until `close` (or until the process that made them exits).
    """

    def __init__(self, config: CorrectConfig, plan: ResourcePlan, corrector_factory: CorrectorFactory | None = None):
        self.batch_size = config.batch_size
        actor = ray.remote(CorrectorActor).options(
            num_cpus=plan.actor_cpus, max_restarts=ACTOR_RESTARTS, max_task_retries=TASK_RETRIES,
            # Explicit, so that a pool made inside a Train worker is not captured by its placement group.
            scheduling_strategy="SPREAD")
        self.actors = [actor.remote(corrector_factory, config) for _ in range(plan.num_actors)]

    def correct(self, motion_set: MotionSet) -> MotionSet:
        if not self.actors:
            raise RuntimeError("this CorrectorPool is closed")
        if len(motion_set) == 0:
            return MotionSet()
        rows = rows_per_block(len(motion_set), self.batch_size, len(self.actors))
        table = motion_set.to_table()
        blocks = [table.slice(start, rows) for start in range(0, table.num_rows, rows)]
        with _actor_deaths_explained():
            tables = list(ActorPool(self.actors).map(lambda actor, block: actor.correct.remote(block), blocks))
        return _collect(tables, motion_set.ids)

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> "CorrectorPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _input_order(output_ids: Sequence[str], input_ids: Sequence[str]) -> list[int]:
    """Output positions in input order; repeated ids are matched in the order they came."""
    positions: dict[str, deque[int]] = defaultdict(deque)
    for index, motion_id in enumerate(output_ids):
        positions[motion_id].append(index)
    order, missing = [], []
    for motion_id in input_ids:
        if positions[motion_id]:
            order.append(positions[motion_id].popleft())
        else:
            missing.append(motion_id)
    unexpected = [motion_id for motion_id, left in positions.items() for _ in left]
    if missing or unexpected:
        raise RuntimeError(f"the correction pipeline lost motion(s) {missing[:10]} and returned unexpected "
                           f"motion(s) {unexpected[:10]} ({len(missing)} lost, {len(unexpected)} unexpected); "
                           "every input motion must come back exactly once")
    return order
