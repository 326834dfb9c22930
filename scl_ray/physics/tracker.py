"""The humanoid tracking a reference motion in MuJoCo: PD targets plus a force-limited root servo.

Every `1 / control_hz` seconds the hinge servos get their targets, the two mocap targets the
reference root pose, and each hinge a torque holding its limb against gravity; MuJoCo integrates
the critically damped servos, the residual root wrench (limited to a share of body weight, so the
body cannot hover, sink or skate against gravity and friction), contacts and joint limits at the
simulation rate. A target is the reference in the middle of its control period plus kv / kp times
the reference velocity: the servo force kp (target - q) - kv dq then is the PD law
kp (q_ref - q) + kv (dq_ref - dq), which tracks a moving reference without lagging behind it.

A fall or divergence (root too far from the reference, root tilted too far from it, a non-finite
state, a MuJoCo warning) resets the humanoid to the reference at that frame and tracking goes on;
the falls are counted, and past `max_recoveries` the tracking gives up (`TrackingFailed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation

from scl_ray.physics.humanoid import Humanoid
from scl_ray.physics.retarget import joints_to_qpos, qpos_to_joints

# The reference is low-passed before tracking: its own noise would otherwise reach the stiff leg
# servos and shake the whole body. A Savitzky-Golay filter (a cubic fitted over 7 frames, 0.35 s)
# keeps the timing of foot lift-offs and landings that a Gaussian of similar noise rejection
# blurs into skating. The velocities fed forward are smoothed once more (Gaussian sigma, frames).
REFERENCE_SMOOTHING = 7
SMOOTHING_ORDER = 3
VELOCITY_SMOOTHING = 1.0
# MuJoCo warnings that mean the state can no longer be trusted (BADQACC comes with a reset to qpos0).
DIVERGENCE_WARNINGS = tuple(int(w) for w in (
    mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQACC,
    mujoco.mjtWarning.mjWARN_CONTACTFULL, mujoco.mjtWarning.mjWARN_CNSTRFULL))


class TrackingFailed(RuntimeError):
    """The humanoid fell more often than allowed; fall_frames are the frames at which it fell."""

    def __init__(self, message: str, fall_frames: tuple[int, ...] = ()):
        super().__init__(message)
        self.fall_frames = fall_frames


@dataclass(frozen=True)
class TrackerSettings:
    """fps: reference frame rate; fall_height (m) and fall_angle (radians): root deviations from the
    reference that count as a fall; max_recoveries: falls recovered before tracking gives up."""

    control_hz: float = 30.0
    fps: float = 20.0
    fall_height: float = 0.35
    fall_angle: float = 1.0
    max_recoveries: int = 5


@dataclass(frozen=True)
class Tracking:
    """What the humanoid did: joints (T, 22, 3) metres, data frame (y up); qpos (T, nq); the frames
    at which it fell and was reset to the reference."""

    joints: np.ndarray
    qpos: np.ndarray
    fall_frames: tuple[int, ...]

    @property
    def falls(self) -> int:
        return len(self.fall_frames)


def _hemisphere_aligned(quaternions: np.ndarray) -> np.ndarray:
    """(T, 4) quaternions with signs flipped so that neighbours are in one hemisphere."""
    signs = np.sign(np.sum(quaternions[1:] * quaternions[:-1], axis=1))
    aligned = quaternions.copy()
    aligned[1:] *= np.cumprod(np.where(signs == 0, 1.0, signs))[:, None]
    return aligned


def reference_velocities(model: mujoco.MjModel, qpos: np.ndarray, fps: float) -> np.ndarray:
    """(T, nv) velocities of configurations qpos (T, nq) sampled at fps (Hz), by central differences
    of the configurations smoothed over VELOCITY_SMOOTHING frames (the servos' feed-forward)."""
    frames = len(qpos)
    qvel = np.zeros((frames, model.nv))
    if frames < 2:
        return qvel
    qpos = np.array(qpos, dtype=np.float64)
    qpos[:, 3:7] = _hemisphere_aligned(qpos[:, 3:7])
    qpos = gaussian_filter1d(qpos, VELOCITY_SMOOTHING, axis=0, mode="nearest")
    qpos[:, 3:7] /= np.linalg.norm(qpos[:, 3:7], axis=1, keepdims=True)
    for frame in range(frames):
        before, after = max(frame - 1, 0), min(frame + 1, frames - 1)
        mujoco.mj_differentiatePos(model, qvel[frame], (after - before) / fps, qpos[before], qpos[after])
    return qvel


def reference_from_joints(humanoid: Humanoid, joints: np.ndarray, smoothing: int = REFERENCE_SMOOTHING) -> np.ndarray:
    """The reference the humanoid tracks: joints (T, 22, 3), metres, data frame, low-passed along
    time (Savitzky-Golay, cubic, over `smoothing` frames; 0 or 1 for none) and retargeted.
    Returns qpos (T, nq)."""
    joints = np.asarray(joints, dtype=np.float64)
    window = min(int(smoothing), len(joints) - 1 + len(joints) % 2)  # odd, at most the motion's length
    if window > SMOOTHING_ORDER:
        joints = savgol_filter(joints, window, SMOOTHING_ORDER, axis=0, mode="nearest")
    return joints_to_qpos(humanoid, joints)


def _interpolate(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """values (T, ...) linearly interpolated at fractional frame positions (N,), clamped: (N, ...)."""
    positions = np.clip(positions, 0.0, len(values) - 1)
    lower = np.minimum(np.floor(positions).astype(int), max(len(values) - 2, 0))
    upper = np.minimum(lower + 1, len(values) - 1)
    weight = (positions - lower).reshape((-1,) + (1,) * (values.ndim - 1))
    return values[lower] * (1 - weight) + values[upper] * weight


def _schedule(model: mujoco.MjModel, humanoid: Humanoid, reference: np.ndarray, velocities: np.ndarray,
              settings: TrackerSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Control steps (K,) and per control step the hinge targets (K, n_hinges), the position
    target's position (K, 3) and the orientation target's quaternion (K, 4)."""
    sim_hz = 1.0 / model.opt.timestep
    total_steps = int(round((len(reference) - 1) * sim_hz / settings.fps))
    control_steps = np.unique(np.round(np.arange(0, total_steps + 1, sim_hz / settings.control_hz)).astype(int))
    control_steps = control_steps[control_steps < max(total_steps, 1)]
    # Each target is held for a control period: aim at the middle of it, and lead by the servo's lag.
    at = (control_steps / sim_hz + 0.5 / settings.control_hz) * settings.fps
    lag = -model.actuator_biasprm[:, 2] / model.actuator_gainprm[:, 0]
    hinge_qpos = np.concatenate(list(humanoid.hinge_qpos.values()))
    targets = (_interpolate(reference[:, hinge_qpos], at)
               + lag[humanoid.hinge_actuators] * _interpolate(velocities[:, humanoid.hinge_dofs], at))
    force, torque = humanoid.residual_actuators[0], humanoid.residual_actuators[3]
    positions = _interpolate(reference[:, :3], at) + lag[force] * _interpolate(velocities[:, :3], at)
    quaternions = _interpolate(_hemisphere_aligned(reference[:, 3:7]), at)
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    # The free joint's angular velocity is in the body frame: turn the target about it.
    turn = Rotation.from_rotvec(lag[torque] * _interpolate(velocities[:, 3:6], at))
    quaternions = (Rotation.from_quat(quaternions, scalar_first=True) * turn).as_quat(scalar_first=True)
    return control_steps, targets, positions, quaternions


def _gravity_compensation(model: mujoco.MjModel, data: mujoco.MjData, humanoid: Humanoid) -> np.ndarray:
    """(n_hinges,) torques, N m, holding each hinge's subtree against gravity in the current pose.

    A hinge's generalized gravity force in a tree is axis . ((subtree COM - anchor) x subtree
    weight); with gravity along -z that is weight * (axis_x lever_y - axis_y lever_x). Unlike
    qfrc_bias it leaves out velocity terms, which would feed back on a diverging state.
    """
    joints = model.dof_jntid[humanoid.hinge_dofs]
    bodies = model.jnt_bodyid[joints]
    lever = data.subtree_com[bodies] - data.xanchor[joints]
    axis = data.xaxis[joints]
    weight = -model.opt.gravity[2] * model.body_subtreemass[bodies]
    return weight * (axis[:, 0] * lever[:, 1] - axis[:, 1] * lever[:, 0])


def _fallen(data: mujoco.MjData, reference: np.ndarray, settings: TrackerSettings) -> bool:
    if not (np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all()):
        return True
    if any(data.warning[warning].number > 0 for warning in DIVERGENCE_WARNINGS):
        return True
    if np.linalg.norm(data.qpos[:3] - reference[:3]) > settings.fall_height:
        return True
    cosine = abs(float(np.dot(data.qpos[3:7], reference[3:7]))) / np.linalg.norm(data.qpos[3:7])
    return 2.0 * np.arccos(min(cosine, 1.0)) > settings.fall_angle


def _reset(model: mujoco.MjModel, data: mujoco.MjData, qpos: np.ndarray, qvel: np.ndarray) -> None:
    """Put the humanoid in configuration qpos with velocity qvel, lifted out of the floor if the
    reference sinks into it (stiff contacts would otherwise fling it up)."""
    mujoco.mj_resetData(model, data)
    data.qpos[:] = qpos
    data.qvel[:] = qvel
    mujoco.mj_forward(model, data)
    depth = -float(data.contact.dist[: data.ncon].min(initial=0.0))
    if depth > 0.0:
        data.qpos[2] += depth
        mujoco.mj_forward(model, data)


def track(humanoid: Humanoid, reference: np.ndarray, settings: TrackerSettings = TrackerSettings(),
          data: mujoco.MjData | None = None) -> Tracking:
    """Simulate the humanoid following reference configurations.

    reference: (T, nq) qpos at settings.fps (from `retarget.joints_to_qpos`), T >= 1. data: scratch
    MjData to reuse (its state is overwritten). Returns the simulated motion at the same frames.
    Raises TrackingFailed after more than settings.max_recoveries falls.
    """
    model = humanoid.model
    data = data if data is not None else mujoco.MjData(model)
    reference = np.asarray(reference, dtype=np.float64)
    if reference.ndim != 2 or reference.shape[1] != model.nq or len(reference) < 1:
        raise ValueError(f"reference must have shape (T >= 1, {model.nq}), got {reference.shape}")
    velocities = reference_velocities(model, reference, settings.fps)
    control_steps, targets, positions, quaternions = _schedule(model, humanoid, reference, velocities, settings)
    sim_hz = 1.0 / model.opt.timestep
    frame_steps = np.round(np.arange(len(reference)) * sim_hz / settings.fps).astype(int)
    qpos = np.empty_like(reference)
    falls: list[int] = []
    _reset(model, data, reference[0], velocities[0])
    qpos[0] = data.qpos
    events = np.union1d(control_steps, frame_steps[1:])
    control, frame, step = 0, 1, 0
    for event in events:
        if event > step:
            mujoco.mj_step(model, data, nstep=int(event - step))
            step = int(event)
        if frame < len(reference) and step == frame_steps[frame]:
            if _fallen(data, reference[frame], settings):
                falls.append(frame)
                if len(falls) > settings.max_recoveries:
                    raise TrackingFailed(f"the humanoid fell {len(falls)} times (frames {falls}); "
                                         f"at most {settings.max_recoveries} are recovered", tuple(falls))
                _reset(model, data, reference[frame], velocities[frame])
            qpos[frame] = data.qpos
            frame += 1
        if control < len(control_steps) and step == control_steps[control]:
            data.ctrl[humanoid.hinge_actuators] = targets[control]
            data.qfrc_applied[humanoid.hinge_dofs] = _gravity_compensation(model, data, humanoid)
            data.mocap_pos[humanoid.position_target] = positions[control]
            data.mocap_quat[humanoid.orientation_target] = quaternions[control]
            control += 1
    return Tracking(qpos_to_joints(humanoid, qpos, data), qpos, tuple(falls))
