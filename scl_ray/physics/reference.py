"""Kinematic clean-ups of a motion before the humanoid tracks it.

A generated motion comes with defects that no tracking can undo well: a body that stands 5 cm in the
floor or 10 cm above it, planted feet that slide at a constant speed, joints that jump for a few frames,
noise on every coordinate. Each clean-up below removes one of them and leaves a clean motion unchanged
(they are tested on the procedural families, where each is a no-op); the physics then does the rest:
gravity, contacts, friction and the residual budget.

In order (`clean_reference`):

1. `remove_spikes`: frames where a bone's length leaves its median by more than SPIKE_M re-interpolate
   the bone's child and its descendants from the frames where they are fine. Generated motions snap a
   leg out of place for a frame or two; genuine fast motion keeps its bone lengths, so is left alone.
   Skipped on noisy motions (noise moves bone lengths everywhere; smoothing handles it).
2. `smooth`: Gaussian smoothing in time, of a width chosen per coordinate (joint and axis) by Stein's
   unbiased risk estimate for the motion's estimated noise level: a slow coordinate is smoothed more
   than a fast one, so noise goes without flattening jumps and runs. None for a clean motion: smoothing
   a clean motion only blurs the timing of lift-offs and landings.
3. `ground`: a constant vertical shift putting the floor at the low percentile of the lowest foot
   joint's height (the motion's stance height). HumanML3D floors a motion at its lowest joint over all
   frames, so a generated motion's floor is wherever its lowest frame happened to be.
4. `remove_drift`: "odometry". Per frame the stillest foot joint near the floor is the support; its
   horizontal velocity, as a median over DRIFT_WINDOW frames (a sustained slide, not a pivot), is
   subtracted from the whole body where it exceeds DRIFT_START (fully from DRIFT_FULL). A slide of the
   whole body while a foot is planted is not something a simulated foot with
   friction can undo: the body stays, the reference leaves, and the gap grows without bound.
5. `lock_feet`: each planted foot (low and slow for a few frames) is held in place horizontally and
   its knee follows by two-bone IK, so that the reference's feet agree with what simulated feet with
   friction will do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from scl_ray.motion.constants import FPS
from scl_ray.motion.skeleton import FOOT_JOINTS, JOINT, NUM_JOINTS, PARENTS

SPIKE_M = 0.03  # a bone this much longer or shorter than its median is out of place
FLOOR_PERCENTILE = 10.0  # of the lowest foot joint's height over frames: the stance height
DRIFT_CONTACT_M = 0.025  # a foot joint this close to the floor may be planted
DRIFT_WINDOW = 11  # frames (0.55 s): a slide lasts, a pivot or a shuffle of the support foot does not
DRIFT_START, DRIFT_FULL = 0.15, 0.3  # m/s: support velocities ramp from untouched to fully removed
DRIFT_SIGMA = 2.0  # frames: the removed velocity is eased in and out
NOISE_FLOOR_M = 0.002  # estimated noise below this is left alone
# Smoothing (`smooth`): Gaussian widths (sigma, frames) chosen among per coordinate and frame by a local
# risk estimate. The wide ones hold still joints still: noise on a still joint is pure added speed.
# Measured on the procedural families with N(0, 1.5 cm) noise (24 mm mean per-joint error as noised):
# one width set by the noise level left 26 mm (45 mm on runs and jumps); the least risk per coordinate
# 11 mm, but up to 1.4 times the clean joint speed on slow motions; the local choice below, biased to
# the wider widths, 13 mm (at most 17 mm) and at most 1.05 times the clean speed. The risk window is
# truncated at 2 sigma (a third of the cost of the default 4, the same choices within the judge).
SMOOTHING_SIGMAS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0)
RISK_WINDOW = 20.0  # frames: the Gaussian window over which a width's risk is averaged
RISK_TOLERANCE = 0.25  # in noise variances: how much more risk a wider width may carry and be chosen
BLEND_SIGMA = 4.0  # frames: the chosen widths are blended over this
SPIKE_MAX_NOISE_M = 0.004  # above this noise level bone lengths are noisy everywhere: no spike search
# Foot locks. Generated feet slide while low: a foot whose lowest joint is within LOCK_HEIGHT_M of the
# floor and whose toe moves slower than LOCK_SPEED (m/s) for LOCK_MIN_FRAMES frames is planted. Measured
# on ten synthetic sets of the quickstart loop (64 samples each, generations 1-5, two seeds): with locks
# at 3 cm and 0.3 m/s the simulated sets scored a mean FID of 0.591 against 0.541 for the samples as
# sampled; at 5 cm and 1.0 m/s, 0.514 (the simulation then tracks feet that agree with its own). At 6 cm
# and 2 m/s FID was about the same (0.505) but the corruption judge lost 7 speed checks.
LOCK_HEIGHT_M = 0.05
LOCK_SPEED = 1.0
LOCK_MIN_FRAMES = 3
LOCK_EASE = 1.0  # frames: a lock eases in and out over about this


@dataclass(frozen=True)
class Cleanup:
    """What `clean_reference` did: joints re-interpolated as spikes, the floor found (m, moved to 0),
    the largest removed support velocity (m/s), the estimated noise (m), the smoothing (frames) and the
    largest horizontal shift of a planted foot (m)."""

    spikes: int
    floor: float
    drift: float
    noise: float
    smoothing: float
    lock: float


def noise_level(joints: np.ndarray) -> float:
    """Robust estimate of white noise on the coordinates of joints (T, 22, 3), metres.

    A third difference of white noise of standard deviation s has standard deviation s * sqrt(20); a
    smooth motion's third differences are small but for a few frames, so their median carries the noise.
    """
    if len(joints) < 4:
        return 0.0
    third = np.diff(joints, n=3, axis=0)
    return float(1.4826 * np.median(np.abs(third)) / np.sqrt(20.0))


def remove_spikes(joints: np.ndarray, threshold: float = SPIKE_M) -> tuple[np.ndarray, int]:
    """joints (T, 22, 3) with out-of-place joints re-interpolated in time; and how many were."""
    frames = len(joints)
    children = np.arange(1, NUM_JOINTS)
    lengths = np.linalg.norm(joints[:, children] - joints[:, np.array(PARENTS[1:])], axis=-1)
    bad = np.zeros((frames, NUM_JOINTS), dtype=bool)
    bad[:, 1:] = np.abs(lengths - np.median(lengths, axis=0)) > threshold
    for joint in range(1, NUM_JOINTS):  # parents come first: a joint moved with its parent is out too
        if PARENTS[joint] != 0:
            bad[:, joint] |= bad[:, PARENTS[joint]]
    out = joints.copy()
    time = np.arange(frames)
    for joint in np.flatnonzero(bad.any(axis=0)):
        good = ~bad[:, joint]
        if good.sum() < 2:
            continue
        for axis in range(3):
            out[bad[:, joint], joint, axis] = np.interp(time[bad[:, joint]], time[good], joints[good, joint, axis])
    return out, int(bad.sum())


def ground(joints: np.ndarray) -> tuple[np.ndarray, float]:
    """joints (T, 22, 3) shifted vertically so that their stance height is 0; and the floor found (m)."""
    lowest = joints[:, list(FOOT_JOINTS), 1].min(axis=1)
    floor = float(np.percentile(lowest, FLOOR_PERCENTILE))
    out = joints.copy()
    out[:, :, 1] -= floor
    return out, floor


def remove_drift(joints: np.ndarray) -> tuple[np.ndarray, float]:
    """joints (T, 22, 3) without a sustained slide of the planted feet; and the largest removed (m/s)."""
    feet = joints[:, list(FOOT_JOINTS)]
    planted = feet[:, :, 1] < DRIFT_CONTACT_M
    if len(joints) < 2 or not planted.any():
        return joints.copy(), 0.0
    velocities = np.gradient(feet[:, :, [0, 2]], 1.0 / FPS, axis=0)
    speed = np.where(planted, np.linalg.norm(velocities, axis=-1), np.inf)
    support = np.argmin(speed, axis=1)
    drift = np.where(planted.any(axis=1)[:, None], velocities[np.arange(len(joints)), support], 0.0)
    # Sustained: the median over DRIFT_WINDOW frames, so that a pivot or a shuffle of the support
    # foot, or noise, is not a slide; a constant slide passes it unchanged.
    drift = median_filter(drift, size=(DRIFT_WINDOW, 1), mode="nearest")
    magnitude = np.linalg.norm(drift, axis=1, keepdims=True)
    drift *= np.clip((magnitude - DRIFT_START) / (DRIFT_FULL - DRIFT_START), 0.0, 1.0)
    drift = gaussian_filter1d(drift, DRIFT_SIGMA, axis=0, mode="nearest")
    offset = np.cumsum(drift, axis=0) / FPS
    offset -= offset[0]
    out = joints.copy()
    out[:, :, 0] -= offset[:, None, 0]
    out[:, :, 2] -= offset[:, None, 1]
    return out, float(np.linalg.norm(drift, axis=1).max(initial=0.0))


def _planted_segments(heights: np.ndarray, speeds: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) frame ranges where a foot is low and slow for at least LOCK_MIN_FRAMES frames."""
    planted = (heights < LOCK_HEIGHT_M) & (speeds < LOCK_SPEED)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], planted.astype(int), [0]])))
    return [(start, stop) for start, stop in zip(edges[::2], edges[1::2]) if stop - start >= LOCK_MIN_FRAMES]


def _two_bone(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, thigh: float, shin: float) -> np.ndarray:
    """(T, 3) knee positions that join hip (T, 3) to ankle (T, 3) with the given bone lengths, bent in
    the plane the original knee (T, 3) shows."""
    reach = ankle - hip
    distance = np.clip(np.linalg.norm(reach, axis=-1, keepdims=True), abs(thigh - shin) + 1e-6, thigh + shin - 1e-6)
    axis = reach / np.maximum(np.linalg.norm(reach, axis=-1, keepdims=True), 1e-12)
    along = (thigh**2 - shin**2 + distance**2) / (2.0 * distance)
    radius = np.sqrt(np.maximum(thigh**2 - along**2, 0.0))
    pole = (knee - hip) - np.sum((knee - hip) * axis, axis=-1, keepdims=True) * axis
    pole /= np.maximum(np.linalg.norm(pole, axis=-1, keepdims=True), 1e-12)
    return hip + along * axis + radius * pole


def lock_feet(joints: np.ndarray) -> tuple[np.ndarray, float]:
    """joints (T, 22, 3) with each planted foot held in place horizontally (the knee follows by two-bone
    IK); and the largest horizontal shift applied to a foot (m)."""
    out = joints.copy()
    largest = 0.0
    if len(joints) < LOCK_MIN_FRAMES:
        return out, largest
    for side in ("left", "right"):
        hip, knee, ankle, toe = (JOINT[f"{side}_{part}"] for part in ("hip", "knee", "ankle", "foot"))
        heights = joints[:, [ankle, toe], 1].min(axis=1)
        speeds = np.linalg.norm(np.gradient(joints[:, toe, [0, 2]], 1.0 / FPS, axis=0), axis=-1)
        shift = np.zeros((len(joints), 3))
        weight = np.zeros(len(joints))
        for start, stop in _planted_segments(heights, speeds):
            target = np.median(joints[start:stop, ankle, [0, 2]], axis=0)
            shift[start:stop, [0, 2]] = target - joints[start:stop, ankle, [0, 2]]
            weight[start:stop] = 1.0
        if not weight.any():
            continue
        # Ease each lock in and out, so that the foot does not jump where a stance starts or ends.
        weight = np.minimum(weight, gaussian_filter1d(weight, LOCK_EASE, mode="nearest") * 2.0)
        shift *= weight[:, None]
        thigh, shin = np.linalg.norm(joints[0, [knee, ankle]] - joints[0, [hip, knee]], axis=-1)
        # A lock beyond the leg's reach is shortened to it: the leg keeps its length.
        reach = joints[:, ankle] + shift - out[:, hip]
        distance = np.linalg.norm(reach, axis=-1, keepdims=True)
        shift += reach * (np.minimum(distance, thigh + shin - 1e-6) / np.maximum(distance, 1e-12) - 1.0)
        out[:, [ankle, toe]] += shift[:, None]
        out[:, knee] = _two_bone(out[:, hip], joints[:, knee], out[:, ankle], thigh, shin)
        largest = max(largest, float(np.linalg.norm(shift, axis=-1).max()))
    return out, largest


def _centre_weight(sigma: float) -> float:
    """The weight gaussian_filter1d gives a sample itself (its default truncation at 4 sigma)."""
    radius = int(4.0 * sigma + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return float(weights[radius] / weights.sum())


def smooth(joints: np.ndarray, noise: float) -> tuple[np.ndarray, float]:
    """joints (T, 22, 3) smoothed in time for their noise level (m); and the mean Gaussian sigma (frames).

    Each candidate width of SMOOTHING_SIGMAS (and none) gets, per coordinate and frame, Stein's unbiased
    estimate of its squared error against the noise-free coordinate, averaged over a Gaussian window of
    RISK_WINDOW frames: for a linear smoother S and white noise of standard deviation s, the error
    (y - S y)^2 plus s^2 (2 w - 1), w the filter's centre weight. The widest candidate within
    RISK_TOLERANCE s^2 of the least is chosen, and the choices are blended over BLEND_SIGMA frames, so
    the output is smooth where the width changes."""
    if noise < NOISE_FLOOR_M:
        return joints, 0.0
    frames = len(joints)
    series = joints.reshape(frames, -1)
    sigmas = np.array((0.0, *SMOOTHING_SIGMAS))
    candidates = np.stack([series] + [gaussian_filter1d(series, sigma, axis=0, mode="nearest")
                                      for sigma in SMOOTHING_SIGMAS])
    centre = np.array([1.0] + [_centre_weight(sigma) for sigma in SMOOTHING_SIGMAS])
    risk = (candidates - series) ** 2 + noise**2 * (2.0 * centre - 1.0)[:, None, None]
    risk = gaussian_filter1d(risk, RISK_WINDOW, axis=1, mode="nearest", truncate=2.0)
    acceptable = risk <= risk.min(axis=0) + RISK_TOLERANCE * noise**2
    chosen = len(sigmas) - 1 - np.argmax(acceptable[::-1], axis=0)  # the widest acceptable, (T, 66)
    weights = gaussian_filter1d((np.arange(len(sigmas))[:, None, None] == chosen).astype(float),
                                BLEND_SIGMA, axis=1, mode="nearest")
    out = (weights * candidates).sum(axis=0) / weights.sum(axis=0)
    return out.reshape(joints.shape), float(sigmas[chosen].mean())


def clean_reference(joints: np.ndarray) -> tuple[np.ndarray, Cleanup]:
    """The motion the humanoid will track: joints (T, 22, 3) metres, y up, 20 fps, finite, T >= 4."""
    joints = np.asarray(joints, dtype=np.float64)
    noise = noise_level(joints)
    spikes = 0
    if noise < SPIKE_MAX_NOISE_M:
        joints, spikes = remove_spikes(joints)
    joints, sigma = smooth(joints, noise)
    joints, floor = ground(joints)
    joints, drift = remove_drift(joints)
    joints, lock = lock_feet(joints)
    return joints, Cleanup(spikes, floor, drift, noise, sigma, lock)
