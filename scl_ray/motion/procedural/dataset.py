"""Procedural motions with captions, and the HumanML3D-layout dataset made of them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scl_ray.motion.constants import FPS, MAX_FRAMES, MIN_FRAMES
from scl_ray.motion.features import Normalizer, features_to_joints, joints_to_features
from scl_ray.motion.humanml3d import Caption, MotionRecord, write_motion, write_split
from scl_ray.motion.procedural.body import Body, Track, concatenate, contacts, pose
from scl_ray.motion.procedural.captions import describe
from scl_ray.motion.procedural.families import FAMILIES, build, ends_standing, sample
from scl_ray.motion.skeleton import Skeleton
from scl_ray.rng import PROCEDURAL_MOTION, PROCEDURAL_SCHEDULE, PROCEDURAL_SPLITS, stream
from scl_ray.text.tokens import tokenize

# Joint frames of a motion; its features drop one frame: MIN_FRAMES..MAX_FRAMES - 1 feature frames.
MIN_JOINT_FRAMES, MAX_JOINT_FRAMES = MIN_FRAMES + 1, MAX_FRAMES
COMBINATION = "combination"
# Motions are drawn in rounds: every family once and this many combinations of two, shuffled.
COMBINATIONS_PER_ROUND = 5
METADATA_FILE = "procedural.json"


@dataclass(frozen=True)
class ProceduralMotion:
    """One generated motion.

    joints: (T, 22, 3) float64 metres, y up, 20 fps, 41 <= T <= 196. family: a name of FAMILIES, or
    two joined by '+' for a combination. params: JSON data that rebuilds the motion (a combination
    has {"segments": [params of each, with its "family"]}). contacts: (T, 4) bool planned floor
    contacts of the left ankle, left foot, right ankle and right foot joints (FOOT_JOINTS order).
    """

    id: str
    family: str
    joints: np.ndarray
    captions: tuple[str, ...]
    params: dict
    contacts: np.ndarray


def _segments(family: str) -> list[str]:
    names = family.split("+")
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or len(names) > 2:
        raise ValueError(f"procedural family {family!r}: expected one of {list(FAMILIES)} or two of them "
                         f"joined by '+', e.g. 'walk+turn'")
    return names


def generate_motion(family: str, rng: np.random.Generator, skeleton: Skeleton | None = None, *,
                    motion_id: str = "P000000", fixed: dict | list[dict] | None = None) -> ProceduralMotion:
    """One motion of `family` ('walk', or 'walk+turn' for a combination), drawn from rng.

    fixed: parameters to use instead of drawing them (one dict, or one per segment of a
    combination), e.g. {"side": "left"}. skeleton: defaults to `Skeleton.adult()`.
    """
    names = _segments(family)
    fixed_list = fixed if isinstance(fixed, list) else [fixed or {}] * len(names)
    if len(fixed_list) != len(names):
        raise ValueError(f"procedural family {family!r} has {len(names)} segments, got {len(fixed_list)} fixed dicts")
    body = Body.of(skeleton or Skeleton.adult())
    for _ in range(HEADING_ATTEMPTS):
        segments, track = _plan(names, fixed_list, rng, body, motion_id)
        joints = pose(track, body)
        if heading_span(joints) <= MAX_HEADING_CHANGE:
            break
    else:
        raise ValueError(f"procedural motion {motion_id} ({family}) keeps turning more than "
                         f"{MAX_HEADING_CHANGE:g} degrees away from its first frame's facing")
    params = segments[0][1] if len(segments) == 1 else {"segments": [{"family": n, **p} for n, p in segments]}
    return ProceduralMotion(id=motion_id, family=family, joints=joints, captions=describe(segments, rng),
                            params=params, contacts=contacts(track))


# HumanML3D's root yaw velocity has the wrong sign on a frame where the facing passes 180 degrees
# from frame 0's (an upstream bug that bit-compatible features keep), so `features_to_joints` only
# inverts `joints_to_features` for motions that stay within half a turn of their first facing.
# Plans that turn further (a curved walk followed by a turn) are redrawn.
MAX_HEADING_CHANGE = 180.5
HEADING_ATTEMPTS = 20


def heading_span(joints: np.ndarray) -> float:
    """Largest change of facing (degrees, about y) from frame 0, from the hip and shoulder lines."""
    across = joints[:, 2] - joints[:, 1] + joints[:, 17] - joints[:, 16]
    angle = np.unwrap(np.arctan2(across[:, 0], across[:, 2]))
    return float(np.degrees(np.abs(angle - angle[0]).max()))


def _plan(names: list[str], fixed_list: list[dict], rng: np.random.Generator, body: Body,
          motion_id: str) -> tuple[list[tuple[str, dict]], Track]:
    """Draw and build the segments within MAX_JOINT_FRAMES; later segments are drawn first, the first
    one gets the time they leave. A plan that overruns (rare) is redrawn with less time."""
    total = (MAX_JOINT_FRAMES - 1) / FPS
    for attempt in range(6):
        segments: list[tuple[str, dict]] = []
        parts: list[Track] = []
        for index in reversed(range(len(names))):
            name, given = names[index], dict(fixed_list[index])
            last = index == len(names) - 1
            if not last and name == "sit_down":
                given.setdefault("stand_up", True)
            used = sum(part.frames - 1 for part in parts) / FPS
            seconds = (total / len(names) if index > 0 else total - used) - 0.4 * attempt
            params = sample(name, rng, seconds, given)
            if not last and not ends_standing(name, params):
                raise ValueError(f"procedural motion {motion_id}: {name} with {params} does not end "
                                 "standing, so nothing can follow it")
            segments.insert(0, (name, params))
            parts.insert(0, build(name, params, body))
        track = _join(parts, body)
        if track.frames <= MAX_JOINT_FRAMES:
            return segments, track
    raise ValueError(f"procedural motion {motion_id} ({'+'.join(names)}) cannot fit {MAX_JOINT_FRAMES} frames; "
                     f"last plan: {segments} ({track.frames} frames)")


def _join(parts: list[Track], body: Body) -> Track:
    """Segments one after the other, padded with standing still up to MIN_JOINT_FRAMES."""
    track = parts[0]
    for part in parts[1:]:
        track = concatenate(track, part)
    if track.frames < MIN_JOINT_FRAMES:
        track = concatenate(track, Track.standing(body, MIN_JOINT_FRAMES - track.frames + 1))
    return track


def rebuild_track(family: str, params: dict, skeleton: Skeleton | None = None) -> tuple[Track, Body]:
    """The track (and body) of a motion from its `family` and `params`, as generated."""
    body = Body.of(skeleton or Skeleton.adult())
    names = _segments(family)
    if len(names) == 1:
        return _join([build(family, params, body)], body), body
    segments = [{k: v for k, v in segment.items() if k != "family"} for segment in params["segments"]]
    return _join([build(name, segment, body) for name, segment in zip(names, segments)], body), body


def _schedule(num: int, seed: int) -> list[str]:
    """The kind of each motion: families and combinations in shuffled rounds."""
    rng = stream(seed, PROCEDURAL_SCHEDULE)
    kinds = list(FAMILIES) + [COMBINATION] * COMBINATIONS_PER_ROUND
    order: list[str] = []
    while len(order) < num:
        order += [kinds[i] for i in rng.permutation(len(kinds))]
    return order[:num]


def generate_motions(num: int, seed: int) -> list[ProceduralMotion]:
    """`num` motions, ids P000000..., mixing every family and two-segment combinations.

    Motion i depends only on (seed, i), so any slice can be regenerated alone.
    """
    motions = []
    for index, kind in enumerate(_schedule(num, seed)):
        rng = stream(seed, PROCEDURAL_MOTION, index)
        if kind == COMBINATION:
            first, second = rng.choice(len(FAMILIES), size=2, replace=False)
            kind = f"{FAMILIES[first]}+{FAMILIES[second]}"
        motions.append(generate_motion(kind, rng, motion_id=f"P{index:06d}"))
    return motions


def split_ids(motions: list[ProceduralMotion], seed: int, splits: tuple[float, float, float]) -> dict[str, list[str]]:
    """Train/val/test ids, stratified so that every family with two or more motions is in train and test.

    Combinations count as one family. Deterministic from seed.
    """
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6 or splits[0] <= 0:
        raise ValueError(f"splits must be (train, val, test) fractions >= 0 summing to 1 with train > 0, got {splits}")
    groups: dict[str, list[str]] = {}
    for motion in motions:
        groups.setdefault(COMBINATION if "+" in motion.family else motion.family, []).append(motion.id)
    rng = stream(seed, PROCEDURAL_SPLITS)
    result = {"train": [], "val": [], "test": []}
    for name in sorted(groups):
        ids = [groups[name][i] for i in rng.permutation(len(groups[name]))]
        test = max(1, round(len(ids) * splits[2])) if splits[2] > 0 and len(ids) >= 2 else 0
        val = max(1, round(len(ids) * splits[1])) if splits[1] > 0 and len(ids) >= 3 else 0
        result["test"] += ids[:test]
        result["val"] += ids[test:test + val]
        result["train"] += ids[test + val:]
    return {name: sorted(ids) for name, ids in result.items()}


def write_procedural_dataset(out_dir: str | os.PathLike, num: int, seed: int,
                             splits: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Path:
    """Generate `num` motions and write them as a HumanML3D directory at out_dir; returns its path.

    Writes new_joint_vecs/ (features), new_joints/ (joints recovered from the features, as
    HumanML3D does), texts/, train/val/test/train_val/all.txt, Mean.npy/Std.npy of the train split
    (HumanML3D's own statistics, feat_bias 1) and procedural.json (family and parameters per id).
    """
    root = Path(out_dir)
    motions = generate_motions(num, seed)
    features = {}
    for motion in motions:
        features[motion.id] = joints_to_features(motion.joints)
        captions = tuple(Caption(text, tokenize(text)) for text in motion.captions)
        write_motion(root, MotionRecord(motion.id, features[motion.id], captions,
                                        joints=features_to_joints(features[motion.id])))
    split = split_ids(motions, seed, tuple(splits))
    for name, ids in split.items():
        write_split(root, name, ids)
    write_split(root, "train_val", sorted(split["train"] + split["val"]))
    write_split(root, "all", [motion.id for motion in motions])
    Normalizer.fit([features[i] for i in split["train"]], feat_bias=1.0).save(root)
    metadata = {"generator": "scl_ray.motion.procedural", "seed": seed, "num": num, "splits": list(splits),
                "motions": {m.id: {"family": m.family, "params": m.params} for m in motions}}
    (root / METADATA_FILE).write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
    return root
