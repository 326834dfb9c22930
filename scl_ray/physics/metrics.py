"""PhysDiff-style physical plausibility metrics of joint motions (T, 22, 3), metres, y up, 20 fps.

PhysDiff (Yuan et al., ICCV 2023) measures on SMPL mesh vertices; we have only joints, and follow
HumanML3D's convention that the floor is at the lowest joint (a planted foot joint sits at height 0),
so the definitions below carry over with joints in place of vertices. Per frame t, with h_t the height
of the lowest joint above the floor:

- penetration_mm (PhysDiff "Penetrate", "the distance between the ground and the lowest body mesh
  vertex below the ground"): -h_t if h_t < -PENETRATION_TOLERANCE (5 mm, UHC's evaluation tolerance),
  else 0; mean over frames, in mm. A motion pushed 5 cm into the floor scores 50.
- float_mm (PhysDiff "Float", "the distance between the ground and the lowest body mesh vertex above
  the ground"): h_t if h_t > FLOAT_TOLERANCE else 0; mean over frames, in mm. The tolerance is the
  contact height (5 cm) rather than UHC's 5 mm because joint centres, unlike mesh vertices, stay a few
  centimetres above the floor in contact; a body lifted 10 cm scores 100, a planted one 0. Like
  PhysDiff's, it also counts the flight phase of a genuine jump.
- skate_mm (PhysDiff "Skate": "foot joints that contact the ground in two adjacent frames and their
  average horizontal displacement within the frames"): a foot joint (ankles and feet, skeleton
  FOOT_JOINTS) is in contact when it is less than CONTACT_HEIGHT (5 cm) above the floor, or above the
  frame's lowest joint when that is below the floor (a body sunk into the floor stands on its lowest
  point, so sinking is penetration only and does not turn swinging feet into skating ones); per pair of
  adjacent frames, the mean horizontal displacement of the foot joints in contact in both (0 when
  none is), then the mean over frame pairs, in mm per frame (so it depends on the frame rate).
- phys_err_mm (PhysDiff "Phys-Err", "the sum of Penetrate, Float and Skate"), in mm.
- acceleration: mean joint acceleration magnitude (second finite difference times fps^2), m/s^2.
- jitter: mean joint jerk magnitude (third finite difference times fps^3), m/s^3, the "Jitter" of
  motion estimation papers (GLAMR, WHAM). Jerk weighs a frequency f by f^3, so high-frequency noise
  dominates it while smooth motion contributes little.

Each artefact moves its own metric: a vertical offset changes only penetration or float, sliding
stance feet change skate, added noise changes jitter and acceleration (and skate in proportion to the
noise on planted feet, which do slide then).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scl_ray.motion.skeleton import FOOT_JOINTS, NUM_JOINTS

UP_AXIS = 1
HORIZONTAL_AXES = (0, 2)
CONTACT_HEIGHT = 0.05  # metres: a foot joint below this height above the floor touches it
FLOAT_TOLERANCE = CONTACT_HEIGHT  # metres: lowest joint above this means no foot touches
PENETRATION_TOLERANCE = 0.005  # metres: UHC's tolerance for the lowest point below the floor
MM_PER_M = 1000.0
MIN_FRAMES = 4  # the jerk needs a third difference

METRIC_NAMES = ("penetration_mm", "float_mm", "skate_mm", "phys_err_mm", "acceleration", "jitter")


def _check_joints(joints, where: str = "joints") -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"{where} must have shape (T, {NUM_JOINTS}, 3) in metres, got {joints.shape}")
    if joints.shape[0] < MIN_FRAMES:
        raise ValueError(f"{where} has {joints.shape[0]} frames; physics metrics need at least {MIN_FRAMES}")
    if not np.isfinite(joints).all():
        raise ValueError(f"{where} holds {int((~np.isfinite(joints)).sum())} non-finite coordinates")
    return joints


def penetration_mm(joints: np.ndarray, floor: float = 0.0) -> float:
    """Mean over frames of how far the lowest joint is below the floor (beyond 5 mm), mm."""
    depth = floor - _check_joints(joints)[:, :, UP_AXIS].min(axis=1)
    return float(np.where(depth > PENETRATION_TOLERANCE, depth, 0.0).mean() * MM_PER_M)


def float_mm(joints: np.ndarray, floor: float = 0.0) -> float:
    """Mean over frames of the lowest joint's height when no joint is within 5 cm of the floor, mm."""
    height = _check_joints(joints)[:, :, UP_AXIS].min(axis=1) - floor
    return float(np.where(height > FLOAT_TOLERANCE, height, 0.0).mean() * MM_PER_M)


def skate_mm(joints: np.ndarray, floor: float = 0.0) -> float:
    """Mean horizontal displacement of foot joints in contact in two adjacent frames, mm per frame."""
    joints = _check_joints(joints)
    ground = np.minimum(floor, joints[:, :, UP_AXIS].min(axis=1))
    feet = joints[:, list(FOOT_JOINTS)]
    contact = feet[:, :, UP_AXIS] - ground[:, None] < CONTACT_HEIGHT
    both = contact[1:] & contact[:-1]
    step = np.diff(feet[:, :, list(HORIZONTAL_AXES)], axis=0)
    displacement = np.linalg.norm(step, axis=-1)
    count = both.sum(axis=1)
    per_pair = np.where(count > 0, (displacement * both).sum(axis=1) / np.maximum(count, 1), 0.0)
    return float(per_pair.mean() * MM_PER_M)


def acceleration(joints: np.ndarray, fps: float = 20.0) -> float:
    """Mean joint acceleration magnitude, m/s^2."""
    second = np.diff(_check_joints(joints), n=2, axis=0) * fps**2
    return float(np.linalg.norm(second, axis=-1).mean())


def jitter(joints: np.ndarray, fps: float = 20.0) -> float:
    """Mean joint jerk magnitude, m/s^3."""
    third = np.diff(_check_joints(joints), n=3, axis=0) * fps**3
    return float(np.linalg.norm(third, axis=-1).mean())


def physics_metrics(joints: np.ndarray, fps: float = 20.0, floor: float = 0.0) -> dict[str, float]:
    """Every metric of one motion: joints (T, 22, 3) metres, y up; floor height in metres.

    Returns penetration_mm, float_mm, skate_mm, phys_err_mm (their sum), acceleration (m/s^2) and
    jitter (m/s^3).
    """
    joints = _check_joints(joints)
    metrics = {
        "penetration_mm": penetration_mm(joints, floor),
        "float_mm": float_mm(joints, floor),
        "skate_mm": skate_mm(joints, floor),
    }
    metrics["phys_err_mm"] = sum(metrics.values())
    metrics["acceleration"] = acceleration(joints, fps)
    metrics["jitter"] = jitter(joints, fps)
    return metrics


def physics_metrics_batch(motions: Sequence[np.ndarray], fps: float = 20.0,
                          floor: float = 0.0) -> dict[str, float]:
    """Each metric averaged over motions (every motion weighs the same, whatever its length).

    motions: a sequence of joint arrays (T_i, 22, 3), metres, y up.
    """
    if len(motions) == 0:
        raise ValueError("physics_metrics_batch needs at least one motion, got none")
    rows = []
    for index, joints in enumerate(motions):
        rows.append(physics_metrics(_check_joints(joints, where=f"motion {index}"), fps, floor))
    return {name: float(np.mean([row[name] for row in rows])) for name in METRIC_NAMES}
