"""The humanoid's body: its frames, hinges and proportions, from a 22-joint skeleton's rest offsets.

Frames. The data are y up, facing +z, left +x (`scl_ray.motion.skeleton`); MuJoCo is z up. The
simulation frame faces +x, left +y, up +z (MuJoCo's usual humanoid): a cyclic permutation of the
axes, so a proper rotation, and `to_sim` / `to_data` are the only places that convert.

Neutral pose (`neutral_offsets`). Hinge angles 0 are a natural stance: legs straight, the chest above
the hips, collars out, arms hanging, soles flat on the floor with the toe joints on them (HumanML3D's
floor is the lowest joint) and the ankle joints `ankle_height` above them (anatomically about 8 cm;
real HumanML3D motions infer 3-6 cm, `infer_ankle_height`; 0 for data that put the ankles on the
floor). Hinge limits (`HINGES`) are anatomical ranges around that stance. The rigid sets of the
skeleton (pelvis with hips and spine, chest with neck and collars) keep the skeleton's rest offsets,
so motions made by forward kinematics on the same skeleton are reproduced exactly: real HumanML3D
motions need their own (`Humanoid.for_motion` measures them, `Skeleton.from_motion`), whose SMPL
pelvis carries the hips below its joint and spine1 behind the hips.

Proportions (`Anthropometry`): stature and mass from leg length, segment masses from Winter's / de
Leva's tables. `scl_ray.physics.humanoid` builds the MuJoCo model from all of this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scl_ray.motion.skeleton import (
    FOOT_JOINTS, FOOT_JOINTS_LEFT, FOOT_JOINTS_RIGHT, JOINT, NUM_JOINTS, PARENTS, RAW_OFFSETS, RIGID_GROUPS,
    Skeleton,
)

AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}

# Hinges of each body in the order MuJoCo composes them (intrinsic rotations), with limits in
# degrees, in the simulation frame: +y flexes a hip backwards, a knee, and points the toes down;
# +x tilts towards the left; +z turns to the left. The middle hinge of three sits where poses rarely
# reach 90 degrees (gimbal lock): abduction for hips, twist for shoulders, which raise to 90 both
# forwards and sideways. Limits are anatomical ranges around the neutral stance, widened to what
# seven real HumanML3D motions (tests/physics/data) take, with 5-10 degrees to spare: SMPL's knees
# never straighten and bend sideways at rest, which a knee hinge reproduces only by turning the
# thigh (up to 116 degrees; the foot turns back within its +-90 and, beyond, twists about its bone);
# SMPL's lumbar spine bends at spine1 (-45 to 73 degrees), its upper spine bone leans up to 48
# degrees forward of the chest, knees fold to 170 degrees, collars shrug by up to 63; the procedural
# kick points the toes 87 degrees down from a flat foot.
HINGES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "left_hip": (("y", -130, 35), ("x", -35, 75), ("z", -50, 125)),
    "right_hip": (("y", -130, 35), ("x", -75, 35), ("z", -125, 50)),
    "spine1": (("y", -50, 80), ("x", -30, 30), ("z", -35, 35)),
    "left_knee": (("y", -5, 175),),
    "right_knee": (("y", -5, 175),),
    "spine2": (("y", -30, 65), ("x", -30, 30), ("z", -35, 35)),
    "left_ankle": (("y", -55, 90), ("x", -35, 35), ("z", -90, 90)),
    "right_ankle": (("y", -55, 90), ("x", -35, 35), ("z", -90, 90)),
    "spine3": (("y", -55, 50), ("x", -30, 30), ("z", -35, 35)),
    "neck": (("y", -60, 80), ("x", -50, 50), ("z", -80, 80)),
    "left_collar": (("z", -70, 40), ("x", -35, 55), ("y", -50, 50)),
    "right_collar": (("z", -40, 70), ("x", -55, 35), ("y", -50, 50)),
    "left_shoulder": (("y", -185, 70), ("z", -95, 95), ("x", -45, 185)),
    "right_shoulder": (("y", -185, 70), ("z", -95, 95), ("x", -185, 45)),
    "left_elbow": (("y", -155, 5),),
    "right_elbow": (("y", -155, 5),),
}
BODY_JOINTS: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS) if j in PARENTS)  # 17, parents first
LEAF_JOINTS: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS) if j not in PARENTS)

# Adult anthropometry (metres, kilograms), scaled by leg length for other skeletons.
ANKLE_HEIGHT = 0.08  # ankle joint above the sole; the toe joint lies on the sole
MAX_ANKLE_HEIGHT = 0.12  # the most `infer_ankle_height` believes of a motion
HEAD_TOP = 0.11  # crown above the head joint
REFERENCE_MASS, REFERENCE_STATURE = 70.0, 1.75  # mass scales with stature cubed
GRAVITY = 9.81
# Segment masses as fractions of body mass (Winter's / de Leva's tables, trunk split over our bodies).
MASS_FRACTIONS = {
    "pelvis": 0.142, "hip": 0.100, "knee": 0.0465, "ankle": 0.0145, "spine1": 0.070, "spine2": 0.069,
    "spine3": 0.196, "neck": 0.011, "head": 0.070, "collar": 0.010, "shoulder": 0.028,
    "elbow": 0.016, "hand": 0.006,
}



def to_sim(vectors: np.ndarray) -> np.ndarray:
    """Data-frame vectors (..., 3) (x left, y up, z forward) in the simulation frame (x fwd, y left, z up)."""
    return np.asarray(vectors)[..., [2, 0, 1]]


def to_data(vectors: np.ndarray) -> np.ndarray:
    """Simulation-frame vectors (..., 3) back in the data frame; the inverse of `to_sim`."""
    return np.asarray(vectors)[..., [1, 2, 0]]


def hinge_name(body: str, axis: str) -> str:
    return f"{body}_{axis}"


def leg_length(skeleton: Skeleton) -> float:
    """Mean hip-to-ankle length of the two legs, metres."""
    lengths = skeleton.bone_lengths
    return float(np.mean([lengths[JOINT[f"{s}_knee"]] + lengths[JOINT[f"{s}_ankle"]] for s in ("left", "right")]))


ADULT_LEG = leg_length(Skeleton.adult())


def default_ankle_height(skeleton: Skeleton) -> float:
    """Anatomical height of the ankle joint above the sole, metres, scaled with the legs."""
    return ANKLE_HEIGHT * leg_length(skeleton) / ADULT_LEG


def infer_ankle_height(joints: np.ndarray) -> float:
    """How far a motion's ankle joints sit above its soles (metres, rounded to 1 cm, in [0, 0.12]).

    The median over frames of the lower ankle's height above the lowest foot joint, joints (T, 22, 3)
    metres, y up. Datasets differ: HumanML3D's ankle joints ride several centimetres above the toes'
    joints, the procedural dataset plants ankle and toe joints on the floor together. A humanoid
    whose feet disagree with the data lifts or sinks every motion. Rounded so that humanoids built
    for it can be cached per height.
    """
    ankles = np.minimum(joints[:, FOOT_JOINTS_LEFT[0], 1], joints[:, FOOT_JOINTS_RIGHT[0], 1])
    lowest = joints[:, list(FOOT_JOINTS), 1].min(axis=1)
    return float(np.clip(np.round(np.median(ankles - lowest), 2), 0.0, MAX_ANKLE_HEIGHT))


def neutral_offsets(skeleton: Skeleton, ankle_height: float | None = None) -> np.ndarray:
    """(22, 3) bone vectors (parent -> joint) of the neutral stance, metres, data frame.

    The skeleton's rest offsets for the rigid sets (RIGID_GROUPS: pelvis, chest) and the textbook
    rest directions with the skeleton's lengths for the other bones, except the head (up, not
    forward), the shoulders (out from the collars, not down), the spine2 bone (leaning to bring
    the chest above the hips) and the feet (forward and down from an ankle `ankle_height` metres
    above the floor (default: anatomical) to the toe joint on it).
    """
    ankle_height = default_ankle_height(skeleton) if ankle_height is None else ankle_height
    lengths = skeleton.bone_lengths
    directions = RAW_OFFSETS.copy()
    directions[JOINT["head"]] = (0.0, 1.0, 0.0)
    directions[JOINT["left_shoulder"]] = (1.0, 0.0, 0.0)
    directions[JOINT["right_shoulder"]] = (-1.0, 0.0, 0.0)
    offsets = directions * lengths[:, None]
    for _, children in RIGID_GROUPS:
        offsets[list(children)] = skeleton.offsets[list(children)]
    # The chest stands above the hips: SMPL's upright pelvis carries spine1 5 cm behind them, which
    # its lumbar curve takes back; the spine2 bone leans forward as far as spine1 sits behind.
    hips = offsets[[JOINT["left_hip"], JOINT["right_hip"]], 2].mean()
    lean = np.clip((hips - offsets[JOINT["spine1"], 2]) / lengths[JOINT["spine2"]], -0.9, 0.9)
    offsets[JOINT["spine2"]] = lengths[JOINT["spine2"]] * np.array([0.0, np.sqrt(1.0 - lean**2), lean])
    # The same ankle height on both sides: a planted foot's ankle sits as high above its toe whichever
    # leg is shorter (the knee takes up the difference), so the sole is flat when the data's foot is.
    # Giving the shorter leg a taller ankle, so that both soles touched the floor in the neutral stance,
    # tilted its sole wherever the data's foot was planted: on the procedural skeleton (legs 1 cm apart)
    # every reference had the right heel 1.4 cm in the floor, and the humanoid stood on that foot with
    # the other 1.2 cm in the air. The neutral stance now stands on the longer leg.
    for side in ("left", "right"):
        foot = JOINT[f"{side}_foot"]
        drop = min(ankle_height / lengths[foot], 0.9)
        offsets[foot] = lengths[foot] * np.array([0.0, -drop, np.sqrt(1.0 - drop**2)])
    return offsets


@dataclass(frozen=True)
class Anthropometry:
    """Sizes derived from a skeleton: size (leg length over the adult's), stature (m), mass (kg)."""

    size: float
    stature: float
    mass: float

    @classmethod
    def of(cls, skeleton: Skeleton) -> "Anthropometry":
        """Stature: sole to crown in the neutral stance (anatomical ankle, legs of the mean length),
        which counts hips set below the pelvis joint (HumanML3D's) as height."""
        size = leg_length(skeleton) / ADULT_LEG
        offsets = neutral_offsets(skeleton)
        spine = [JOINT[name] for name in ("spine1", "spine2", "spine3", "neck", "head")]
        trunk = offsets[spine, 1].sum() - offsets[[JOINT["left_hip"], JOINT["right_hip"]], 1].mean()
        stature = (ANKLE_HEIGHT + HEAD_TOP) * size + leg_length(skeleton) + trunk
        return cls(size, stature, REFERENCE_MASS * (stature / REFERENCE_STATURE) ** 3)
