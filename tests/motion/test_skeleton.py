"""The 22-joint skeleton: constants, rest pose, forward kinematics, bone lengths, rest offsets measured on motions."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from scl_ray.motion.skeleton import (
    ADULT_BONE_LENGTHS, FACE_JOINTS, FOOT_JOINTS, HUMANML3D_RIGID_OFFSETS, JOINT, JOINT_NAMES, KINEMATIC_CHAINS,
    NUM_JOINTS, PARENTS, RAW_OFFSETS, RIGID_GROUPS, Skeleton, robust_bone_lengths,
)
from tests.physics.clips import noisy, procedural, real_motions

RIGID_CHILDREN = [child for _, children in RIGID_GROUPS for child in children]


def random_pose(seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, 22, 3, 3) random local rotations and (frames, 3) root positions."""
    rng = np.random.default_rng(seed)
    rotations = Rotation.random(frames * NUM_JOINTS, random_state=seed).as_matrix()
    return rotations.reshape(frames, NUM_JOINTS, 3, 3), rng.normal(size=(frames, 3))


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    return np.linalg.norm(joints[..., 1:, :] - joints[..., list(PARENTS[1:]), :], axis=-1)


def test_chains_follow_the_parents():
    assert len(JOINT_NAMES) == NUM_JOINTS == 22 and PARENTS[0] == -1
    assert all(PARENTS[joint] < joint for joint in range(1, NUM_JOINTS))
    for chain in KINEMATIC_CHAINS:
        for parent, joint in zip(chain[:-1], chain[1:]):
            assert PARENTS[joint] == parent
    # Every joint but the root ends exactly one chain link.
    linked = sorted(joint for chain in KINEMATIC_CHAINS for joint in chain[1:])
    assert linked == list(range(1, NUM_JOINTS))
    assert FACE_JOINTS == (2, 1, 17, 16) and FOOT_JOINTS == (7, 10, 8, 11)


def test_rest_pose_of_the_adult():
    skeleton = Skeleton.adult()
    rest = skeleton.rest_joints()
    np.testing.assert_allclose(skeleton.bone_lengths, ADULT_BONE_LENGTHS, atol=1e-12)
    # Left is +x, up is +y, the feet point along +z (the body faces +z).
    assert rest[JOINT["left_hip"], 0] > 0 > rest[JOINT["right_hip"], 0]
    assert rest[JOINT["left_foot"], 2] > rest[JOINT["left_ankle"], 2]
    ankle = rest[JOINT["left_ankle"], 1]
    assert rest[JOINT["pelvis"], 1] - ankle == pytest.approx(0.83, abs=0.01)
    # HumanML3D's rest direction of the head bone is +z: the head joint sits in front of the neck.
    assert rest[JOINT["neck"], 1] - ankle == pytest.approx(1.38, abs=0.01)
    np.testing.assert_allclose(rest[JOINT["head"]] - rest[JOINT["neck"]], [0.0, 0.0, 0.103], atol=1e-9)
    np.testing.assert_allclose(Skeleton.adult(scale=1.1).rest_joints(), 1.1 * rest, atol=1e-12)


def test_identity_rotations_give_the_rest_pose_at_the_root():
    skeleton = Skeleton.adult()
    frames = 3
    root = np.array([[0.0, 0.9, 0.0], [1.0, 0.8, -2.0], [0.5, 1.0, 3.0]])
    joints = skeleton.forward_kinematics(np.tile(np.eye(3), (frames, NUM_JOINTS, 1, 1)), root)
    np.testing.assert_allclose(joints, skeleton.rest_joints()[None] + root[:, None], atol=1e-12)


def test_forward_kinematics_preserves_bone_lengths():
    skeleton = Skeleton.adult(scale=0.9)
    rotations, root = random_pose(seed=0, frames=16)
    joints = skeleton.forward_kinematics(rotations, root)
    assert joints.shape == (16, NUM_JOINTS, 3)
    np.testing.assert_allclose(joints[:, 0], root, atol=1e-12)
    np.testing.assert_allclose(bone_lengths(joints), np.tile(skeleton.bone_lengths[1:], (16, 1)), atol=1e-9)


def test_local_rotation_moves_only_the_joints_below():
    skeleton = Skeleton.adult()
    rest = np.tile(np.eye(3), (1, NUM_JOINTS, 1, 1))
    bent = rest.copy()
    bent[0, JOINT["left_elbow"]] = Rotation.from_euler("x", 1.0).as_matrix()
    before = skeleton.forward_kinematics(rest, np.zeros((1, 3)))
    after = skeleton.forward_kinematics(bent, np.zeros((1, 3)))
    moved = np.flatnonzero(np.abs(after - before).max(axis=(0, 2)) > 1e-9).tolist()
    assert moved == [JOINT["left_wrist"]]


def test_from_joints_recovers_bone_lengths():
    lengths = ADULT_BONE_LENGTHS * np.random.default_rng(1).uniform(0.8, 1.2, NUM_JOINTS)
    skeleton = Skeleton.from_bone_lengths(lengths)
    joints = skeleton.forward_kinematics(*random_pose(seed=2, frames=4))
    measured = Skeleton.from_joints(joints)
    np.testing.assert_allclose(measured.bone_lengths[1:], lengths[1:], atol=1e-9)
    np.testing.assert_allclose(measured.offsets, RAW_OFFSETS * measured.bone_lengths[:, None], atol=1e-12)


def test_shape_errors_name_the_expected_and_actual_shapes():
    with pytest.raises(ValueError, match=r"\(22, 3\).*\(21, 3\)"):
        Skeleton(np.zeros((21, 3)))
    with pytest.raises(ValueError, match=r"\(22,\).*\(21,\)"):
        Skeleton.from_bone_lengths(np.zeros(21))
    rotations, root = random_pose(seed=3, frames=4)
    with pytest.raises(ValueError, match=r"\(T, 22, 3, 3\).*\(4, 22, 3, 3\) and \(5, 3\)"):
        Skeleton.adult().forward_kinematics(rotations, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\(4, 21, 3, 3\)"):
        Skeleton.adult().forward_kinematics(rotations[:, :21], root)


def offset_error_mm(estimate: Skeleton, truth: Skeleton) -> float:
    """Mean distance between the two skeletons' rest offsets, millimetres."""
    return float(np.linalg.norm(estimate.offsets - truth.offsets, axis=-1)[1:].mean() * 1000)


@pytest.mark.parametrize("skeleton", [Skeleton.adult(scale=0.9), Skeleton.humanml3d()], ids=["adult", "humanml3d"])
def test_from_motion_recovers_an_upright_skeleton_from_any_pose(skeleton):
    joints = skeleton.forward_kinematics(*random_pose(seed=4, frames=30))
    np.testing.assert_allclose(Skeleton.from_motion(joints).offsets, skeleton.offsets, atol=1e-9)
    np.testing.assert_allclose(Skeleton.from_motion(joints[:1]).offsets, skeleton.offsets, atol=1e-9)


def test_real_humanml3d_motions_have_the_adults_lengths_and_their_own_rigid_sets():
    textbook, mean = Skeleton.adult(), Skeleton.humanml3d()
    for motion_id, joints in real_motions().items():
        measured = Skeleton.from_motion(joints)
        np.testing.assert_allclose(measured.bone_lengths, ADULT_BONE_LENGTHS, atol=1e-4, err_msg=motion_id)
        # The rigid sets are shaped like the mean SMPL body's and stand upright as it does...
        assert np.abs(measured.offsets[RIGID_CHILDREN] - HUMANML3D_RIGID_OFFSETS).max() < 0.02, motion_id
        # ...not like the textbook's: the hips sit 8 cm below the pelvis joint, the collars rise.
        hips = measured.offsets[[JOINT["left_hip"], JOINT["right_hip"]], 1]
        assert np.all(hips < -0.07) and np.all(measured.offsets[[JOINT["left_collar"], JOINT["right_collar"]], 1] > 0.1)
        assert offset_error_mm(measured, textbook) > 5 * offset_error_mm(measured, mean), motion_id


def test_from_motion_does_not_depend_on_where_the_body_faces():
    joints = real_motions()["012314"]
    turn = Rotation.from_euler("y", 2.0).as_matrix()
    turned = joints @ turn.T + [1.0, 0.0, -3.0]
    np.testing.assert_allclose(Skeleton.from_motion(turned).offsets, Skeleton.from_motion(joints).offsets, atol=1e-9)


@pytest.mark.parametrize("source, name", [("real", "012314"), ("procedural", "walk"), ("procedural", "squat")])
def test_the_robust_estimate_survives_noise_where_the_first_frame_does_not(source, name):
    clean = real_motions()[name] if source == "real" else procedural(name)
    truth = Skeleton.from_motion(clean)
    motions = [noisy(clean, seed) for seed in range(3)]
    robust = np.array([offset_error_mm(Skeleton.from_motion(joints), truth) for joints in motions])
    first = np.array([offset_error_mm(Skeleton.from_motion(joints[:1]), truth) for joints in motions])
    # N(0, 1.5 cm) on every coordinate; 68 frames of a squat leave the median a few millimetres.
    assert robust.max() < 6.0
    assert first.min() > 15.0


def test_robust_lengths_ignore_broken_frames():
    joints = procedural("walk").copy()
    joints[::10, JOINT["left_wrist"]] += [0.3, 0.0, 0.0]  # one frame in ten throws the wrist 30 cm
    lengths = robust_bone_lengths(joints)
    assert abs(lengths[JOINT["left_wrist"]] - ADULT_BONE_LENGTHS[JOINT["left_wrist"]]) < 0.002
    others = np.delete(np.arange(NUM_JOINTS), JOINT["left_wrist"])
    np.testing.assert_allclose(lengths[others], ADULT_BONE_LENGTHS[others], atol=1e-9)


def test_humanml3d_skeleton_is_the_adult_with_smpl_rigid_sets():
    skeleton = Skeleton.humanml3d()
    np.testing.assert_allclose(skeleton.bone_lengths, ADULT_BONE_LENGTHS, atol=1e-4)
    single = [joint for joint in range(NUM_JOINTS) if joint not in RIGID_CHILDREN]
    np.testing.assert_allclose(skeleton.offsets[single], Skeleton.adult().offsets[single])
