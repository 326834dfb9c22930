"""PhysicsCorrector turns a features batch into corrected features, and accounts for every motion."""

from __future__ import annotations

import numpy as np
import pytest

from scl_ray.config import CorrectConfig
from scl_ray.motion.features import (
    FEATURE_DIM, RIC_POSITIONS, ROOT_HEIGHT, features_to_joints, joints_to_features,
)
from scl_ray.physics.corrector import METRIC_COLUMNS, STATUSES, PhysicsCorrector
from scl_ray.physics.retarget import qpos_to_joints

MAX_FRAMES = 196


@pytest.fixture(scope="module")
def corrector():
    return PhysicsCorrector(CorrectConfig())


def standing_joints(corrector, frames=61):
    """(T, 22, 3) standing with swinging arms, made by the humanoid's own kinematics."""
    humanoid = corrector.humanoid
    qpos = np.tile(humanoid.model.qpos0, (frames, 1))
    swing = 0.5 * np.sin(np.pi * np.arange(frames) / 20)
    for side in ("left", "right"):
        qpos[:, humanoid.hinge_qpos[f"{side}_shoulder"][0]] = -swing
        qpos[:, humanoid.hinge_qpos[f"{side}_elbow"][0]] = -0.6 - swing
    return qpos_to_joints(humanoid, qpos)


def batch_of(*motions):
    """A padded batch from joint arrays (T_i, 22, 3); each motion gives T_i - 1 feature frames."""
    features = np.zeros((len(motions), MAX_FRAMES, FEATURE_DIM), dtype=np.float32)
    lengths = np.zeros(len(motions), dtype=np.int64)
    for index, joints in enumerate(motions):
        motion = joints_to_features(joints)
        features[index, : len(motion)], lengths[index] = motion, len(motion)
    return {"ids": np.array([f"m{index}" for index in range(len(motions))], dtype=object),
            "features": features, "lengths": lengths}


def test_every_motion_gets_a_status_and_the_columns(corrector):
    batch = batch_of(*[standing_joints(corrector)] * 4)
    batch["features"][1, 10, 7] = np.nan
    batch["lengths"][2] = 2  # too short to simulate
    batch["lengths"][3] = MAX_FRAMES + 1
    batch["text"] = np.array(["a person stands"] * 4, dtype=object)  # other columns pass through
    out = corrector(batch)
    assert list(out["status"]) == ["corrected", "nonfinite", "passthrough", "passthrough"]
    assert set(out["status"]) <= set(STATUSES)
    assert out["error"][0] == ""
    assert "motion m1" in out["error"][1] and "NaN" in out["error"][1]
    assert "motion m2" in out["error"][2] and "motion m3" in out["error"][3]
    assert out["features"].shape == batch["features"].shape and out["features"].dtype == np.float32
    assert list(out["text"]) == list(batch["text"]) and list(out["ids"]) == list(batch["ids"])
    for index in (1, 2, 3):  # not corrected: returned as they came
        np.testing.assert_array_equal(out["features"][index], batch["features"][index])
    assert out["tracking_error"].dtype == np.float32 and out["falls"].dtype == np.int32
    assert 0.0 < out["tracking_error"][0] < 0.03 and np.isnan(out["tracking_error"][1:]).all()
    for column in METRIC_COLUMNS:
        assert out[column].shape == (4,) and out[column].dtype == np.float32
        assert np.isfinite(out[column][0]) and np.isnan(out[column][1])


def test_corrected_motion_keeps_its_length_and_stays_close(corrector):
    batch = batch_of(standing_joints(corrector, frames=81))
    out = corrector(batch)
    length = batch["lengths"][0]
    assert out["status"][0] == "corrected"
    assert not out["features"][0, length:].any()  # the padding stays zero
    before = features_to_joints(batch["features"][0, :length])
    after = features_to_joints(out["features"][0, :length])
    assert np.linalg.norm(after - before, axis=-1).mean() < 0.03


def test_hovering_motion_comes_down_to_the_floor(corrector):
    joints = standing_joints(corrector)
    hovering = joints_to_features(joints)
    hovering[:, ROOT_HEIGHT] += 0.10  # the whole body 10 cm up: root height and every joint's height
    hovering[:, RIC_POSITIONS.start + 1 : RIC_POSITIONS.stop : 3] += 0.10
    batch = batch_of(joints)
    batch["features"][0, : len(hovering)] = hovering
    out = corrector(batch)
    assert out["status"][0] == "corrected"
    assert out["float_mm_before"][0] > 90.0
    assert out["float_mm_after"][0] <= 0.2 * out["float_mm_before"][0]


def test_a_motion_the_humanoid_cannot_follow_falls_back():
    joints = standing_joints(PhysicsCorrector(), frames=81)
    joints[30:40, :, 1] += 1.0  # half a second a metre up in the air
    out = PhysicsCorrector(CorrectConfig(max_recoveries=0))(batch_of(joints))
    assert out["status"][0] == "fallback" and "fell" in out["error"][0] and out["falls"][0] == 1
    np.testing.assert_array_equal(out["features"][0], batch_of(joints)["features"][0])
    assert out["float_mm_after"][0] == out["float_mm_before"][0]


def test_one_broken_motion_does_not_sink_the_batch(corrector, monkeypatch):
    batch = batch_of(standing_joints(corrector), standing_joints(corrector))
    calls = []
    original = corrector.correct_joints

    def breaks_once(joints):
        calls.append(len(joints))
        if len(calls) == 1:
            raise RuntimeError("simulated breakage")
        return original(joints)

    monkeypatch.setattr(corrector, "correct_joints", breaks_once)
    out = corrector(batch)
    assert list(out["status"]) == ["passthrough", "corrected"]
    assert "m0" in out["error"][0] and "simulated breakage" in out["error"][0]


def test_unknown_tuning_is_refused():
    with pytest.raises(TypeError, match="unknown tuning.*allowed"):
        PhysicsCorrector(CorrectConfig(), hinge_frequency=3.0)


def test_ankle_height_is_inferred_per_dataset_convention():
    """Procedural motions plant ankle and toe joints together; HumanML3D's ankles ride ~8 cm higher."""
    from scl_ray.motion.procedural import generate_motion
    from scl_ray.physics.corrector import infer_ankle_height

    walk = generate_motion("walk", np.random.default_rng(0)).joints
    assert infer_ankle_height(walk) == 0.0
    lifted = walk.copy()
    lifted[:, [7, 8], 1] += 0.08
    assert infer_ankle_height(lifted) == pytest.approx(0.08)
