"""The 22-joint HumanML3D skeleton (the first 22 SMPL joints).

Coordinates: metres, y up, a body in its rest pose faces +z and its left side is +x, 20 fps.
Constants here are the single place that names joints; every other module indexes through them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT = {name: index for index, name in enumerate(JOINT_NAMES)}

PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

# HumanML3D's kinematic chains (t2m_kinematic_chain): right leg, left leg, spine, right arm, left arm.
KINEMATIC_CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)

# Unit direction of each bone (parent -> joint) in the rest pose (HumanML3D's t2m_raw_offsets).
RAW_OFFSETS = np.array(
    [
        [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0],
        [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0],
        [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
        [0, -1, 0],
    ],
    dtype=np.float64,
)

# Bone lengths (metres, joint 1..21, parent -> joint) of HumanML3D's target skeleton, the one every
# motion of the dataset is retargeted to (measured on a released HumanML3D joints file; stable to
# 1e-6). Together with RAW_OFFSETS these make the fixed adult of the procedural dataset: in the rest
# pose the pelvis is 0.83 m above the ankles and the head joint 1.38 m (about 1.7 m tall; HumanML3D's
# head bone points forward, so the head joint sits 0.10 m in front of the neck).
ADULT_BONE_LENGTHS = np.array(
    [0.0, 0.1031, 0.1099, 0.1316, 0.3936, 0.3902, 0.1432, 0.4324, 0.4256, 0.0574, 0.1434,
     0.1494, 0.2194, 0.1375, 0.1434, 0.1030, 0.1316, 0.1230, 0.2568, 0.2631, 0.2660, 0.2699],
    dtype=np.float64,
)

# Joints used by HumanML3D's feature extraction.
FACE_JOINTS = (JOINT["right_hip"], JOINT["left_hip"], JOINT["right_shoulder"], JOINT["left_shoulder"])
FOOT_JOINTS_LEFT = (JOINT["left_ankle"], JOINT["left_foot"])
FOOT_JOINTS_RIGHT = (JOINT["right_ankle"], JOINT["right_foot"])
FOOT_JOINTS = FOOT_JOINTS_LEFT + FOOT_JOINTS_RIGHT  # (7, 10, 8, 11), the order of the contact block


@dataclass(frozen=True)
class Skeleton:
    """A 22-joint skeleton given by its rest offsets (22, 3) in metres (row 0, the root, is zero)."""

    offsets: np.ndarray

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.float64)
        if offsets.shape != (NUM_JOINTS, 3):
            raise ValueError(f"skeleton offsets must have shape ({NUM_JOINTS}, 3), got {offsets.shape}")
        object.__setattr__(self, "offsets", offsets)

    @classmethod
    def from_bone_lengths(cls, lengths: np.ndarray) -> "Skeleton":
        """Skeleton with HumanML3D's rest directions and the given bone lengths (22,), metres."""
        lengths = np.asarray(lengths, dtype=np.float64)
        if lengths.shape != (NUM_JOINTS,):
            raise ValueError(f"bone lengths must have shape ({NUM_JOINTS},), got {lengths.shape}")
        return cls(RAW_OFFSETS * lengths[:, None])

    @classmethod
    def adult(cls, scale: float = 1.0) -> "Skeleton":
        """HumanML3D's target adult, optionally scaled uniformly."""
        return cls.from_bone_lengths(ADULT_BONE_LENGTHS * scale)

    @classmethod
    def from_joints(cls, joints: np.ndarray) -> "Skeleton":
        """Bone lengths measured on frame 0 of joints (T, 22, 3), with the rest directions."""
        joints = np.asarray(joints, dtype=np.float64)
        if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or len(joints) == 0:
            raise ValueError(f"Skeleton.from_joints expects joints (T, {NUM_JOINTS}, 3), got {joints.shape}")
        parents = np.array(PARENTS[1:])
        lengths = np.zeros(NUM_JOINTS)
        lengths[1:] = np.linalg.norm(joints[0, 1:] - joints[0, parents], axis=-1)
        return cls.from_bone_lengths(lengths)

    @property
    def bone_lengths(self) -> np.ndarray:
        """(22,) metres; entry 0 is 0."""
        return np.linalg.norm(self.offsets, axis=-1)

    def rest_joints(self) -> np.ndarray:
        """(22, 3) joint positions of the rest pose with the root at the origin."""
        joints = np.zeros((NUM_JOINTS, 3))
        for joint in range(1, NUM_JOINTS):
            joints[joint] = joints[PARENTS[joint]] + self.offsets[joint]
        return joints

    def forward_kinematics(self, local_rotations: np.ndarray, root_positions: np.ndarray) -> np.ndarray:
        """Joint positions from local rotations.

        local_rotations: (T, 22, 3, 3) rotation matrices; entry j rotates joint j's frame relative
            to its parent's (entry 0 is the root's global orientation), so it moves j's children.
        root_positions: (T, 3) metres.
        Returns (T, 22, 3) metres.
        """
        local_rotations = np.asarray(local_rotations, dtype=np.float64)
        root_positions = np.asarray(root_positions, dtype=np.float64)
        frames = local_rotations.shape[0]
        if local_rotations.shape != (frames, NUM_JOINTS, 3, 3) or root_positions.shape != (frames, 3):
            raise ValueError(
                "forward_kinematics expects local_rotations (T, 22, 3, 3) and root_positions (T, 3), "
                f"got {local_rotations.shape} and {root_positions.shape}"
            )
        global_rotations = np.empty_like(local_rotations)
        joints = np.empty((frames, NUM_JOINTS, 3))
        global_rotations[:, 0] = local_rotations[:, 0]
        joints[:, 0] = root_positions
        for joint in range(1, NUM_JOINTS):
            parent = PARENTS[joint]
            joints[:, joint] = joints[:, parent] + global_rotations[:, parent] @ self.offsets[joint]
            global_rotations[:, joint] = global_rotations[:, parent] @ local_rotations[:, joint]
        return joints
