"""Each physics metric responds to its own artefact, and little to the others."""

from __future__ import annotations

import numpy as np
import pytest

from scl_ray.motion.constants import FPS
from scl_ray.motion.skeleton import FOOT_JOINTS, JOINT, Skeleton
from scl_ray.physics.metrics import (
    METRIC_NAMES, bone_mm, float_mm, jitter, peak_jerk, physics_metrics, physics_metrics_batch, run_lengths,
    skate_mm, speed,
)


def smootherstep(s):
    return s**3 * (6 * s**2 - 15 * s + 10)


def walking(frames=120, speed=1.0, period=1.0, slide=0.0):
    """A kinematic walk along +z, (T, 22, 3) metres, y up: stance toes planted at height 0, swing
    toes lifted 10 cm, ankles 8 cm above the toes; slide (m/s) drags every foot joint along +x."""
    t = np.arange(frames) / FPS
    rest = Skeleton.adult().rest_joints()
    joints = np.tile(rest - rest[JOINT["pelvis"]], (frames, 1, 1))
    joints[:, :, 1] += 0.92
    joints[:, :, 2] += speed * t[:, None]
    stride = speed * period
    for side, phase in (("left", 0.0), ("right", 0.5)):
        cycle = t / period + phase
        step, within = np.floor(cycle), cycle % 1.0
        swing = within >= 0.5
        s = np.where(swing, (within - 0.5) * 2, 0.0)
        z = (step + smootherstep(s)) * stride - phase * stride + 0.1
        lift = np.where(swing, 0.1 * np.sin(np.pi * s), 0.0)
        x = rest[JOINT[f"{side}_ankle"], 0] + slide * t
        for joint, height, forward in ((f"{side}_foot", 0.0, 0.12), (f"{side}_ankle", 0.08, 0.0)):
            joints[:, JOINT[joint]] = np.stack([x, height + lift, z + forward], axis=-1)
        hip, ankle = joints[:, JOINT[f"{side}_hip"]], joints[:, JOINT[f"{side}_ankle"]]
        joints[:, JOINT[f"{side}_knee"]] = (hip + ankle) / 2 + np.array([0.0, 0.0, 0.05])
    return joints


def standing(frames=60):
    rest = Skeleton.adult().rest_joints()
    joints = np.tile(rest - rest[:, 1].min() * np.array([0, 1, 0]), (frames, 1, 1))
    sway = 0.01 * np.sin(2 * np.pi * 0.5 * np.arange(frames) / FPS)
    upper = [j for j in range(22) if j not in FOOT_JOINTS]
    joints[:, upper, 0] += sway[:, None]
    return joints


def rest_pose(frames=60):
    """The adult's rest pose standing still, (T, 22, 3) metres: ankle and toe joints on the floor."""
    rest = Skeleton.adult().rest_joints()
    return np.tile(rest - np.array([0.0, rest[:, 1].min(), 0.0]), (frames, 1, 1))


def moving(joints, joint_ids, velocity):
    """joints with joint_ids translated at a constant velocity (3,) m/s from frame 0."""
    joints = joints.copy()
    seconds = np.arange(len(joints)) / FPS
    joints[:, joint_ids] += seconds[:, None, None] * np.asarray(velocity)
    return joints


@pytest.fixture(scope="module")
def clean():
    return walking()


@pytest.mark.parametrize("motion", [walking(), standing()], ids=["walking", "standing"])
def test_clean_motion_with_planted_feet_scores_about_zero(motion):
    metrics = physics_metrics(motion, fps=FPS)
    assert metrics["penetration_mm"] == 0.0
    assert metrics["float_mm"] == 0.0
    assert metrics["skate_mm"] < 2.0
    assert metrics["phys_err_mm"] < 2.0


def test_pushing_5cm_under_the_floor_gives_50mm_penetration_and_nothing_else(clean):
    base = physics_metrics(clean)
    sunk = physics_metrics(clean - np.array([0.0, 0.05, 0.0]))
    assert sunk["penetration_mm"] == pytest.approx(50.0, abs=0.5)
    assert sunk["float_mm"] == 0.0
    assert sunk["skate_mm"] == pytest.approx(base["skate_mm"], abs=0.5)
    assert sunk["jitter"] == pytest.approx(base["jitter"])
    assert sunk["phys_err_mm"] == pytest.approx(sunk["penetration_mm"] + sunk["skate_mm"])


def test_lifting_10cm_gives_100mm_float_and_no_penetration_or_skate(clean):
    lifted = physics_metrics(clean + np.array([0.0, 0.10, 0.0]))
    assert lifted["float_mm"] == pytest.approx(100.0, abs=0.5)
    assert lifted["penetration_mm"] == 0.0
    assert lifted["skate_mm"] == 0.0


def test_float_ignores_a_few_centimetres_of_hover_but_floor_height_is_respected(clean):
    assert physics_metrics(clean + np.array([0.0, 0.03, 0.0]))["float_mm"] == 0.0
    assert physics_metrics(clean + np.array([0.0, 0.30, 0.0]), floor=0.3)["phys_err_mm"] < 2.0


def test_sliding_stance_feet_gives_skate_and_leaves_floor_metrics_alone(clean):
    base = physics_metrics(clean)
    sliding = physics_metrics(walking(slide=0.4))
    # 0.4 m/s at 20 fps is 20 mm per frame for every planted foot joint.
    assert sliding["skate_mm"] > base["skate_mm"] + 15.0
    assert sliding["penetration_mm"] == 0.0 and sliding["float_mm"] == 0.0
    slower = physics_metrics(walking(slide=0.2))
    assert base["skate_mm"] < slower["skate_mm"] < sliding["skate_mm"]


def test_a_planted_foot_sliding_at_a_known_speed_gives_that_skate():
    # 0.4 m/s at 20 fps is 20 mm per frame.
    assert skate_mm(moving(rest_pose(), list(range(22)), [0.4, 0.0, 0.0])) == pytest.approx(20.0)
    # The mean is over (foot joint, frame pair): the left ankle and toe slide, the right ones stay.
    left = [JOINT["left_ankle"], JOINT["left_foot"]]
    assert skate_mm(moving(rest_pose(), left, [0.0, 0.0, 0.4])) == pytest.approx(10.0)


def test_skate_is_not_diluted_by_frames_without_contact():
    sliding = moving(rest_pose(60), list(range(22)), [0.3, 0.0, 0.4])  # 0.5 m/s, 25 mm per frame
    jumping = sliding.copy()
    jumping[20:40, :, 1] += 0.3  # airborne for 20 frames: no contact there, nor on the pairs into and out of it
    assert skate_mm(jumping) == pytest.approx(25.0)
    assert skate_mm(rest_pose() + np.array([0.0, 0.3, 0.0])) == 0.0


@pytest.mark.parametrize("airborne, counted", [(16, False), (17, True)])
def test_float_excuses_a_flight_of_at_most_0_8_seconds(airborne, counted):
    motion = rest_pose(80)
    motion[30:30 + airborne, :, 1] += 0.3
    expected = airborne * 300.0 / 80 if counted else 0.0
    assert float_mm(motion, fps=FPS) == pytest.approx(expected)
    # The same frames last half as long at twice the frame rate: a jump's flight again.
    assert float_mm(motion, fps=2 * FPS) == 0.0


def test_run_lengths_label_each_frame_with_its_run():
    mask = np.array([False, True, True, False, True, True, True])
    assert run_lengths(mask).tolist() == [0, 2, 2, 0, 3, 3, 3]


def test_bone_length_is_zero_for_rigid_motion_and_counts_a_stretched_bone():
    frames = 60
    yaw = np.linspace(0.0, np.pi, frames)
    turn = np.stack([np.stack([np.cos(yaw), 0 * yaw, np.sin(yaw)], -1), np.tile([0.0, 1.0, 0.0], (frames, 1)),
                     np.stack([-np.sin(yaw), 0 * yaw, np.cos(yaw)], -1)], axis=1)  # (T, 3, 3) rotations about y
    rigid = np.einsum("tij,tkj->tki", turn, rest_pose(frames)) + np.array([0.5, 0.0, 0.2])
    assert bone_mm(rigid) == pytest.approx(0.0, abs=1e-9)
    stretched = rest_pose(frames)
    wrist, elbow = JOINT["left_wrist"], JOINT["left_elbow"]
    direction = stretched[0, wrist] - stretched[0, elbow]
    stretched[:12, wrist] += 0.1 * direction / np.linalg.norm(direction)  # one bone 10 cm longer in 12 frames
    assert bone_mm(stretched) == pytest.approx(100.0 * 12 / (frames * 21))


def test_speed_of_a_uniform_translation_is_its_speed_at_any_frame_rate():
    motion = moving(rest_pose(), list(range(22)), [0.9, 0.0, 1.2])
    assert speed(motion) == pytest.approx(1.5)
    assert speed(motion, fps=2 * FPS) == pytest.approx(3.0)


def test_peak_jerk_catches_a_single_frame_teleport_that_jitter_dilutes():
    still = rest_pose(100)
    teleport = still.copy()
    teleport[50] += np.array([0.4, 0.0, 0.0])
    # Frame 50 enters four third differences with weights 1, 3, 3, 1: the peak is 3 * 0.4 m * 20^3.
    assert peak_jerk(teleport) == pytest.approx(9600.0)
    assert jitter(teleport) == pytest.approx(8 * 0.4 * FPS**3 / 97)
    assert peak_jerk(still) == 0.0


def test_peak_jerk_is_at_least_the_mean_jerk(clean):
    rng = np.random.default_rng(1)
    for motion in (clean, clean + 0.01 * rng.normal(size=clean.shape), standing()):
        assert peak_jerk(motion) >= jitter(motion)


def test_jitter_grows_with_noise_while_floor_metrics_barely_move(clean):
    rng = np.random.default_rng(0)
    base = physics_metrics(clean)
    noisy = [physics_metrics(clean + scale * rng.normal(size=clean.shape)) for scale in (0.002, 0.01)]
    assert base["jitter"] < noisy[0]["jitter"] < noisy[1]["jitter"]
    assert noisy[1]["jitter"] > 5 * base["jitter"]
    assert base["acceleration"] < noisy[1]["acceleration"]
    assert noisy[0]["penetration_mm"] < 1.0 and noisy[0]["float_mm"] == 0.0


def test_jitter_and_acceleration_scale_with_the_frame_rate(clean):
    at_20, at_40 = physics_metrics(clean, fps=20), physics_metrics(clean, fps=40)
    assert at_40["acceleration"] == pytest.approx(4 * at_20["acceleration"])
    assert at_40["jitter"] == pytest.approx(8 * at_20["jitter"])


def test_batch_is_the_mean_over_motions(clean):
    motions = [clean, clean - np.array([0.0, 0.05, 0.0]), standing()]
    batch = physics_metrics_batch(motions)
    assert list(batch) == list(METRIC_NAMES) == list(physics_metrics(clean))
    for name in METRIC_NAMES:
        assert batch[name] == pytest.approx(np.mean([physics_metrics(m)[name] for m in motions]))


@pytest.mark.parametrize("joints, message", [
    (np.zeros((30, 21, 3)), r"\(T, 22, 3\).*\(30, 21, 3\)"),
    (np.zeros((3, 22, 3)), "at least 4"),
    (np.full((30, 22, 3), np.nan), "non-finite"),
])
def test_bad_motions_are_rejected_with_the_reason(joints, message):
    with pytest.raises(ValueError, match=message):
        physics_metrics(joints)


def test_batch_errors_name_the_motion():
    with pytest.raises(ValueError, match="motion 1"):
        physics_metrics_batch([walking(), np.zeros((30, 22, 2))])
    with pytest.raises(ValueError, match="at least one motion"):
        physics_metrics_batch([])
