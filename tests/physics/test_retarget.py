"""Retargeting inverts the humanoid's kinematics on clean motions and never leaves the hinge limits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from scl_ray.motion.constants import FPS
from scl_ray.motion.procedural import FAMILIES
from scl_ray.motion.skeleton import JOINT, NUM_JOINTS, PARENTS, RIGID_GROUPS, Skeleton
from scl_ray.physics.body import HINGES, infer_ankle_height
from scl_ray.physics.humanoid import Humanoid, HumanoidSettings
from scl_ray.physics.retarget import joints_to_qpos, qpos_to_joints
from tests.physics.clips import humanml3d_shaped, procedural, real_motions


@pytest.fixture(scope="module")
def humanoid():
    return Humanoid.build(Skeleton.adult())


def smooth_random_motion(humanoid, frames=120, seed=0, reach=0.7):
    """qpos (T, nq): every hinge swinging sinusoidally over `reach` of its range, a turning, tilting root."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / FPS
    qpos = np.tile(humanoid.model.qpos0, (frames, 1))
    for name, hinges in HINGES.items():
        for index, (_, low, high) in enumerate(hinges):
            middle, half = np.radians((low + high) / 2), np.radians((high - low) / 2) * reach
            frequency, phase = rng.uniform(0.2, 1.0), rng.uniform(0, 2 * np.pi)
            qpos[:, humanoid.hinge_qpos[name][index]] = middle + half * np.sin(2 * np.pi * frequency * t + phase)
    yaw = np.linspace(0.0, 3.0, frames)
    qpos[:, 3:7] = Rotation.from_euler("zyx", np.stack([yaw, 0.2 * np.sin(yaw), 0.1 * np.cos(yaw)], 1)).as_quat(
        scalar_first=True)
    qpos[:, :3] += rng.normal(0, 0.05, 3)
    return qpos


def mean_error_mm(a, b):
    return float(np.linalg.norm(a - b, axis=-1).mean() * 1000)


def round_trip_mm(humanoid, joints):
    """Mean per-joint distance (mm) between joints (T, 22, 3) and their retargeting's kinematics."""
    return mean_error_mm(qpos_to_joints(humanoid, joints_to_qpos(humanoid, joints)), joints)


def limited_hinges(humanoid, joints):
    """Names of the bodies with a hinge at its limit in some frame of the retargeted joints."""
    qpos = np.degrees(joints_to_qpos(humanoid, joints))
    return {name for name, hinges in HINGES.items()
            if np.any(np.isclose(qpos[:, humanoid.hinge_qpos[name]], [[h[1] for h in hinges]], atol=1e-6)
                      | np.isclose(qpos[:, humanoid.hinge_qpos[name]], [[h[2] for h in hinges]], atol=1e-6))}


def adult_for(joints):
    return Humanoid.build(Skeleton.adult(), settings=HumanoidSettings(ankle_height=infer_ankle_height(joints)))


def shaped_clip(family):
    """The procedural family on the rigid sets of a real motion (a different one for each family)."""
    real = real_motions()
    source = list(real)[FAMILIES.index(family) % len(real)]
    return humanml3d_shaped(procedural(family), real[source])


def test_round_trip_of_motions_within_the_limits(humanoid):
    joints = qpos_to_joints(humanoid, smooth_random_motion(humanoid))
    back = qpos_to_joints(humanoid, joints_to_qpos(humanoid, joints))
    assert mean_error_mm(back, joints) < 10.0
    assert np.abs(back[:, 0] - joints[:, 0]).max() < 1e-9  # the root is placed exactly


def test_round_trip_of_a_procedural_motion():
    from scl_ray.motion.procedural import generate_motion

    joints = generate_motion("kick", np.random.default_rng(0)).joints
    # The procedural generator puts ankle joints on the floor; build the humanoid to match.
    humanoid = Humanoid.build(Skeleton.adult(), settings=HumanoidSettings(ankle_height=0.0))
    back = qpos_to_joints(humanoid, joints_to_qpos(humanoid, joints))
    assert mean_error_mm(back, joints) < 10.0


def test_hinges_stay_within_their_limits_on_wild_input(humanoid):
    rng = np.random.default_rng(1)
    rest = qpos_to_joints(humanoid, humanoid.model.qpos0[None])
    joints = rest + rng.normal(0, 0.15, (40, NUM_JOINTS, 3))
    qpos = joints_to_qpos(humanoid, joints)
    assert np.isfinite(qpos).all()
    for name, hinges in HINGES.items():
        angles = np.degrees(qpos[:, humanoid.hinge_qpos[name]])
        low, high = np.array([h[1] for h in hinges]), np.array([h[2] for h in hinges])
        assert (angles >= low - 1e-6).all() and (angles <= high + 1e-6).all(), name


def test_a_clipped_hinge_moves_only_what_hangs_below_it(humanoid):
    qpos = humanoid.model.qpos0[None].copy()
    knee = humanoid.hinge_qpos["left_knee"][0]
    limit, beyond = HINGES["left_knee"][0][2], 4.0  # the knee folds to 179 degrees, past its limit
    qpos[0, knee] = np.radians(limit + beyond)
    joints = qpos_to_joints(humanoid, qpos)
    retargeted = joints_to_qpos(humanoid, joints)
    assert np.degrees(retargeted[0, knee]) == pytest.approx(limit)
    error = np.linalg.norm(qpos_to_joints(humanoid, retargeted) - joints, axis=-1)[0]
    below = [JOINT["left_ankle"], JOINT["left_foot"]]
    assert np.delete(error, below).max() < 1e-6
    shin = Skeleton.adult().bone_lengths[JOINT["left_ankle"]]
    assert error[JOINT["left_ankle"]] == pytest.approx(2 * shin * np.sin(np.radians(beyond) / 2), rel=1e-3)
    assert error[JOINT["left_foot"]] <= error[JOINT["left_ankle"]] + 1e-9  # the foot turns back towards it


def test_drifting_bone_lengths_keep_bone_directions(humanoid):
    joints = qpos_to_joints(humanoid, smooth_random_motion(humanoid, frames=20, seed=2, reach=0.3))
    stretched = joints[:, 0:1] + 1.05 * (joints - joints[:, 0:1])  # every bone 5 % longer
    back = qpos_to_joints(humanoid, joints_to_qpos(humanoid, stretched))
    bones = back[:, 1:] - back[:, list(PARENTS[1:])]
    wanted = stretched[:, 1:] - stretched[:, list(PARENTS[1:])]
    cosine = np.sum(bones * wanted, -1) / np.linalg.norm(bones, axis=-1) / np.linalg.norm(wanted, axis=-1)
    assert np.median(cosine) > 0.999
    np.testing.assert_allclose(np.linalg.norm(bones, axis=-1), Skeleton.adult().bone_lengths[1:][None]
                               * np.ones((20, 1)), atol=1e-6)


def test_rejects_non_finite_and_misshapen_joints(humanoid):
    joints = qpos_to_joints(humanoid, humanoid.model.qpos0[None])
    joints[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        joints_to_qpos(humanoid, joints)
    with pytest.raises(ValueError, match=r"\(T, 22, 3\)"):
        joints_to_qpos(humanoid, np.zeros((5, 21, 3)))


def test_humanml3d_shaped_clips_take_the_real_geometry():
    real = real_motions()["012314"]
    clip = humanml3d_shaped(procedural("walk"), real)
    bones = np.linalg.norm(clip[:, 1:] - clip[:, list(PARENTS[1:])], axis=-1)
    # The rigid sets' bones keep the real motion's lengths, which round HumanML3D's to 5e-5 m.
    np.testing.assert_allclose(bones, np.tile(Skeleton.adult().bone_lengths[1:], (len(clip), 1)), atol=1e-4)
    for root, children in RIGID_GROUPS:
        points = [root, *children]
        distances = np.linalg.norm(clip[:, points, None] - clip[:, None, points], axis=-1)
        np.testing.assert_allclose(distances, np.broadcast_to(distances[:1], distances.shape), atol=1e-9)
        shape = real[0, points]
        np.testing.assert_allclose(distances[0], np.linalg.norm(shape[:, None] - shape[None], axis=-1), atol=1e-6)
    assert clip[..., 1].min() == 0.0


@pytest.mark.parametrize("motion_id", sorted(real_motions()))
def test_round_trip_of_real_humanml3d_motions(motion_id):
    joints = real_motions()[motion_id]
    # The textbook adult cannot take SMPL's pelvis and chest: its hips are 8 cm too high.
    assert round_trip_mm(adult_for(joints), joints) > 50.0
    humanoid = Humanoid.for_motion(joints)
    assert round_trip_mm(humanoid, joints) < 5.0
    # The limits hold real poses; only the feet's roll and twist, which a twist about the foot bone
    # replaces, reach theirs (SMPL's sideways knees turn the thighs, see HINGES).
    assert limited_hinges(humanoid, joints) <= {"left_ankle", "right_ankle"}


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_of_humanml3d_shaped_and_procedural_motions(family):
    clip, joints = shaped_clip(family), procedural(family)
    assert round_trip_mm(adult_for(clip), clip) > 50.0
    for motion in (clip, joints):
        humanoid = Humanoid.for_motion(motion)
        assert round_trip_mm(humanoid, motion) < 1.0
        assert not limited_hinges(humanoid, motion)
    assert round_trip_mm(adult_for(joints), joints) < 1.0  # the procedural data's own skeleton
