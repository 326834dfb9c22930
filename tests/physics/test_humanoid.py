"""The generated humanoid compiles, has a plausible body, stands, and keeps its frames straight."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from scl_ray.motion.procedural import FAMILIES
from scl_ray.motion.skeleton import JOINT, JOINT_NAMES, PARENTS, RIGID_GROUPS, Skeleton
from scl_ray.physics.body import (
    HEAD_TOP, HINGES, Anthropometry, default_ankle_height, infer_ankle_height, neutral_offsets, to_data, to_sim,
)
from scl_ray.physics.humanoid import Humanoid, HumanoidSettings, build_humanoid_mjcf, build_model
from scl_ray.physics.retarget import joints_to_qpos, qpos_to_joints
from tests.physics.clips import procedural, real_motions


@pytest.fixture(scope="module")
def humanoid():
    return Humanoid.build(Skeleton.adult(), sim_hz=300)


def test_frames_are_a_proper_rotation_and_inverse():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 10, 3))
    np.testing.assert_allclose(to_data(to_sim(a)), a)
    # A proper rotation keeps handedness: the cross product commutes with the conversion.
    np.testing.assert_allclose(to_sim(np.cross(a, b)), np.cross(to_sim(a), to_sim(b)))
    np.testing.assert_allclose(to_sim(np.array([0.0, 1.0, 0.0])), [0.0, 0.0, 1.0])  # data up is sim up


def test_model_compiles_with_every_name(humanoid):
    model = humanoid.model
    hinges = sum(len(axes) for axes in HINGES.values())
    assert model.nq == 7 + hinges and model.nv == 6 + hinges
    assert model.nu == hinges + 6  # a servo per hinge, plus the six residual root servos
    assert [model.site(int(i)).name for i in humanoid.joint_sites] == list(JOINT_NAMES)
    assert model.opt.timestep == pytest.approx(1 / 300)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST


def test_mass_follows_stature_cubed():
    adult = Anthropometry.of(Skeleton.adult())
    assert 1.6 < adult.stature < 1.75
    assert adult.mass == pytest.approx(70.0 * (adult.stature / 1.75) ** 3)
    model = build_model(Skeleton.adult())
    assert model.body_subtreemass[model.body("pelvis").id] == pytest.approx(adult.mass, rel=1e-6)
    big = build_model(Skeleton.adult(scale=1.1))
    assert big.body_subtreemass[big.body("pelvis").id] == pytest.approx(adult.mass * 1.1**3, rel=1e-6)


def test_neutral_stance_stands_on_the_longer_leg_with_ankles_above_the_toes(humanoid):
    joints = qpos_to_joints(humanoid, humanoid.model.qpos0[None])[0]
    toes = joints[[JOINT["left_foot"], JOINT["right_foot"]], 1]
    ankles = joints[[JOINT["left_ankle"], JOINT["right_ankle"]], 1]
    assert toes.min() == pytest.approx(0.0, abs=1e-9)
    # Each ankle the same height above its own toe; the shorter leg's foot hangs by the legs' difference.
    np.testing.assert_allclose(ankles - toes, default_ankle_height(Skeleton.adult()), atol=1e-9)
    legs = [skeleton_leg(side) for side in ("left", "right")]
    assert toes.max() == pytest.approx(abs(legs[0] - legs[1]), abs=1e-9)
    bones = np.linalg.norm(joints[1:] - joints[list(PARENTS[1:])], axis=1)
    np.testing.assert_allclose(bones, Skeleton.adult().bone_lengths[1:], atol=1e-9)


def skeleton_leg(side: str) -> float:
    """The adult skeleton's hip-to-ankle height with the leg straight: thigh, shin and the hip's drop."""
    lengths, offsets = Skeleton.adult().bone_lengths, neutral_offsets(Skeleton.adult())
    return lengths[JOINT[f"{side}_knee"]] + lengths[JOINT[f"{side}_ankle"]] - offsets[JOINT[f"{side}_hip"], 1]


def test_ankles_on_the_floor_variant():
    humanoid = Humanoid.build(Skeleton.adult(), settings=HumanoidSettings(ankle_height=0.0))
    joints = qpos_to_joints(humanoid, humanoid.model.qpos0[None])[0]
    lowest_ankle = min(joints[JOINT["left_ankle"], 1], joints[JOINT["right_ankle"], 1])
    assert lowest_ankle == pytest.approx(0.0, abs=1e-9)
    data = mujoco.MjData(humanoid.model)
    mujoco.mj_forward(humanoid.model, data)
    assert data.contact.dist[: data.ncon].min(initial=0.0) > -1e-3  # no geom starts inside the floor


@pytest.mark.parametrize("skeleton, ankle_height", [(Skeleton.adult(), None), (Skeleton.humanml3d(), 0.05)],
                         ids=["adult", "humanml3d"])
def test_stands_on_its_servos_alone(skeleton, ankle_height):
    humanoid = Humanoid.build(skeleton, 300, HumanoidSettings(ankle_height=ankle_height))
    model = humanoid.model
    model.actuator_forcerange[humanoid.residual_actuators] = 0.0  # no residual wrench to lean on
    data = mujoco.MjData(model)
    standing_pelvis = data.qpos[2]
    mujoco.mj_step(model, data, nstep=600)  # 2 s, every hinge target at the neutral stance
    assert abs(data.qpos[2] - standing_pelvis) < 0.02
    up = np.array([0.0, 0.0, 1.0])
    pelvis_up = data.xmat[model.body("pelvis").id].reshape(3, 3) @ up
    assert np.degrees(np.arccos(pelvis_up @ up)) < 5.0
    # The longer leg's sole flat on the floor (4 corners; the shorter leg's hangs by the legs' difference,
    # 7-10 mm on these skeletons, test_neutral_stance_stands_on_the_longer_leg_with_ankles_above_the_toes).
    assert data.ncon >= 4


def test_mjcf_is_deterministic_and_limits_are_in_the_model():
    text = build_humanoid_mjcf(Skeleton.adult(), 200)
    assert text == build_humanoid_mjcf(Skeleton.adult(), 200)
    model = mujoco.MjModel.from_xml_string(text)
    knee = model.joint("left_knee_y")
    assert model.jnt_limited[knee.id]
    np.testing.assert_allclose(np.degrees(model.jnt_range[knee.id]), HINGES["left_knee"][0][1:])


def test_neutral_stance_on_humanml3d_geometry():
    skeleton = Skeleton.from_motion(real_motions()["012314"])
    humanoid = Humanoid.build(skeleton, settings=HumanoidSettings(ankle_height=0.05))
    offsets = neutral_offsets(skeleton, 0.05)
    for _, children in RIGID_GROUPS:
        np.testing.assert_allclose(offsets[list(children)], skeleton.offsets[list(children)])
    joints = qpos_to_joints(humanoid, humanoid.model.qpos0[None])[0]
    bones = np.linalg.norm(joints[1:] - joints[list(PARENTS[1:])], axis=1)
    np.testing.assert_allclose(bones, skeleton.bone_lengths[1:], atol=1e-9)
    # The pelvis stands high enough for hips 8 cm below it: the longer leg's toe on the floor, nothing in it.
    toes = joints[[JOINT["left_foot"], JOINT["right_foot"]], 1]
    assert toes.min() == pytest.approx(0.0, abs=1e-9) and toes.max() < 0.01  # the shorter leg's, by the difference
    assert joints[[JOINT["left_ankle"], JOINT["right_ankle"]], 1].min() == pytest.approx(0.05, abs=1e-9)
    data = mujoco.MjData(humanoid.model)
    mujoco.mj_forward(humanoid.model, data)
    assert data.contact.dist[: data.ncon].min(initial=0.0) > -1e-3
    # The chest stands above the hips, though SMPL's pelvis carries spine1 5 cm behind them.
    hips = joints[[JOINT["left_hip"], JOINT["right_hip"]], 2].mean()
    assert skeleton.offsets[JOINT["spine1"], 2] < -0.03
    assert joints[JOINT["spine3"], 2] == pytest.approx(hips, abs=1e-9)


@pytest.mark.parametrize("skeleton", [Skeleton.adult(), Skeleton.humanml3d()], ids=["adult", "humanml3d"])
def test_stature_is_sole_to_crown_in_the_neutral_stance(skeleton):
    humanoid = Humanoid.build(skeleton)  # anatomical ankle height
    head = qpos_to_joints(humanoid, humanoid.model.qpos0[None])[0, JOINT["head"], 1]
    body = Anthropometry.of(skeleton)
    # Within the half difference of the legs' lengths: the stature takes their mean, the stance the longer.
    assert body.stature == pytest.approx(head + HEAD_TOP * body.size, abs=0.006)


def test_ankle_height_is_inferred_per_dataset_convention():
    assert {infer_ankle_height(procedural(family)) for family in FAMILIES} == {0.0}
    assert all(0.03 <= infer_ankle_height(joints) <= 0.06 for joints in real_motions().values())


def test_humanoid_for_a_motion_takes_its_skeleton_and_feet():
    joints = real_motions()["012314"]
    humanoid = Humanoid.for_motion(joints)
    np.testing.assert_allclose(humanoid.skeleton.offsets, Skeleton.from_motion(joints).offsets)
    toe, ankle = qpos_to_joints(humanoid, humanoid.model.qpos0[None])[0, [JOINT["left_foot"], JOINT["left_ankle"]], 1]
    assert ankle - toe >= infer_ankle_height(joints) - 1e-9
    fixed = Humanoid.for_motion(joints, settings=HumanoidSettings(ankle_height=0.0))
    assert qpos_to_joints(fixed, fixed.model.qpos0[None])[0, [JOINT["left_ankle"], JOINT["right_ankle"]], 1].min() \
        == pytest.approx(0.0, abs=1e-9)


def test_planted_soles_lie_flat_on_the_floor():
    """Where the data's toe is planted, the retargeted reference's sole lies flat on the floor: level to 2 mm
    on the procedural motions (whose ankles sit on the floor) and with neither heel more than 1 cm in the floor
    on the upstream HumanML3D files (their ankle height is inferred to the centimetre). A shorter leg's foot
    built with a taller ankle put the right heel 1.4 cm in the floor on every procedural motion."""
    motions = {family: procedural(family) for family in FAMILIES} | {f"real {k}": v for k, v in real_motions().items()}
    for name, joints in motions.items():
        humanoid = Humanoid.for_motion(joints)
        reference = joints_to_qpos(humanoid, joints)
        data = mujoco.MjData(humanoid.model)
        lowest = joints[:, [JOINT["left_foot"], JOINT["right_foot"]], 1].min(axis=1)
        for side, body in enumerate(humanoid.sole_bodies):
            toe = joints[:, JOINT[("left_foot", "right_foot")[side]]]
            still = np.r_[False, np.linalg.norm(np.diff(toe, axis=0), axis=-1) < 0.005]
            tilts = []
            for frame in np.nonzero(still & (toe[:, 1] - lowest < 0.01))[0]:
                data.qpos[:] = reference[frame]
                mujoco.mj_kinematics(humanoid.model, data)
                heights = (data.xpos[body] + humanoid.sole_corners[side] @ data.xmat[body].reshape(3, 3).T)[:, 2]
                tilts.append(heights[:2].mean() - heights[2:].mean())  # heel corners minus toe corners
            assert len(tilts) > 20, name
            bound = (-0.01, 0.01) if name.startswith("real") else (-0.002, 0.002)
            assert bound[0] <= np.median(tilts) <= bound[1], f"{name} side {side}: heel {np.median(tilts):+.4f} m"
