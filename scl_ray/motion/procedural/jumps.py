"""Two-footed jumps, in place or forward, with a ballistic flight.

One jump: crouch, push off (the pelvis accelerates up to the takeoff speed while the heels rise
and the toes stay planted), fly (pelvis on a parabola under g = 9.81 m/s^2, feet carried with the
hips and tucked), touch down on the toes, absorb (heels come down as the pelvis sinks) and stand
up. The heels rise exactly as much as the legs need to reach the floor, so planted toes never
slide and no leg is over-stretched. Repetitions chain single jumps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scl_ray.motion.constants import FPS
from scl_ray.motion.procedural.body import LEFT, RIGHT, UP, Body, Track, concatenate, forward
from scl_ray.motion.procedural.curves import (
    GRAVITY, ballistic, bump, ease, frame_times, hermite, keyframes, softplus,
)

CROUCH, PUSH, ABSORB, RECOVER = 0.45, 0.22, 0.3, 0.5  # phase durations, seconds
TAKEOFF_TOE_DOWN = 0.75  # rad the feet point down when they leave the floor
LANDING_TOE_DOWN = 0.35  # rad at touch-down
LEAN_AHEAD = 0.15  # m the hips are ahead of the ankles at a forward takeoff
HEEL_BEND = 0.03  # rad, smoothness of the heel-rise rule near flat feet
MAX_TOE_DOWN = 1.3  # rad


@dataclass(frozen=True)
class Jump:
    """One jump: pelvis rise above takeoff (m), forward distance of the feet (m), pause after (s)."""

    rise: float
    distance: float = 0.0
    pause: float = 0.3
    arms_up: bool = True


def heel_lift(hip: np.ndarray, toe: np.ndarray, yaw: np.ndarray, foot: float, reach: float) -> np.ndarray:
    """(T,) smallest toe-down angle (rad, smoothed) at which a hip (T, 3) reaches its ankle.

    The toes stay at `toe` (T, 3) and the ankle turns up around them on a circle of radius `foot`.
    """
    facing = forward(yaw)
    relative = hip - toe
    along, height = np.sum(relative * facing, axis=-1), relative[:, 1]
    limit = (reach * reach - np.sum(relative * relative, axis=-1) - foot * foot) / (2.0 * foot)
    radius = np.hypot(along, height)
    needed = np.arccos(np.clip(limit / radius, -1.0, 1.0)) - np.arctan2(height, along)
    return np.minimum(softplus(needed, HEEL_BEND), MAX_TOE_DOWN)


def _ankle_from_toe(toe: np.ndarray, yaw: np.ndarray, pitch: np.ndarray, foot: float) -> np.ndarray:
    facing = forward(yaw)
    return toe - foot * (np.cos(pitch)[:, None] * facing - np.sin(pitch)[:, None] * UP)


def _pelvis_height_for(body: Body, toe_down: float, ahead: float) -> float:
    """Highest pelvis height at which both legs reach feet pointing `toe_down` with hips `ahead` (m)."""
    heights = []
    for side in (LEFT, RIGHT):
        ankle_height = body.foot[side] * np.sin(toe_down)
        horizontal = ahead - body.foot[side] * (1.0 - np.cos(toe_down))
        heights.append(ankle_height + np.sqrt((0.98 * body.reach[side]) ** 2 - horizontal ** 2))
    return float(min(heights))


def jump_once(body: Body, jump: Jump, lead_in: float) -> Track:
    """A single jump from the neutral stance at the origin, facing +z, ending in it `distance` ahead."""
    crouch = body.standing_height - 0.12 - 0.25 * jump.rise
    up_speed = np.sqrt(2.0 * GRAVITY * jump.rise)
    ahead = LEAN_AHEAD if jump.distance > 0 else 0.0
    takeoff_height = _pelvis_height_for(body, TAKEOFF_TOE_DOWN, ahead)

    def flight_for(behind: float) -> tuple[float, float, float]:
        """Landing pelvis height, flight time and horizontal speed when the hips land `behind` the ankles."""
        landing = _pelvis_height_for(body, LANDING_TOE_DOWN, -behind)
        time = (up_speed + np.sqrt(up_speed ** 2 + 2.0 * GRAVITY * (takeoff_height - landing))) / GRAVITY
        return landing, time, max(jump.distance - ahead - behind, 0.0) / time

    # Hips far enough behind the landing feet that the forward speed dies out without overshooting.
    behind = 0.0
    for _ in range(3):
        speed = flight_for(behind)[2]
        behind = float(np.clip(speed * (ABSORB + RECOVER) / 3.0, 0.0, 0.3)) if jump.distance > 0 else 0.0
    landing_height, flight, speed = flight_for(behind)

    t_crouch = lead_in
    t_push = t_crouch + CROUCH
    t_takeoff = t_push + PUSH
    t_land = t_takeoff + flight
    t_absorbed = t_land + ABSORB
    t_stand = t_absorbed + RECOVER
    frames = int(np.ceil((t_stand + jump.pause) * FPS)) + 1
    times = frame_times(frames)
    track = Track.standing(body, frames)

    standing, land_speed = body.standing_height, up_speed - GRAVITY * flight
    take_z, land_z = ahead, ahead + speed * flight
    track.pelvis[:, 1] = np.select(
        [times < t_push, times < t_takeoff, times <= t_land, times < t_absorbed],
        [standing + (crouch - standing) * ease((times - t_crouch) / CROUCH),
         hermite(times, t_push, t_takeoff, crouch, 0.0, takeoff_height, up_speed),
         ballistic(times, t_takeoff, takeoff_height, up_speed),
         hermite(times, t_land, t_absorbed, landing_height, land_speed, crouch, 0.0)],
        crouch + (standing - crouch) * ease((times - t_absorbed) / RECOVER))
    track.pelvis[:, 2] = np.select(
        [times < t_takeoff, times <= t_land],
        [hermite(times, t_push, t_takeoff, 0.0, 0.0, take_z, speed), take_z + speed * (times - t_takeoff)],
        hermite(times, t_land, t_stand, land_z, speed, jump.distance, 0.0))
    airborne = (times > t_takeoff) & (times < t_land)

    grounded = ~airborne
    after = times >= t_land
    for side in (LEFT, RIGHT):
        hip = track.pelvis + body.hip[side]
        yaw = track.foot_yaw[side]
        toe = track.ankle[side] + body.foot[side] * forward(yaw)
        toe[after, 2] += jump.distance
        pitch = heel_lift(hip, toe, yaw, body.foot[side], body.reach[side])
        ankle = _ankle_from_toe(toe, yaw, pitch, body.foot[side])
        # In the air the feet travel with the hips from their takeoff to their landing offsets.
        start, stop = np.searchsorted(times, t_takeoff, "right") - 1, np.searchsorted(times, t_land)
        progress = (times[airborne] - t_takeoff) / flight
        offsets = ankle - hip
        t0_offset, t1_offset = offsets[start], offsets[stop]
        glide = ease(progress)[:, None]
        ankle[airborne] = (hip[airborne] + t0_offset + (t1_offset - t0_offset) * glide
                           + UP * (0.5 * jump.rise + 0.05) * bump(progress)[:, None])
        pitch[airborne] = pitch[start] + (pitch[stop] - pitch[start]) * glide[:, 0] + 0.2 * bump(progress)
        track.ankle[side] = ankle
        track.foot_pitch[side] = pitch
        track.toe_contact[side] = grounded
        track.ankle_contact[side] = grounded & (pitch < 1e-3)

    key_times = [t_crouch, t_push, t_takeoff, t_land, t_absorbed, t_stand]
    forward_lean = 0.25 if jump.distance > 0 else 0.1
    track.pitch = keyframes(times, key_times, [0.0, forward_lean, 0.05, 0.0, forward_lean, 0.0])
    track.lean = keyframes(times, key_times, [0.0, 0.35, 0.0, 0.05, 0.3, 0.0])
    # The arms swing back in the crouch and up through the push into the flight.
    arm_times = [t_crouch, t_push, t_takeoff + 0.5 * flight, t_absorbed, t_stand]
    raised = 2.4 if jump.arms_up else 1.2
    track.arm[:, :, 0] = keyframes(times, arm_times, [0.05, -0.6, raised, 0.4, 0.05])
    track.head_pitch = keyframes(times, key_times, [0.0, 0.25, -0.1, 0.1, 0.2, 0.0])
    return track


def jumps(body: Body, jump: Jump, repetitions: int, lead_in: float) -> Track:
    """`repetitions` identical jumps one after another, each landing where the next takes off."""
    track = jump_once(body, jump, lead_in)
    for _ in range(repetitions - 1):
        track = concatenate(track, jump_once(body, jump, 0.05))
    return track
