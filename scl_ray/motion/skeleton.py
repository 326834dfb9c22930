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

# The rigid sets of the skeleton, (root joint, its children that move with it): pelvis with hips and
# spine, chest with neck and collars. In HumanML3D every bone has the adult's length, but these sets'
# shapes come from each capture subject's SMPL body (the hips sit about 8 cm below the pelvis
# joint, the collars point up), so they differ between motions and are constant within one.
RIGID_GROUPS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (JOINT["pelvis"], (JOINT["left_hip"], JOINT["right_hip"], JOINT["spine1"])),
    (JOINT["spine3"], (JOINT["neck"], JOINT["left_collar"], JOINT["right_collar"])),
)
# HumanML3D's rigid sets standing upright and facing +z (metres, the children of RIGID_GROUPS in
# order, with the adult's bone lengths): the mean shape of five real HumanML3D motions (000000,
# 007005, 009548, 011673, M010655 of tests/physics/data) in their most upright frames (legs within 5
# degrees of their straightest). Shapes differ by up to 1.4 cm between these motions. Standing, the
# SMPL pelvis carries the hips 8.5 cm below its joint and spine1 23 degrees behind the vertical,
# which best-fitting the textbook shape (spine1 straight up) would turn into a pelvis tilted back.
HUMANML3D_RIGID_OFFSETS = np.array(
    [[0.0580, -0.0849, -0.0075], [-0.0623, -0.0905, -0.0026], [0.0029, 0.1212, -0.0512],
     [-0.0060, 0.2190, -0.0110], [0.0733, 0.1159, -0.0097], [-0.0790, 0.1192, -0.0097]],
)
# Procrustes passes of the rigid-set estimate: the first aligns the frames to a template, the second
# to the shape that pass found (more passes change it by less than a micrometre).
PROCRUSTES_PASSES = 2
MAD_TO_SIGMA = 1.4826  # standard deviation of a normal distribution per median absolute deviation


def kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(T, 3, 3) proper rotations R minimising sum_c |R source_c - target_c|^2.

    source: (C, 3); target: (T, C, 3); both about the same origin (no translation is fitted).
    """
    covariance = np.einsum("tci,cj->tij", target, source)
    u, _, vt = np.linalg.svd(covariance)
    u[..., :, 2] *= np.sign(np.linalg.det(u @ vt))[:, None]
    return u @ vt


def robust_bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(22,) bone lengths (metres, entry 0 is 0) of joints (T, 22, 3) whose bones should not stretch.

    The median over frames, corrected for the bias of noise: noise of standard deviation s on a bone
    vector of length L lengthens it on average (E|b| ~ L + s^2 / L, so L^2 ~ E|b|^2 - 2 s^2), and
    the spread of a rigid bone's length over frames is that noise's radial part, measured robustly
    (median absolute deviation). Without the correction N(0, 1.5 cm) noise on every joint lengthens
    the 5.7 cm spine3 bone by 7 mm; with it, by under 1 mm. A single frame gives its own lengths.
    """
    lengths = np.linalg.norm(joints[:, 1:] - joints[:, list(PARENTS[1:])], axis=-1)
    median = np.median(lengths, axis=0)
    spread = MAD_TO_SIGMA * np.median(np.abs(lengths - median), axis=0)
    # Never below half the median: noise that large swamps the bone, and a bone must keep a length.
    return np.concatenate([[0.0], np.sqrt(np.maximum(median**2 - 2.0 * spread**2, 0.25 * median**2))])


def _turned_onto(offsets: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, float]:
    """offsets (C, 3) turned by the rotation that best fits them to template (C, 3), and the misfit of
    the two shapes (their distance with each scaled to unit norm, so that size does not count)."""
    turned = offsets @ kabsch(offsets, template[None])[0].T
    misfit = np.linalg.norm(turned / np.linalg.norm(turned) - template / np.linalg.norm(template))
    return turned, float(misfit)


def rigid_shape(points: np.ndarray, templates: tuple[np.ndarray, ...]) -> np.ndarray:
    """(C, 3) offsets (root -> child, metres) of a rigid set seen in points (T, 1 + C, 3), root first.

    Every frame's set is centred and rotated (Kabsch) onto a reference, the aligned sets are averaged
    (coordinate-wise median, which ignores the odd broken frame), and the average is the reference of
    the next pass. The result is turned onto the nearest of `templates` ((C, 3) offsets of the same
    set standing upright: the textbook rest pose, HumanML3D's) by the rotation that fits it best. So
    its orientation does not depend on the way the body faced in the frames measured, a body built by
    forward kinematics on a template is its own estimate, and the humanoid's neutral stance stands
    upright, as its hinge limits assume.
    """
    centred = points - points.mean(axis=1, keepdims=True)
    reference = np.vstack([np.zeros(3), templates[0]])
    for _ in range(PROCRUSTES_PASSES):
        reference = reference - reference.mean(axis=0)
        aligned = np.einsum("tji,tcj->tci", kabsch(reference, centred), centred)
        reference = np.median(aligned, axis=0)
    offsets = reference[1:] - reference[0]
    return min((_turned_onto(offsets, template) for template in templates), key=lambda fit: fit[1])[0]


def _checked(joints: np.ndarray, caller: str) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or len(joints) == 0:
        raise ValueError(f"{caller} expects joints (T, {NUM_JOINTS}, 3), got {joints.shape}")
    return joints


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
    def humanml3d(cls) -> "Skeleton":
        """The adult with HumanML3D's mean rigid sets (HUMANML3D_RIGID_OFFSETS): the one skeleton that
        comes nearest to every HumanML3D motion when a motion's own cannot be measured."""
        offsets = cls.adult().offsets.copy()
        offsets[[child for _, children in RIGID_GROUPS for child in children]] = HUMANML3D_RIGID_OFFSETS
        return cls(offsets)

    @classmethod
    def from_joints(cls, joints: np.ndarray) -> "Skeleton":
        """Bone lengths measured on frame 0 of joints (T, 22, 3), with the textbook rest directions
        (HumanML3D's `uniform_skeleton` source; `from_motion` also measures the rigid sets' shapes)."""
        joints = _checked(joints, "Skeleton.from_joints")
        parents = np.array(PARENTS[1:])
        lengths = np.zeros(NUM_JOINTS)
        lengths[1:] = np.linalg.norm(joints[0, 1:] - joints[0, parents], axis=-1)
        return cls.from_bone_lengths(lengths)

    @classmethod
    def from_motion(cls, joints: np.ndarray) -> "Skeleton":
        """The rest offsets of the body performing joints (T, 22, 3), metres.

        Single bones: the textbook directions with robust lengths (`robust_bone_lengths`); rigid sets
        (RIGID_GROUPS): their shapes averaged over the frames (`rigid_shape`), standing upright as the
        nearer of the textbook's and HumanML3D's sets stands. Both are medians over frames, so the
        drifting lengths and noisy frames of generated motions average out;
        `from_motion(joints[:1])` measures the first frame only.
        """
        joints = _checked(joints, "Skeleton.from_motion")
        offsets = RAW_OFFSETS * robust_bone_lengths(joints)[:, None]
        humanml3d = cls.humanml3d().offsets
        for root, children in RIGID_GROUPS:
            children = list(children)
            templates = (offsets[children], humanml3d[children])
            offsets[children] = rigid_shape(joints[:, [root, *children]], templates)
        return cls(offsets)

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
