"""Joint positions <-> humanoid configurations: inverse kinematics within the hinge limits, and back.

Method: closed form, body by body from the pelvis outwards, vectorised over frames. Each body's
global rotation is what carries its neutral bones onto the data's bones: a best-fit rotation
(Kabsch) for bodies with several children (pelvis, chest), and for one child the rotation that
points the bone and turns a second axis towards a hint, which fixes the twist a single bone cannot
show: the knee's (elbow's) hinge axis is turned perpendicular to the thigh-shank (arm-forearm)
plane, the sole is kept level across, and the spine shares the chest's twist over its three
segments. The body's rotation relative to its parent's *achieved* rotation is split into its hinge
angles (intrinsic Euler angles in the hinge order; the signed angle about the axis for knees and
elbows) and clipped to the limits, so a clipped parent is compensated by its children; where the
hinted twist of a one-child body would leave the limits, other twists about its bone are tried and
the one that keeps the bone's direction best is kept.

Why not damped least squares with MuJoCo's Jacobians: it needs several iterations per frame in
Python (tens of milliseconds per motion, as much as the simulation itself) and a good start anyway;
the closed form is exact for motions within the limits and made with this skeleton's bone lengths,
costs a few milliseconds per 196-frame motion, and degrades gracefully (bones keep their
directions) when the data's bone lengths drift, as generated motions' do.
"""

from __future__ import annotations

import mujoco
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from scl_ray.motion.skeleton import JOINT, JOINT_NAMES, NUM_JOINTS, PARENTS
from scl_ray.physics.body import AXES, BODY_JOINTS, HINGES, to_data, to_sim
from scl_ray.physics.humanoid import Humanoid

UP = np.array([0.0, 0.0, 1.0])  # simulation frame
# Weight of the parent-following default in a hinge-plane hint: the twist follows the bent limb's
# plane once it bends by more than about this (radians), and the parent's frame when straight, so
# that noise on a straight limb does not spin it. The error it leaves at the limb's end is at most
# the lower limb's length times this weight (2 cm for a shin), much less when the limb's plane is
# near the parent's.
STRAIGHT_LIMB = 0.05
PLANE_SMOOTHING = 1.0  # frames, Gaussian sigma
# Twists about a single bone tried when the hinted one leaves the limits: the one that keeps the bone's
# direction best wins, the smallest departure from the hint among equals (TWIST_PREFERENCE per radian).
TWIST_CANDIDATES = np.radians(np.concatenate([[0.0], np.repeat(np.arange(15, 181, 15), 2) * np.tile([1, -1], 12)]))
TWIST_PREFERENCE = 0.01
CHILDREN = {joint: tuple(c for c in range(NUM_JOINTS) if PARENTS[c] == joint) for joint in range(NUM_JOINTS)}


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norm, 1e-12)


def _kabsch(neutral: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations R minimising sum_c |R neutral_c - target_c|^2; neutral (C, 3), target (T, C, 3)."""
    covariance = np.einsum("tci,cj->tij", target, neutral)
    u, _, vt = np.linalg.svd(covariance)
    flip = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= flip[:, None]
    return u @ vt


def _frame(direction: np.ndarray, hint: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """(T, 3, 3) orthonormal frames [d, h, d x h]: d along direction, h the hint made perpendicular.

    Where the hint is (nearly) parallel to the direction, the fallback takes its place.
    """
    d = _normalize(direction)
    h = hint - np.sum(hint * d, axis=-1, keepdims=True) * d
    alternative = fallback - np.sum(fallback * d, axis=-1, keepdims=True) * d
    h = np.where(np.linalg.norm(h, axis=-1, keepdims=True) < 1e-6, alternative, h)
    h = _normalize(h)
    return np.stack([d, h, np.cross(d, h)], axis=-1)


def _pointing(neutral_bone: np.ndarray, neutral_axis: np.ndarray, bone: np.ndarray, axis_hint: np.ndarray,
              fallback: np.ndarray) -> np.ndarray:
    """(T, 3, 3) global rotations taking neutral_bone onto bone and neutral_axis towards axis_hint."""
    neutral = _frame(neutral_bone[None], neutral_axis[None], neutral_axis[None])[0]
    return _frame(bone, axis_hint, fallback) @ neutral.T


def _twists(neutral_bone: np.ndarray) -> np.ndarray:
    """(K, 3, 3) rotations about neutral_bone by the TWIST_CANDIDATES, nearest to zero first."""
    return Rotation.from_rotvec(np.outer(TWIST_CANDIDATES, _normalize(neutral_bone))).as_matrix()


def _hint(name: str, joints: np.ndarray, parent: np.ndarray, chest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(neutral axis (3,), target hint (T, 3)) fixing the twist of the one-child body `name`."""
    axis_x, axis_y = np.array(AXES["x"]), np.array(AXES["y"])
    if name.endswith(("_hip", "_shoulder")):
        joint = JOINT[name]
        (middle,) = CHILDREN[joint]
        (end,) = CHILDREN[middle]
        upper, lower = joints[:, middle] - joints[:, joint], joints[:, end] - joints[:, middle]
        # Knees flex about +y (thigh x shank), elbows about -y (forearm x arm).
        normal = np.cross(_normalize(upper), _normalize(lower))
        if name.endswith("_shoulder"):
            normal = -normal
        # Averaged over neighbouring frames, weighted by how much the limb bends (the cross product's
        # length), so that a nearly straight limb takes its twist from the frames around it.
        normal = gaussian_filter1d(normal, PLANE_SMOOTHING, axis=0, mode="nearest")
        return axis_y, normal + STRAIGHT_LIMB * parent[:, :, 1]
    if name.endswith("_ankle"):
        (toe,) = CHILDREN[JOINT[name]]
        level = np.cross(UP, joints[:, toe] - joints[:, JOINT[name]])
        return axis_y, _normalize(level) + STRAIGHT_LIMB * parent[:, :, 1]
    if name in ("spine1", "spine2"):
        # spine1 takes a third of the twist between pelvis and chest, spine2 half of what is left.
        share = 1.0 / 3.0 if name == "spine1" else 0.5
        return axis_x, (1.0 - share) * parent[:, :, 0] + share * chest[:, :, 0]
    return axis_x, parent[:, :, 0]


_AXIS_INDEX = {"x": 0, "y": 1, "z": 2}


def _axis_rotations(axis: str, angles: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations by angles (...,) radians about a coordinate axis."""
    i = _AXIS_INDEX[axis]
    j, k = (i + 1) % 3, (i + 2) % 3
    cos, sin = np.cos(angles), np.sin(angles)
    matrices = np.zeros(np.shape(angles) + (3, 3))
    matrices[..., i, i] = 1.0
    matrices[..., j, j] = matrices[..., k, k] = cos
    matrices[..., k, j], matrices[..., j, k] = sin, -sin
    return matrices


def _hinge_rotations(name: str, angles: np.ndarray) -> np.ndarray:
    """(T, 3, 3) composition of the hinges of body `name` at angles (T, 3) radians, in MuJoCo's order."""
    axes = [axis for axis, _, _ in HINGES[name]]
    result = _axis_rotations(axes[0], angles[..., 0])
    for index, axis in enumerate(axes[1:], start=1):
        result = result @ _axis_rotations(axis, angles[..., index])
    return result


def _hinge_angles(name: str, local: np.ndarray) -> np.ndarray:
    """(T, 3) angles (radians) of the three hinges of body `name` whose composition is `local` (T, 3, 3).

    Tait-Bryan angles of R = R_i(a) R_j(b) R_k(c): b in [-pi/2, pi/2]; in gimbal lock any split of
    a and c that composes to `local` is returned.
    """
    i, j, k = (_AXIS_INDEX[axis] for axis, _, _ in HINGES[name])
    parity = 1.0 if (j - i) % 3 == 1 else -1.0  # +1 for cyclic orders such as xyz
    middle = np.arcsin(np.clip(parity * local[..., i, k], -1.0, 1.0))
    first = np.arctan2(-parity * local[..., j, k], local[..., k, k])
    last = np.arctan2(-parity * local[..., i, j], local[..., i, i])
    return np.stack([first, middle, last], axis=-1)


def _limits(name: str) -> tuple[np.ndarray, np.ndarray]:
    hinges = HINGES[name]
    return np.radians([low for _, low, _ in hinges]), np.radians([high for _, _, high in hinges])


def _twisted_angles(name: str, parent: np.ndarray, target: np.ndarray, neutral_bone: np.ndarray) -> np.ndarray:
    """(T, 3) clipped hinge angles of a one-child body: the hinted twist unless the limits bend the bone.

    parent, target: (T, 3, 3) global rotations of the parent and the hinted body; neutral_bone (3,).
    """
    low, high = _limits(name)
    local = np.swapaxes(parent, 1, 2) @ target
    exact = _hinge_angles(name, local)
    angles = np.clip(exact, low, high)
    clipped = np.flatnonzero(np.any(angles != exact, axis=1))
    if clipped.size == 0:
        return angles
    frames, candidates = len(clipped), len(TWIST_CANDIDATES)
    tried = np.clip(_hinge_angles(name, (local[clipped, None] @ _twists(neutral_bone)[None]).reshape(-1, 3, 3)),
                    low, high).reshape(frames, candidates, 3)
    achieved = _hinge_rotations(name, tried.reshape(-1, 3)).reshape(frames, candidates, 3, 3) @ neutral_bone
    wanted = (local[clipped] @ neutral_bone)[:, None]
    cosine = np.sum(achieved * wanted, axis=-1) / np.dot(neutral_bone, neutral_bone)
    cost = np.arccos(np.clip(cosine, -1.0, 1.0)) + TWIST_PREFERENCE * np.abs(TWIST_CANDIDATES)
    angles[clipped] = tried[np.arange(frames), np.argmin(cost, axis=1)]
    return angles


def _body_angles(name: str, sim: np.ndarray, offsets: np.ndarray, parent: np.ndarray, chest: np.ndarray) -> np.ndarray:
    """(T, n) clipped hinge angles of body `name` given the joints `sim` (T, 22, 3, simulation frame),
    the neutral bone vectors, its parent's achieved global rotation and the chest's target rotation."""
    joint, (low, high) = JOINT[name], _limits(name)
    children = CHILDREN[joint]
    if len(HINGES[name]) == 1:
        # Knee or elbow: the signed angle about the hinge between the neutral and the data's bone.
        (axis_name, _, _), = HINGES[name]
        axis, neutral = np.array(AXES[axis_name]), offsets[children[0]]
        bone = np.einsum("tji,tj->ti", parent, sim[:, children[0]] - sim[:, joint])
        angle = np.arctan2(np.cross(neutral, bone) @ axis, (bone - np.outer(bone @ axis, axis)) @ neutral)
        return np.clip(angle, low[0], high[0])[:, None]
    if len(children) > 1:
        target = chest if name == "spine3" else _kabsch(offsets[list(children)], sim[:, children] - sim[:, joint, None])
        return np.clip(_hinge_angles(name, np.swapaxes(parent, 1, 2) @ target), low, high)
    neutral_axis, hint = _hint(name, sim, parent, chest)
    bone = sim[:, children[0]] - sim[:, joint]
    target = _pointing(offsets[children[0]], neutral_axis, bone, hint, parent[:, :, 0])
    return _twisted_angles(name, parent, target, offsets[children[0]])


def joints_to_qpos(humanoid: Humanoid, joints: np.ndarray) -> np.ndarray:
    """Humanoid configurations reproducing joint positions as closely as the hinge limits allow.

    joints: (T, 22, 3) metres, data frame (y up), finite. Returns qpos (T, nq) float64: the root at
    the pelvis joint, the root orientation, and every hinge angle within its range.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"joints must have shape (T, {NUM_JOINTS}, 3) in metres, got {joints.shape}")
    if not np.isfinite(joints).all():
        raise ValueError("joints hold NaN or inf; retargeting needs finite positions")
    sim, offsets = to_sim(joints), humanoid.offsets

    def best_fit(joint: int) -> np.ndarray:
        children = list(CHILDREN[joint])
        return _kabsch(offsets[children], sim[:, children] - sim[:, joint, None])

    qpos = np.zeros((len(sim), humanoid.model.nq))
    qpos[:, :3] = sim[:, 0]
    rotations = {0: best_fit(0)}
    qpos[:, 3:7] = Rotation.from_matrix(rotations[0]).as_quat(scalar_first=True)
    chest = best_fit(JOINT["spine3"])
    for joint in BODY_JOINTS[1:]:
        name, parent = JOINT_NAMES[joint], rotations[PARENTS[joint]]
        angles = _body_angles(name, sim, offsets, parent, chest)
        rotations[joint] = parent @ _hinge_rotations(name, angles)
        qpos[:, humanoid.hinge_qpos[name]] = angles
    return qpos


def qpos_to_joints(humanoid: Humanoid, qpos: np.ndarray, data: mujoco.MjData | None = None) -> np.ndarray:
    """Joint positions (T, 22, 3), metres, data frame, of configurations qpos (T, nq), by MuJoCo's kinematics."""
    model = humanoid.model
    data = data if data is not None else mujoco.MjData(model)
    qpos = np.asarray(qpos, dtype=np.float64)
    joints = np.empty((len(qpos), NUM_JOINTS, 3))
    for frame, configuration in enumerate(qpos):
        data.qpos[:] = configuration
        mujoco.mj_kinematics(model, data)
        joints[frame] = data.site_xpos[humanoid.joint_sites]
    return to_data(joints)
