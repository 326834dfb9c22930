"""The motion families: how each samples its parameters and builds its track.

`sample(family, rng, seconds, fixed)` draws a family's parameters as plain JSON data within a time
budget (seconds of motion); entries of `fixed` replace drawn ones (the random stream is consumed
the same way either way, so a left and a right variant differ only in the side). `build(family,
params, body)` turns parameters into a track; it uses nothing else, so parameters reproduce a
motion exactly.
"""

from __future__ import annotations

import math

import numpy as np

from scl_ray.motion.procedural.actions import SIDE_INDEX, kick, punch, sit_down, squat, wave
from scl_ray.motion.procedural.body import Body, Track, concatenate
from scl_ray.motion.procedural.gait import Gait, Path, locomote
from scl_ray.motion.procedural.jumps import Jump, jumps

FAMILIES: tuple[str, ...] = (
    "walk", "run", "walk_backward", "side_step", "turn", "jump_forward", "jump_in_place", "squat",
    "wave", "kick", "punch", "sit_down", "march", "high_knees", "crouch_walk",
)
WALK_SPEEDS = {"slow": (0.55, 0.85), "normal": (1.05, 1.35), "fast": (1.55, 1.85)}  # m/s
RUN_SPEEDS = {"slow": (2.0, 2.5), "normal": (2.8, 3.3), "fast": (3.8, 4.5)}  # m/s
JUMP_SECONDS = 2.7  # longest single jump: crouch, push, flight, landing, recovery and pause


class _Draw:
    """Draws parameters from rng, letting `fixed` override any of them after the draw."""

    def __init__(self, family: str, rng: np.random.Generator, fixed: dict):
        self.family, self.rng, self.fixed, self.params = family, rng, dict(fixed), {}

    def choice(self, name: str, options: tuple, weights: tuple | None = None):
        drawn = options[int(self.rng.choice(len(options), p=weights))]
        value = self.fixed.pop(name, drawn)
        if value not in options:
            raise ValueError(f"procedural family {self.family!r}: {name} = {value!r} is not one of {list(options)}")
        self.params[name] = value.item() if isinstance(value, np.generic) else value
        return self.params[name]

    def uniform(self, name: str, low: float, high: float) -> float:
        drawn = float(self.rng.uniform(low, high))
        self.params[name] = round(float(self.fixed.pop(name, drawn)), 4)
        return self.params[name]

    def done(self) -> dict:
        if self.fixed:
            raise ValueError(f"procedural family {self.family!r} has no parameters {sorted(self.fixed)}; "
                             f"it has {sorted(self.params)}")
        return self.params


def sample(family: str, rng: np.random.Generator, seconds: float, fixed: dict | None = None) -> dict:
    """Parameters (JSON data) of one motion of `family` lasting at most about `seconds` seconds."""
    if family not in FAMILIES:
        raise ValueError(f"unknown procedural family {family!r}; families are {list(FAMILIES)}")
    draw = _Draw(family, rng, fixed or {})
    lead_in = draw.uniform("lead_in", 0.2, 0.7)
    hold = draw.uniform("hold", 0.3, 0.7)
    room = seconds - lead_in - hold
    _SAMPLERS[family](draw, room)
    return draw.done()


def _gait_style(draw: _Draw) -> None:
    draw.choice("first_foot", ("left", "right"))
    draw.uniform("style", 0.0, 1.0)  # one knob for posture and arm-swing variety


def _duration(draw: _Draw, low: float, high: float, room: float, overhead: float) -> float:
    """A duration in [low, high] s that fits `room` s with `overhead` s of stepping and settling,
    shortened down to 60 % of `low` when room is scarce."""
    top = max(0.6 * low, min(high, room - overhead))
    return draw.uniform("duration", min(low, top), top)


def _sample_walk(draw: _Draw, room: float) -> None:
    _gait_style(draw)
    speed = draw.choice("speed", ("slow", "normal", "fast"))
    draw.uniform("speed_mps", *WALK_SPEEDS[speed])
    draw.choice("path", ("straight", "left", "right"), (0.5, 0.25, 0.25))
    draw.uniform("radius", 2.5, 6.0)
    _duration(draw, 3.0, 8.0, room, 1.4)


def _sample_run(draw: _Draw, room: float) -> None:
    _gait_style(draw)
    speed = draw.choice("speed", ("slow", "normal", "fast"))
    draw.uniform("speed_mps", *RUN_SPEEDS[speed])
    draw.choice("path", ("straight", "left", "right"), (0.5, 0.25, 0.25))
    draw.uniform("radius", 6.0, 12.0)
    _duration(draw, 2.5, 5.5, room, 1.2)


def _sample_walk_backward(draw: _Draw, room: float) -> None:
    _gait_style(draw)
    speed = draw.choice("speed", ("slow", "normal"))
    draw.uniform("speed_mps", *{"slow": (0.35, 0.55), "normal": (0.7, 0.95)}[speed])
    _duration(draw, 2.5, 6.0, room, 1.5)


def _sample_side_step(draw: _Draw, room: float) -> None:
    draw.uniform("style", 0.0, 1.0)
    draw.choice("side", ("left", "right"))
    draw.uniform("speed_mps", 0.3, 0.5)
    _duration(draw, 2.0, 4.5, room, 1.5)


def _sample_turn(draw: _Draw, room: float) -> None:
    draw.uniform("style", 0.0, 1.0)
    draw.choice("side", ("left", "right"))
    angle = draw.choice("angle", (90, 180))
    low, high = (1.4, 2.0) if angle == 90 else (2.0, 2.8)
    _duration(draw, low, high, room, 1.3)


def _sample_jump_forward(draw: _Draw, room: float) -> None:
    draw.uniform("style", 0.0, 1.0)
    distance = draw.choice("distance", ("short", "long"))
    draw.uniform("distance_m", *{"short": (0.35, 0.6), "long": (0.9, 1.3)}[distance])
    draw.uniform("rise", 0.15, 0.3)
    draw.choice("repetitions", tuple(n for n in (1, 2, 3) if n == 1 or JUMP_SECONDS * n <= room))


def _sample_jump_in_place(draw: _Draw, room: float) -> None:
    draw.uniform("style", 0.0, 1.0)
    height = draw.choice("height", ("low", "high"))
    draw.uniform("rise", *{"low": (0.08, 0.15), "high": (0.3, 0.42)}[height])
    draw.choice("arms_up", (True, False))
    draw.choice("repetitions", tuple(n for n in (1, 2, 3, 4) if n == 1 or JUMP_SECONDS * n <= room))


def _sample_squat(draw: _Draw, room: float) -> None:
    depth = draw.choice("depth", ("shallow", "deep"))
    draw.uniform("depth_m", *{"shallow": (0.18, 0.26), "deep": (0.36, 0.44)}[depth])
    down = draw.uniform("down_time", 0.6, 1.0)
    draw.choice("repetitions", tuple(n for n in (1, 2, 3) if n == 1 or n * (2 * down + 0.55) <= room))


def _sample_wave(draw: _Draw, room: float) -> None:
    draw.choice("hand", ("left", "right", "both"), (0.4, 0.4, 0.2))
    draw.choice("high", (True, False))
    draw.choice("waves", tuple(n for n in (2, 3, 4, 5) if n == 2 or 1.4 + 0.6 * n <= room))


def _sample_kick(draw: _Draw, room: float) -> None:
    draw.choice("side", ("left", "right"))
    draw.choice("height", ("low", "high"))
    draw.choice("repetitions", tuple(n for n in (1, 2, 3) if n == 1 or 1.7 + 0.75 * n <= room))


def _sample_punch(draw: _Draw, room: float) -> None:
    hand = draw.choice("hand", ("left", "right", "both"))
    fits = tuple(n for n in (1, 2, 3, 4) if (n >= 2 or hand != "both") and (n <= 2 or 1.0 + 0.57 * n <= room))
    draw.choice("repetitions", fits)
    draw.choice("lead_hand", ("left", "right"))


def _sample_sit_down(draw: _Draw, room: float) -> None:
    stand_up = draw.choice("stand_up", (True, False))
    draw.uniform("seated", 0.4, max(0.4, min(2.5, room - (4.4 if stand_up else 2.5))))


def _sample_march(draw: _Draw, room: float) -> None:
    _gait_style(draw)
    speed = draw.choice("speed", ("slow", "fast"))
    draw.uniform("cadence", *{"slow": (1.3, 1.6), "fast": (2.1, 2.5)}[speed])
    draw.uniform("knee_lift", 0.18, 0.3)
    _duration(draw, 2.5, 6.0, room, 1.3)


def _sample_high_knees(draw: _Draw, room: float) -> None:
    _gait_style(draw)
    draw.uniform("cadence", 2.7, 3.1)
    draw.uniform("knee_lift", 0.36, 0.44)
    _duration(draw, 2.0, 4.0, room, 1.0)


def _sample_crouch_walk(draw: _Draw, room: float) -> None:
    _gait_style(draw)
    speed = draw.choice("speed", ("slow", "normal"))
    draw.uniform("speed_mps", *{"slow": (0.3, 0.45), "normal": (0.6, 0.8)}[speed])
    _duration(draw, 3.0, 7.0, room, 1.5)


_SAMPLERS = {
    "walk": _sample_walk, "run": _sample_run, "walk_backward": _sample_walk_backward,
    "side_step": _sample_side_step, "turn": _sample_turn, "jump_forward": _sample_jump_forward,
    "jump_in_place": _sample_jump_in_place, "squat": _sample_squat, "wave": _sample_wave,
    "kick": _sample_kick, "punch": _sample_punch, "sit_down": _sample_sit_down, "march": _sample_march,
    "high_knees": _sample_high_knees, "crouch_walk": _sample_crouch_walk,
}


def ends_standing(family: str, params: dict) -> bool:
    """Whether the motion ends in the neutral stance, so that another can follow it."""
    return family != "sit_down" or bool(params["stand_up"])


def _first(params: dict) -> int:
    return SIDE_INDEX[params["first_foot"]]


def _turn_rate(params: dict) -> float:
    if params["path"] == "straight":
        return 0.0
    return (1.0 if params["path"] == "left" else -1.0) * params["speed_mps"] / params["radius"]


def _build_walk(p: dict, body: Body) -> Track:
    v, style = p["speed_mps"], p["style"]
    gait = Gait(cadence=1.3 + 0.5 * v, duty=0.62, swing_height=0.07 + 0.03 * style, heel_strike=0.25,
                toe_off=0.45 + 0.1 * style, width=0.03 * style, arm_swing=0.35 + 0.35 * style,
                elbow=0.25 + 0.2 * style, pitch=0.03 * v)
    path = Path(speed=v, duration=p["duration"], turn_rate=_turn_rate(p), lead_in=p["lead_in"])
    return locomote(body, gait, path, _first(p), p["hold"])


def _build_run(p: dict, body: Body) -> Track:
    v, style = p["speed_mps"], p["style"]
    gait = Gait(cadence=2.5 + 0.12 * v, duty=0.42 - 0.03 * v, swing_height=0.12 + 0.05 * v, swing_pitch=0.3,
                toe_off=0.6, height=0.97, pitch=0.04 * v, lean=0.05 + 0.05 * style, arm_swing=0.5 + 0.3 * style,
                elbow=1.4 + 0.2 * style, abduction=0.2, sway=0.02)
    path = Path(speed=v, duration=p["duration"], turn_rate=_turn_rate(p), ramp=1.0, lead_in=p["lead_in"])
    return locomote(body, gait, path, _first(p), p["hold"])


def _build_walk_backward(p: dict, body: Body) -> Track:
    v = p["speed_mps"]
    gait = Gait(cadence=1.4 + 0.4 * v, duty=0.64, swing_height=0.07, toe_off=0.2, arm_swing=-0.3,
                pitch=0.05 + 0.05 * p["style"])
    path = Path(speed=v, duration=p["duration"], direction=math.pi, lead_in=p["lead_in"])
    return locomote(body, gait, path, _first(p), p["hold"])


def _build_side_step(p: dict, body: Body) -> Track:
    sign = 1.0 if p["side"] == "left" else -1.0
    gait = Gait(cadence=1.5 + 0.3 * p["style"], duty=0.66, swing_height=0.06, toe_off=0.12, arm_swing=0.0,
                abduction=0.25, sway=0.0, pelvis_turn=0.0)
    path = Path(speed=p["speed_mps"], duration=p["duration"], direction=sign * math.pi / 2, ramp=0.6,
                lead_in=p["lead_in"])
    return locomote(body, gait, path, SIDE_INDEX[p["side"]], p["hold"])


def _build_turn(p: dict, body: Body) -> Track:
    sign = 1.0 if p["side"] == "left" else -1.0
    ramp = 0.6
    rate = sign * math.radians(p["angle"]) / (p["duration"] - ramp)
    gait = Gait(cadence=1.7 + 0.3 * p["style"], duty=0.66, swing_height=0.06, toe_off=0.15, arm_swing=0.0,
                sway=0.02, pelvis_turn=0.0)
    path = Path(speed=0.0, duration=p["duration"], turn_rate=rate, ramp=ramp, lead_in=p["lead_in"])
    return locomote(body, gait, path, SIDE_INDEX[p["side"]], p["hold"])


def _build_jump_forward(p: dict, body: Body) -> Track:
    jump = Jump(rise=p["rise"], distance=p["distance_m"], pause=0.2 + 0.3 * p["style"], arms_up=False)
    return _with_hold(jumps(body, jump, p["repetitions"], p["lead_in"]), body, p["hold"] - jump.pause)


def _build_jump_in_place(p: dict, body: Body) -> Track:
    jump = Jump(rise=p["rise"], pause=0.2 + 0.3 * p["style"], arms_up=p["arms_up"])
    return _with_hold(jumps(body, jump, p["repetitions"], p["lead_in"]), body, p["hold"] - jump.pause)


def _with_hold(track: Track, body: Body, extra: float) -> Track:
    frames = int(round(extra * 20))
    return concatenate(track, Track.standing(body, frames + 1)) if frames > 0 else track


def _build_squat(p: dict, body: Body) -> Track:
    return squat(body, p["depth_m"], p["repetitions"], p["down_time"], p["lead_in"], p["hold"])


def _build_wave(p: dict, body: Body) -> Track:
    sides = (0, 1) if p["hand"] == "both" else (SIDE_INDEX[p["hand"]],)
    return wave(body, sides, p["waves"], p["high"], p["lead_in"], p["hold"])


def _build_kick(p: dict, body: Body) -> Track:
    return kick(body, SIDE_INDEX[p["side"]], p["height"] == "high", p["repetitions"], p["lead_in"], p["hold"])


def _build_punch(p: dict, body: Body) -> Track:
    if p["hand"] == "both":
        lead = SIDE_INDEX[p["lead_hand"]]
        hands = tuple(lead if index % 2 == 0 else 1 - lead for index in range(p["repetitions"]))
    else:
        hands = (SIDE_INDEX[p["hand"]],) * p["repetitions"]
    return punch(body, hands, p["lead_in"], p["hold"])


def _build_sit_down(p: dict, body: Body) -> Track:
    return sit_down(body, p["stand_up"], p["seated"], p["lead_in"], p["hold"])


def _build_march(p: dict, body: Body) -> Track:
    gait = Gait(cadence=p["cadence"], duty=0.6, swing_height=p["knee_lift"], swing_pitch=0.35, toe_off=0.15,
                arm_swing=0.0, arm_lift=2.0 + 1.5 * p["style"], elbow=0.3 + 0.6 * p["style"], sway=0.03,
                pelvis_turn=0.0)
    path = Path(speed=0.0, duration=p["duration"], lead_in=p["lead_in"])
    return locomote(body, gait, path, _first(p), p["hold"])


def _build_high_knees(p: dict, body: Body) -> Track:
    gait = Gait(cadence=p["cadence"], duty=0.42, swing_height=p["knee_lift"], swing_pitch=0.45, toe_off=0.4,
                height=0.98, arm_swing=0.0, arm_lift=2.2, elbow=1.3 + 0.3 * p["style"], abduction=0.2,
                sway=0.02, pelvis_turn=0.0)
    path = Path(speed=0.0, duration=p["duration"], lead_in=p["lead_in"])
    return locomote(body, gait, path, _first(p), p["hold"])


def _build_crouch_walk(p: dict, body: Body) -> Track:
    v, style = p["speed_mps"], p["style"]
    gait = Gait(cadence=1.3 + 0.4 * v, duty=0.66, swing_height=0.09, toe_off=0.3, height=0.8 - 0.04 * style,
                pitch=0.35, lean=0.25 + 0.1 * style, arm_swing=0.3, elbow=0.9, abduction=0.25)
    path = Path(speed=v, duration=p["duration"], lead_in=p["lead_in"])
    return locomote(body, gait, path, _first(p), p["hold"])


_BUILDERS = {
    "walk": _build_walk, "run": _build_run, "walk_backward": _build_walk_backward,
    "side_step": _build_side_step, "turn": _build_turn, "jump_forward": _build_jump_forward,
    "jump_in_place": _build_jump_in_place, "squat": _build_squat, "wave": _build_wave, "kick": _build_kick,
    "punch": _build_punch, "sit_down": _build_sit_down, "march": _build_march, "high_knees": _build_high_knees,
    "crouch_walk": _build_crouch_walk,
}


def build(family: str, params: dict, body: Body) -> Track:
    """The track of one motion of `family` with `params` (as drawn by `sample`)."""
    return _BUILDERS[family](params, body)
