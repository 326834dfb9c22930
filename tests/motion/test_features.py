"""HumanML3D features: agreement with the original extraction code, round trips, invariances.

data/humanml3d_reference.npz holds motions made by `synthetic_motion` below and the features that
HumanML3D's own `process_file` (motion_representation.ipynb, run unmodified in a scratch
directory, float32 torch as upstream) extracted from them: `joints_<name>` (T, 22, 3) input,
`features_<name>` (T-1, 263) reference output, `target_offsets_<name>` (22, 3) where the motion was
first retargeted by upstream's `uniform_skeleton` (absent where that step was skipped).
Upstream computes in float32 torch: its own rounding reaches 1.1e-5 in the rotation block (measured
against the same code run in float64, which our float64 code matches to 6e-8), hence atol 2e-5.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from scl_ray.motion.constants import FEATURE_DIM, FPS
from scl_ray.motion.features import (
    FEATURE_BLOCKS, FOOT_CONTACTS, JOINT_ROTATIONS, RIC_POSITIONS, ROOT_HEIGHT,
    Normalizer, features_to_joints, foot_contacts, joints_to_features, normalize_joints, retarget,
)
from scl_ray.motion.skeleton import FOOT_JOINTS, NUM_JOINTS, PARENTS, Skeleton

GOLDEN = Path(__file__).parent / "data" / "humanml3d_reference.npz"


def synthetic_motion(seed: int, frames: int, skeleton: Skeleton | None = None,
                     turn: float = 1.0, speed: float = 0.6) -> np.ndarray:
    """(frames, 22, 3) metres: smooth random joint rotations, a root walking and turning on y."""
    skeleton = skeleton or Skeleton.adult()
    rng = np.random.default_rng(seed)
    time = np.arange(frames)[:, None, None] / FPS
    frequencies = rng.uniform(0.3, 1.5, (3, NUM_JOINTS, 3))
    phases = rng.uniform(0.0, 2 * np.pi, (3, NUM_JOINTS, 3))
    amplitudes = rng.uniform(0.0, 0.25, (3, NUM_JOINTS, 3))
    waves = amplitudes * np.sin(2 * np.pi * frequencies * time[:, None] + phases)
    rotvecs = waves.sum(axis=1)
    yaw = rng.uniform(-np.pi, np.pi) + turn * np.sin(2 * np.pi * 0.2 * time[:, 0, 0])
    rotvecs[:, 0] = 0.1 * rotvecs[:, 0] + yaw[:, None] * np.array([0.0, 1.0, 0.0])
    local = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix().reshape(frames, NUM_JOINTS, 3, 3)
    step = speed * (1.0 + np.sin(2 * np.pi * 0.5 * time[:, 0, 0])) / FPS
    heading = np.stack([np.sin(yaw), np.zeros(frames), np.cos(yaw)], -1)
    start = rng.uniform(-2.0, 2.0, 3) * np.array([1.0, 0.0, 1.0])
    root = start + np.cumsum(step[:, None] * heading, axis=0)
    root[:, 1] = 0.9 + 0.03 * np.sin(2 * np.pi * 1.5 * time[:, 0, 0])
    return skeleton.forward_kinematics(local, root)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as archive:
        return {key: archive[key] for key in archive.files}


def test_golden_file_matches_humanml3d_reference(golden):
    names = [key.removeprefix("joints_") for key in golden if key.startswith("joints_")]
    assert len(names) >= 3 and any(f"target_offsets_{name}" in golden for name in names)
    for name in names:
        offsets = golden.get(f"target_offsets_{name}")
        target = None if offsets is None else Skeleton(offsets)
        features = joints_to_features(golden[f"joints_{name}"], target_skeleton=target)
        reference = golden[f"features_{name}"]
        assert features.shape == reference.shape and features.dtype == np.float32
        np.testing.assert_array_equal(features[:, FOOT_CONTACTS], reference[:, FOOT_CONTACTS])
        np.testing.assert_allclose(features, reference, atol=2e-5, rtol=0, err_msg=name)


@pytest.mark.parametrize("seed, frames", [(10, 40), (11, 120), (12, 196)])
def test_features_to_joints_recovers_normalised_joints(seed, frames):
    # Turning less than 180 degrees away from frame 0's facing: see the sign-flip test below.
    joints = synthetic_motion(seed, frames, turn=1.0, speed=1.0)
    features = joints_to_features(joints)
    assert features.shape == (frames - 1, FEATURE_DIM)
    recovered = features_to_joints(features)
    np.testing.assert_allclose(recovered, normalize_joints(joints)[:-1], atol=1e-4, rtol=0)


def test_yaw_velocity_keeps_upstream_sign_flip_where_facing_reverses(golden):
    # Upstream takes arcsin of the y part of a yaw step quaternion whose w turns negative when the
    # facing crosses -z, so one frame of a steady turn gets the opposite sign (HumanML3D issue #156).
    joints = golden["joints_fast_turn"]
    yaw_velocity = joints_to_features(joints)[1:, 0]
    flipped = np.flatnonzero(np.sign(yaw_velocity) != np.sign(np.median(yaw_velocity)))
    assert len(flipped) == 1
    facing = normalize_joints(joints)
    recovered = features_to_joints(joints_to_features(joints))
    assert np.abs(recovered - facing[:-1])[flipped[0] + 2:].max() > 0.01


def test_normalize_joints_puts_motion_on_floor_at_origin_facing_z():
    positions = normalize_joints(synthetic_motion(3, 50))
    assert positions[..., 1].min() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(positions[0, 0, [0, 2]], 0.0, atol=1e-12)
    # Frame 0: hips and shoulders both point from left to right along -x, so the body faces +z.
    across = positions[0, [2, 17]] - positions[0, [1, 16]]
    across = across.sum(0)
    assert across[0] < 0 and abs(across[2]) < 1e-9


def test_features_invariant_to_translation_and_yaw_of_input():
    joints = synthetic_motion(4, 80)
    rotation = Rotation.from_euler("y", 2.1).as_matrix()
    moved = joints @ rotation.T + np.array([3.0, 0.4, -7.5])
    np.testing.assert_allclose(joints_to_features(moved), joints_to_features(joints), atol=1e-5, rtol=0)


def test_features_do_change_with_the_motion():
    joints = synthetic_motion(5, 60)
    bent = joints.copy()
    bent[:, 20] += np.array([0.0, 0.1, 0.0])  # move the left wrist up
    difference = np.abs(joints_to_features(bent) - joints_to_features(joints))
    assert difference[:, RIC_POSITIONS].max() > 0.05
    assert difference[:, JOINT_ROTATIONS].max() > 0.05


def test_foot_contacts_detect_the_planted_foot():
    skeleton = Skeleton.adult()
    frames = 30
    local = np.tile(np.eye(3), (frames, NUM_JOINTS, 1, 1))
    root = np.zeros((frames, 3))
    root[:, 1] = 0.9
    joints = skeleton.forward_kinematics(local, root)
    # Left foot (7, 10) stays on its spot; the right foot (8, 11) slides 10 cm per frame.
    joints[:, [8, 11], 2] += 0.1 * np.arange(frames)[:, None]
    contacts = foot_contacts(joints)
    assert contacts.shape == (frames - 1, 4) and contacts.dtype == np.float32
    assert FOOT_JOINTS == (7, 10, 8, 11)
    np.testing.assert_array_equal(contacts[:, :2], 1.0)
    np.testing.assert_array_equal(contacts[:, 2:], 0.0)
    np.testing.assert_array_equal(joints_to_features(joints)[:, FOOT_CONTACTS], contacts)


def test_retarget_gives_target_bone_lengths_and_scales_root_by_leg_ratio():
    source = Skeleton.adult(scale=0.8)
    target = Skeleton.adult()
    joints = synthetic_motion(6, 30, skeleton=source)
    moved = retarget(joints, target)
    bones = np.linalg.norm(moved[:, 1:] - moved[:, list(PARENTS[1:])], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(target.bone_lengths[1:], bones.shape), atol=1e-9)
    np.testing.assert_allclose(moved[:, 0], joints[:, 0] / 0.8, atol=1e-9)
    # Bone directions are kept: on the same skeleton, retargeting changes nothing.
    np.testing.assert_allclose(retarget(joints, source), joints, atol=1e-9)


def test_torch_and_numpy_recovery_agree_and_batch():
    features = np.stack([joints_to_features(synthetic_motion(seed, 41)) for seed in (7, 8)])
    from_numpy = features_to_joints(features)
    from_torch = features_to_joints(torch.from_numpy(features))
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float32
    assert from_numpy.shape == (2, 40, NUM_JOINTS, 3) and from_numpy.dtype == np.float32
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, atol=1e-5, rtol=0)
    np.testing.assert_allclose(from_numpy[1], features_to_joints(features[1]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(10, 21, 3), (10, 22), (1, 22, 3)])
def test_joints_of_wrong_shape_are_rejected_with_their_shape(shape):
    with pytest.raises(ValueError, match=r"\(T, 22, 3\).*" + re.escape(str(shape))):
        joints_to_features(np.zeros(shape))


def test_non_finite_joints_are_rejected_with_the_frame():
    joints = synthetic_motion(9, 20)
    joints[13, 4, 1] = np.nan
    with pytest.raises(ValueError, match="frame 13"):
        joints_to_features(joints)


def test_features_of_wrong_width_are_rejected():
    with pytest.raises(ValueError, match="263"):
        features_to_joints(np.zeros((5, 251)))


def test_feature_blocks_tile_the_263_dims():
    covered = np.concatenate([np.arange(FEATURE_DIM)[block] for block in FEATURE_BLOCKS.values()])
    np.testing.assert_array_equal(covered, np.arange(FEATURE_DIM))


def test_normalizer_round_trip_save_and_load(tmp_path):
    features = [joints_to_features(synthetic_motion(seed, 50 + seed)) for seed in range(4)]
    normalizer = Normalizer.fit(features)
    normalized = normalizer.normalize(features[0])
    np.testing.assert_allclose(normalizer.denormalize(normalized), features[0], atol=1e-5)
    as_torch = normalizer.normalize(torch.from_numpy(features[0]))
    np.testing.assert_allclose(as_torch.numpy(), normalized, atol=1e-6)
    np.testing.assert_allclose(normalizer.denormalize(as_torch).numpy(), features[0], atol=1e-5)

    normalizer.save(tmp_path / "stats")
    assert np.load(tmp_path / "stats" / "Mean.npy").dtype == np.float32
    loaded = Normalizer.load(tmp_path / "stats")
    np.testing.assert_array_equal(loaded.mean, normalizer.mean)
    np.testing.assert_array_equal(loaded.std, normalizer.std)
    with pytest.raises(FileNotFoundError, match="Std.npy"):
        Normalizer.load(tmp_path)


def test_normalizer_fit_averages_std_per_block_and_applies_feat_bias():
    rng = np.random.default_rng(0)
    scales = rng.uniform(0.5, 2.0, FEATURE_DIM)
    features = [rng.normal(size=(30, FEATURE_DIM)) * scales for _ in range(3)]
    plain = Normalizer.fit(features, feat_bias=1.0)
    data = np.concatenate(features)
    np.testing.assert_allclose(plain.mean, data.mean(0), atol=1e-6)
    for name, block in FEATURE_BLOCKS.items():
        np.testing.assert_allclose(plain.std[block], data.std(0)[block].mean(), rtol=1e-6, err_msg=name)
    biased = Normalizer.fit(features, feat_bias=5.0)
    ratio = plain.std / biased.std
    np.testing.assert_allclose(ratio[ROOT_HEIGHT], 5.0, rtol=1e-6)
    np.testing.assert_allclose(ratio[FOOT_CONTACTS], 5.0, rtol=1e-6)
    np.testing.assert_allclose(ratio[RIC_POSITIONS], 1.0, rtol=1e-6)


def test_normalizer_guards_constant_blocks():
    features = [np.ones((10, FEATURE_DIM))]
    normalizer = Normalizer.fit(features)
    assert (normalizer.std > 0).all()
    np.testing.assert_array_equal(normalizer.normalize(features[0]), 0.0)
    with pytest.raises(ValueError, match=r"features_list\[1\]"):
        Normalizer.fit([np.zeros((4, FEATURE_DIM)), np.zeros((4, 251))])


def test_body_facing_exactly_minus_z_gives_finite_features():
    # HumanML3D's qbetween is NaN for opposite directions: a body whose frame 0 faces exactly -z.
    from scl_ray.motion.skeleton import Skeleton

    skeleton = Skeleton.adult()
    frames = 30
    half_turn = np.diag([-1.0, 1.0, -1.0])
    rotations = np.tile(np.eye(3), (frames, 22, 1, 1))
    rotations[:, 0] = half_turn
    roots = np.stack([np.zeros(frames), np.full(frames, 0.9), -0.05 * np.arange(frames)], -1)
    joints = skeleton.forward_kinematics(rotations, roots)
    features = joints_to_features(joints)
    assert np.isfinite(features).all()
    recovered = features_to_joints(features)
    assert np.allclose(recovered, normalize_joints(joints)[:-1], atol=1e-4)
