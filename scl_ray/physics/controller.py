"""The tracker's controller: what `track` applies at every control step.

Per control step (`Controller.apply`): the hinge servos' targets, the root's wanted wrench (feed-forward
plus a critically damped PD on the root error), that wrench shared between the sole corners near the
floor as contact forces inside a friction pyramid (non-negative least squares) and turned into leg
torques, the swing feet's task-space pull (`swing_torques`), and the residual root wrench clipped to
the budget. `set_help` arms the root servo of a help level. `tracker.py`'s docstring says why each part
is there and what it was measured to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import mujoco
import numpy as np
from scipy.optimize import nnls

from scl_ray.motion.constants import FPS
from scl_ray.physics.humanoid import Humanoid

# Regularisation of the contact forces' least squares, relative to body weight: among the force
# distributions that give the wanted wrench, prefer the evenly spread ones.
FORCE_REGULARISATION = 1e-2
MIN_CONTACT_WEIGHT = 0.05  # a corner at the top of the contact band costs 1 / this squared more
TOE_REACH = 0.05  # m: the most a swinging toe's height is corrected by (`Controller.swing_torques`)
MAX_SUPPORT = 4.0  # body weights: the most the feet are asked to push (a jump's landing reaches 3-5)


@dataclass(frozen=True)
class TrackerSettings:
    """control_hz: rate of the feed-forward, the contact forces and the servo targets; fps: reference
    frame rate; root_hz: natural frequency of the root's feedback; swing_hz: of the swing feet's
    (0: none), and swing_toe the share of its pull that lifts the toe joint besides the foot's origin (the
    ankle) towards the reference; friction: friction
    coefficient assumed when sharing the load (below the floor's, so that planned forces hold);
    contact_height: a sole corner this close to the floor (m) can push; help_levels, help_factor,
    max_help: the help ladder (its top force, body weights); fall_distance (m) / fall_angle
    (radians): root deviations that roll back; rollback_frames: how far back; help_frames: how many
    frames from there get the higher level; exposure_frames: each output frame is the mean configuration
    over this many frames either side of its time (the control steps' states; 0: the state at that
    instant), see `tracker._exposed`."""

    control_hz: float = 60.0
    fps: float = FPS
    root_hz: float = 2.0
    swing_hz: float = 5.0
    swing_toe: float = 0.25
    friction: float = 0.8
    contact_height: float = 0.005
    help_levels: int = 4
    help_factor: float = 3.0
    max_help: float = 1.5
    fall_distance: float = 0.15
    fall_angle: float = 0.5
    rollback_frames: int = 10
    help_frames: int = 20
    exposure_frames: float = 1.0


class ReferenceFeet(NamedTuple):
    """The reference's feet at one control step, simulation frame: points (2, 2, 3) each foot's origin
    (the ankle) and toe joint, velocities (2, 2, 3) theirs, swing (2,) how much each foot swings (0-1),
    soles (2, 4) its sole corners' heights above the floor (m)."""

    points: np.ndarray
    velocities: np.ndarray
    swing: np.ndarray
    soles: np.ndarray


def vector_norm(vector: np.ndarray) -> float:
    """Euclidean norm of a short vector (np.linalg.norm's overhead dominates at this size)."""
    return math.sqrt(float(np.dot(vector, vector)))


def _friction_pyramid(friction: float) -> np.ndarray:
    """(3, 4) unit edges of a linearised friction cone around +z (the floor's normal)."""
    edges = np.array([[friction, 0, 1], [-friction, 0, 1], [0, friction, 1], [0, -friction, 1]], dtype=np.float64)
    return (edges / np.linalg.norm(edges, axis=1, keepdims=True)).T


class Controller:
    """The per-control-step computations of `track`, with their scratch buffers."""

    def __init__(self, humanoid: Humanoid, settings: TrackerSettings):
        model = humanoid.model
        self.humanoid, self.settings, self.model = humanoid, settings, model
        self.weight = humanoid.weight
        self.pyramid = _friction_pyramid(settings.friction)
        self.jacobian = np.zeros((3, model.nv))
        self.rotation_jacobian = np.zeros((3, model.nv))
        self.inertia = np.zeros((model.nv, model.nv))
        self.lead = -model.actuator_biasprm[:, 2] / model.actuator_gainprm[:, 0]  # kv / kp of each servo
        self.hinge_qpos = np.concatenate(list(humanoid.hinge_qpos.values()))
        servos = humanoid.residual_actuators
        self.servos = servos
        self.servo_gain = model.actuator_gainprm[servos, 0].copy()
        self.servo_bias = model.actuator_biasprm[servos, :3].copy()
        self.servo_range = model.actuator_forcerange[servos].copy()
        self.strength = model.actuator_forcerange[humanoid.hinge_actuators, 1].copy()
        # The swing feet: per side, the leg's hinge dofs (the servo's torques act on them only, so the
        # body's momentum is untouched) and the mass the servo moves (shank and foot).
        self.leg_dofs = [np.array([model.jnt_dofadr[j] for j in range(model.njnt)
                                   if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
                                   and model.body(model.jnt_bodyid[j]).name.startswith(side)
                                   and model.body(model.jnt_bodyid[j]).name.split("_")[1] in ("hip", "knee", "ankle")])
                         for side in ("left", "right")]
        self.swing_mass = sum(model.body_mass[model.body(f"left_{part}").id] for part in ("knee", "ankle"))
        self.foot_jacobian = np.zeros((3, model.nv))
        self.toe_jacobian = np.zeros((3, model.nv))
        self.toes = foot_toes(humanoid)

    def set_help(self, level: int) -> float:
        """Arm the root servo for help `level` (0: off); returns its gain factor. Its force limits grow
        by the same factor up to max_help body weights (vertically the budget's share of it), so that
        no help can carry the body through the air."""
        factor = 0.0 if level == 0 else self.settings.help_factor ** level
        model = self.model
        model.actuator_gainprm[self.servos, 0] = self.servo_gain * factor
        model.actuator_biasprm[self.servos, 1] = self.servo_bias[:, 1] * factor
        model.actuator_biasprm[self.servos, 2] = self.servo_bias[:, 2] * np.sqrt(factor)
        horizontal = self.servo_range[0, 1]
        cap = self.settings.max_help * self.weight / horizontal if horizontal > 0.0 else 0.0
        model.actuator_forcerange[self.servos] = self.servo_range * min(factor, cap)
        return factor

    def restore(self) -> None:
        """Put the root servo back as the humanoid was built."""
        self.model.actuator_gainprm[self.servos, 0] = self.servo_gain
        self.model.actuator_biasprm[self.servos, :3] = self.servo_bias
        self.model.actuator_forcerange[self.servos] = self.servo_range

    def _contact_forces(self, data: mujoco.MjData, wrench: np.ndarray, soles: np.ndarray | None = None) -> np.ndarray:
        """(nv,) generalized force of contact forces at the sole corners near the floor that best supply
        the root wrench (6,); zero when no corner is near. A corner's share fades out as it rises from the
        floor to contact_height (its forces cost more), so that the plan changes smoothly as a sole rolls.
        soles (2, 4): the reference's corner heights; a corner counts as high as the higher of its own
        and its reference's.

        Without the reference's heights, a sole the simulation still had flat while the reference
        rolled it onto the toes carried the body on its heel as much as on its toes: the ankle got no
        push-off torque, the heel stayed down, and when the other foot took the load the sole came off
        the floor whole and landed 6-7 cm behind (a clean walk's toe slid 29 and 38 mm in two frames).
        Measured on clean procedural motions (benchmarks/corrector_quality.py, seed 0), foot skating
        walk 8.4 -> 6.2 mm per frame, walk backward 8.4 -> 6.3, side step 13.5 -> 10.6 (mean per-joint
        error 21 -> 7 mm), turn 3.3 -> 1.9; a run's barely moves, 11.2 -> 10.3 (its sole bounces at
        touch-down)."""
        model, humanoid, height = self.model, self.humanoid, self.settings.contact_height
        jacobians, heights = [], []
        for side, (body, corners) in enumerate(zip(humanoid.sole_bodies, humanoid.sole_corners)):
            offsets = corners @ data.xmat[body].reshape(3, 3).T  # (4, 3) from the foot's origin, world frame
            low = data.xpos[body, 2] + offsets[:, 2] < height
            if not low.any():
                continue
            # A point's Jacobian is the body's translation plus its rotation crossed with the offset.
            mujoco.mj_jacBody(model, data, self.jacobian, self.rotation_jacobian, body)
            arms = offsets[low]
            wx, wy, wz = self.rotation_jacobian  # rows: the body's angular velocity per dof
            ax, ay, az = arms.T[:, :, None]
            jacobians.append(self.jacobian[None] - np.stack([ay * wz - az * wy, az * wx - ax * wz, ax * wy - ay * wx], 1))
            corner_heights = data.xpos[body, 2] + arms[:, 2]
            heights.append(corner_heights if soles is None else np.maximum(corner_heights, soles[side][low]))
        if not jacobians:
            return np.zeros(model.nv)
        jacobians = np.concatenate(jacobians)  # (K, 3, nv)
        weights = np.maximum(1.0 - np.maximum(np.concatenate(heights), 0.0) / height, MIN_CONTACT_WEIGHT)
        # Root rows of each corner's force along each pyramid edge: (6, 4K).
        columns = np.einsum("kiv,ie->vke", jacobians[:, :, :6], self.pyramid).reshape(6, -1)
        costs = np.repeat(np.sqrt(FORCE_REGULARISATION) / weights, 4)
        system = np.vstack([columns, np.diag(costs)])
        target = np.concatenate([wrench / self.weight, np.zeros(len(costs))])
        amounts, _ = nnls(system, target, maxiter=50 * len(costs))
        forces = (self.pyramid @ (amounts * self.weight).reshape(-1, 4).T).T  # (K, 3)
        return np.einsum("kiv,ki->v", jacobians, forces)

    def swing_torques(self, data: mujoco.MjData, feet: np.ndarray, feet_velocity: np.ndarray,
                      swing: np.ndarray) -> np.ndarray:
        """(nv,) leg hinge torques pulling each swinging foot's origin (the ankle), and with a share
        swing_toe of the pull its toe joint, towards the reference's: feet (2, 2, 3) and feet_velocity
        (2, 2, 3) the reference's origins and toes, swing (2,) how much each foot swings (0-1).

        The origin alone leaves the foot's pitch to the ankle's servo, which lags under the swing's
        acceleration: on clean procedural walks the simulated toe passed 1-2 cm below the reference's
        at lift-off and touch-down, inside the 5 cm contact band while moving 2-3 m/s (skating).
        The toe is pulled vertically only, and towards a height within TOE_REACH of its own. Measured on
        the 90-case judge (benchmarks/corrector_quality.py): 62 whole cases without the toe, 69 with a
        quarter of the pull on its height. Pulled along the floor as well, it dragged the shuffling foot
        of real HumanML3D file 000000 (tracking error 28 -> 57 mm); pulled without a reach, towards a
        reference that leaves the floor by a metre it bent the ankle to its limit, and the foot landed
        on its heel and stayed there (tests/physics/test_tracker.py, 10 -> 41 mm after landing). With
        both limits the real files track at 26 and 27 mm (23 and 28 without the toe); half the pull
        took file 000000 to 53 mm."""
        torques = np.zeros(self.model.nv)
        omega = 2.0 * np.pi * self.settings.swing_hz
        for side, body in enumerate(self.humanoid.sole_bodies):
            if swing[side] <= 0.0:
                continue
            dofs, origin = self.leg_dofs[side], data.xpos[body]
            mujoco.mj_jacBody(self.model, data, self.foot_jacobian, None, body)
            velocity = self.foot_jacobian @ data.qvel
            pull = self.swing_mass * swing[side] * (omega**2 * (feet[side, 0] - origin)
                                                    + 2.0 * omega * (feet_velocity[side, 0] - velocity))
            torques[dofs] += self.foot_jacobian[:, dofs].T @ pull
            if self.settings.swing_toe > 0.0:
                # The toe's height, towards the reference's within TOE_REACH: the correction is of
                # centimetres near the floor, not of a leg the reference lifts out of reach.
                toe = origin + data.xmat[body].reshape(3, 3) @ self.toes[side]
                mujoco.mj_jac(self.model, data, self.toe_jacobian, None, toe, body)
                height = np.clip(feet[side, 1, 2] - toe[2], -TOE_REACH, TOE_REACH)
                rate = np.clip(feet_velocity[side, 1, 2] - self.toe_jacobian[2] @ data.qvel, -omega * TOE_REACH, omega * TOE_REACH)
                lift = self.settings.swing_toe * self.swing_mass * swing[side] * (omega**2 * height + 2.0 * omega * rate)
                torques[dofs] += self.toe_jacobian[2, dofs] * lift
        return torques

    def apply(self, data: mujoco.MjData, qpos: np.ndarray, qvel: np.ndarray, force: np.ndarray,
              help_factor: float, feet: ReferenceFeet | None = None) -> np.ndarray:
        """Set the servo targets and applied forces for reference state (qpos, qvel) and feed-forward
        `force` (nv,); feet: the reference's feet at this step, None for neither the swing pull nor
        the reference's soles. Returns the explicit residual root wrench (6,) applied."""
        model, humanoid, settings = self.model, self.humanoid, self.settings
        data.ctrl[humanoid.hinge_actuators] = (qpos[self.hinge_qpos]
                                               + self.lead[humanoid.hinge_actuators] * qvel[humanoid.hinge_dofs])
        orientation = qpos[3:7] / vector_norm(qpos[3:7])
        error = np.zeros(6)
        error[:3] = qpos[:3] - data.qpos[:3]
        mujoco.mju_subQuat(error[3:], orientation, data.qpos[3:7])  # in the root's frame, as qvel
        # The feedback saturates at the rollback thresholds: the legs push the body back towards the
        # reference as hard as a human would, not as hard as a far-off reference would ask.
        error[:3] *= min(1.0, settings.fall_distance / max(vector_norm(error[:3]), 1e-12))
        error[3:] *= min(1.0, settings.fall_angle / max(vector_norm(error[3:]), 1e-12))
        omega = 2.0 * np.pi * settings.root_hz
        mujoco.mj_fullM(model, data, self.inertia)
        wrench = force[:6] + self.inertia[:6, :6] @ (omega**2 * error + 2.0 * omega * (qvel[:6] - data.qvel[:6]))
        # A human's legs push with a few body weights at most; a generated reference can ask for tens.
        wrench *= min(1.0, MAX_SUPPORT * self.weight / max(vector_norm(wrench[:3]), 1e-12))
        contact = self._contact_forces(data, wrench, None if feet is None else feet.soles)
        limit = self.servo_range[:, 1]  # the budget, per component
        residual = np.clip(wrench - contact[:6], -limit, limit)
        data.qfrc_applied[:] = 0.0
        # The hinges' strength: the feed-forward is clipped to what each hinge's servo can exert.
        hinge = force - contact
        if feet is not None:
            hinge = hinge + self.swing_torques(data, feet.points, feet.velocities, feet.swing)
        data.qfrc_applied[humanoid.hinge_dofs] = np.clip(hinge[humanoid.hinge_dofs], -self.strength, self.strength)
        data.qfrc_applied[:6] = residual
        if help_factor > 0.0:
            lead = self.lead[self.servos] / np.sqrt(help_factor)
            data.mocap_pos[humanoid.position_target] = qpos[:3] + lead[0] * qvel[:3]
            turn = np.zeros(4)
            mujoco.mju_axisAngle2Quat(turn, lead[3] * qvel[3:6] / max(np.linalg.norm(qvel[3:6]), 1e-12),
                                      lead[3] * np.linalg.norm(qvel[3:6]))
            mujoco.mju_mulQuat(data.mocap_quat[humanoid.orientation_target], orientation, turn)
        return residual


def foot_toes(humanoid: Humanoid) -> np.ndarray:
    """(2, 3) each foot's toe joint in its body frame: the middle of its sole's front edge."""
    return humanoid.sole_corners[:, 2:].mean(axis=1)

