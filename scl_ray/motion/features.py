"""HumanML3D's 263-d motion features, bit-compatible with its original extraction.

`joints_to_features` reproduces `process_file` of HumanML3D's motion_representation.ipynb (quirks
included, see below) in float64; `features_to_joints` is its `recover_from_ric`. Joints are
(T, 22, 3) metres, y up, 20 fps; features are (T-1, 263) per-frame rows laid out as the slices below.

Upstream quirks kept on purpose, because models and evaluators trained on HumanML3D expect them:
- the per-frame facing takes the hip vector with the opposite sign from the frame-0 facing used to
  normalise the motion (upstream unpacks `face_joint_indx` in a different order in its IK);
- that per-frame facing is smoothed along time with a Gaussian (sigma 20 frames) and frame 0's
  facing rotation is forced to identity;
- the rotation block is a swing-only IK of the positions, and both arm chains start from the
  root's facing rotation, not from joint 9's;
- the root's linear velocity from frame t to t+1 is expressed in frame t+1's facing, the joint
  velocities in frame t's;
- the yaw velocity is the arcsin of the y part of the step quaternion without fixing its sign, so
  on the frame where the facing crosses -z it has the wrong sign and `features_to_joints` turns
  the rest of the motion by twice that step (HumanML3D issue #156).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import gaussian_filter1d

from scl_ray.motion.constants import FEATURE_DIM
from scl_ray.motion.quaternion import IDENTITY, qbetween, qinv, qmul, qrot, quaternion_to_matrix
from scl_ray.motion.skeleton import (
    FACE_JOINTS, FOOT_JOINTS, JOINT, KINEMATIC_CHAINS, NUM_JOINTS, PARENTS, RAW_OFFSETS, Skeleton,
)

if TYPE_CHECKING:  # numpy input never needs torch; a tensor argument means it is already loaded
    import torch

ROOT_YAW_VELOCITY = slice(0, 1)  # half the yaw angle turned per frame, radians
ROOT_LINEAR_VELOCITY = slice(1, 3)  # root XZ displacement per frame in the facing frame, metres
ROOT_HEIGHT = slice(3, 4)  # metres above the floor
RIC_POSITIONS = slice(4, 67)  # joints 1..21 relative to the root's XZ, in the facing frame, metres
JOINT_ROTATIONS = slice(67, 193)  # joints 1..21, first two columns of each local rotation matrix
JOINT_VELOCITIES = slice(193, 259)  # joints 0..21 displacement per frame in the facing frame, metres
FOOT_CONTACTS = slice(259, 263)  # 1.0 where joints 7, 10, 8, 11 rest, else 0.0

# Blocks in layout order; Normalizer.fit averages the std within each of them.
FEATURE_BLOCKS: dict[str, slice] = {
    "root_yaw_velocity": ROOT_YAW_VELOCITY,
    "root_linear_velocity": ROOT_LINEAR_VELOCITY,
    "root_height": ROOT_HEIGHT,
    "ric_positions": RIC_POSITIONS,
    "joint_rotations": JOINT_ROTATIONS,
    "joint_velocities": JOINT_VELOCITIES,
    "foot_contacts": FOOT_CONTACTS,
}

FOOT_CONTACT_THRESHOLD = 0.002  # squared displacement per frame, m^2 (4.5 cm per frame)
FACING_SMOOTHING_SIGMA = 20.0  # frames
# uniform_skeleton scales the root trajectory by the ratio of these two bone lengths (right leg).
LEG_BONES = (JOINT["right_knee"], JOINT["right_ankle"])

_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])


def _check_joints(joints: np.ndarray) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or joints.shape[0] < 2:
        raise ValueError(
            f"joints must have shape (T, {NUM_JOINTS}, 3) with T >= 2 frames, got {joints.shape}"
        )
    if not np.isfinite(joints).all():
        frame = int(np.argwhere(~np.isfinite(joints))[0, 0])
        raise ValueError(
            f"joints contain NaN or inf (first at frame {frame}); features need finite positions"
        )
    return joints


def _forward_directions(joints: np.ndarray, hip_sign: float) -> np.ndarray:
    """(T, 3) horizontal facing directions, not normalised, from hips and shoulders."""
    right_hip, left_hip, right_shoulder, left_shoulder = FACE_JOINTS
    across = hip_sign * (joints[:, right_hip] - joints[:, left_hip])
    across = across + joints[:, right_shoulder] - joints[:, left_shoulder]
    across = across / np.linalg.norm(across, axis=-1, keepdims=True)
    return np.cross(_UP, across)


def normalize_joints(joints: np.ndarray) -> np.ndarray:
    """Put a motion on the floor, frame 0's root XZ at the origin and frame 0 facing +z.

    joints: (T, 22, 3) metres, y up. Returns (T, 22, 3) float64: the floor is the lowest y over all
    joints and frames; the facing comes from the hip and shoulder vectors of frame 0.
    """
    positions = _check_joints(joints).copy()
    positions[..., 1] -= positions[..., 1].min()
    positions -= positions[0, 0] * np.array([1.0, 0.0, 1.0])
    forward = _forward_directions(positions[:1], hip_sign=1.0)[0]
    return qrot(qbetween(forward, _FORWARD), positions)


def foot_contacts(joints: np.ndarray, threshold: float = FOOT_CONTACT_THRESHOLD) -> np.ndarray:
    """(T-1, 4) float32 contact labels of joints 7, 10, 8, 11 (left ankle, left foot, right ...).

    A joint is in contact at frame t when its squared displacement from t to t+1 (m^2) is below
    `threshold`; heights are not used, as upstream.
    """
    positions = _check_joints(joints)[:, list(FOOT_JOINTS)]
    squared_step = ((positions[1:] - positions[:-1]) ** 2).sum(-1)
    return (squared_step < threshold).astype(np.float32)


def root_rotations(joints: np.ndarray, smooth: bool = True) -> np.ndarray:
    """(T, 4) yaw quaternions turning each frame's facing onto +z, as HumanML3D's IK computes them.

    Uses the upstream facing (hip vector with the flipped sign), smoothed along time with a
    Gaussian of FACING_SMOOTHING_SIGMA frames when `smooth`; frame 0 is forced to identity.
    """
    forward = _forward_directions(_check_joints(joints), hip_sign=-1.0)
    if smooth:
        forward = gaussian_filter1d(forward, FACING_SMOOTHING_SIGMA, axis=0, mode="nearest")
    rotations = qbetween(forward, _FORWARD)
    rotations[0] = IDENTITY
    return rotations


def bone_swings(joints: np.ndarray) -> np.ndarray:
    """(T, 22, 4) shortest-arc rotations taking each bone's rest direction onto its direction in joints.

    Entry j is the bone from PARENTS[j] to j (entry 0, the root, is the identity).
    """
    joints = _check_joints(joints)
    swings = np.empty(joints.shape[:2] + (4,))
    swings[:, 0] = IDENTITY
    bones = joints[:, 1:] - joints[:, list(PARENTS[1:])]
    swings[:, 1:] = qbetween(RAW_OFFSETS[1:], bones)
    return swings


def inverse_kinematics(joints: np.ndarray, smooth_facing: bool = False) -> np.ndarray:
    """HumanML3D's swing-only IK: (T, 22, 4) local quaternions of joints (T, 22, 3).

    Entry 0 is `root_rotations(joints, smooth_facing)`. Entry j > 0 rotates bone j's rest offset
    relative to the rotation accumulated along its kinematic chain; every chain, the arms' too,
    starts from the root's rotation. No twist is recovered.
    """
    swings = bone_swings(joints)
    rotations = np.empty_like(swings)
    rotations[:, 0] = root_rotations(joints, smooth=smooth_facing)
    for chain in KINEMATIC_CHAINS:
        for parent, joint in zip(chain[:-1], chain[1:]):
            parent_global = rotations[:, 0] if parent == chain[0] else swings[:, parent]
            rotations[:, joint] = qmul(qinv(parent_global), swings[:, joint])
    return rotations


def forward_kinematics(
    rotations: np.ndarray, root_positions: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """HumanML3D's chain-wise FK, the inverse of `inverse_kinematics` for a skeleton.

    rotations: (T, 22, 4) local quaternions; root_positions: (T, 3) metres; offsets: (22, 3) rest
    bone vectors in metres. Returns (T, 22, 3) float64.
    """
    rotations = np.asarray(rotations, dtype=np.float64)
    frames = rotations.shape[0]
    joints = np.zeros((frames, NUM_JOINTS, 3))
    joints[:, 0] = root_positions
    for chain in KINEMATIC_CHAINS:
        accumulated = rotations[:, 0]
        for parent, joint in zip(chain[:-1], chain[1:]):
            accumulated = qmul(accumulated, rotations[:, joint])
            joints[:, joint] = joints[:, parent] + qrot(accumulated, offsets[joint])
    return joints


def _leg_length(offsets: np.ndarray) -> float:
    # Upstream takes the largest absolute coordinate of each offset, the length for axis-aligned bones.
    return float(np.abs(offsets[LEG_BONES[0]]).max() + np.abs(offsets[LEG_BONES[1]]).max())


def retarget(joints: np.ndarray, target: Skeleton) -> np.ndarray:
    """HumanML3D's `uniform_skeleton`: keep every bone's direction, give it the target's length.

    joints: (T, 22, 3) metres. The root trajectory (all three coordinates) is scaled by the ratio of
    the target's right-leg length (thigh + shin) to the source's, measured on frame 0.
    Returns (T, 22, 3) float64.
    """
    joints = _check_joints(joints)
    source = Skeleton.from_joints(joints)
    scale = _leg_length(target.offsets) / _leg_length(source.offsets)
    rotations = inverse_kinematics(joints, smooth_facing=False)
    return forward_kinematics(rotations, joints[:, 0] * scale, target.offsets)


def joints_to_features(
    joints: np.ndarray,
    feet_threshold: float = FOOT_CONTACT_THRESHOLD,
    target_skeleton: Skeleton | None = None,
) -> np.ndarray:
    """HumanML3D's 263-d features of a motion (its `process_file`).

    joints: (T, 22, 3) metres, y up, 20 fps, T >= 2. feet_threshold: squared displacement per frame
    (m^2) below which a foot joint counts as in contact. target_skeleton: when given, the motion is
    first retargeted to it (`retarget`), as HumanML3D does for every motion of its dataset.
    Returns (T-1, 263) float32, laid out as FEATURE_BLOCKS; the last frame only enters velocities.
    """
    positions = _check_joints(joints)
    if target_skeleton is not None:
        positions = retarget(positions, target_skeleton)
    positions = normalize_joints(positions)
    contacts = foot_contacts(positions, feet_threshold)
    rotations = inverse_kinematics(positions, smooth_facing=True)
    facing = rotations[:, 0]

    yaw_step = qmul(facing[1:], qinv(facing[:-1]))
    yaw_velocity = np.arcsin(np.clip(yaw_step[:, 2:3], -1.0, 1.0))
    linear_velocity = qrot(facing[1:], positions[1:, 0] - positions[:-1, 0])[:, [0, 2]]
    height = positions[:-1, 0, 1:2]

    relative = positions.copy()
    relative[..., [0, 2]] -= positions[:, :1, [0, 2]]
    ric = qrot(facing[:, None], relative)[:-1, 1:]

    matrices = quaternion_to_matrix(rotations[:-1, 1:])
    cont6d = np.concatenate([matrices[..., 0], matrices[..., 1]], axis=-1)

    velocities = qrot(facing[:-1, None], positions[1:] - positions[:-1])

    steps = len(positions) - 1
    features = np.concatenate(
        [yaw_velocity, linear_velocity, height, ric.reshape(steps, -1), cont6d.reshape(steps, -1),
         velocities.reshape(steps, -1), contacts],
        axis=-1,
    )
    return features.astype(np.float32)


def _is_tensor(x) -> bool:
    """Whether x is a torch tensor, without importing torch (a tensor means torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _recover_from_ric(features, xp):
    """recover_from_ric on numpy arrays (xp = numpy) or torch tensors (xp = torch): the functions used
    here have the same names and arguments in both."""
    yaw_velocity = features[..., ROOT_YAW_VELOCITY.start]
    # The heading of frame t integrates the yaw velocities of frames 0..t-1 (half angles).
    previous = xp.concatenate([xp.zeros_like(yaw_velocity[..., :1]), yaw_velocity[..., :-1]], -1)
    half_yaw = xp.cumsum(previous, -1)
    cos, sin = xp.cos(2 * half_yaw), xp.sin(2 * half_yaw)

    def to_world(x, z):
        # The inverse of the facing rotation: a yaw of -2 * half_yaw about +y.
        return x * cos - z * sin, x * sin + z * cos

    step = xp.zeros_like(features[..., ROOT_LINEAR_VELOCITY])
    step[..., 1:, :] = features[..., :-1, ROOT_LINEAR_VELOCITY]
    step_x, step_z = to_world(step[..., 0], step[..., 1])
    root_x, root_z = xp.cumsum(step_x, -1), xp.cumsum(step_z, -1)
    root_y = features[..., ROOT_HEIGHT.start]

    ric = features[..., RIC_POSITIONS].reshape(tuple(features.shape[:-1]) + (NUM_JOINTS - 1, 3))
    cos, sin = cos[..., None], sin[..., None]
    joint_x, joint_z = to_world(ric[..., 0], ric[..., 2])
    others = xp.stack([joint_x + root_x[..., None], ric[..., 1], joint_z + root_z[..., None]], -1)
    root = xp.stack([root_x, root_y, root_z], -1)
    return xp.concatenate([root[..., None, :], others], -2)


def features_to_joints(features: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Joint positions from features (HumanML3D's `recover_from_ric`).

    features: (..., T', 263) numpy array or torch tensor. Integrates the root's yaw and XZ
    velocities from the origin and places the ric block around the root; the rotation and velocity
    blocks are not used. Returns (..., T', 22, 3) metres: float32 numpy for numpy input (computed in
    float64, without torch), a tensor of the input's dtype and device for torch input.
    """
    if features.shape[-1] != FEATURE_DIM or features.ndim < 2:
        raise ValueError(
            f"features must have shape (..., T, {FEATURE_DIM}), got {tuple(features.shape)}"
        )
    if _is_tensor(features):
        return _recover_from_ric(features, sys.modules["torch"])
    return _recover_from_ric(np.asarray(features, dtype=np.float64), np).astype(np.float32)


# Smallest std a Normalizer divides by. A block that is constant in the data (no turning at all in
# a small procedural set, say) would otherwise divide by zero; real HumanML3D's smallest block std
# is 0.0128 (root yaw velocity), far above this floor.
MIN_STD = 1e-4

# Blocks whose std HumanML3D's text-to-motion training divides by `feat_bias` (T2M's
# Text2MotionDatasetV2), which weights them feat_bias times more after normalisation.
_FEAT_BIAS_BLOCKS = ("root_yaw_velocity", "root_linear_velocity", "root_height", "foot_contacts")


@dataclass(frozen=True)
class Normalizer:
    """Per-dimension feature standardisation, stored as HumanML3D's Mean.npy / Std.npy.

    mean, std: (263,) float32; std > 0 everywhere.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = np.asarray(getattr(self, name), dtype=np.float32)
            if value.shape != (FEATURE_DIM,) or not np.isfinite(value).all():
                raise ValueError(
                    f"Normalizer {name} must be {FEATURE_DIM} finite numbers, got shape {value.shape}"
                )
            object.__setattr__(self, name, value)
        if (self.std <= 0).any():
            dims = np.flatnonzero(self.std <= 0)[:5].tolist()
            raise ValueError(f"Normalizer std must be positive, got <= 0 at feature dims {dims}")

    def _stats_like(self, x):
        if _is_tensor(x):
            torch = sys.modules["torch"]
            return (torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=x.dtype, device=x.device))
        return self.mean, self.std

    def normalize(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """(x - mean) / std for features (..., 263), numpy or torch (same type out)."""
        mean, std = self._stats_like(x)
        return (x - mean) / std

    def denormalize(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """x * std + mean for normalised features (..., 263), numpy or torch (same type out)."""
        mean, std = self._stats_like(x)
        return x * std + mean

    def save(self, directory: str | Path) -> None:
        """Write `Mean.npy` and `Std.npy` (float32) into directory, creating it if needed."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "Mean.npy", self.mean)
        np.save(directory / "Std.npy", self.std)

    @classmethod
    def load(cls, directory: str | Path) -> "Normalizer":
        """Read `Mean.npy` and `Std.npy` from directory (a HumanML3D root, for one)."""
        directory = Path(directory)
        paths = [directory / "Mean.npy", directory / "Std.npy"]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"Normalizer.load: missing {', '.join(missing)} (written by Normalizer.save)"
            )
        return cls(np.load(paths[0]), np.load(paths[1]))

    @classmethod
    def fit(cls, features_list: list[np.ndarray], feat_bias: float = 1.0) -> "Normalizer":
        """Statistics of a dataset of motions, each (T_i, 263).

        Mean per dimension; std (population, over all frames of all motions) averaged within each
        block of FEATURE_BLOCKS, as HumanML3D's cal_mean_variance does, then divided by feat_bias in
        the root and foot-contact blocks as T2M's evaluator training does with feat_bias=5. The default
        feat_bias=1 gives exactly the Mean.npy / Std.npy that HumanML3D ships and MDM trains with.
        Stds below MIN_STD are raised to MIN_STD.
        """
        if not features_list:
            raise ValueError("Normalizer.fit needs at least one motion, got an empty list")
        if feat_bias <= 0:
            raise ValueError(f"Normalizer.fit: feat_bias must be positive, got {feat_bias}")
        for index, features in enumerate(features_list):
            shape = np.shape(features)
            if len(shape) != 2 or shape[1] != FEATURE_DIM:
                raise ValueError(
                    f"Normalizer.fit: features_list[{index}] has shape {shape}, "
                    f"expected (T, {FEATURE_DIM})"
                )
            if not np.isfinite(features).all():
                raise ValueError(f"Normalizer.fit: features_list[{index}] contains NaN or inf")
        data = np.concatenate([np.asarray(f, dtype=np.float64) for f in features_list], axis=0)
        mean = data.mean(axis=0)
        std = data.std(axis=0)
        for name, block in FEATURE_BLOCKS.items():
            std[block] = std[block].mean() / (feat_bias if name in _FEAT_BIAS_BLOCKS else 1.0)
        return cls(mean, np.maximum(std, MIN_STD))
