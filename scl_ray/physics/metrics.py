"""PhysDiff-style physical plausibility metrics of joint motions (T, 22, 3), metres, y up, 20 fps.

PhysDiff (Yuan et al., ICCV 2023) measures on SMPL mesh vertices; we have only joints, and follow
HumanML3D's convention that the floor is at the lowest joint (a planted foot joint sits at height 0),
so the definitions below carry over with joints in place of vertices. Per frame t, with h_t the height
of the lowest joint above the floor:

- penetration_mm (PhysDiff "Penetrate", "the distance between the ground and the lowest body mesh
  vertex below the ground"): -h_t if h_t < -PENETRATION_TOLERANCE (5 mm, UHC's evaluation tolerance),
  else 0; mean over frames, in mm. A motion pushed 5 cm into the floor scores 50.
- float_mm (PhysDiff "Float", "the distance between the ground and the lowest body mesh vertex above
  the ground"): h_t if h_t > FLOAT_TOLERANCE and frame t belongs to an airborne run (consecutive
  frames above the tolerance) longer than MAX_FLIGHT_S (0.8 s, more than 16 frames at 20 fps), else
  0; mean over frames, in mm. The tolerance is the contact height (5 cm) rather than UHC's 5 mm
  because joint centres, unlike mesh vertices, stay a few centimetres above the floor in contact; a
  body lifted 10 cm scores 100, a planted one 0. Unlike PhysDiff's, it excuses a genuine jump: a
  human jump's flight lasts well under 0.8 s (a 0.8 s flight means a 0.8 m rise of the body), so only
  longer airborne runs count as floating.
- skate_mm (PhysDiff "Skate": "foot joints that contact the ground in two adjacent frames and their
  average horizontal displacement within the frames"): a foot joint (ankles and feet, skeleton
  FOOT_JOINTS) is in contact when it is less than CONTACT_HEIGHT (5 cm) above the floor, or above the
  frame's lowest joint when that is below the floor (a body sunk into the floor stands on its lowest
  point, so sinking is penetration only and does not turn swinging feet into skating ones); the mean,
  over every (foot joint, adjacent frame pair) with that joint in contact in both frames, of its
  horizontal displacement, in mm per frame (0 when there is no such pair; it depends on the frame
  rate: 1 mm per frame is 0.02 m/s at 20 fps). Frames without contact do not dilute it: a stance foot
  sliding 0.5 m/s scores 25 at 20 fps however long the swing and flight phases are.
- phys_err_mm (PhysDiff "Phys-Err", "the sum of Penetrate, Float and Skate"), in mm.
- acceleration: mean joint acceleration magnitude (second finite difference times fps^2), m/s^2.
- jitter: mean joint jerk magnitude (third finite difference times fps^3), m/s^3, the "Jitter" of
  motion estimation papers (GLAMR, WHAM). Jerk weighs a frequency f by f^3, so high-frequency noise
  dominates it while smooth motion contributes little.
- peak_jerk: the largest per-frame jerk, m/s^3: per third-difference frame the mean over joints of
  the jerk magnitude, then the maximum over frames. A mean over a whole motion dilutes a single bad
  frame; this does not: one frame where every joint jumps d metres enters four third differences
  with weights 1, 3, 3, 1, so it peaks at 3 d fps^3 (9600 m/s^3 for 0.4 m at 20 fps).
- bone_mm: bone-length deviation; for each of the 21 bones (joint j to PARENTS[j]) its length per
  frame minus its median length over the motion; the mean absolute deviation over bones and frames,
  in mm. A rigid body scores 0; joints moved without their neighbours (a leg snapped up) do not.
- speed: mean joint speed (first finite difference times fps), m/s, over joints and frame pairs.

Each artefact moves its own metric: a vertical offset changes only penetration or float, sliding
stance feet change skate, added noise changes jitter and acceleration (and skate in proportion to the
noise on planted feet, which do slide then), joints displaced on their own change bone_mm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scl_ray.arrays import finite_array
from scl_ray.motion.constants import FPS  # every metric's default rate
from scl_ray.motion.skeleton import FOOT_JOINTS, NUM_JOINTS, PARENTS

UP_AXIS = 1
HORIZONTAL_AXES = (0, 2)
CONTACT_HEIGHT = 0.05  # metres: a foot joint below this height above the floor touches it
FLOAT_TOLERANCE = CONTACT_HEIGHT  # metres: lowest joint above this means no foot touches
MAX_FLIGHT_S = 0.8  # seconds: a longer airborne run is floating, a shorter one a jump's flight
PENETRATION_TOLERANCE = 0.005  # metres: UHC's tolerance for the lowest point below the floor
MM_PER_M = 1000.0
MIN_FRAMES = 4  # the jerk needs a third difference
BONES = tuple((joint, parent) for joint, parent in enumerate(PARENTS) if parent >= 0)  # 21 (child, parent)

METRIC_NAMES = ("penetration_mm", "float_mm", "skate_mm", "phys_err_mm", "acceleration", "jitter",
                "peak_jerk", "bone_mm", "speed")


def _check_joints(joints, where: str = "joints") -> np.ndarray:
    return finite_array(joints, where, f"(T, {NUM_JOINTS}, 3) in metres",
                        lambda shape: shape[1:] == (NUM_JOINTS, 3), MIN_FRAMES, "frames")


def penetration_mm(joints: np.ndarray, floor: float = 0.0) -> float:
    """Mean over frames of how far the lowest joint is below the floor (beyond 5 mm), mm.

    joints (T, 22, 3) metres, y up; floor: the floor's height, metres.
    """
    depth = floor - _check_joints(joints)[:, :, UP_AXIS].min(axis=1)
    return float(np.where(depth > PENETRATION_TOLERANCE, depth, 0.0).mean() * MM_PER_M)


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """For a (T,) bool mask, (T,) int: the length of the run of True each frame belongs to (0 if False)."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # alternately a run's start and its end (exclusive)
    lengths = np.zeros(len(mask), dtype=np.int64)
    for start, stop in zip(edges[::2], edges[1::2]):
        lengths[start:stop] = stop - start
    return lengths


def float_mm(joints: np.ndarray, fps: float = FPS, floor: float = 0.0) -> float:
    """Mean over frames of the lowest joint's height in airborne runs longer than MAX_FLIGHT_S, mm.

    joints (T, 22, 3) metres, y up, at `fps` frames per second; floor: the floor's height, metres. A
    frame is airborne when no joint is within FLOAT_TOLERANCE (5 cm) of the floor; runs of at most
    MAX_FLIGHT_S * fps airborne frames (16 at 20 fps) are a jump's flight and count 0.
    """
    height = _check_joints(joints)[:, :, UP_AXIS].min(axis=1) - floor
    airborne = height > FLOAT_TOLERANCE
    floating = run_lengths(airborne) > round(MAX_FLIGHT_S * fps)
    return float(np.where(floating, height, 0.0).mean() * MM_PER_M)


def skate_mm(joints: np.ndarray, floor: float = 0.0) -> float:
    """Mean horizontal displacement of foot joints over adjacent frames in contact in both, mm per frame.

    joints (T, 22, 3) metres, y up; floor: the floor's height, metres. The mean is over every (foot
    joint, adjacent frame pair) with the joint in contact in both frames; 0 when there is none.
    """
    joints = _check_joints(joints)
    ground = np.minimum(floor, joints[:, :, UP_AXIS].min(axis=1))
    feet = joints[:, list(FOOT_JOINTS)]
    contact = feet[:, :, UP_AXIS] - ground[:, None] < CONTACT_HEIGHT
    both = contact[1:] & contact[:-1]
    if not both.any():
        return 0.0
    step = np.diff(feet[:, :, list(HORIZONTAL_AXES)], axis=0)
    displacement = np.linalg.norm(step, axis=-1)
    return float(displacement[both].mean() * MM_PER_M)


def bone_mm(joints: np.ndarray) -> float:
    """Mean absolute deviation of the 21 bone lengths from their median over the motion, mm.

    joints (T, 22, 3) metres. A bone joins joint j to PARENTS[j]; the mean is over bones and frames.
    """
    joints = _check_joints(joints)
    children, parents = (list(side) for side in zip(*BONES))
    lengths = np.linalg.norm(joints[:, children] - joints[:, parents], axis=-1)  # (T, 21)
    return float(np.abs(lengths - np.median(lengths, axis=0)).mean() * MM_PER_M)


def speed(joints: np.ndarray, fps: float = FPS) -> float:
    """Mean joint speed over joints and adjacent frame pairs, m/s. joints (T, 22, 3) metres."""
    first = np.diff(_check_joints(joints), axis=0) * fps
    return float(np.linalg.norm(first, axis=-1).mean())


def acceleration(joints: np.ndarray, fps: float = FPS) -> float:
    """Mean joint acceleration magnitude, m/s^2. joints (T, 22, 3) metres."""
    second = np.diff(_check_joints(joints), n=2, axis=0) * fps**2
    return float(np.linalg.norm(second, axis=-1).mean())


def _jerk(joints: np.ndarray, fps: float) -> np.ndarray:
    """(T - 3, 22) jerk magnitudes, m/s^3."""
    return np.linalg.norm(np.diff(_check_joints(joints), n=3, axis=0) * fps**3, axis=-1)


def jitter(joints: np.ndarray, fps: float = FPS) -> float:
    """Mean joint jerk magnitude, m/s^3. joints (T, 22, 3) metres."""
    return float(_jerk(joints, fps).mean())


def peak_jerk(joints: np.ndarray, fps: float = FPS) -> float:
    """The largest over frames of the mean joint jerk magnitude of a frame, m/s^3. joints (T, 22, 3)."""
    return float(_jerk(joints, fps).mean(axis=1).max())


def physics_metrics(joints: np.ndarray, fps: float = FPS, floor: float = 0.0) -> dict[str, float]:
    """Every metric of one motion: joints (T, 22, 3) metres, y up; floor height in metres.

    Returns penetration_mm, float_mm, skate_mm (mm per frame), phys_err_mm (their sum), acceleration
    (m/s^2), jitter and peak_jerk (m/s^3), bone_mm (mm) and speed (m/s), in METRIC_NAMES order.
    """
    joints = _check_joints(joints)
    metrics = {
        "penetration_mm": penetration_mm(joints, floor),
        "float_mm": float_mm(joints, fps, floor),
        "skate_mm": skate_mm(joints, floor),
    }
    metrics["phys_err_mm"] = sum(metrics.values())
    metrics["acceleration"] = acceleration(joints, fps)
    metrics["jitter"] = jitter(joints, fps)
    metrics["peak_jerk"] = peak_jerk(joints, fps)
    metrics["bone_mm"] = bone_mm(joints)
    metrics["speed"] = speed(joints, fps)
    return metrics


def physics_metrics_batch(motions: Sequence[np.ndarray], fps: float = FPS,
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
