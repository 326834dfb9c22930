"""Locomotion: footsteps planned along a pelvis path, and the track that walks them.

A `Path` says where the pelvis goes (speed, direction of travel relative to the facing, turn
rate); a `Gait` says how the person steps (cadence, duty factor, swing height, heel and toe roll,
posture, arm swing). `locomote` plans alternating footsteps on the path, places each foothold
under its hip at mid-stance, rolls each planted foot heel-to-toe with the ankle or the toes fixed,
swings feet between footholds, and sets the pelvis height so that both legs reach their targets:
lowered where the legs could not (double support of long steps), ballistic in flight phases.
Every motion starts and ends in the neutral stance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scl_ray.motion.constants import FPS
from scl_ray.motion.procedural.body import (
    LEFT, REST_ARM, RIGHT, SIDE_SIGN, TOE_OUT, UP, Body, Track, forward, leftward, rotation,
)
from scl_ray.motion.procedural.curves import (
    GRAVITY, ballistic, bump, ease, frame_times, hermite, plateau, plateau_integral, smooth_cover,
)

FAR = 1e4  # seconds: open ends of the first and last stance
SETTLE = 0.35  # s after the last touch-down until the pelvis is back at standing height
COVER_RADIUS = 3  # frames; the pelvis-lowering curve is smoothed over 4 * radius frames


@dataclass(frozen=True)
class Path:
    """Where the pelvis travels. Angles in radians, times in seconds."""

    speed: float  # m/s when cruising
    duration: float  # from setting off to standing still, ramps included
    direction: float = 0.0  # of travel relative to the facing: 0 forward, pi back, pi/2 to the left
    turn_rate: float = 0.0  # rad/s when cruising, > 0 turns left
    ramp: float = 0.8  # to reach cruising speed, and to stop
    lead_in: float = 0.3  # standing still before setting off


@dataclass(frozen=True)
class Gait:
    """How a person steps. Lengths in metres, angles in radians."""

    cadence: float  # steps per second
    duty: float  # fraction of a stride each foot is on the floor; below 0.5 there are flight phases
    swing_height: float  # peak ankle lift above the line between two footholds
    swing_pitch: float = 0.0  # extra toe-down angle mid-swing
    heel_strike: float = 0.0  # toe-up angle at touch-down: the ankle lands first, the toes follow
    toe_off: float = 0.3  # toe-down angle at lift-off: the heel rises while the toes stay
    heel_off: float = 0.4  # fraction of a stance the heel rise takes
    width: float = 0.0  # added to the hip width between the feet
    height: float = 1.0  # pelvis height while moving, fraction of the standing height
    pitch: float = 0.0  # forward tilt of the pelvis and trunk while moving
    lean: float = 0.0  # forward spine bend while moving
    arm_swing: float = 0.5  # shoulder swing per metre the opposite foot is ahead
    arm_lift: float = 0.0  # shoulder swing per metre the opposite ankle is higher
    elbow: float = 0.3  # elbow bend while moving
    abduction: float = 0.12  # arms held out while moving
    sway: float = 0.03  # pelvis shift over the supporting foot
    pelvis_turn: float = 0.15  # pelvis yaw per metre the feet are apart fore and aft

    @property
    def step_time(self) -> float:
        return 1.0 / self.cadence

    @property
    def stance_time(self) -> float:
        return 2.0 * self.duty * self.step_time

    @property
    def swing_time(self) -> float:
        return 2.0 * (1.0 - self.duty) * self.step_time


@dataclass(frozen=True)
class Stance:
    """One foothold: the foot rests from `on` to `off` (s) with its ankle at `ankle` (3,) and yaw."""

    on: float
    off: float
    ankle: np.ndarray
    yaw: float


class PathCurve:
    """The pelvis' ground point (n, 3) and heading (n,) at any times, integrated at 100 Hz."""

    def __init__(self, path: Path):
        self.path = path
        self.start, self.stop = path.lead_in, path.lead_in + path.duration
        grid = np.arange(0.0, self.stop + 0.02, 0.01)
        speed = path.speed * plateau(grid, self.start, self.stop, path.ramp)
        velocity = speed[:, None] * forward(self.heading(grid) + path.direction)
        steps = 0.5 * (velocity[1:] + velocity[:-1]) * np.diff(grid)[:, None]
        self.grid = grid
        self.ground = np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])

    def heading(self, times: np.ndarray) -> np.ndarray:
        """(n,) radians at times (n,) seconds."""
        return self.path.turn_rate * plateau_integral(times, self.start, self.stop, self.path.ramp)

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground point (n, 3) metres (y = 0) and heading (n,) radians at times (n,) seconds."""
        times = np.atleast_1d(np.asarray(times, dtype=np.float64))
        ground = np.stack([np.interp(times, self.grid, self.ground[:, axis]) for axis in range(3)], axis=-1)
        return ground, self.heading(times)


def plan_steps(body: Body, gait: Gait, curve: PathCurve,
               first: int) -> tuple[list[list[Stance]], list[tuple[float, float]]]:
    """Alternating footsteps, `first` foot first, until both feet stand at the path's end.

    Returns the stances of each foot and the (lift, land) times of every step in order. A foot
    lands under its hip at the middle of its coming stance, spread by the gait's width while under
    way and further by the sideways speed, so that a side-stepping trailing foot closes up to, and
    never crosses, the leading one.
    """
    ground, heading = curve.at(np.zeros(1))
    stances = [[Stance(-FAR, FAR, ground[0] + body.stance[side], float(heading[0] + SIDE_SIGN[side] * TOE_OUT))]
               for side in (LEFT, RIGHT)]
    steps: list[tuple[float, float]] = []
    done = [False, False]
    index = 0
    while not all(done):
        side = first if index % 2 == 0 else 1 - first
        lift = curve.start + index * gait.step_time
        land = lift + gait.swing_time
        middle = land + 0.5 * gait.stance_time
        where, facing = curve.at(np.array([middle - 0.05, middle, middle + 0.05]))
        sideways = float(np.dot(where[2] - where[0], leftward(facing[1]))) / 0.1
        # Wider steps only while under way: the last footholds are the neutral stance.
        moving = float(plateau(np.array([middle]), curve.start, curve.stop, curve.path.ramp)[0])
        extra = 0.5 * gait.width * moving + 0.5 * abs(sideways) * gait.step_time
        spread = body.hip[side, 0] + SIDE_SIGN[side] * extra
        last = stances[side][-1]
        stances[side][-1] = Stance(last.on, lift, last.ankle, last.yaw)
        stances[side].append(Stance(land, FAR, where[1] + leftward(facing[1]) * spread,
                                    float(facing[1] + SIDE_SIGN[side] * TOE_OUT)))
        steps.append((lift, land))
        done[side] = middle >= curve.stop
        index += 1
    return stances, steps


def foot_track(times: np.ndarray, stances: list[Stance], gait: Gait, foot_length: float) -> dict[str, np.ndarray]:
    """Ankle (T, 3), yaw, pitch and planned contacts (T,) of one foot through its stances."""
    on = np.array([s.on for s in stances])
    off = np.array([s.off for s in stances])
    ankle = np.array([s.ankle for s in stances])
    yaw = np.array([s.yaw for s in stances])
    now = np.clip(np.searchsorted(on, times, side="right") - 1, 0, len(on) - 1)
    after = np.minimum(now + 1, len(on) - 1)
    standing = times <= off[now]

    strike_time = 0.25 * gait.stance_time if gait.heel_strike > 0 else 0.0
    rise_time = gait.heel_off * gait.stance_time
    strike_pitch = -gait.heel_strike * (1.0 - ease((times - on[now]) / max(strike_time, 1e-9)))
    rise_pitch = gait.toe_off * ease((times - (off[now] - rise_time)) / rise_time)
    facing = forward(yaw[now])

    def heel_raised(pitch: np.ndarray) -> np.ndarray:
        # The toes stay where a flat foot puts them; the ankle turns up around them.
        toe_direction = np.cos(pitch)[:, None] * facing - np.sin(pitch)[:, None] * UP
        return ankle[now] + foot_length * (facing - toe_direction)

    lift_off = heel_raised(np.full(len(times), gait.toe_off))
    progress = (times - off[now]) / np.where(after > now, on[after] - off[now], 1.0)
    glide, arc = ease(progress), bump(progress)
    swing_ankle = lift_off + (ankle[after] - lift_off) * glide[:, None] + UP * (gait.swing_height * arc)[:, None]
    swing_pitch = gait.toe_off * (1.0 - glide) - gait.heel_strike * glide + gait.swing_pitch * arc

    return {
        "ankle": np.where(standing[:, None], heel_raised(rise_pitch), swing_ankle),
        "yaw": np.where(standing, yaw[now], yaw[now] + (yaw[after] - yaw[now]) * glide),
        "pitch": np.where(standing, strike_pitch + rise_pitch, swing_pitch),
        "ankle_contact": standing & (times <= off[now] - rise_time),
        "toe_contact": standing & (times >= on[now] + strike_time),
    }


def _leg_room(body: Body, pelvis_xz: np.ndarray, pelvis_yaw: np.ndarray, ankle: np.ndarray) -> np.ndarray:
    """(2, T) highest pelvis heights at which each hip still reaches its ankle target."""
    turn = rotation(1, pelvis_yaw)
    room = np.empty(ankle.shape[:2])
    for side in (LEFT, RIGHT):
        hip = pelvis_xz + turn @ body.hip[side]
        horizontal = np.linalg.norm((hip - ankle[side])[:, [0, 2]], axis=-1)
        room[side] = ankle[side][:, 1] + np.sqrt(np.clip(body.reach[side] ** 2 - horizontal ** 2, 0.0, None))
    return room


def _bounce(times: np.ndarray, steps: list[tuple[float, float]], standing: float, top: float,
            gait: Gait) -> np.ndarray:
    """Pelvis height (T,) of a gait with flight phases.

    Free flight from each lift-off to the other foot's touch-down is a parabola under gravity;
    each stance between them mirrors it (constant upward acceleration), so the mean vertical force
    is the body weight. Takeoffs and touch-downs happen at `top`.
    """
    flight_time = gait.swing_time - gait.step_time
    speed = 0.5 * GRAVITY * flight_time
    height = np.full(len(times), standing)
    lifts, lands = [s[0] for s in steps], [s[1] for s in steps]

    def fill(start: float, stop: float, values) -> None:
        inside = (times >= start) & (times <= stop)
        height[inside] = values(times[inside])

    # From standing, through the single support before the first flight, up to its takeoff.
    start = lifts[0] - 0.3
    fill(start, lifts[1], lambda t: hermite(t, start, lifts[1], standing, 0.0, top, speed))
    for k in range(1, len(steps)):
        fill(lifts[k], lands[k - 1], lambda t: ballistic(t, lifts[k], top, speed))
        if k + 1 < len(steps):
            stance = (lands[k - 1], lifts[k + 1])
            fill(*stance, lambda t: hermite(t, *stance, top, -speed, top, speed))
    # From the last flight's touch-down back to standing.
    settled = lands[-1] + SETTLE
    fill(lands[-2], settled, lambda t: hermite(t, lands[-2], settled, top, -speed, standing, 0.0))
    height[times > settled] = standing
    return height


def locomote(body: Body, gait: Gait, path: Path, first: int, hold: float) -> Track:
    """The track of walking `path` with `gait`, the `first` foot stepping first, then standing `hold` s."""
    curve = PathCurve(path)
    stances, steps = plan_steps(body, gait, curve, first)
    end = steps[-1][1] + SETTLE + hold
    frames = int(np.ceil(end * FPS)) + 1
    times = frame_times(frames)
    track = Track.standing(body, frames)
    for side in (LEFT, RIGHT):
        foot = foot_track(times, stances[side], gait, body.foot[side])
        track.ankle[side] = foot["ankle"]
        track.foot_yaw[side] = foot["yaw"]
        track.foot_pitch[side] = foot["pitch"]
        track.ankle_contact[side] = foot["ankle_contact"]
        track.toe_contact[side] = foot["toe_contact"]

    ground, heading = curve.at(times)
    active = plateau(times, steps[0][0] - 0.3, steps[-1][1] + 0.3, 0.4)
    ahead = np.sum((track.ankle[RIGHT] - track.ankle[LEFT]) * forward(heading), axis=-1)
    higher = track.ankle[RIGHT][:, 1] - track.ankle[LEFT][:, 1]
    track.yaw = heading + gait.pelvis_turn * ahead
    track.twist = -0.8 * gait.pelvis_turn * ahead
    support = np.clip(higher / max(gait.swing_height, 0.05), -1.0, 1.0)
    pelvis = ground + leftward(heading) * (gait.sway * support)[:, None]
    track.pitch = gait.pitch * active
    track.lean = gait.lean * active

    swing = gait.arm_swing * ahead + gait.arm_lift * higher
    for side, sign in ((LEFT, 1.0), (RIGHT, -1.0)):
        track.arm[side, :, 0] = REST_ARM[0] + sign * swing
        track.arm[side, :, 1] = REST_ARM[1] + (gait.abduction - REST_ARM[1]) * active
        track.arm[side, :, 3] = REST_ARM[3] + (gait.elbow - REST_ARM[3]) * active

    nominal = body.standing_height * (1.0 + (gait.height - 1.0) * active)
    room = _leg_room(body, pelvis, track.yaw, track.ankle).min(axis=0)
    if gait.swing_time > gait.step_time:
        top = body.standing_height * gait.height
        resting = track.ankle_contact.any(axis=0) | track.toe_contact.any(axis=0)
        for _ in range(8):  # lowering the takeoff height lowers the stance arcs with it
            height = _bounce(times, steps, body.standing_height, top, gait)
            excess = float(np.max(np.where(resting, height - room, 0.0)))
            if excess <= 0.0:
                break
            top -= excess + 1e-4
    else:
        height = nominal - smooth_cover(nominal - room, COVER_RADIUS)
    pelvis[:, 1] = height
    track.pelvis = pelvis
    return track
