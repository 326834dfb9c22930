"""PhysicsCorrector: a batch of synthetic motions in, the motions the simulated humanoid performs out.

Built once per process (a Ray Data actor later): the MuJoCo model is compiled in __init__ and one
MjData is reused for every motion. Each motion is handled on its own; whatever goes wrong with one
becomes its status and error text, never an exception for the batch:

- corrected: simulated; the output features describe what the humanoid did;
- fallback: the humanoid fell more than `max_recoveries` times or the simulation failed; the
  motion is returned unchanged;
- passthrough: the motion could not be read (too short, bad length, feature recovery failed); it is
  returned unchanged;
- nonfinite: the features hold NaN or inf; returned unchanged, to be excluded from training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import mujoco
import numpy as np

from scl_ray.config import CorrectConfig
from scl_ray.motion.features import features_to_joints, joints_to_features
from scl_ray.motion.skeleton import FOOT_JOINTS, FOOT_JOINTS_LEFT, FOOT_JOINTS_RIGHT, Skeleton
from scl_ray.physics.humanoid import Humanoid, HumanoidSettings
from scl_ray.physics.metrics import METRIC_NAMES, MIN_FRAMES, physics_metrics
from scl_ray.physics.tracker import (
    REFERENCE_SMOOTHING, TrackerSettings, TrackingFailed, reference_from_joints, track,
)

STATUSES = ("corrected", "fallback", "passthrough", "nonfinite")
FPS = 20.0
MAX_ANKLE_HEIGHT = 0.12
METRIC_COLUMNS = tuple(f"{name}_{when}" for name in METRIC_NAMES for when in ("before", "after"))


@dataclass(frozen=True)
class Correction:
    """One motion's outcome: joints (T, 22, 3) metres, y up (the input's when not corrected)."""

    joints: np.ndarray
    status: str
    falls: int = 0
    tracking_error: float = float("nan")  # mean per-joint distance, simulated to reference, metres
    error: str = ""


def infer_ankle_height(joints: np.ndarray) -> float:
    """How far a motion's ankle joints sit above its soles (metres, rounded to 1 cm, in [0, 0.12]).

    The median over frames of the lower ankle's height above the lowest foot joint. Datasets differ:
    HumanML3D's ankle joints ride about 8 cm above the toes' joints, the procedural dataset plants
    ankle and toe joints on the floor together. A humanoid whose feet disagree with the data lifts or
    sinks every motion, so the corrector builds (once, then caches) a humanoid per inferred height.
    """
    ankles = np.minimum(joints[:, FOOT_JOINTS_LEFT[0], 1], joints[:, FOOT_JOINTS_RIGHT[0], 1])
    lowest = joints[:, list(FOOT_JOINTS), 1].min(axis=1)
    return float(np.clip(np.round(np.median(ankles - lowest), 2), 0.0, MAX_ANKLE_HEIGHT))


def _extended(joints: np.ndarray) -> np.ndarray:
    """joints (T, 22, 3) plus one frame extrapolated at constant velocity: T+1 joint frames make
    T feature frames, so the corrected motion keeps its length."""
    step = joints[-1] - joints[-2] if len(joints) > 1 else np.zeros_like(joints[-1])
    return np.concatenate([joints, joints[-1:] + step], axis=0)


class PhysicsCorrector:
    """Corrects motions by physics simulation (see the module docstring for the statuses).

    config: the `correct` section. skeleton: the humanoid's (default HumanML3D's adult, the skeleton
    every HumanML3D-format motion is retargeted to). tuning: overrides of HumanoidSettings
    (hinge_frequency_hz, root_frequency_hz, vertical_share, torque_lever, ankle_height), of
    TrackerSettings (fall_angle) and reference_smoothing (Savitzky-Golay window, frames; 0 for none).
    """

    def __init__(self, config: CorrectConfig | None = None, skeleton: Skeleton | None = None, **tuning):
        self.config = config if config is not None else CorrectConfig()
        humanoid_keys = {f.name for f in fields(HumanoidSettings)} - {"kp_scale", "residual_force_limit"}
        allowed = humanoid_keys | {"fall_angle", "reference_smoothing"}
        unknown = sorted(set(tuning) - allowed)
        if unknown:
            raise TypeError(f"PhysicsCorrector got unknown tuning {unknown}; allowed: {sorted(allowed)}")
        tuning.setdefault("ankle_height", self.config.ankle_height)
        self.body = HumanoidSettings(kp_scale=self.config.kp_scale,
                                     residual_force_limit=self.config.residual_force_limit,
                                     **{k: v for k, v in tuning.items() if k in humanoid_keys and k != "ankle_height"})
        self.skeleton = skeleton if skeleton is not None else Skeleton.adult()
        self.fixed_ankle_height = tuning["ankle_height"]
        self._humanoids: dict[float | None, tuple[Humanoid, mujoco.MjData]] = {}
        self.humanoid, self._data = self._humanoid(self.fixed_ankle_height)
        self.settings = TrackerSettings(control_hz=self.config.control_hz, fps=FPS, fall_height=self.config.fall_height,
                                        max_recoveries=self.config.max_recoveries,
                                        fall_angle=tuning.get("fall_angle", self.config.fall_angle))
        self.reference_smoothing = int(tuning.get("reference_smoothing", REFERENCE_SMOOTHING))

    def _humanoid(self, ankle_height: float | None) -> tuple[Humanoid, mujoco.MjData]:
        """The humanoid (and its MjData) whose ankles sit `ankle_height` above the soles; built once."""
        if ankle_height not in self._humanoids:
            humanoid = Humanoid.build(self.skeleton, self.config.sim_hz,
                                      dataclasses.replace(self.body, ankle_height=ankle_height))
            self._humanoids[ankle_height] = (humanoid, mujoco.MjData(humanoid.model))
        return self._humanoids[ankle_height]

    def _humanoid_for(self, joints: np.ndarray) -> tuple[Humanoid, mujoco.MjData]:
        if self.fixed_ankle_height is not None:
            return self.humanoid, self._data
        return self._humanoid(infer_ankle_height(joints))

    def correct_joints(self, joints: np.ndarray) -> Correction:
        """Simulate one motion given as joints (T, 22, 3), metres, y up, 20 fps, finite.

        Returns the simulated joints (status corrected) or, when the humanoid falls too often or the
        simulation breaks, the input joints (status fallback) with the reason in `error`.
        """
        joints = np.asarray(joints, dtype=np.float64)
        try:
            humanoid, data = self._humanoid_for(joints)
            reference = reference_from_joints(humanoid, joints, self.reference_smoothing)
            tracking = track(humanoid, reference, self.settings, data)
        except TrackingFailed as error:
            return Correction(joints, "fallback", len(error.fall_frames), error=str(error))
        except (mujoco.FatalError, ValueError, FloatingPointError) as error:
            return Correction(joints, "fallback", error=f"{type(error).__name__}: {error}")
        if not np.isfinite(tracking.joints).all():
            return Correction(joints, "fallback", tracking.falls, error="the simulation produced non-finite joints")
        distance = np.linalg.norm(tracking.joints - joints, axis=-1)
        return Correction(tracking.joints, "corrected", tracking.falls, float(distance.mean()))

    def _correct_motion(self, motion_id: str, features: np.ndarray) -> tuple[np.ndarray, dict]:
        """One motion's features (L, 263) -> output features (L, 263) and its row of the other columns."""
        if not np.isfinite(features).all():
            frame = int(np.argwhere(~np.isfinite(features))[0, 0])
            return features, {"status": "nonfinite",
                              "error": f"motion {motion_id}: NaN or inf in features (first at frame {frame})"}
        if len(features) < MIN_FRAMES:
            return features, {"status": "passthrough", "error": f"motion {motion_id}: {len(features)} frames; "
                                                                f"correction needs at least {MIN_FRAMES}"}
        joints = features_to_joints(features).astype(np.float64)
        row = {f"{name}_before": value for name, value in physics_metrics(joints, FPS).items()}
        correction = self.correct_joints(_extended(joints))
        output = features
        if correction.status == "corrected":
            output = joints_to_features(correction.joints)
            after = physics_metrics(features_to_joints(output), FPS)
        else:
            after = {name: row[f"{name}_before"] for name in METRIC_NAMES}
        row.update({f"{name}_after": value for name, value in after.items()})
        row.update(status=correction.status, falls=correction.falls, tracking_error=correction.tracking_error,
                   error=f"motion {motion_id}: {correction.error}" if correction.error else "")
        return output, row

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Correct a batch: ids (N,) str, features (N, 196, 263) float32 zero-padded, lengths (N,) int.

        Returns the batch's columns with features replaced, plus status (N,) str, tracking_error (N,)
        float32 metres (NaN when not simulated), falls (N,) int32, error (N,) str ("" when fine) and
        `<metric>_before` / `<metric>_after` (N,) float32 for every physics metric (NaN when the
        motion has no finite joints of at least MIN_FRAMES frames).
        """
        for key in ("ids", "features", "lengths"):
            if key not in batch:
                raise KeyError(f"a corrector batch needs columns ids, features, lengths; {key!r} is missing "
                               f"(got {sorted(batch)})")
        features = np.asarray(batch["features"], dtype=np.float32)
        lengths = np.asarray(batch["lengths"]).astype(np.int64)
        count = len(features)
        output = features.copy()
        columns = {"status": np.full(count, "passthrough", dtype=object), "error": np.full(count, "", dtype=object),
                   "tracking_error": np.full(count, np.nan, dtype=np.float32), "falls": np.zeros(count, dtype=np.int32),
                   **{column: np.full(count, np.nan, dtype=np.float32) for column in METRIC_COLUMNS}}
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
