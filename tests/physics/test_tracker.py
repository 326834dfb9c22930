"""The simulated humanoid follows clean motions, carries itself on its feet, and never teleports."""

from __future__ import annotations

from dataclasses import replace

import mujoco
import numpy as np
import pytest

from scl_ray.motion.constants import FPS
from scl_ray.motion.procedural import generate_motion
from scl_ray.motion.skeleton import Skeleton
from scl_ray.physics.humanoid import Humanoid, HumanoidSettings
from scl_ray.physics.corrector import PhysicsCorrector
from scl_ray.physics.reference import clean_reference
from scl_ray.physics.retarget import qpos_to_joints
from scl_ray.physics.tracker import (
    TrackerSettings, inverse_dynamics, reference_derivatives, reference_from_joints, track,
)


@pytest.fixture(scope="module")
def humanoid():
    """The procedural adult (its ankles touch y = 0), 300 Hz."""
    return Humanoid.build(Skeleton.adult(), sim_hz=300, settings=HumanoidSettings(ankle_height=0.0,
                                                                                    residual_force_limit=0.3))


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


def mean_error_mm(a, b):
    return float(np.linalg.norm(a - b, axis=-1).mean() * 1000)


def test_inverse_dynamics_reproduces_the_reference_accelerations(humanoid):
    """MuJoCo's forward dynamics, given the feed-forward as applied force and no contacts, accelerates
    the humanoid exactly as the reference does: the feed-forward is the reference's own dynamics."""
    model = humanoid.model
    qpos = reference_from_joints(humanoid, generate_motion("kick", np.random.default_rng(0)).joints)
    qvel, qacc = reference_derivatives(model, qpos, FPS)
    force = inverse_dynamics(model, qpos, qvel, qacc)
    data = mujoco.MjData(model)
    flags = model.opt.disableflags
    model.opt.disableflags = flags | int(mujoco.mjtDisableBit.mjDSBL_CONSTRAINT | mujoco.mjtDisableBit.mjDSBL_ACTUATION)
    try:
        for frame in (5, 20, 40):
            data.qpos[:], data.qvel[:], data.qfrc_applied[:] = qpos[frame], qvel[frame], force[frame]
            mujoco.mj_forward(model, data)
            np.testing.assert_allclose(data.qacc, qacc[frame], atol=1e-6)
    finally:
        model.opt.disableflags = flags
    # The root's share of a stance frame is the body weight: the world must push it up.
    assert force[5, 2] == pytest.approx(humanoid.weight, rel=0.05)


@pytest.mark.parametrize("family", ["walk", "squat", "kick", "sit_down"])
def test_clean_motions_track_closely_on_their_own_feet(humanoid, family):
    clean = generate_motion(family, np.random.default_rng(0)).joints
    tracking = track(humanoid, reference_from_joints(humanoid, clean))
    assert tracking.joints.shape == clean.shape
    assert mean_error_mm(tracking.joints, clean) <= 30.0
    assert tracking.rollbacks == 0 and not tracking.help.any()
    # The feet carry the body: the residual supplies a small share of its weight, not the weight.
    assert tracking.residual.mean() < 0.15


def test_a_clean_jump_leaves_the_floor(humanoid):
    clean = generate_motion("jump_in_place", np.random.default_rng(0)).joints
    tracking = track(humanoid, reference_from_joints(humanoid, clean))
    # Measured 6.5 cm below the clean peak (1.3 cm before the contact plan read the reference's soles,
    # from the second jump, tracked with help; the first fell 6 cm short then too).
    assert tracking.joints[:, 0, 1].max() >= clean[:, 0, 1].max() - 0.08
    assert tracking.joints[:, :, 1].min(axis=1).max() > 0.15  # every joint off the floor at the top


@pytest.mark.xfail(strict=True, reason="open (issue 12): the take-off ends early; the pelvis peaks 6.5 cm "
                                       "below the clean jump's (docs/results.md, 'What still fails')")
def test_a_clean_jump_keeps_its_height(humanoid):
    """The issue's bar: a clean jump's pelvis reaches the clean motion's peak within 5 cm."""
    clean = generate_motion("jump_in_place", np.random.default_rng(0)).joints
    tracking = track(humanoid, reference_from_joints(humanoid, clean))
    assert tracking.joints[:, 0, 1].max() >= clean[:, 0, 1].max() - 0.05


def flying(humanoid, frames=100):
    """Standing, except that for half a second (frames 30 to 39) the whole body floats a metre up."""
    joints = qpos_to_joints(humanoid, standing(humanoid, frames))
    joints[30:40, :, 1] += 1.0
    return joints


def test_an_impossible_reference_gets_help_where_needed_and_no_teleport(humanoid):
    reference = flying(humanoid)
    tracking = track(humanoid, reference_from_joints(humanoid, reference))
    helped = np.flatnonzero(tracking.help)
    assert tracking.rollbacks >= 1 and helped.size > 0
    assert helped.min() >= 20 and helped.max() <= 60  # around the jump up and back, nowhere else
    # No frame is a reset: the pelvis never moves more than it can in 50 ms (the reference itself
    # jumps a metre in one frame, twice).
    step = np.linalg.norm(np.diff(tracking.joints[:, 0], axis=0), axis=-1)
    assert step.max() < 0.25
    assert mean_error_mm(tracking.joints[75:], reference[75:]) <= 40.0  # back on its feet, tracking (34 mm)
    assert tracking.residual[helped].mean() > tracking.residual[80:].mean()


def test_without_help_the_humanoid_does_what_it_can(humanoid):
    tracking = track(humanoid, reference_from_joints(humanoid, flying(humanoid)),
                     TrackerSettings(help_levels=0))
    assert tracking.rollbacks == 0 and not tracking.help.any()
    assert tracking.joints[:, 0, 1].max() < 1.2  # it cannot fly: the residual is a third of its weight


def test_tracking_is_deterministic(humanoid):
    joints = qpos_to_joints(humanoid, standing(humanoid, 40))
    reference = reference_from_joints(humanoid, joints + np.random.default_rng(0).normal(0, 0.01, joints.shape))
    first, second = track(humanoid, reference), track(humanoid, reference)
    assert first.joints.tobytes() == second.joints.tobytes()
    assert first.help.tobytes() == second.help.tobytes()


def test_bad_reference_shape_is_refused(humanoid):
    with pytest.raises(ValueError, match="reference must have shape"):
        track(humanoid, np.zeros((5, 3)))


def test_swinging_feet_help_locomotion_track_closely():
    """Each motion on its own humanoid, as the corrector builds it. Measured: mean per-joint error to
    the clean run 22.6 -> 19.3 mm and to the clean backward walk 7.8 -> 8.7 mm with the swing feet's
    servo (before the contact plan read the reference's soles: 33 -> 27 and 15 -> 11 mm; the servo's
    gain is now mostly the corruption judge's, 65 -> 69 whole cases, docs/results.md)."""
    corrector = PhysicsCorrector()
    errors = {0.0: [], TrackerSettings().swing_hz: []}
    for family in ("run", "walk_backward"):
        joints = generate_motion(family, np.random.default_rng(0)).joints
        cleaned = clean_reference(joints)[0]
        body = corrector.humanoid_for(cleaned)
        reference = reference_from_joints(body, cleaned)
        for swing_hz, found in errors.items():
            out = track(body, reference, replace(corrector.settings, swing_hz=swing_hz)).joints
            found.append(mean_error_mm(out, joints))
    with_servo, without = np.mean(errors[TrackerSettings().swing_hz]), np.mean(errors[0.0])
    assert with_servo < 0.95 * without, errors
    assert errors[TrackerSettings().swing_hz][0] < 0.9 * errors[0.0][0], errors  # the run


def test_mujoco_warnings_go_to_the_log_not_a_file(tmp_path, monkeypatch, caplog):
    """An unstable simulation still counts its warning (the tracker's divergence test reads the
    counters), but writes no MUJOCO_LOG.TXT into the working directory and prints nothing."""
    monkeypatch.chdir(tmp_path)
    model = mujoco.MjModel.from_xml_string('<mujoco><worldbody><body><freejoint/><geom size="0.1"/></body>'
                                           '</worldbody></mujoco>')
    data = mujoco.MjData(model)
    data.qvel[:] = 1e30
    with caplog.at_level("DEBUG", logger="scl_ray.physics.tracker"):
        mujoco.mj_step(model, data)
    assert data.warning[mujoco.mjtWarning.mjWARN_BADQVEL].number == 1
    assert "unstable" in caplog.text
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_exposure_averages_the_simulated_states_around_each_frame(humanoid):
    """A box of one frame either side: a uniform motion comes out at its instants (the mean of states
    symmetric about the frame), its ends averaged over the half-window they have; the root quaternion
    stays a unit quaternion even where the samples straddle its sign."""
    from scl_ray.physics.tracker import _exposed, _schedule

    model = humanoid.model
    steps_per_frame, frames = 15.0, 6
    schedule = _schedule(np.round(np.arange(frames) * steps_per_frame).astype(int), 5, steps_per_frame)
    times = np.concatenate([[0.0]] + [np.cumsum([count for count, _ in steps]) / steps_per_frame + frame
                                      for frame, steps in enumerate(schedule)])
    states = np.tile(model.qpos0, (len(times), 1))
    states[:, 0] = 0.3 * times  # the root moves at a constant speed
    angle = 0.2 * times  # and turns about the vertical; every other sample's quaternion is negated
    states[:, 3:7] = np.stack([np.cos(angle / 2), 0 * angle, 0 * angle, np.sin(angle / 2)], axis=1)
    states[1::2, 3:7] *= -1.0
    passing = [states[1 + 3 * frame: 4 + 3 * frame] for frame in range(frames - 1)]
    out = _exposed(model, states[0], passing, schedule, steps_per_frame, exposure=1.0)
    np.testing.assert_allclose(out[1:-1, 0], 0.3 * np.arange(1, frames - 1), atol=1e-12)
    assert out[0, 0] == pytest.approx(0.3 * 0.5) and out[-1, 0] == pytest.approx(0.3 * (frames - 1.5))
    np.testing.assert_allclose(np.linalg.norm(out[:, 3:7], axis=1), 1.0)
    turned = 2 * np.arctan2(np.abs(out[1:-1, 6]), np.abs(out[1:-1, 3]))
    np.testing.assert_allclose(turned, 0.2 * np.arange(1, frames - 1), atol=1e-3)


def test_exposure_removes_aliased_contact_jitter_without_moving_the_body():
    """A clean walk's simulated output sampled at instants carries its heel strikes' ringing as jitter
    (third differences) well above the kinematic walk's; averaged over one frame either side it comes
    back to the walk's own level, with the bones rigid and the per-joint error within a few
    millimetres (measured 11.3 mm at instants, 14.7 averaged)."""
    from scl_ray.physics.metrics import physics_metrics

    corrector = PhysicsCorrector()
    clean = generate_motion("walk", np.random.default_rng(0)).joints.astype(np.float64)
    cleaned, _ = clean_reference(clean)
    walker = corrector.humanoid_for(cleaned)
    reference = reference_from_joints(walker, cleaned)
    instant = track(walker, reference, replace(corrector.settings, exposure_frames=0.0)).joints
    exposed = track(walker, reference, replace(corrector.settings, exposure_frames=1.0)).joints
    jitter = {name: physics_metrics(joints)["jitter"] for name, joints in
              (("clean", clean), ("instant", instant), ("exposed", exposed))}
    assert jitter["instant"] > 1.3 * jitter["clean"], jitter
    assert jitter["exposed"] < 1.1 * jitter["clean"], jitter
    assert physics_metrics(exposed)["bone_mm"] < 1e-6
    error = {name: np.linalg.norm(joints - clean, axis=-1).mean() for name, joints in
             (("instant", instant), ("exposed", exposed))}
    assert abs(error["exposed"] - error["instant"]) < 0.004, error
