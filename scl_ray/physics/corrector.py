"""PhysicsCorrector: a batch of synthetic motions in, the motions the simulated humanoid performs out.

Built once per process (a Ray Data actor later). Per motion: features -> joints; kinematic clean-ups
(`reference.clean_reference`: out-of-place joints, the floor, sliding support, noise); a humanoid built
on the motion's own geometry (`Humanoid.for_motion`: bone lengths, SMPL-shaped pelvis and chest,
ankle height); retargeting; tracking (`tracker.track`: inverse dynamics, PD, the feet carrying the
body, a budgeted residual, rollback with more help, never a reset); the simulated joints -> features.
Each motion is handled on its own; whatever goes wrong with one becomes its status and error text,
never an exception for the batch:

- corrected: simulated; the output features describe what the humanoid did. `help_max`,
  `help_frames` and `help_where` say how much help the simulation needed and where;
- failed: the motion could not be simulated (too short, a length outside the batch, a body flying
  off, the simulation diverging with the most help); its features come back unchanged and `error`
  says why. The loop leaves failed motions out of training unless `correct.on_failure` is "raw";
- nonfinite: the features hold NaN or inf; returned unchanged, to be excluded from training.

The statuses are the motion set's (`scl_ray.motion.store.STATUSES`, which adds uncorrected: an arm that
does not correct).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import mujoco
import numpy as np

from scl_ray.config import CorrectConfig
from scl_ray.motion.constants import FPS
from scl_ray.motion.features import features_to_joints, joints_to_features
from scl_ray.motion.store import CORRECTED, FAILED, NONFINITE
from scl_ray.physics.humanoid import Humanoid, HumanoidSettings
from scl_ray.physics.metrics import METRIC_NAMES, MIN_FRAMES, physics_metrics
from scl_ray.physics.reference import clean_reference
from scl_ray.physics.tracker import TrackerSettings, TrackingFailed, reference_from_joints, track

METRIC_COLUMNS = tuple(f"{name}_{when}" for name in METRIC_NAMES for when in ("before", "after"))
# Per-motion numbers of a correction, besides the metrics (see `Correction`).
REPORT_COLUMNS = ("tracking_error", "help_max", "help_frames", "residual", "rollbacks", "floor", "drift",
                  "smoothing", "spikes")
# A body beyond these has left the scene: no human moves its pelvis faster, and no HumanML3D motion
# goes further from its start. Such a motion is failed with that reason instead of simulated.
MAX_PELVIS_SPEED = 15.0  # m/s
MAX_DISTANCE = 100.0  # m


def humanoid_settings(config: CorrectConfig) -> HumanoidSettings:
    """The humanoid of the `correct` section: its servo gains, residual limit and ankle height."""
    return HumanoidSettings(kp_scale=config.kp_scale, residual_force_limit=config.residual_force_limit,
                            ankle_height=config.ankle_height)


@dataclass(frozen=True)
class Correction:
    """One motion's outcome: joints (T, 22, 3) metres, y up (the input's when not corrected); status;
    per frame the help level the simulation needed (T,) (empty when not simulated); per-motion numbers
    (REPORT_COLUMNS: tracking_error m from the cleaned reference, help_max, help_frames, residual in
    body weights, rollbacks, floor m, drift m/s, smoothing frames, spikes); the error text."""

    joints: np.ndarray
    status: str
    help: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=int))
    report: dict = dataclasses.field(default_factory=dict)
    error: str = ""

    @property
    def help_where(self) -> str:
        """Frame ranges simulated with help, as "first-last:level" joined by spaces ("" when none)."""
        parts, frame = [], 0
        while frame < len(self.help):
            level, start = int(self.help[frame]), frame
            while frame < len(self.help) and self.help[frame] == level:
                frame += 1
            if level > 0:
                parts.append(f"{start}-{frame - 1}:{level}")
        return " ".join(parts)


def _extended(joints: np.ndarray) -> np.ndarray:
    """joints (T, 22, 3) plus one frame extrapolated at constant velocity: T+1 joint frames make
    T feature frames, so the corrected motion keeps its length."""
    step = joints[-1] - joints[-2] if len(joints) > 1 else np.zeros_like(joints[-1])
    return np.concatenate([joints, joints[-1:] + step], axis=0)


def _flying_off(joints: np.ndarray) -> str:
    """Why joints (T, 22, 3) cannot be a body on the floor, or "" when they can be."""
    distance = np.abs(joints - joints[:1, :1]).max()
    if distance > MAX_DISTANCE:
        return f"the body flies off: a joint {distance:.3g} m from the start (at most {MAX_DISTANCE:g} m is tracked)"
    speed = np.linalg.norm(np.diff(joints[:, 0], axis=0), axis=-1) * FPS
    if len(speed) and speed.max() > MAX_PELVIS_SPEED:
        return (f"the body flies off: the pelvis moves {speed.max():.3g} m/s at frame {int(speed.argmax()) + 1} "
                f"(at most {MAX_PELVIS_SPEED:g} m/s is tracked)")
    return ""


class PhysicsCorrector:
    """Corrects motions by physics simulation (see the module docstring for the statuses).

    config: the `correct` section. A humanoid is built for every motion from its own geometry
    (about 10 ms, against about 0.1-0.3 s of simulation).
    """

    def __init__(self, config: CorrectConfig | None = None):
        self.config = config if config is not None else CorrectConfig()
        self.body = humanoid_settings(self.config)
        self.settings = TrackerSettings(control_hz=self.config.control_hz, fps=FPS,
                                        help_levels=self.config.help_levels,
                                        fall_distance=self.config.fall_distance, fall_angle=self.config.fall_angle)

    def humanoid_for(self, joints: np.ndarray) -> Humanoid:
        """The humanoid that performs joints (T, 22, 3): their skeleton and, unless configured, ankle height."""
        return Humanoid.for_motion(joints, self.config.sim_hz, self.body)

    def correct_joints(self, joints: np.ndarray) -> Correction:
        """Simulate one motion given as joints (T, 22, 3), metres, y up, 20 fps, finite, T >= 4.

        Returns the simulated joints (status corrected) or, when the motion cannot be simulated, the
        input joints (status failed) with the reason in `error`.
        """
        joints = np.asarray(joints, dtype=np.float64)
        reason = _flying_off(joints)
        if reason:
            return Correction(joints, FAILED, error=reason)
        cleaned, cleanup = clean_reference(joints)
        try:
            humanoid = self.humanoid_for(cleaned)
            tracking = track(humanoid, reference_from_joints(humanoid, cleaned), self.settings)
        except (TrackingFailed, mujoco.FatalError, ValueError, FloatingPointError) as error:
            return Correction(joints, FAILED, error=f"{type(error).__name__}: {error}")
        if not np.isfinite(tracking.joints).all():
            return Correction(joints, FAILED, error="the simulation produced non-finite joints")
        reason = _flying_off(tracking.joints)
        if reason:  # a teleport would not be a correction; the output must be something a body did
            return Correction(joints, FAILED, error=f"the simulated motion is not a body's: {reason}")
        report = {
            "tracking_error": float(np.linalg.norm(tracking.joints - cleaned, axis=-1).mean()),
            "help_max": int(tracking.help.max(initial=0)),
            "help_frames": int((tracking.help > 0).sum()),
            "residual": float(tracking.residual.mean()),
            "rollbacks": tracking.rollbacks,
            "floor": cleanup.floor, "drift": cleanup.drift, "smoothing": cleanup.smoothing, "spikes": cleanup.spikes,
        }
        return Correction(tracking.joints, CORRECTED, tracking.help, report)

    def _correct_motion(self, motion_id: str, features: np.ndarray) -> tuple[np.ndarray, dict]:
        """One motion's features (L, 263) -> output features (L, 263) and its row of the other columns."""
        if not np.isfinite(features).all():
            frame = int(np.argwhere(~np.isfinite(features))[0, 0])
            return features, {"status": NONFINITE,
                              "error": f"motion {motion_id}: NaN or inf in features (first at frame {frame})"}
        if len(features) < MIN_FRAMES:
            return features, {"status": FAILED, "error": f"motion {motion_id}: {len(features)} frames; "
                                                           f"correction needs at least {MIN_FRAMES}"}
        # The joints every reader recovers from these features (features_to_joints gives float32; the
        # evaluation's physics metrics see the same), then float64 for the extrapolated frame and the
        # simulation. Not a round trip to drop: tracking is sensitive enough that float64 joints
        # straight from the features (no float32 step) or an extrapolated frame computed in float32
        # move corrected motions by millimetres (measured for issue 16: up to 29 mm on a real clip).
        joints = features_to_joints(features).astype(np.float64)
        row = {f"{name}_before": value for name, value in physics_metrics(joints, FPS).items()}
        correction = self.correct_joints(_extended(joints))
        output = features
        if correction.status == CORRECTED:
            output = joints_to_features(correction.joints)  # float32, as stored
            after = physics_metrics(features_to_joints(output), FPS)  # as the evaluation measures it
        else:
            after = {name: row[f"{name}_before"] for name in METRIC_NAMES}
        row.update({f"{name}_after": value for name, value in after.items()})
        row.update(correction.report)
        row.update(status=correction.status, help_where=correction.help_where,
                   error=f"motion {motion_id}: {correction.error}" if correction.error else "")
        return output, row

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Correct a batch: ids (N,) str, features (N, 196, 263) float32 zero-padded, lengths (N,) int.

        Returns the batch's columns with features replaced, plus status (N,) str, error (N,) str ("" when
        fine), help_where (N,) str, REPORT_COLUMNS (N,) float32 (NaN when not simulated) and
        `<metric>_before` / `<metric>_after` (N,) float32 for every physics metric (NaN when the motion
        has no finite joints of at least MIN_FRAMES frames).
        """
        for key in ("ids", "features", "lengths"):
            if key not in batch:
                raise KeyError(f"a corrector batch needs columns ids, features, lengths; {key!r} is missing "
                               f"(got {sorted(batch)})")
        features = np.asarray(batch["features"], dtype=np.float32)
        lengths = np.asarray(batch["lengths"]).astype(np.int64)
        count = len(features)
        output = features.copy()
        columns = {"status": np.full(count, FAILED, dtype=object), "error": np.full(count, "", dtype=object),
                   "help_where": np.full(count, "", dtype=object),
                   **{column: np.full(count, np.nan, dtype=np.float32) for column in REPORT_COLUMNS + METRIC_COLUMNS}}
        for index, motion_id in enumerate(str(value) for value in batch["ids"]):
            length = int(lengths[index])
            if not 0 < length <= features.shape[1]:
                columns["error"][index] = f"motion {motion_id}: length {length} outside 1..{features.shape[1]}"
                continue
            try:
                corrected, row = self._correct_motion(motion_id, features[index, :length])
            except Exception as failure:  # one motion's failure must not sink the batch
                columns["error"][index] = f"motion {motion_id}: {type(failure).__name__}: {failure}"
                continue
            output[index, :length] = corrected
            for column, value in row.items():
                columns[column][index] = value
        return {**batch, "features": output, **columns}
