"""Actions performed on the spot: squat, sit down on an invisible chair, wave, punch, kick.

Each is a keyframed track from the neutral stance at the origin facing +z: channels move from pose
to pose with minimum-jerk interpolation. The pelvis only moves along straight lines between
poses that both legs reach, so every planted foot stays flat and still.
"""

from __future__ import annotations

import numpy as np

from scl_ray.motion.procedural.body import LEFT, REST_ARM, RIGHT, SIDE_SIGN, Body, Track
from scl_ray.motion.constants import FPS
from scl_ray.motion.procedural.curves import frame_times, keyframes

SIDE_INDEX = {"left": LEFT, "right": RIGHT}


class Keys:
    """Keyframes of several channels on one timeline; a channel not keyed at a time holds its value."""

    def __init__(self, start: float, **rest: object):
        self.time = start
        self.times = [start]
        self.values: list[dict[str, np.ndarray]] = [{k: np.asarray(v, float) for k, v in rest.items()}]

    def to(self, duration: float, **values: object) -> "Keys":
        """Move the named channels to new values over `duration` seconds (0 values: hold)."""
        self.time += duration
        pose = dict(self.values[-1])
        pose.update({k: np.asarray(v, float) for k, v in values.items()})
        self.times.append(self.time)
        self.values.append(pose)
        return self

    def frames(self, hold: float) -> int:
        return int(np.ceil((self.time + hold) * FPS)) + 1

    def channel(self, times: np.ndarray, name: str) -> np.ndarray:
        return keyframes(times, np.array(self.times), np.stack([pose[name] for pose in self.values]))


def _track(body: Body, keys: Keys, hold: float) -> tuple[Track, np.ndarray]:
    track = Track.standing(body, keys.frames(hold))
    return track, frame_times(track.frames)


def _rest_arms(**changes: float) -> np.ndarray:
    arm = np.array(REST_ARM)
    for index, name in enumerate(("swing", "abduction", "rotation", "elbow")):
        arm[index] = changes.get(name, arm[index])
    return np.array([arm, arm])


def squat(body: Body, depth: float, repetitions: int, down_time: float, lead_in: float, hold: float) -> Track:
    """Squats `depth` m down, hips back and arms forward for balance, `repetitions` times."""
    stand = dict(height=body.standing_height, back=0.0, pitch=0.0, lean=0.0, arms=_rest_arms())
    bottom = dict(height=body.standing_height - depth, back=-0.45 * depth, pitch=1.1 * depth, lean=0.3 * depth,
                  arms=_rest_arms(swing=1.45, abduction=0.15, elbow=0.15))
    keys = Keys(lead_in, **stand)
    for _ in range(repetitions):
        keys.to(down_time, **bottom).to(0.25).to(down_time, **stand).to(0.3)
    track, times = _track(body, keys, hold)
    track.pelvis[:, 1] = keys.channel(times, "height")
    track.pelvis[:, 2] = keys.channel(times, "back")
    track.pitch = keys.channel(times, "pitch")
    track.lean = keys.channel(times, "lean")
    track.arm = np.moveaxis(keys.channel(times, "arms"), 0, 1)
    return track


def sit_down(body: Body, stand_up: bool, seated: float, lead_in: float, hold: float) -> Track:
    """Sits down on a chair that is not there (hips down and back), optionally standing up again."""
    seat = dict(height=0.52, back=-0.34)
    stand = dict(height=body.standing_height, back=0.0)
    keys = Keys(lead_in, **stand, pitch=0.0, lean=0.0, head=0.0, arms=_rest_arms())
    keys.to(0.5, pitch=0.35, lean=0.2, head=0.2, arms=_rest_arms(swing=0.6, elbow=0.4))
    keys.to(0.9, **seat, pitch=0.3, lean=0.15, arms=_rest_arms(swing=0.45, elbow=0.9))
    keys.to(0.5, pitch=0.05, lean=0.0, head=0.0, arms=_rest_arms(swing=0.35, elbow=1.1, abduction=0.2))
    keys.to(seated)
    if stand_up:
        keys.to(0.5, pitch=0.45, lean=0.25, head=0.2, arms=_rest_arms(swing=0.5, elbow=0.6))
        keys.to(1.0, **stand, pitch=0.1, lean=0.05, arms=_rest_arms(swing=0.2))
        keys.to(0.4, pitch=0.0, lean=0.0, head=0.0, arms=_rest_arms())
    track, times = _track(body, keys, hold)
    track.pelvis[:, 1] = keys.channel(times, "height")
    track.pelvis[:, 2] = keys.channel(times, "back")
    track.pitch = keys.channel(times, "pitch")
    track.lean = keys.channel(times, "lean")
    track.head_pitch = keys.channel(times, "head")
    track.arm = np.moveaxis(keys.channel(times, "arms"), 0, 1)
    return track


def wave(body: Body, sides: tuple[int, ...], waves: int, high: bool, lead_in: float, hold: float) -> Track:
    """Raises the hands of `sides` and waves them side to side `waves` times, then lowers them."""
    abduction = 2.3 if high else 1.45
    low_elbow, high_elbow = (0.25, 0.9) if high else (0.9, 1.8)
    raised = _rest_arms(swing=0.3, abduction=abduction, rotation=1.5, elbow=0.5 * (low_elbow + high_elbow))
    arms = _rest_arms()
    keys = Keys(lead_in, arms=arms.copy())
    for side in sides:
        arms[side] = raised[side]
    keys.to(0.6, arms=arms.copy())
    for index in range(2 * waves):
        for side in sides:
            arms[side, 3] = high_elbow if index % 2 == 0 else low_elbow
        keys.to(0.3, arms=arms.copy())
    for side in sides:
        arms[side] = raised[side]
    keys.to(0.2, arms=arms.copy()).to(0.6, arms=_rest_arms())
    track, times = _track(body, keys, hold)
    track.arm = np.moveaxis(keys.channel(times, "arms"), 0, 1)
    track.side_bend = -0.05 * sum(SIDE_SIGN[side] for side in sides) * (track.arm[sides[0], :, 1] - REST_ARM[1])
    return track


def punch(body: Body, hands: tuple[int, ...], lead_in: float, hold: float) -> Track:
    """Raises a guard, throws one punch per entry of `hands` (side indices), lowers the guard."""
    guard = _rest_arms(swing=0.55, abduction=0.25, elbow=2.1)
    keys = Keys(lead_in, arms=_rest_arms(), twist=0.0, height=body.standing_height)
    keys.to(0.5, arms=guard, height=body.standing_height - 0.04)
    for side in hands:
        extended = guard.copy()
        extended[side] = (1.5, -0.12, 0.0, 0.08)
        keys.to(0.17, arms=extended, twist=0.35 * SIDE_SIGN[1 - side])
        keys.to(0.28, arms=guard, twist=0.0).to(0.12)
    keys.to(0.5, arms=_rest_arms(), height=body.standing_height)
    track, times = _track(body, keys, hold)
    track.arm = np.moveaxis(keys.channel(times, "arms"), 0, 1)
    track.twist = keys.channel(times, "twist")
    track.pelvis[:, 1] = keys.channel(times, "height")
    return track


def kick(body: Body, side: int, high: bool, repetitions: int, lead_in: float, hold: float) -> Track:
    """Shifts onto the other foot and kicks forward with the `side` leg `repetitions` times."""
    support = 1 - side
    shift = 0.75 * body.stance[support, 0]
    height = body.standing_height - 0.03
    hip = np.array([shift, height, 0.0]) + body.hip[side]
    rest = body.stance[side]
    chamber = hip + np.array([0.0, -0.42 if high else -0.5, 0.08])
    elevation = 0.05 if high else -0.5
    extended = hip + 0.97 * body.reach[side] * np.array([0.0, np.sin(elevation), np.cos(elevation)])
    arms_out = _rest_arms(abduction=0.6, elbow=0.5, swing=0.2)
    keys = Keys(lead_in, pelvis=(0.0, body.standing_height, 0.0), ankle=rest, pitch=0.0, toe=0.0,
                arms=_rest_arms())
    keys.to(0.5, pelvis=(shift, height, 0.0), arms=arms_out)
    lift = keys.time
    for _ in range(repetitions):
        keys.to(0.3, ankle=chamber, toe=0.3, pitch=-0.05)
        keys.to(0.18, ankle=extended, toe=0.7, pitch=-0.25 if high else -0.1)
        keys.to(0.12).to(0.25, ankle=chamber, toe=0.3, pitch=-0.05)
    keys.to(0.35, ankle=rest, toe=0.0, pitch=0.0)
    down = keys.time
    keys.to(0.5, pelvis=(0.0, body.standing_height, 0.0), arms=_rest_arms())
    track, times = _track(body, keys, hold)
    track.pelvis = keys.channel(times, "pelvis")
    track.ankle[side] = keys.channel(times, "ankle")
    track.foot_pitch[side] = keys.channel(times, "toe")
    track.pitch = keys.channel(times, "pitch")
    track.arm = np.moveaxis(keys.channel(times, "arms"), 0, 1)
    planted = (times <= lift) | (times >= down)
    track.ankle_contact[side] = planted
    track.toe_contact[side] = planted
    return track
