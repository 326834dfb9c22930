"""Stick-figure rendering: pictures that are not blank, right frame counts, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from scl_ray.errors import UserError
from scl_ray.motion import humanml3d, render, store
from scl_ray.motion.features import features_to_joints, joints_to_features
from scl_ray.motion.skeleton import JOINT, NUM_JOINTS, Skeleton
from scl_ray.text.tokens import tokenize


def swinging_walk(frames: int, speed: float = 1.2) -> np.ndarray:
    """(frames, 22, 3) metres at 20 fps: legs and arms swing every frame, the root moves forward."""
    phase = 2 * np.pi * np.arange(frames) / 20
    rotvecs = np.zeros((frames, NUM_JOINTS, 3))
    for name, sign in (("left_hip", 1), ("right_hip", -1), ("right_shoulder", 1), ("left_shoulder", -1)):
        rotvecs[:, JOINT[name], 0] = 0.5 * sign * np.sin(phase)
    rotations = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix().reshape(frames, NUM_JOINTS, 3, 3)
    root = np.stack([np.zeros(frames), np.full(frames, 0.93), speed * np.arange(frames) / 20], -1)
    return Skeleton.adult().forward_kinematics(rotations, root)


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def test_png_shows_every_chain_colour_and_a_floor(tmp_path):
    path = render.render_png([swinging_walk(40), swinging_walk(30, 2.0)], ["a walk", "a run"],
                             tmp_path / "sheet.png", frames_per_motion=4, dpi=60)
    assert path == tmp_path / "sheet.png" and sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png"]
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (round(2 * 2.4 * 60), round(4 * 2.2 * 60))
    assert pixels.std() > 10
    for colour in render.CHAIN_COLOURS.values():
        assert (np.abs(pixels - rgb(colour)).sum(-1) < 10).sum() > 20, f"chain colour {colour} missing"
    floor = (np.abs(pixels - rgb(render.FLOOR_FILL)).sum(-1) < 6).mean()
    assert floor > 0.03, f"only {floor:.1%} of the picture is floor"


def test_png_grows_one_row_per_motion(tmp_path):
    one = render.render_png([swinging_walk(10)], ["x"], tmp_path / "one.png", frames_per_motion=3, dpi=40)
    three = render.render_png([swinging_walk(10)] * 3, ["x"] * 3, tmp_path / "three.png", frames_per_motion=3, dpi=40)
    assert Image.open(three).size == (Image.open(one).size[0], 3 * Image.open(one).size[1])


def test_gif_has_one_frame_per_motion_frame(tmp_path):
    path = render.render_gif([swinging_walk(25), swinging_walk(15)], ["long", "short"], tmp_path / "a.gif", dpi=30)
    with Image.open(path) as gif:
        assert gif.n_frames == 25 and gif.info["duration"] == 50
        assert gif.size == (round(2 * 2.6 * 30), round(3.0 * 30))


def test_long_gif_keeps_real_time_with_fewer_frames(tmp_path):
    path = render.render_gif([swinging_walk(50)], ["walk"], tmp_path / "a.gif", max_frames=20, dpi=30)
    with Image.open(path) as gif:
        assert gif.n_frames == 17  # frames 0, 3, ..., 48
        assert gif.info["duration"] == 150


@pytest.mark.parametrize(
    "motions, captions, message",
    [
        ([np.zeros((10, 21, 3))], ["a"], r"motion 0 \('a'\) has shape \(10, 21, 3\); expected \(T, 22, 3\)"),
        ([np.zeros((10, 263))], ["f"], r"motion 0 \('f'\) has shape \(10, 263\).*features_to_joints"),
        ([np.zeros((0, 22, 3))], ["e"], r"with T >= 1"),
        ([np.zeros((4, 22, 3)), np.full((4, 22, 3), np.nan)], ["a", "b"], r"motion 1 \('b'\) has NaN.*\[0, 1, 2, 3\]"),
        ([np.zeros((4, 22, 3))], ["a", "b"], r"1 motions but 2 captions"),
        ([], [], r"nothing to draw"),
    ],
)
def test_bad_input_is_explained_and_nothing_is_written(tmp_path, motions, captions, message):
    for draw, name in ((render.render_png, "x.png"), (render.render_gif, "x.gif")):
        with pytest.raises(ValueError, match=message):
            draw(motions, captions, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_load_motions_from_humanml3d_and_parquet(tmp_path):
    records = [
        humanml3d.MotionRecord(f"m{i}", joints_to_features(swinging_walk(12 + i)),
                               (humanml3d.Caption(f"walk {i}", tokenize(f"walk {i}")),))
        for i in range(3)
    ]
    for record in records:
        humanml3d.write_motion(tmp_path / "h3d", record)
    humanml3d.write_split(tmp_path / "h3d", "test", ["m2", "m0", "m1"])
    joints, captions, ids = render.load_motions(tmp_path / "h3d", limit=2)
    assert ids == ["m2", "m0"] and captions == ["walk 2", "walk 0"]
    np.testing.assert_allclose(joints[0], features_to_joints(records[2].features), atol=1e-6)

    store.write_motion_set(store.MotionSet.from_records(records), str(tmp_path / "set.parquet"))
    joints, captions, ids = render.load_motions(tmp_path / "set.parquet", ids=["m1"])
    assert ids == ["m1"] and captions == ["walk 1"] and joints[0].shape == (12, 22, 3)
    with pytest.raises(UserError, match="has no motion with id nope"):
        render.load_motions(tmp_path / "set.parquet", ids=["nope"])
    with pytest.raises(FileNotFoundError, match="no split file"):
        render.load_motions(tmp_path)
