"""Test motions on HumanML3D's geometry: the real fixture, and procedural motions transplanted onto it.

data/humanml3d_real.npz holds real HumanML3D joint files (data/README.md names their sources). The
procedural motions are made on the textbook skeleton, whose rigid sets (pelvis with hips and spine,
chest with neck and collars) are shaped unlike any SMPL body; `humanml3d_shaped` rebuilds one on a
real motion's shapes, so that tests can pose every procedural family on HumanML3D's geometry.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from scl_ray.motion.procedural import generate_motion
from scl_ray.motion.skeleton import ADULT_BONE_LENGTHS, NUM_JOINTS, PARENTS, RIGID_GROUPS, Skeleton

REAL = Path(__file__).parent / "data" / "humanml3d_real.npz"
NOISE = 0.015  # metres, standard deviation on every coordinate of the noisy variants


@cache
def real_motions() -> dict[str, np.ndarray]:
    """Real HumanML3D motions by id: joints (T, 22, 3) float64, metres, y up, 20 fps."""
    with np.load(REAL) as data:
        return {key: data[key].astype(np.float64) for key in data.files}


def procedural(family: str, seed: int = 0) -> np.ndarray:
    """A procedural motion of `family`: joints (T, 22, 3), metres, on `Skeleton.adult()`."""
    return generate_motion(family, np.random.default_rng(seed)).joints


def noisy(joints: np.ndarray, seed: int = 0) -> np.ndarray:
    """joints (T, 22, 3) plus N(0, NOISE) on every coordinate."""
    return joints + np.random.default_rng(seed).normal(0.0, NOISE, joints.shape)


def _best_rotations(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations R minimising sum_c |R source_c - target_c|^2; source (C, 3), target (T, C, 3)."""
    u, _, vt = np.linalg.svd(np.einsum("tci,cj->tij", target, source))
    u[..., :, 2] *= np.sign(np.linalg.det(u @ vt))[:, None]
    return u @ vt


def humanml3d_shaped(joints: np.ndarray, real: np.ndarray) -> np.ndarray:
    """A motion made on the textbook adult, rebuilt on HumanML3D's geometry; (T, 22, 3) metres.

    joints: (T, 22, 3) made on `Skeleton.adult()`. real: (T', 22, 3) a real HumanML3D motion, whose
    frame 0 gives the rigid sets' shapes, turned upright by the rotation that best fits them to
    HumanML3D's upright sets (`Skeleton.humanml3d()`). Bone by bone from the pelvis: single bones
    keep the motion's directions and get HumanML3D's lengths; each rigid set is its real shape turned
    by the rotation (Kabsch) that best carries the textbook set onto the motion's, so that it stands
    upright where the motion's does. Then the motion is floored as HumanML3D floors motions: its lowest
    joint over all frames goes to y = 0.
    """
    textbook, upright = Skeleton.adult().offsets, Skeleton.humanml3d().offsets
    shaped = np.zeros_like(joints)
    shaped[:, 0] = joints[:, 0]
    bones = joints[:, 1:] - joints[:, list(PARENTS[1:])]
    directions = bones / np.linalg.norm(bones, axis=-1, keepdims=True)
    offsets = np.concatenate([np.zeros_like(joints[:, :1]), directions * ADULT_BONE_LENGTHS[1:, None]], axis=1)
    for root, children in RIGID_GROUPS:
        children = list(children)
        shape = real[0, children] - real[0, root]
        shape = shape @ _best_rotations(shape, upright[None, children])[0].T
        turns = _best_rotations(textbook[children], joints[:, children] - joints[:, root, None])
        offsets[:, children] = np.einsum("tij,cj->tci", turns, shape)
    for joint in range(1, NUM_JOINTS):
        shaped[:, joint] = shaped[:, PARENTS[joint]] + offsets[:, joint]
    shaped[..., 1] -= shaped[..., 1].min()
    return shaped
