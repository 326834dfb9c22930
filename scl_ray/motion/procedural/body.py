"""From control channels to joint positions: the procedural body.

A `Track` holds what a motion planner decides per frame: the pelvis path and orientation, trunk
bends, ankle targets with foot yaw and pitch, planned foot contacts and arm angles. `pose` turns it
into joints with analytic two-bone IK for legs and arms, aim rotations for the trunk, neck and
feet, and the skeleton's own forward kinematics, so every bone keeps its rest length exactly and a
planted ankle target is reached exactly.

World frame: metres, y up; yaw 0 faces +z with the left side at +x; positive yaw turns left.
Side index 0 is left, 1 is right.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from scl_ray.motion.skeleton import JOINT, NUM_JOINTS, PARENTS, Skeleton

LEFT, RIGHT = 0, 1
SIDE_SIGN = np.array([1.0, -1.0])  # +x is the left side
UP = np.array([0.0, 1.0, 0.0])
# Standing pelvis height as a fraction of the shorter leg: knees slightly soft, as people stand.
STANDING_REACH = 0.99
# Hip-to-ankle distance a plan may ask for, as a fraction of the leg: IK of a fully straight knee
# turns tiny target motions into large knee swings.
MAX_REACH = 0.995
# A swinging foot planned beyond the leg's reach is pulled in to this fraction of the leg, smoothly
# over REACH_SOFTNESS metres, instead of being clamped by the IK (which would snap the knee straight).
SWING_REACH = 0.999
REACH_SOFTNESS = 0.001
# The skeleton's collars sit level with spine3 on either side, so the collar->shoulder bone is
# raised (radians above horizontal) to put the shoulders at a human height.
COLLAR_ELEVATION = 0.7
HEAD_TILT = 0.2  # rad the neck->head bone leans forward of the chest's up axis
TOE_OUT = 0.08  # rad each foot turns outward in the neutral stance
# Neutral arm angles (swing, abduction, rotation, elbow) in radians, see `arm_reach`.
REST_ARM = (0.05, 0.12, 0.0, 0.25)

LEG_JOINTS = ((JOINT["left_hip"], JOINT["left_knee"], JOINT["left_ankle"], JOINT["left_foot"]),
              (JOINT["right_hip"], JOINT["right_knee"], JOINT["right_ankle"], JOINT["right_foot"]))
ARM_JOINTS = ((JOINT["left_collar"], JOINT["left_shoulder"], JOINT["left_elbow"], JOINT["left_wrist"]),
              (JOINT["right_collar"], JOINT["right_shoulder"], JOINT["right_elbow"], JOINT["right_wrist"]))
SPINE_JOINTS = (JOINT["spine1"], JOINT["spine2"], JOINT["spine3"])


def forward(yaw: np.ndarray) -> np.ndarray:
    """(..., 3) horizontal unit vector a body with this yaw (rad) faces."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return np.stack([np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)], axis=-1)


def leftward(yaw: np.ndarray) -> np.ndarray:
    """(..., 3) horizontal unit vector to the left of a body with this yaw (rad)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return np.stack([np.cos(yaw), np.zeros_like(yaw), -np.sin(yaw)], axis=-1)


def rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    """(T, 3, 3) right-handed rotations by angle (T,) radians about world axis 0 (x), 1 (y) or 2 (z)."""
    angle = np.atleast_1d(np.asarray(angle, dtype=np.float64))
    first, second = ((1, 2), (2, 0), (0, 1))[axis]
    cos, sin = np.cos(angle), np.sin(angle)
    matrices = np.zeros(angle.shape + (3, 3))
    matrices[:, axis, axis] = 1.0
    matrices[:, first, first] = cos
    matrices[:, second, second] = cos
    matrices[:, first, second] = -sin
    matrices[:, second, first] = sin
    return matrices


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross products of (..., 3) vectors; np.cross's axis handling costs more than the arithmetic here."""
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                     a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


def _rotate(rotations: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(T, 3): each rotation (T, 3, 3) applied to its vector (T, 3)."""
    return np.einsum("tij,tj->ti", rotations, vectors)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def aim(direction: np.ndarray, side: np.ndarray, rest_direction, rest_side) -> np.ndarray:
    """(T, 3, 3) rotations taking rest_direction onto direction (T, 3) and rest_side towards side.

    rest_direction and rest_side are perpendicular unit 3-vectors; side need not be unit or
    perpendicular to direction (its perpendicular part is used).
    """
    direction = _unit(direction)
    side = _unit(side - np.sum(side * direction, axis=-1, keepdims=True) * direction)
    target = np.stack([direction, side, _cross(direction, side)], axis=-1)
    rest_direction, rest_side = np.asarray(rest_direction, float), np.asarray(rest_side, float)
    rest = np.stack([rest_direction, rest_side, _cross(rest_direction, rest_side)], axis=-1)
    return target @ rest.T


def two_bone(root: np.ndarray, target: np.ndarray, upper: float, lower: float,
             bend: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Analytic two-bone IK: (middle joint, reached end, hinge axis), each (T, 3).

    The middle joint (knee, elbow) lies on the side `bend` (T, 3) points to, in the plane of root,
    target and bend. A target out of reach is clamped onto the reachable shell along its direction.
    The hinge axis is the unit normal of that plane, cross(bend, root->target).
    """
    offset = target - root
    distance = np.linalg.norm(offset, axis=-1, keepdims=True)
    along = offset / distance
    distance = np.clip(distance, abs(upper - lower) + 1e-9, (upper + lower) * (1.0 - 1e-12))
    bend = _unit(bend - np.sum(bend * along, axis=-1, keepdims=True) * along)
    cos_root = (upper * upper + distance * distance - lower * lower) / (2.0 * upper * distance)
    sin_root = np.sqrt(np.clip(1.0 - cos_root * cos_root, 0.0, None))
    middle = root + upper * (cos_root * along + sin_root * bend)
    return middle, root + distance * along, _cross(bend, along)


@dataclass(frozen=True)
class Body:
    """The measurements of a skeleton that planning needs; metres, index 0 left, 1 right."""

    skeleton: Skeleton
    thigh: np.ndarray  # (2,)
    shin: np.ndarray  # (2,)
    foot: np.ndarray  # (2,) ankle -> foot joint (toes)
    hip: np.ndarray  # (2, 3) rest offsets pelvis -> hip
    upper_arm: np.ndarray  # (2,)
    forearm: np.ndarray  # (2,)
    standing_height: float  # pelvis height of the neutral stance

    @classmethod
    def of(cls, skeleton: Skeleton) -> "Body":
        lengths = skeleton.bone_lengths
        legs, arms = np.array(LEG_JOINTS), np.array(ARM_JOINTS)
        thigh, shin = lengths[legs[:, 1]], lengths[legs[:, 2]]
        return cls(skeleton=skeleton, thigh=thigh, shin=shin, foot=lengths[legs[:, 3]],
                   hip=skeleton.offsets[legs[:, 0]].copy(), upper_arm=lengths[arms[:, 2]],
                   forearm=lengths[arms[:, 3]], standing_height=STANDING_REACH * float(np.min(thigh + shin)))

    @property
    def reach(self) -> np.ndarray:
        """(2,) longest hip-to-ankle distance a plan may use."""
        return MAX_REACH * (self.thigh + self.shin)

    @property
    def stance(self) -> np.ndarray:
        """(2, 3) neutral ankle positions relative to the pelvis' ground point, facing +z."""
        return self.hip * np.array([1.0, 0.0, 0.0])


# Track channels indexed by side first: (2, T) or (2, T, D).
_SIDE_MAJOR = ("ankle", "foot_yaw", "foot_pitch", "ankle_contact", "toe_contact", "arm")


@dataclass
class Track:
    """Per-frame control channels of one motion (T frames, 20 fps); see the module docstring.

    Angles are radians: pitch tilts the pelvis (and everything above it) forward, lean bends the
    spine forward, side_bend bends it to the left, twist turns the chest to the left, head_pitch
    nods the head down. Foot pitch > 0 points the toes down. arm holds (swing, abduction, rotation,
    elbow) per side, see `arm_reach`.
    """

    pelvis: np.ndarray  # (T, 3) metres
    yaw: np.ndarray  # (T,)
    pitch: np.ndarray  # (T,)
    lean: np.ndarray  # (T,)
    side_bend: np.ndarray  # (T,)
    twist: np.ndarray  # (T,)
    head_pitch: np.ndarray  # (T,)
    ankle: np.ndarray  # (2, T, 3) ankle targets, metres
    foot_yaw: np.ndarray  # (2, T)
    foot_pitch: np.ndarray  # (2, T)
    ankle_contact: np.ndarray  # (2, T) bool: the ankle is planned to rest on the floor
    toe_contact: np.ndarray  # (2, T) bool: the foot joint (toes) is planned to rest on the floor
    arm: np.ndarray  # (2, T, 4)

    @classmethod
    def standing(cls, body: Body, frames: int) -> "Track":
        """The neutral stance at the origin facing +z, held for `frames` frames."""
        zeros = np.zeros(frames)
        pelvis = np.zeros((frames, 3))
        pelvis[:, 1] = body.standing_height
        ankle = np.repeat(body.stance[:, None, :], frames, axis=1)
        foot_yaw = np.repeat((SIDE_SIGN * TOE_OUT)[:, None], frames, axis=1)
        return cls(pelvis=pelvis, yaw=zeros.copy(), pitch=zeros.copy(), lean=zeros.copy(),
                   side_bend=zeros.copy(), twist=zeros.copy(), head_pitch=zeros.copy(), ankle=ankle,
                   foot_yaw=foot_yaw, foot_pitch=np.zeros((2, frames)),
                   ankle_contact=np.ones((2, frames), bool), toe_contact=np.ones((2, frames), bool),
                   arm=np.tile(np.asarray(REST_ARM, float), (2, frames, 1)))

    @property
    def frames(self) -> int:
        return len(self.yaw)

    def window(self, start: int, stop: int) -> "Track":
        """Frames start..stop-1 of this track."""
        return Track(**{f.name: getattr(self, f.name)[:, start:stop] if f.name in _SIDE_MAJOR
                        else getattr(self, f.name)[start:stop] for f in fields(Track)})

    def placed(self, yaw: float, origin: np.ndarray) -> "Track":
        """This track turned by `yaw` (rad) about the vertical axis and moved by origin (3,) metres."""
        turn = rotation(1, np.array([yaw]))[0]
        return replace(self, pelvis=self.pelvis @ turn.T + origin, yaw=self.yaw + yaw,
                       ankle=self.ankle @ turn.T + origin, foot_yaw=self.foot_yaw + yaw)


def concatenate(first: Track, second: Track) -> Track:
    """`second`, planned from the origin facing +z, continued from where `first` ends.

    Both must end/start in the neutral stance; the shared frame appears once.
    """
    origin = first.pelvis[-1] * np.array([1.0, 0.0, 1.0])
    moved = second.placed(float(first.yaw[-1]), origin)
    joined = {}
    for field in fields(Track):
        a, b = getattr(first, field.name), getattr(moved, field.name)
        axis = 1 if field.name in _SIDE_MAJOR else 0
        joined[field.name] = np.concatenate([a, np.delete(b, 0, axis=axis)], axis=axis)
    return Track(**joined)


def arm_reach(body: Body, side: int, arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wrist target and elbow direction (T, 3) each, in the chest frame relative to the shoulder.

    arm: (T, 4) radians: swing raises the upper arm forward from hanging down, abduction then
    raises it sideways, rotation turns the forearm's bending plane outward about the upper arm, and
    elbow bends the forearm towards the front of the upper arm (0 = straight).
    """
    swing, abduction, turn, elbow = np.moveaxis(arm, -1, 0)
    sign = SIDE_SIGN[side]
    spread = sign * abduction
    cos_s, sin_s, cos_a, sin_a = np.cos(swing), np.sin(swing), np.cos(spread), np.sin(spread)
    upper = np.stack([cos_s * sin_a, -cos_s * cos_a, sin_s], axis=-1)
    front = np.stack([-sin_s * sin_a, sin_s * cos_a, cos_s], axis=-1)
    outward = sign * _cross(front, upper)
    front = np.cos(turn)[:, None] * front + np.sin(turn)[:, None] * outward
    lower = np.cos(elbow)[:, None] * upper + np.sin(elbow)[:, None] * front
    return body.upper_arm[side] * upper + body.forearm[side] * lower, -front


def _within_reach(root: np.ndarray, target: np.ndarray, limit: float) -> np.ndarray:
    """Targets (T, 3) pulled towards root along their direction so that none is beyond limit (m).

    A smooth minimum of the distance and the limit: targets well inside are left alone (to 1e-5 m
    at a planned reach), so a swinging foot approaches full extension without a snap.
    """
    offset = target - root
    distance = np.linalg.norm(offset, axis=-1, keepdims=True)
    limited = -REACH_SOFTNESS * np.logaddexp(-distance / REACH_SOFTNESS, -limit / REACH_SOFTNESS)
    return root + offset * (limited / distance)


def _collar_rotations() -> np.ndarray:
    """(2, 3, 3) constant local rotations of the collars: the shoulder bone points up and out."""
    up, out = np.sin(COLLAR_ELEVATION), np.cos(COLLAR_ELEVATION)
    directions = np.array([[out, up, 0.0], [-out, up, 0.0]])
    return aim(directions, np.array([[0.0, 0.0, 1.0]] * 2), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0))


COLLAR_ROTATIONS = _collar_rotations()


def pose(track: Track, body: Body) -> np.ndarray:
    """Joint positions (T, 22, 3) metres of a track, by the skeleton's forward kinematics."""
    frames = track.frames
    offsets = body.skeleton.offsets
    world = np.empty((frames, NUM_JOINTS, 3, 3))  # global rotation of every joint
    root = rotation(1, track.yaw) @ rotation(0, track.pitch)
    world[:, 0] = root
    bend = rotation(1, track.twist / 3) @ rotation(0, track.lean / 3) @ rotation(2, -track.side_bend / 3)
    position = track.pelvis
    parent_rotation = root
    for joint in SPINE_JOINTS:
        position = position + parent_rotation @ offsets[joint]
        parent_rotation = parent_rotation @ bend
        world[:, joint] = parent_rotation
    chest, spine3 = parent_rotation, position

    head_angle = HEAD_TILT + track.head_pitch
    head_direction = np.stack([np.zeros(frames), np.cos(head_angle), np.sin(head_angle)], axis=-1)
    world[:, JOINT["neck"]] = aim(_rotate(chest, head_direction), chest[..., 0], (0, 0, 1), (1, 0, 0))
    world[:, JOINT["head"]] = world[:, JOINT["neck"]]

    for side, (collar, shoulder, elbow, wrist) in enumerate(ARM_JOINTS):
        world[:, collar] = chest @ COLLAR_ROTATIONS[side]
        shoulder_position = spine3 + chest @ offsets[collar] + world[:, collar] @ offsets[shoulder]
        reach, pole = arm_reach(body, side, track.arm[side])
        target = shoulder_position + _rotate(chest, reach)
        middle, end, hinge = two_bone(shoulder_position, target, body.upper_arm[side], body.forearm[side],
                                      _rotate(chest, pole))
        world[:, shoulder] = aim(middle - shoulder_position, -hinge, (0, -1, 0), (1, 0, 0))
        world[:, elbow] = aim(end - middle, -hinge, (0, -1, 0), (1, 0, 0))
        world[:, wrist] = world[:, elbow]

    for side, (hip, knee, ankle, toes) in enumerate(LEG_JOINTS):
        hip_position = track.pelvis + root @ offsets[hip]
        free = ~(track.ankle_contact[side] | track.toe_contact[side])
        pulled_in = _within_reach(hip_position, track.ankle[side], SWING_REACH * (body.thigh[side] + body.shin[side]))
        target = np.where(free[:, None], pulled_in, track.ankle[side])
        along = target - hip_position
        # The knee points forward along the leg, in the plane of the leg's mean heading.
        lateral = leftward(0.5 * (track.yaw + track.foot_yaw[side]))
        middle, end, hinge = two_bone(hip_position, target, body.thigh[side], body.shin[side],
                                      _cross(along, lateral))
        world[:, hip] = aim(middle - hip_position, hinge, (0, -1, 0), (1, 0, 0))
        world[:, knee] = aim(end - middle, hinge, (0, -1, 0), (1, 0, 0))
        pitch = track.foot_pitch[side]
        toe_direction = np.cos(pitch)[:, None] * forward(track.foot_yaw[side]) - np.sin(pitch)[:, None] * UP
        world[:, ankle] = aim(toe_direction, leftward(track.foot_yaw[side]), (0, 0, 1), (1, 0, 0))
        world[:, toes] = world[:, ankle]

    parents = np.array(PARENTS[1:])
    local = np.empty_like(world)
    local[:, 0] = world[:, 0]
    local[:, 1:] = np.swapaxes(world[:, parents], -1, -2) @ world[:, 1:]
    return body.skeleton.forward_kinematics(local, track.pelvis)


def contacts(track: Track) -> np.ndarray:
    """(T, 4) bool planned contacts of joints 7, 10, 8, 11 (left ankle, left foot, right ...)."""
    return np.stack([track.ankle_contact[LEFT], track.toe_contact[LEFT],
                     track.ankle_contact[RIGHT], track.toe_contact[RIGHT]], axis=-1)
