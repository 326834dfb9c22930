"""The procedural dataset: physically consistent, captioned, deterministic, HumanML3D-shaped."""

import json
import re

import numpy as np
import pytest

from scl_ray.motion.constants import FPS
from scl_ray.motion.humanml3d import read_motion, read_split
from scl_ray.motion.procedural import (
    FAMILIES, ProceduralMotion, generate_motion, generate_motions, split_ids, write_procedural_dataset,
)
from scl_ray.motion.procedural.body import pose
from scl_ray.motion.procedural.captions import COUNT_ADVERBS, COUNT_NUMBERS, SPEED_WORDS
from scl_ray.motion.procedural.dataset import rebuild_track
from scl_ray.motion.skeleton import FOOT_JOINTS, JOINT_NAMES, PARENTS, Skeleton

MIRRORED = [JOINT_NAMES.index(name.replace("left", "right") if "left" in name else name.replace("right", "left"))
            for name in JOINT_NAMES]
COMBINATIONS = ("walk+turn", "jump_in_place+wave", "run+sit_down", "squat+jump_forward", "turn+high_knees")


def mirror(joints: np.ndarray) -> np.ndarray:
    """The motion seen in a mirror: x -> -x, left and right joints swapped."""
    mirrored = joints[:, MIRRORED].copy()
    mirrored[..., 0] *= -1
    return mirrored


@pytest.fixture(scope="module")
def motions() -> list[ProceduralMotion]:
    """Two motions of every family and one of several combinations."""
    drawn = [generate_motion(family, np.random.default_rng([seed, index]), motion_id=f"T{index:03d}{seed}")
             for index, family in enumerate(FAMILIES) for seed in (0, 1)]
    return drawn + [generate_motion(family, np.random.default_rng(7)) for family in COMBINATIONS]


def test_there_are_at_least_twelve_families():
    assert len(FAMILIES) >= 12 and len(set(FAMILIES)) == len(FAMILIES)
    assert all("+" not in family for family in FAMILIES)


def test_motions_have_the_documented_shapes(motions):
    for motion in motions:
        frames = len(motion.joints)
        assert 40 <= frames <= 196, (motion.family, frames)
        assert motion.joints.shape == (frames, 22, 3) and motion.joints.dtype == np.float64
        assert motion.contacts.shape == (frames, 4) and motion.contacts.dtype == bool
        assert np.isfinite(motion.joints).all()
        json.dumps(motion.params)


def test_bones_keep_the_adult_lengths(motions):
    adult = Skeleton.adult().bone_lengths[1:]
    for motion in motions:
        lengths = np.linalg.norm(motion.joints[:, 1:] - motion.joints[:, list(PARENTS[1:])], axis=-1)
        assert np.abs(lengths - adult).max() < 1e-6, motion.family


def test_planted_feet_rest_on_the_floor_and_do_not_slide(motions):
    for motion in motions:
        feet = motion.joints[:, list(FOOT_JOINTS)]
        planted = motion.contacts[1:] & motion.contacts[:-1]
        assert planted.any(axis=0).all(), f"{motion.family}: some foot joint is never planted"
        speed = np.linalg.norm(np.diff(feet, axis=0), axis=-1) * FPS
        assert speed[planted].max() < 0.02, motion.family
        heights = feet[..., 1][motion.contacts]
        assert heights.max() < 0.005 and heights.min() > -1e-6, motion.family


def test_moving_feet_are_lifted(motions):
    for motion in motions:
        if motion.family in ("squat", "wave", "punch", "sit_down"):
            continue
        assert not motion.contacts.all(), f"{motion.family}: no foot ever leaves the floor"


def test_no_joint_goes_below_the_floor(motions):
    for motion in motions:
        assert motion.joints[..., 1].min() > -0.01, motion.family


@pytest.mark.parametrize("family", ["jump_in_place", "jump_forward", "run"])
def test_flight_phases_are_ballistic(family):
    accelerations = []
    for seed in range(4):
        motion = generate_motion(family, np.random.default_rng(seed))
        airborne = ~motion.contacts.any(axis=1)
        assert airborne.any(), f"{family} seed {seed} never leaves the floor"
        # Runs fly for 0.1 s, two frames or so; three airborne frames in a row give one acceleration.
        inside = np.flatnonzero(airborne[:-2] & airborne[1:-1] & airborne[2:]) + 1
        accelerations += list(np.diff(motion.joints[:, 0, 1], 2)[inside - 1] * FPS ** 2)
    assert len(accelerations) > 0, f"no {family} has three airborne frames in a row"
    np.testing.assert_allclose(accelerations, -9.81, atol=1e-6)


def test_motions_are_smooth(motions):
    for motion in motions:
        velocity = np.diff(motion.joints, axis=0) * FPS
        acceleration = np.diff(velocity, axis=0) * FPS
        assert np.linalg.norm(velocity, axis=-1).max() < 15.0, motion.family
        assert np.linalg.norm(acceleration, axis=-1).max() < 200.0, motion.family
        assert np.linalg.norm(acceleration[:, 0], axis=-1).max() < 30.0, motion.family


def test_combinations_join_at_rest(motions):
    for motion in motions:
        if "+" not in motion.family:
            continue
        first = motion.params["segments"][0]
        assert motion.family.split("+")[0] == first["family"]
        still = np.linalg.norm(np.diff(motion.joints, axis=0), axis=-1).max(axis=1) < 1e-9
        assert still.any() and still[0]


def test_params_rebuild_the_motion(motions):
    for motion in motions[::3]:
        track, body = rebuild_track(motion.family, json.loads(json.dumps(motion.params)))
        assert pose(track, body).tobytes() == motion.joints.tobytes(), motion.family


def test_other_skeletons_keep_their_bones_and_footing():
    skeleton = Skeleton.adult(scale=0.85)
    for family in ("walk", "jump_forward", "kick"):
        motion = generate_motion(family, np.random.default_rng(0), skeleton)
        lengths = np.linalg.norm(motion.joints[:, 1:] - motion.joints[:, list(PARENTS[1:])], axis=-1)
        assert np.abs(lengths - skeleton.bone_lengths[1:]).max() < 1e-6
        feet = motion.joints[:, list(FOOT_JOINTS)]
        speed = np.linalg.norm(np.diff(feet, axis=0), axis=-1) * FPS
        assert speed[motion.contacts[1:] & motion.contacts[:-1]].max() < 0.02


def test_same_seed_same_bytes_and_other_seed_other_motions():
    first, again, other = generate_motions(20, 3), generate_motions(20, 3), generate_motions(20, 4)
    assert [m.joints.tobytes() for m in first] == [m.joints.tobytes() for m in again]
    assert [(m.id, m.family, m.captions, m.params) for m in first] == [(m.id, m.family, m.captions, m.params)
                                                                       for m in again]
    assert [m.joints.tobytes() for m in first] != [m.joints.tobytes() for m in other]
    # Motion i depends on (seed, i) only.
    assert generate_motions(5, 3)[4].joints.tobytes() == first[4].joints.tobytes()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _names(text: str, words) -> bool:
    return any((" " in word and word in text) or word in _words(text) for word in words)


def test_captions_name_the_sampled_side_speed_and_count():
    drawn = generate_motions(3 * 20, 11)
    checked = 0
    for motion in drawn:
        assert len(motion.captions) >= 3 and len(set(motion.captions)) == len(motion.captions)
        if "+" in motion.family:
            continue
        params = motion.params
        for caption in motion.captions:
            side = params.get("side", params.get("hand"))
            if side in ("left", "right"):
                other = "right" if side == "left" else "left"
                assert side in _words(caption) and other not in _words(caption), (caption, params)
                checked += 1
            if side == "both":
                assert "both" in _words(caption), (caption, params)
            if params.get("path") in ("left", "right"):
                assert params["path"] in _words(caption), (caption, params)
            if "speed" in params:
                assert _names(caption, SPEED_WORDS[params["speed"]]), (caption, params)
                for name, words in SPEED_WORDS.items():
                    if name != params["speed"]:
                        assert not _names(caption, words), (caption, params)
            if params.get("repetitions", 1) > 1:
                n = params["repetitions"]
                assert COUNT_ADVERBS[n] in caption or f"{COUNT_NUMBERS[n]} " in caption, (caption, params)
    assert checked > 20


@pytest.mark.parametrize("family, key", [("wave", "hand"), ("punch", "hand"), ("kick", "side"),
                                         ("side_step", "side"), ("turn", "side")])
def test_left_and_right_variants_are_mirror_images(family, key):
    left = generate_motion(family, np.random.default_rng(5), fixed={key: "left"})
    right = generate_motion(family, np.random.default_rng(5), fixed={key: "right"})
    assert left.joints.shape == right.joints.shape
    # Equal up to the skeleton's own asymmetry (its left and right bones differ by up to 1 cm).
    assert np.abs(mirror(left.joints) - right.joints).max() < 0.06
    assert np.abs(left.joints - right.joints).max() > 0.3


def test_walks_go_where_and_as_fast_as_the_caption_says():
    speeds = {}
    for speed in ("slow", "normal", "fast"):
        motion = generate_motion("walk", np.random.default_rng(2), fixed={"speed": speed, "path": "straight"})
        pelvis = motion.joints[:, 0]
        speeds[speed] = np.abs(np.diff(pelvis[:, 2])).max() * FPS
        assert abs(pelvis[-1, 0]) < 0.05 * abs(pelvis[-1, 2])
    assert speeds["slow"] < speeds["normal"] < speeds["fast"]
    for path, sign in (("left", 1.0), ("right", -1.0)):
        motion = generate_motion("walk", np.random.default_rng(2), fixed={"path": path})
        assert sign * motion.joints[-1, 0, 0] > 0.3
    backward = generate_motion("walk_backward", np.random.default_rng(2))
    assert backward.joints[-1, 0, 2] < -1.0


def test_bad_requests_say_what_is_allowed():
    with pytest.raises(ValueError, match="walk"):
        generate_motion("moonwalk", np.random.default_rng(0))
    with pytest.raises(ValueError, match="left"):
        generate_motion("wave", np.random.default_rng(0), fixed={"hand": "middle"})
    with pytest.raises(ValueError, match="no parameters"):
        generate_motion("wave", np.random.default_rng(0), fixed={"speed": "fast"})


def test_splits_cover_every_family_in_train_and_test():
    drawn = generate_motions(2 * (len(FAMILIES) + 5), 0)
    splits = split_ids(drawn, 0, (0.8, 0.1, 0.1))
    ids = [i for name in ("train", "val", "test") for i in splits[name]]
    assert sorted(ids) == sorted(m.id for m in drawn) and len(set(ids)) == len(ids)
    family = {m.id: m.family if "+" not in m.family else "combination" for m in drawn}
    for name in ("train", "test"):
        assert {family[i] for i in splits[name]} == set(family.values()), name
    assert splits == split_ids(drawn, 0, (0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="sum"):
        split_ids(drawn, 0, (0.8, 0.3, 0.1))


def test_written_dataset_is_a_humanml3d_directory(tmp_path):
    from scl_ray.motion.check import check_dataset

    root = write_procedural_dataset(tmp_path / "procedural", num=len(FAMILIES) + 5, seed=1)
    report = check_dataset(root)
    assert report.ok, report.format()
    everything = read_split(root, "all")
    assert len(everything) == len(FAMILIES) + 5
    assert sorted(read_split(root, "train") + read_split(root, "val") + read_split(root, "test")) == everything
    record = read_motion(root, everything[0])
    assert record.features.shape[1] == 263 and 40 <= len(record.features) <= 196
    assert record.joints.shape == (len(record.features), 22, 3) and len(record.captions) == 3
    assert all(token.count("/") == 1 for token in record.captions[0].tokens)
    metadata = json.loads((root / "procedural.json").read_text())
    assert set(metadata["motions"]) == set(everything) and metadata["seed"] == 1
    assert (root / "Mean.npy").is_file() and (root / "Std.npy").is_file()


def test_features_round_trip_on_every_family():
    """features_to_joints(joints_to_features(j)) equals the normalised input within 0.1 mm."""
    from scl_ray.motion.features import features_to_joints, joints_to_features, normalize_joints
    from scl_ray.motion.procedural.dataset import MAX_HEADING_CHANGE, heading_span

    for family in FAMILIES + ("walk+turn", "turn+walk"):
        for seed in range(6):
            motion = generate_motion(family, np.random.default_rng([seed, 99]))
            assert heading_span(motion.joints) <= MAX_HEADING_CHANGE
            recovered = features_to_joints(joints_to_features(motion.joints))
            error = np.abs(recovered - normalize_joints(motion.joints)[:-1]).max()
            assert error < 1e-4, f"{family} seed {seed}: round trip error {error:.2e} m"
