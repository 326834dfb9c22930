"""AMASS import: a synthetic SMPL+H model file with the real layout, tiny synthetic sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from scl_ray.motion import amass, humanml3d
from scl_ray.motion.skeleton import JOINT, PARENTS, Skeleton

NUM_VERTICES = 6890  # SMPL's topology: smplx reads its extra keypoints at fixed vertex ids
SMPLH_HAND_PARENTS = [20, 22, 23, 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35,
                      21, 37, 38, 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50]
# AMASS stands bodies up by a root rotation of +90 degrees about x (SMPL is y up, AMASS z up).
UPRIGHT = np.array([np.pi / 2, 0.0, 0.0])


def write_smplh_model(path: Path, seed: int) -> None:
    """An SMPL+H model file laid out like AMASS's (no hand PCA keys) whose 22 body joints are our
    adult skeleton's rest pose (SMPL's frame: y up, facing +z, left +x), with random shape blend shapes."""
    rng = np.random.default_rng(seed)
    joints = np.zeros((52, 3))
    joints[:22] = Skeleton.adult().rest_joints() + [0.0, -0.2, 0.0]
    for joint in range(22, 52):  # finger joints a few cm past their parent along the arm
        parent = SMPLH_HAND_PARENTS[joint - 22]
        joints[joint] = joints[parent] + [0.03 * np.sign(joints[parent, 0]), -0.01, 0.0]
    vertices = rng.normal(scale=0.1, size=(NUM_VERTICES, 3)) + joints[np.arange(NUM_VERTICES) % 52]
    vertices[:52] = joints
    regressor = np.zeros((52, NUM_VERTICES))
    regressor[np.arange(52), np.arange(52)] = 1.0
    weights = np.zeros((NUM_VERTICES, 52))
    weights[np.arange(NUM_VERTICES), np.arange(NUM_VERTICES) % 52] = 1.0
    kintree = np.array([[2**32 - 1, *PARENTS[1:], *SMPLH_HAND_PARENTS], np.arange(52)], dtype=np.uint32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        v_template=vertices,
        shapedirs=rng.normal(scale=0.01, size=(NUM_VERTICES, 3, 16)),
        posedirs=np.zeros((NUM_VERTICES, 3, 51 * 9), dtype=np.float32),
        J_regressor=regressor,
        weights=weights,
        kintree_table=kintree,
        f=np.arange(3 * 100, dtype=np.uint32).reshape(100, 3),
    )


def write_sequence(path: Path, frames: int, fps: float, *, gender="male", root_orient=UPRIGHT,
                   body_scale=0.0, betas=None, seed=0, drop=()) -> dict:
    rng = np.random.default_rng(seed)
    poses = np.zeros((frames, 156))
    poses[:, :3] = root_orient
    poses[:, 3:] = body_scale * np.sin(np.linspace(0, 3, frames))[:, None] * rng.normal(size=153)
    trans = np.stack([np.linspace(0, 0.5, frames), np.linspace(0, 1.0, frames), np.full(frames, 0.9)], -1)
    data = dict(poses=poses, trans=trans, betas=np.zeros(16) if betas is None else betas,
                mocap_framerate=np.array(fps), gender=np.array(gender))
    for key in drop:
        del data[key]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return data


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("smplh")
    write_smplh_model(root / "male" / "model.npz", seed=0)
    write_smplh_model(root / "female" / "model.npz", seed=1)
    return root


def test_rest_pose_is_y_up_and_keeps_left_left(model_dir, tmp_path):
    write_sequence(tmp_path / "rest.npz", frames=3, fps=20)
    joints = amass.amass_to_joints(tmp_path / "rest.npz", model_dir)
    assert joints.shape == (3, 22, 3) and joints.dtype == np.float64
    pose = joints[0] - joints[0, JOINT["pelvis"]]
    assert pose[JOINT["head"], 1] > 0.5 and pose[JOINT["left_ankle"], 1] < -0.7
    # AMASS's upright root faces -y (z up); after the conversion the body faces -z: our rest pose
    # turned half a turn about y, a rotation, so the left hip is still on the body's left.
    expected = Skeleton.adult().rest_joints() * [-1.0, 1.0, -1.0]
    np.testing.assert_allclose(pose, expected, atol=1e-5)
    left = pose[JOINT["left_hip"]] - pose[JOINT["right_hip"]]
    forward = pose[JOINT["left_foot"]] - pose[JOINT["left_ankle"]]
    assert np.dot(np.cross(left, [0.0, 1.0, 0.0]), forward) > 0
    # SMPL turns the body about its pelvis, at rest_pelvis + trans; (x, y, z) z up lands at (-x, z, y).
    trans = np.stack([np.linspace(0, 0.5, 3), np.linspace(0, 1.0, 3), np.full(3, 0.9)], -1)
    pelvis_z_up = trans + [0.0, -0.2, 0.0]
    np.testing.assert_allclose(joints[:, JOINT["pelvis"]], pelvis_z_up[:, [0, 2, 1]] * [-1, 1, 1], atol=1e-6)


def test_downsampling_takes_every_third_frame_of_60_fps(model_dir, tmp_path):
    data = write_sequence(tmp_path / "fast.npz", frames=30, fps=60, body_scale=0.3)
    joints = amass.amass_to_joints(tmp_path / "fast.npz", model_dir)
    assert joints.shape == (10, 22, 3)
    np.savez(tmp_path / "slow.npz", **{**data, "poses": data["poses"][::3], "trans": data["trans"][::3],
                                       "mocap_framerate": np.array(20.0)})
    np.testing.assert_allclose(joints, amass.amass_to_joints(tmp_path / "slow.npz", model_dir), atol=1e-6)
    assert np.ptp(joints[:, JOINT["left_wrist"]], axis=0).max() > 0.05  # the pose really moves


def test_joints_are_those_of_the_full_smplx_forward(model_dir, tmp_path):
    write_sequence(tmp_path / "s.npz", 12, 20, body_scale=0.8, betas=np.linspace(-2, 2, 16), seed=3)
    sequence, body_model = amass.read_amass(tmp_path / "s.npz"), amass.load_smplh(model_dir, "male")
    poses = torch.as_tensor(sequence.poses, dtype=torch.float32)
    with torch.no_grad():
        output = body_model(
            betas=torch.as_tensor(sequence.betas[:10], dtype=torch.float32).expand(12, -1),
            global_orient=poses[:, :3], body_pose=poses[:, 3:66], left_hand_pose=poses[:, 66:111],
            right_hand_pose=poses[:, 111:], transl=torch.as_tensor(sequence.trans, dtype=torch.float32),
        )
    expected = output.joints[:, :22].numpy().astype(np.float64) @ amass.Z_UP_TO_Y_UP
    np.testing.assert_allclose(amass.sequence_joints(sequence, body_model), expected, atol=1e-6)


def test_non_multiple_frame_rate_keeps_20_fps_timing():
    indices = amass.resample_indices(50, source_fps=50, target_fps=20)
    assert len(indices) == 20  # upstream's int(50 / 20) = 2 stride would give 25 frames per second
    np.testing.assert_array_less(np.abs(indices / 50 - np.arange(20) / 20), 1 / 100 + 1e-12)
    np.testing.assert_array_equal(amass.resample_indices(12, 59.9999999, 20), [0, 3, 6, 9])
    with pytest.raises(ValueError, match="below the target"):
        amass.resample_indices(10, source_fps=10, target_fps=20)


def test_only_the_first_ten_betas_shape_the_body(model_dir, tmp_path):
    betas = np.zeros(16)
    write_sequence(tmp_path / "a.npz", 2, 20, betas=betas)
    base = amass.amass_to_joints(tmp_path / "a.npz", model_dir)
    betas[10:] = 3.0
    write_sequence(tmp_path / "b.npz", 2, 20, betas=betas)
    np.testing.assert_allclose(amass.amass_to_joints(tmp_path / "b.npz", model_dir), base, atol=1e-6)
    betas[:10] = 3.0
    write_sequence(tmp_path / "c.npz", 2, 20, betas=betas)
    assert np.abs(amass.amass_to_joints(tmp_path / "c.npz", model_dir) - base).max() > 1e-3


def test_gender_selects_the_model_bytes_or_str(model_dir, tmp_path):
    write_sequence(tmp_path / "m.npz", 2, 20, gender="male")
    np.savez(tmp_path / "f.npz", **{**dict(np.load(tmp_path / "m.npz")), "gender": np.array(b"female")})
    male = amass.amass_to_joints(tmp_path / "m.npz", model_dir)
    female = amass.amass_to_joints(tmp_path / "f.npz", model_dir)
    assert np.abs(male - female).max() == 0  # betas are zero: same template, both files loaded
    write_sequence(tmp_path / "n.npz", 2, 20, gender="neutral")
    with pytest.raises(FileNotFoundError, match=r"neutral.*MANO.*nothing is\s+downloaded"):
        amass.amass_to_joints(tmp_path / "n.npz", model_dir)


def test_missing_model_names_the_path_and_the_source(tmp_path):
    write_sequence(tmp_path / "s.npz", 2, 20)
    with pytest.raises(FileNotFoundError) as error:
        amass.amass_to_joints(tmp_path / "s.npz", tmp_path / "models")
    message = str(error.value)
    assert str(tmp_path / "models" / "male" / "model.npz") in message
    assert "SMPL+H" in message and "MANO" in message and "nothing is downloaded" in message


@pytest.mark.parametrize("key", ["poses", "trans", "betas", "mocap_framerate", "gender"])
def test_missing_key_names_file_and_key(tmp_path, key):
    write_sequence(tmp_path / "bad.npz", 4, 60, drop=(key,))
    with pytest.raises(ValueError, match=rf"bad\.npz: no key '{key}'"):
        amass.read_amass(tmp_path / "bad.npz")


def test_bad_shapes_are_explained(tmp_path):
    data = write_sequence(tmp_path / "ok.npz", 4, 60)
    np.savez(tmp_path / "smplx.npz", **{**data, "poses": np.zeros((4, 165))})
    with pytest.raises(ValueError, match=r"smplx\.npz: 'poses' has shape \(4, 165\); expected \(T, 156\)"):
        amass.read_amass(tmp_path / "smplx.npz")
    np.savez(tmp_path / "short.npz", **{**data, "trans": np.zeros((3, 3))})
    with pytest.raises(ValueError, match=r"'trans' has shape \(3, 3\); expected \(4, 3\)"):
        amass.read_amass(tmp_path / "short.npz")


def test_motion_ids_follow_paths_and_reject_collisions(tmp_path):
    assert amass.motion_ids([tmp_path / "01_01_poses.npz"]) == ["01_01_poses"]
    ids = amass.motion_ids([tmp_path / "CMU" / "01" / "a b.npz", tmp_path / "KIT" / "3" / "a b.npz"])
    assert ids == ["CMU_01_a_b", "KIT_3_a_b"]
    with pytest.raises(ValueError, match="would both become motion id 'a_b'"):
        amass.motion_ids([tmp_path / "a b.npz", tmp_path / "a_b.npz"])


def test_convert_writes_joints_and_humanml3d_files(model_dir, tmp_path):
    inputs = [tmp_path / "in" / "walk_poses.npz", tmp_path / "in" / "turn_poses.npz"]
    # Turned about the vertical: features.py cannot normalise a first frame facing exactly -z.
    for path, frames, yaw, gender in ((inputs[0], 90, 0.3, "male"), (inputs[1], 60, 2.0, "female")):
        upright_turned = (Rotation.from_rotvec([0, 0, yaw]) * Rotation.from_rotvec(UPRIGHT)).as_rotvec()
        write_sequence(path, frames, 60, body_scale=0.2, seed=frames, gender=gender, root_orient=upright_turned)
    out = tmp_path / "out"
    captions = {"walk_poses": ["a person walks forward"], "turn_poses": ["someone turns", "a person turns"]}
    ids = amass.convert_amass(inputs, model_dir, out, captions=captions)
    assert ids == ["walk_poses", "turn_poses"]
    joints = np.load(out / "joints" / "walk_poses.npy")
    assert joints.shape == (30, 22, 3) and joints.dtype == np.float32
    np.testing.assert_allclose(joints, amass.amass_to_joints(inputs[0], model_dir), atol=1e-6)
    record = humanml3d.read_motion(out, "turn_poses")
    assert record.features.shape == (19, 263) and record.joints.shape == (19, 22, 3)
    assert [caption.text for caption in record.captions] == captions["turn_poses"]
    assert record.joints[0, JOINT["head"], 1] > record.joints[0, JOINT["pelvis"], 1] + 0.4


def test_convert_without_captions_writes_joints_only(model_dir, tmp_path):
    write_sequence(tmp_path / "in" / "x.npz", 6, 60)
    assert amass.convert_amass([tmp_path / "in" / "x.npz"], model_dir, tmp_path / "out") == ["x"]
    assert (tmp_path / "out" / "joints" / "x.npy").is_file()
    assert not (tmp_path / "out" / "new_joint_vecs").exists()


def test_convert_requires_a_caption_for_every_id(model_dir, tmp_path):
    write_sequence(tmp_path / "in" / "x.npz", 6, 60)
    with pytest.raises(ValueError, match="no captions for motion ids x"):
        amass.convert_amass([tmp_path / "in" / "x.npz"], model_dir, tmp_path / "out", captions={"y": ["a"]})
    assert not (tmp_path / "out").exists()
