"""The one correction actor: a motion set in, the same motions corrected out, in order.

`CorrectorActor.correct(MotionSet) -> MotionSet` is the only correction code. Its two users:

- `CorrectorPool` (here): actors started once and kept, for a self-consuming loop that corrects a small
  set every generation (`data.RayCorrection`, the loop's `correct` part, holds it on rank 0). Ray Data
  would start a fresh pool for every pipeline, and each new actor spawns a process, imports torch and MuJoCo and builds its humanoids again: seconds of every generation for a
  few seconds of simulation. Blocks travel as MotionSets (numpy arrays, no Arrow conversion).
- `scl_ray.distributed.data` (Ray Data, for files and `correct.pool: data`): `map_batches` calls the
  actor on an Arrow block, which it reads as a MotionSet, corrects with `correct` and writes back.

The corrector gets one motion at a time, as a batch of one of its own length (1, L, 263): nothing is
padded, and whatever goes wrong with a motion (an exception, an output that breaks the contract) is
that motion's alone: it comes back uncorrected, with status "failed" and the error in
`stats["error"]`. An actor process that dies is restarted (ACTOR_RESTARTS) and its block retried
(TASK_RETRIES); the driver checks that every input id came back exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import defaultdict, deque
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import ray
from ray.util import ActorPool

from scl_ray.config import CorrectConfig
from scl_ray.distributed.runtime import ResourcePlan
from scl_ray.motion.store import FAILED, STATUSES, MotionSet

logger = logging.getLogger(__name__)

# Finite, unlike Ray Data's default of forever: a motion that kills the simulator process every
# time must fail the run with an error rather than retry it without end.
ACTOR_RESTARTS = 3
# Unbounded: a task is retried for as long as its actor can be restarted (ACTOR_RESTARTS bounds the
# crashes). A lost node makes its actors unavailable to several retries in a row before Ray restarts
# them elsewhere; three retries were used up in that gap and stopped the run (tested on a cluster).
TASK_RETRIES = -1
# Corrector output keys that are not per-motion numbers; every other key goes into `stats`.
_COLUMN_KEYS = ("ids", "features", "lengths", "status")

CorrectorFactory = Callable[[CorrectConfig], Callable[[dict], dict]]


def physics_corrector_factory() -> CorrectorFactory:
    """The MuJoCo PhysicsCorrector class, imported only where it runs (inside the actors)."""
    from scl_ray.physics.corrector import PhysicsCorrector

    return PhysicsCorrector


class CorrectorActor:
    """One corrector per actor process, built once; used as a Ray actor and as `map_batches`' class.

    corrector_factory(config) -> corrector; corrector(batch) -> batch, where the input batch is
    ids (N,) object, features (N, T, 263) float32, lengths (N,) int32 (here always N = 1, T = the
    motion's length), and the output has the same keys (features corrected), status (N,) str in
    STATUSES, and any per-motion columns (error, tracking_error, falls, penetration_before, …), all of
    which land in `stats`. None means the PhysicsCorrector.
    """

    def __init__(self, corrector_factory: CorrectorFactory | None, config: CorrectConfig):
        factory = corrector_factory if corrector_factory is not None else physics_corrector_factory()
        self.corrector = factory(config)

    def correct(self, motions: MotionSet) -> MotionSet:
        """The motions, in order, with source "corrected", a status each and the corrector's columns
        merged into their stats; a motion the corrector fails on comes back as it was, marked failed."""
        outcomes = [self._correct_one(motion_id, features)
                    for motion_id, features in zip(motions.ids, motions.features)]
        return MotionSet(ids=motions.ids, captions=motions.captions, features=[o[0] for o in outcomes],
                         source=["corrected"] * len(motions), generation=motions.generation,
                         status=[o[1] for o in outcomes],
                         stats=[{**before, **o[2]} for before, o in zip(motions.stats, outcomes)])

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Ray Data's entry: motion-set rows (store.SCHEMA) -> the same motions corrected, as rows."""
        return self.correct(MotionSet.from_table(batch, where="Ray Data batch")).to_table()

    def _correct_one(self, motion_id: str, features: np.ndarray) -> tuple[np.ndarray, str, dict]:
        """One motion (L, 263) -> (its output features, status, per-motion columns)."""
        try:
            result = self.corrector({"ids": np.array([motion_id], dtype=object), "features": features[None],
                                     "lengths": np.array([len(features)], np.int32)})
            return _outcome(motion_id, result)
        except Exception as error:  # whatever the corrector's failure, the motion must come back
            text = f"{type(error).__name__}: {error}"
            logger.warning("corrector failed on motion %s; returning it uncorrected, marked failed", motion_id,
                           exc_info=error)
            return features, FAILED, {"error": text}


def _plain(value):
    """A per-motion value from a numpy column as JSON-ready Python data."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _outcome(motion_id: str, result: dict) -> tuple[np.ndarray, str, dict]:
    """The corrector's output for a batch of one motion, after checking it kept the motion."""
    missing = [key for key in _COLUMN_KEYS if key not in result]
    if missing:
        raise ValueError(f"corrector output lacks {missing}; it has {sorted(result)}")
    ids = [str(i) for i in result["ids"]]
    if ids != [motion_id]:
        raise ValueError(f"corrector returned ids {ids} for input ids {[motion_id]}; it must keep "
                         "every motion, in order")
    status = str(result["status"][0])
    if status not in STATUSES:
        raise ValueError(f"corrector returned status {status!r}; allowed: {list(STATUSES)}")
    extra = [key for key in result if key not in _COLUMN_KEYS]
    for key in extra:
        if len(result[key]) != 1:
            raise ValueError(f"corrector column {key!r} has {len(result[key])} values for 1 motion")
    features = np.asarray(result["features"], dtype=np.float32)[0, : int(result["lengths"][0])]
    return features, status, {key: _plain(result[key][0]) for key in extra}


def rows_per_block(count: int, batch_size: int, num_actors: int) -> int:
    """Motions per block and per actor call: at most `batch_size`, small enough for ~2 blocks per actor.

    Two blocks per actor lets a fast actor take over work from a slow one.
    """
    return max(1, min(batch_size, math.ceil(count / (2 * num_actors))))


def in_input_order(corrected: MotionSet, input_ids: Sequence[str]) -> MotionSet:
    """The corrected motions in input order, after checking that every one came back exactly once."""
    return corrected.select(_input_order(corrected.ids, input_ids))


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


@contextlib.contextmanager
def actor_deaths_explained():
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
    `data.correct_motion_set`. An actor whose process dies, or whose node is lost, is restarted (up to
    ACTOR_RESTARTS times, on another node if need be) and its block retried; a corrector error on a
    motion marks it failed.
    The actors start when the pool is made (their start-up overlaps whatever the caller does next)
    and hold their CPUs (`plan.actor_cpus` each) until `close` (or until the process that made them exits).
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
        blocks = [motion_set.select(range(start, min(start + rows, len(motion_set))))
                  for start in range(0, len(motion_set), rows)]
        with actor_deaths_explained():
            corrected = list(ActorPool(self.actors).map(lambda actor, block: actor.correct.remote(block), blocks))
        return in_input_order(MotionSet().concat(corrected), motion_set.ids)

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> "CorrectorPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
