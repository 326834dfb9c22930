"""Captions of procedural motions, in the style of HumanML3D's ("a person walks forward slowly").

Every family has several phrasings of its predicate ("walks forward slowly", "takes a slow walk
forward"); each phrasing names the parameters a model must learn from the text: the side (left,
right, both), the speed class, the size (high, deep, long, ...) and the number of repetitions.
The word lists below are the vocabulary tests check captions against.
"""

from __future__ import annotations

import numpy as np

SUBJECTS = ("a person", "someone", "the person", "a man", "a woman", "a figure", "the figure", "a human")
CONNECTORS = ("{a}, then {b}", "{a} and then {b}", "{a}, and after that {b}", "first {a}, then {b}")
CAPTIONS_PER_MOTION = 3

# Words that name each sampled speed class (tests check that a caption uses one of its own).
SPEED_WORDS = {
    "slow": ("slow", "slowly", "leisurely", "unhurried", "unhurriedly", "jogs", "gently", "easy"),
    "normal": ("normal", "steady", "steadily", "moderate", "average", "regular"),
    "fast": ("fast", "quickly", "quick", "brisk", "briskly", "sprints", "full speed"),
}
COUNT_ADVERBS = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}
COUNT_NUMBERS = {1: "a", 2: "two", 3: "three", 4: "four", 5: "five"}

_WALK_ADVERBS = {
    "slow": ("slowly", "at a slow pace", "leisurely", "unhurriedly"),
    "normal": ("at a normal pace", "at a steady pace", "at a moderate pace", "at an average speed"),
    "fast": ("quickly", "briskly", "at a fast pace", "fast"),
}
_WALK_ADJECTIVES = {"slow": ("slow", "leisurely", "unhurried"), "normal": ("steady", "normal", "regular"),
                    "fast": ("fast", "brisk", "quick")}
_PATHS = {
    "straight": ("in a straight line", "straight ahead", "straight forward"),
    "left": ("curving to the left", "along a curve to the left", "bending gradually to the left",
             "veering to the left"),
    "right": ("curving to the right", "along a curve to the right", "bending gradually to the right",
              "veering to the right"),
}
_RUN_VERBS = {
    "slow": ("jogs", "jogs slowly", "runs slowly", "runs at an easy pace", "jogs gently"),
    "normal": ("runs at a steady pace", "runs at a moderate speed", "runs at a normal pace", "runs steadily"),
    "fast": ("runs fast", "sprints", "runs quickly", "runs at full speed"),
}
_PLAIN_ADVERBS = {
    "slow": ("slowly", "at a slow pace", "unhurriedly"),
    "normal": ("at a normal pace", "at a steady pace", "steadily"),
    "fast": ("quickly", "at a fast tempo", "briskly"),
}


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"{COUNT_NUMBERS[1]} {noun}"
    return f"{COUNT_NUMBERS[count]} {noun}es" if noun.endswith("ch") else f"{COUNT_NUMBERS[count]} {noun}s"


def _walk(p: dict) -> list[str]:
    phrases = []
    for index, path in enumerate(_PATHS[p["path"]]):
        adverb = _WALK_ADVERBS[p["speed"]][index % 4]
        adjective = _WALK_ADJECTIVES[p["speed"]][index % 3]
        phrases += [f"walks forward {adverb} {path}", f"takes a {adjective} walk {path}",
                    f"walks {path} {adverb}"]
    return phrases


def _run(p: dict) -> list[str]:
    return [f"{verb} {path}" for verb in _RUN_VERBS[p["speed"]] for path in _PATHS[p["path"]]]


def _walk_backward(p: dict) -> list[str]:
    return [f"{verb} {adverb}" for adverb in _PLAIN_ADVERBS[p["speed"]]
            for verb in ("walks backwards", "takes steps backward", "moves backward", "backs up")]


def _side_step(p: dict) -> list[str]:
    side = p["side"]
    return [f"steps sideways to the {side}", f"sidesteps to the {side}", f"shuffles sideways to the {side}",
            f"moves to the {side} with side steps", f"takes a few steps sideways to the {side}"]


def _turn(p: dict) -> list[str]:
    side = p["side"]
    if p["angle"] == 90:
        return [f"turns ninety degrees to the {side}", f"makes a quarter turn to the {side}",
                f"turns to the {side} in place", f"rotates a quarter turn to the {side} on the spot"]
    return [f"turns around to the {side}", f"makes a half turn to the {side}",
            f"turns around over the {side} shoulder", f"spins around to the {side} to face the other way"]


def _jump_forward(p: dict) -> list[str]:
    n, count = p["repetitions"], COUNT_ADVERBS[p["repetitions"]]
    if p["distance"] == "long":
        return [f"jumps far forward {count}", f"does {_plural(n, 'long jump')} forward",
                f"leaps a long way forward {count}", f"makes {_plural(n, 'big jump')} ahead"]
    return [f"jumps a short distance forward {count}", f"does {_plural(n, 'small jump')} forward",
            f"hops a little way forward {count}", f"makes {_plural(n, 'short jump')} ahead"]


def _jump_in_place(p: dict) -> list[str]:
    n, count = p["repetitions"], COUNT_ADVERBS[p["repetitions"]]
    arms = " raising both arms" if p["arms_up"] else ""
    if p["height"] == "high":
        return [f"jumps high in place {count}{arms}", f"does {_plural(n, 'big jump')} on the spot",
                f"jumps up high {count}", f"makes {_plural(n, 'high jump')} in place{arms}"]
    return [f"makes {_plural(n, 'small jump')} in place", f"jumps a little in place {count}",
            f"does {_plural(n, 'low jump')} on the spot{arms}", f"hops up and down a little {count}"]


def _squat(p: dict) -> list[str]:
    n, count = p["repetitions"], COUNT_ADVERBS[p["repetitions"]]
    if p["depth"] == "deep":
        return [f"does {_plural(n, 'deep squat')}", f"squats down low {count}", f"squats deeply {count}",
                f"performs {_plural(n, 'full squat')}"]
    return [f"does {_plural(n, 'shallow squat')}", f"squats halfway down {count}",
            f"bends the knees into a half squat {count}", f"does {_plural(n, 'small squat')}"]


def _wave(p: dict) -> list[str]:
    where = " above the head" if p["high"] else ""
    if p["hand"] == "both":
        return [f"waves with both hands{where}", f"raises both arms and waves{where}",
                "waves hello with both hands", f"lifts both hands and waves them{where}"]
    side = p["hand"]
    return [f"waves with the {side} hand{where}", f"raises the {side} hand and waves{where}",
            f"waves hello with the {side} hand", f"lifts the {side} arm and waves{where}"]


def _punch(p: dict) -> list[str]:
    n, count = p["repetitions"], COUNT_ADVERBS[p["repetitions"]]
    if p["hand"] == "both":
        return [f"throws {_plural(n, 'punch')} with both hands", f"punches {count}, alternating both fists",
                f"boxes with both hands, throwing {_plural(n, 'punch')}", f"punches with both arms {count}"]
    side = p["hand"]
    return [f"punches with the {side} hand {count}", f"throws {_plural(n, 'punch')} with the {side} fist",
            f"jabs forward with the {side} arm {count}", f"punches forward {count} using the {side} hand"]


def _kick(p: dict) -> list[str]:
    n, count, side, height = p["repetitions"], COUNT_ADVERBS[p["repetitions"]], p["side"], p["height"]
    return [f"kicks {height} with the {side} leg {count}", f"does {_plural(n, height + ' kick')} with the {side} foot",
            f"kicks the {side} foot forward {height} {count}", f"lifts the {side} leg and kicks {height} {count}"]


def _sit_down(p: dict) -> list[str]:
    if p["stand_up"]:
        return ["sits down and stands back up", "sits on a chair and then gets up again",
                "takes a seat and stands up again", "sits down for a moment and rises again"]
    return ["sits down on a chair", "sits down", "lowers into a seat", "takes a seat",
            "bends the knees and sits down"]


def _march(p: dict) -> list[str]:
    return [f"{verb} {adverb}" for adverb in _PLAIN_ADVERBS[p["speed"]]
            for verb in ("marches in place", "marches on the spot", "lifts the knees marching in place")]


def _high_knees(p: dict) -> list[str]:
    return ["jogs in place lifting the knees high", "does high knees", "runs on the spot with high knees",
            "pumps the knees up high in place", "does a high knees exercise"]


def _crouch_walk(p: dict) -> list[str]:
    return [f"{verb} {adverb}" for adverb in _PLAIN_ADVERBS[p["speed"]]
            for verb in ("walks forward crouched low", "sneaks forward in a crouch",
                         "moves forward bent over at the knees", "walks ahead in a crouching position")]


PREDICATES = {
    "walk": _walk, "run": _run, "walk_backward": _walk_backward, "side_step": _side_step, "turn": _turn,
    "jump_forward": _jump_forward, "jump_in_place": _jump_in_place, "squat": _squat, "wave": _wave,
    "kick": _kick, "punch": _punch, "sit_down": _sit_down, "march": _march, "high_knees": _high_knees,
    "crouch_walk": _crouch_walk,
}


def predicates(family: str, params: dict) -> list[str]:
    """Every phrasing of what a motion of `family` with `params` does (third person, no subject)."""
    return PREDICATES[family](params)


def describe(segments: list[tuple[str, dict]], rng: np.random.Generator) -> tuple[str, ...]:
    """CAPTIONS_PER_MOTION distinct captions of a motion made of (family, params) segments in order."""
    options = [predicates(family, params) for family, params in segments]
    chosen = [rng.permutation(len(phrases))[:CAPTIONS_PER_MOTION] for phrases in options]
    subjects = rng.permutation(len(SUBJECTS))
    captions = []
    for index in range(CAPTIONS_PER_MOTION):
        parts = [phrases[picks[index % len(picks)]] for phrases, picks in zip(options, chosen)]
        subject = SUBJECTS[subjects[index]]
        if len(parts) == 1:
            captions.append(f"{subject} {parts[0]}")
        else:
            template = CONNECTORS[(index + int(subjects[0])) % len(CONNECTORS)]
            text = template.format(a=parts[0], b=parts[1])
            captions.append(f"{subject} {text}" if not text.startswith("first ")
                            else f"{subject} first {text[len('first '):]}")
    return tuple(captions)
