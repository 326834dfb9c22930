"""The simulated humanoid follows clean motions closely, removes physical artefacts, survives falls."""

from __future__ import annotations

import numpy as np
import pytest

from scl_ray.motion.skeleton import FOOT_JOINTS, JOINT, Skeleton
from scl_ray.physics.humanoid import Humanoid, HumanoidSettings
from scl_ray.physics.metrics import physics_metrics
from scl_ray.physics.retarget import qpos_to_joints
from scl_ray.physics.tracker import TrackerSettings, TrackingFailed, reference_from_joints, track

FPS = 20


@pytest.fixture(scope="module")
def humanoid():
    return Humanoid.build(Skeleton.adult(), sim_hz=300)


def standing(humanoid, frames=80):
    """qpos (T, nq): standing still, arms swinging, head and chest turning."""
    t = np.arange(frames) / FPS
    qpos = np.tile(humanoid.model.qpos0, (frames, 1))
    for side in ("left", "right"):
        qpos[:, humanoid.hinge_qpos[f"{side}_shoulder"][0]] = -0.5 * np.sin(np.pi * t)
        qpos[:, humanoid.hinge_qpos[f"{side}_elbow"][0]] = -0.8 - 0.5 * np.sin(np.pi * t)
    qpos[:, humanoid.hinge_qpos["neck"][2]] = 0.5 * np.sin(0.6 * np.pi * t)
    qpos[:, humanoid.hinge_qpos["spine2"][2]] = 0.2 * np.sin(0.6 * np.pi * t)
    return qpos


def walking(humanoid, frames=120, speed=0.6, period=1.2, lift=0.08):
    """qpos (T, nq) of a walk along the simulation's +x with planted stance feet (two-link leg IK,
    soles kept level); speed 0 steps in place."""
    model = humanoid.model
    neutral = qpos_to_joints(humanoid, model.qpos0[None])[0]
    t = np.arange(frames) / FPS
    qpos = np.tile(model.qpos0, (frames, 1))
    root_height = model.qpos0[2] - 0.02
    qpos[:, 0], qpos[:, 2] = speed * t, root_height
    stride = speed * period
    for side, phase in (("left", 0.0), ("right", 0.5)):
        hip, knee, ankle = (JOINT[f"{side}_{part}"] for part in ("hip", "knee", "ankle"))
        thigh, shin = Skeleton.adult().bone_lengths[[knee, ankle]]
        cycle = t / period + phase
        step, within = np.floor(cycle), cycle % 1.0
        swing = np.where(within >= 0.6, (within - 0.6) / 0.4, 0.0)
        eased = swing * swing * (3 - 2 * swing)
        foot_x = (step + np.where(within >= 0.6, eased, 0.0) - phase + 0.3) * stride
        foot_z = neutral[ankle, 1] + np.where(within >= 0.6, lift * np.sin(np.pi * swing), 0.0)
        dx, dz = foot_x - qpos[:, 0], foot_z - (root_height + neutral[hip, 1] - neutral[0, 1])
        reach = np.minimum(np.hypot(dx, dz), thigh + shin - 1e-6)
        bend = np.pi - np.arccos(np.clip((thigh**2 + shin**2 - reach**2) / (2 * thigh * shin), -1, 1))
        hip_angle = np.arctan2(-dx, -dz) - np.arctan2(shin * np.sin(bend), thigh + shin * np.cos(bend))
        qpos[:, humanoid.hinge_qpos[f"{side}_hip"][0]] = hip_angle
        qpos[:, humanoid.hinge_qpos[f"{side}_knee"][0]] = bend
        qpos[:, humanoid.hinge_qpos[f"{side}_ankle"][0]] = -(hip_angle + bend)
        other = "right" if side == "left" else "left"
        qpos[:, humanoid.hinge_qpos[f"{other}_shoulder"][0]] = -0.3 * np.sin(2 * np.pi * (cycle - 0.3))
        qpos[:, humanoid.hinge_qpos[f"{other}_elbow"][0]] = -0.3
    return qpos


def mean_error_mm(a, b):
    return float(np.linalg.norm(a - b, axis=-1).mean() * 1000)


@pytest.mark.parametrize("kind", ["standing", "stepping_in_place", "slow_walk"])
def test_clean_motions_pass_through(humanoid, kind):
    qpos = {"standing": lambda: standing(humanoid), "stepping_in_place": lambda: walking(humanoid, speed=0.0),
            "slow_walk": lambda: walking(humanoid)}[kind]()
    clean = qpos_to_joints(humanoid, qpos)
    tracking = track(humanoid, reference_from_joints(humanoid, clean))
    assert tracking.joints.shape == clean.shape and tracking.qpos.shape == qpos.shape
    assert tracking.falls == 0
    assert mean_error_mm(tracking.joints, clean) <= 30.0


def test_procedural_walk_passes_through():
    from scl_ray.motion.procedural import generate_motion

    clean = generate_motion("walk", np.random.default_rng(0), fixed={"speed": "slow"}).joints
    humanoid = Humanoid.build(Skeleton.adult(), settings=HumanoidSettings(ankle_height=0.0))  # its ankles touch y=0
    tracking = track(humanoid, reference_from_joints(humanoid, clean))
    assert tracking.falls == 0
    assert mean_error_mm(tracking.joints, clean) <= 30.0


def sunk(joints):
    return joints - np.array([0.0, 0.05, 0.0])


def hovering(joints):
    return joints + np.array([0.0, 0.10, 0.0])


def sliding(joints):
    """Feet (and half the knees) sliding sideways, 8 cm each way, whatever they stand on."""
    drift = 0.08 * np.sin(2 * np.pi * 0.8 * np.arange(len(joints)) / FPS)
    joints = joints.copy()
    joints[:, list(FOOT_JOINTS), 0] += drift[:, None]
    joints[:, [JOINT["left_knee"], JOINT["right_knee"]], 0] += 0.5 * drift[:, None]
    return joints


def jittering(joints):
    return joints + np.random.default_rng(0).normal(0.0, 0.015, joints.shape)


def snapping(joints):
    joints = joints.copy()
    joints[30:32] += np.array([0.15, 0.0, 0.0])  # two frames 15 cm to the side and back
    return joints


ARTEFACTS = {
    "penetration": (sunk, "penetration_mm", "standing"),
    "floating": (hovering, "float_mm", "standing"),
    "skating": (sliding, "skate_mm", "stepping"),
    "jitter": (jittering, "jitter", "standing"),
    "snap": (snapping, "jitter", "standing"),
}


@pytest.mark.parametrize("artefact", sorted(ARTEFACTS))
def test_artefacts_are_removed_near_the_clean_motion(humanoid, artefact):
    corrupt, metric, motion = ARTEFACTS[artefact]
    clean = qpos_to_joints(humanoid, standing(humanoid) if motion == "standing" else walking(humanoid, speed=0.0))
    corrupted = corrupt(clean)
    tracking = track(humanoid, reference_from_joints(humanoid, corrupted))
    before, after = physics_metrics(corrupted)[metric], physics_metrics(tracking.joints)[metric]
    assert after <= 0.2 * before, f"{metric}: {before:.1f} -> {after:.1f}"
    assert mean_error_mm(tracking.joints, clean) <= 60.0
    # Stricter than the metrics' 5 mm / 5 cm tolerances: the body stands on the floor, not near it.
    assert abs(tracking.joints[:, :, 1].min(axis=1).mean()) < 0.02


def flying(humanoid, frames=100):
    """Standing, except that for half a second (frames 30 to 39) the whole body floats a metre up."""
    joints = qpos_to_joints(humanoid, standing(humanoid, frames))
    joints[30:40, :, 1] += 1.0
    return joints


def test_a_fall_is_recovered_and_counted(humanoid):
    reference = flying(humanoid)
    tracking = track(humanoid, reference_from_joints(humanoid, reference))
    assert 1 <= tracking.falls <= TrackerSettings().max_recoveries
    assert all(28 <= frame <= 46 for frame in tracking.fall_frames)
    assert mean_error_mm(tracking.joints[70:], reference[70:]) <= 30.0  # back on its feet, tracking again


def test_more_falls_than_allowed_fail(humanoid):
    with pytest.raises(TrackingFailed, match="fell"):
        track(humanoid, reference_from_joints(humanoid, flying(humanoid)), TrackerSettings(max_recoveries=0))


def test_tracking_is_deterministic(humanoid):
    reference = reference_from_joints(humanoid, jittering(qpos_to_joints(humanoid, standing(humanoid, 40))))
    first, second = track(humanoid, reference), track(humanoid, reference)
    assert first.joints.tobytes() == second.joints.tobytes()
