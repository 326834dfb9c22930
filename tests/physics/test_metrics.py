"""Each physics metric responds to its own artefact, and little to the others."""

from __future__ import annotations

import numpy as np
import pytest

from scl_ray.motion.skeleton import FOOT_JOINTS, JOINT, Skeleton
from scl_ray.physics.metrics import METRIC_NAMES, physics_metrics, physics_metrics_batch

FPS = 20


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
    assert set(batch) == set(METRIC_NAMES)
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
