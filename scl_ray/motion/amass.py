"""AMASS (SMPL+H) pose sequences to our 22 joints and the HumanML3D layout.

Follows HumanML3D's raw_pose_processing.ipynb: the sequence is downsampled to 20 fps by taking every
k-th pose, posed with the SMPL+H body model (the first 10 of AMASS's 16 betas, DMPLs off), joints
0..21 are kept, then the z-up AMASS world is turned y-up by swapping y and z and negating x (two
mirrorings, together a rotation, so left stays left). The result is in our skeleton's convention:
metres, y up, a body's left on its +x side when it faces +z.

One deliberate difference: upstream's stride `int(fps / 20)` changes the frame rate when the source
rate is not a multiple of 20 (50 fps becomes 25 fps); here the frame nearest each 20 fps instant is
taken instead, which is the same stride whenever the rate is a multiple. Upstream's per-dataset trims
and its index.csv segmentation are dataset curation, not conversion, and are left to the caller.

Users bring the SMPL+H model files (the "Extended SMPL+H model" used by AMASS, from the MANO website);
nothing is downloaded. The body model is smplx's SMPLH.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from scl_ray import storage
from scl_ray.errors import UserError
from scl_ray.motion import humanml3d
from scl_ray.motion.constants import FPS
from scl_ray.motion.features import features_to_joints, joints_to_features
from scl_ray.motion.skeleton import NUM_JOINTS, Skeleton
from scl_ray.text.tokens import tokenize

if TYPE_CHECKING:  # smplx (and torch, which it imports) only load when a body model is posed
    import smplx

NUM_BETAS = 10  # raw_pose_processing's num_betas; AMASS files carry 16
SMPLH_POSE_DIM = 156  # 3 root + 21 * 3 body + 2 * 15 * 3 hand axis-angles
GENDERS = ("male", "female", "neutral")
AMASS_KEYS = ("poses", "trans", "betas", "mocap_framerate", "gender")
# Row-vector map applied as joints @ Z_UP_TO_Y_UP: upstream's y/z swap (trans_matrix) followed by
# its `data[..., 0] *= -1`, i.e. (x, y, z) -> (-x, z, y).
Z_UP_TO_Y_UP = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
# The folder HumanML3D's pipeline keeps these joints in before feature extraction.
JOINTS_DIR = "joints"
_SMPLH_HOME = "https://mano.is.tue.mpg.de (Downloads: 'Extended SMPL+H model', used by AMASS)"


@dataclass(frozen=True)
class AmassSequence:
    """One AMASS SMPL+H sequence: poses (T, 156) axis-angle radians, trans (T, 3) metres z up,
    betas (B,), fps (frames per second of the capture) and gender."""

    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    fps: float
    gender: str


def read_amass(npz_path: str | os.PathLike) -> AmassSequence:
    """Read an AMASS SMPL+H `.npz` (keys poses, trans, betas, mocap_framerate, gender), checking shapes."""
    npz_path = Path(npz_path)
    with np.load(npz_path, allow_pickle=False) as data:
        present = set(data.files)
        for key in AMASS_KEYS:
            if key not in present:
                hint = " (AMASS's per-subject shape.npz holds only betas and gender: pass sequence files)"
                raise UserError(
                    f"{npz_path}: no key '{key}' (found: {', '.join(sorted(present)) or 'none'}); an AMASS "
                    f"SMPL+H sequence needs poses, trans, betas, mocap_framerate and gender"
                    + (hint if key == "poses" else "")
                )
        poses, trans, betas, fps, gender = (_array(data, key, npz_path) for key in AMASS_KEYS)
    if fps.size != 1 or gender.size != 1:
        raise UserError(f"{npz_path}: 'mocap_framerate' and 'gender' must be single values, "
                        f"got shapes {fps.shape} and {gender.shape}")
    poses, trans, betas = (array.astype(np.float64) for array in (poses, trans, betas))
    fps = float(fps.item())
    gender = (gender.item().decode() if gender.dtype.kind == "S" else str(gender.item())).strip().lower()
    if poses.ndim != 2 or poses.shape[1] != SMPLH_POSE_DIM:
        raise UserError(
            f"{npz_path}: 'poses' has shape {poses.shape}; expected (T, {SMPLH_POSE_DIM}) SMPL+H axis-angles "
            "(AMASS's 'SMPL+H G' release; SMPL-X files have 165 columns and are not supported)"
        )
    if trans.shape != (len(poses), 3):
        raise UserError(f"{npz_path}: 'trans' has shape {trans.shape}; expected ({len(poses)}, 3) like 'poses'")
    if betas.ndim != 1 or len(betas) < NUM_BETAS:
        raise UserError(f"{npz_path}: 'betas' has shape {betas.shape}; expected ({NUM_BETAS},) or more")
    if not fps > 0:
        raise UserError(f"{npz_path}: 'mocap_framerate' is {fps}; expected a positive frame rate")
    if gender not in GENDERS:
        raise UserError(f"{npz_path}: 'gender' is {gender!r}; expected one of {', '.join(GENDERS)}")
    return AmassSequence(poses, trans, betas, fps, gender)


def _array(data: np.lib.npyio.NpzFile, key: str, npz_path: Path) -> np.ndarray:
    try:
        return data[key]
    except ValueError as error:  # an object array, which allow_pickle=False refuses to unpickle
        raise UserError(f"{npz_path}: '{key}' is a pickled Python object, expected a plain numpy array") from error


def resample_indices(num_frames: int, source_fps: float, target_fps: float = FPS) -> np.ndarray:
    """Indices of the frames kept when going from `source_fps` to `target_fps` (no interpolation).

    The frame nearest each instant k / target_fps; for an integer rate ratio this is upstream's
    stride `[::source_fps // target_fps]`. Returns (T',) int64, increasing, all < num_frames.
    """
    ratio = source_fps / target_fps
    if ratio < 1.0 - 1e-9:
        raise UserError(
            f"source frame rate {source_fps} fps is below the target {target_fps} fps; "
            "HumanML3D's conversion only downsamples"
        )
    # Rounding the ratio first keeps float noise (59.99999 fps) from breaking an exact stride.
    if abs(ratio - round(ratio)) < 1e-6:
        ratio = float(round(ratio))
    indices = np.floor(np.arange(num_frames) * ratio + 0.5).astype(np.int64)
    return indices[indices < num_frames]


def smplh_model_path(model_dir: str | os.PathLike, gender: str) -> Path:
    """The SMPL+H `.npz` for `gender` under `model_dir`, in AMASS's or smplx's folder layout."""
    model_dir = Path(model_dir)
    candidates = [
        model_dir / gender / "model.npz",
        model_dir / "smplh" / gender / "model.npz",
        model_dir / f"SMPLH_{gender.upper()}.npz",
        model_dir / "smplh" / f"SMPLH_{gender.upper()}.npz",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no SMPL+H {gender} body model under {model_dir}: looked for "
        + ", ".join(str(c) for c in candidates)
        + f". Bring the SMPL+H model files yourself from the MANO/SMPL-H website, {_SMPLH_HOME}, "
        f"and unpack them so that {candidates[0]} exists; they are licensed per user and nothing is "
        "downloaded for you."
    )


def load_smplh(model_dir: str | os.PathLike, gender: str, device: str = "cpu") -> smplx.SMPLH:
    """smplx's SMPLH body model for `gender` from the user's model files, configured as AMASS needs.

    AMASS stores full hand axis-angles (no PCA, no mean hand pose), and its model files lack the
    MANO hand PCA that smplx insists on reading; those are filled with zeros, which this
    configuration never uses.
    """
    import smplx
    from smplx.utils import Struct

    path = smplh_model_path(model_dir, gender)
    with np.load(path, allow_pickle=False) as data:
        needed = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
        missing = [key for key in needed if key not in data.files]
        if missing:
            raise UserError(f"{path}: not an SMPL+H model file, it lacks {', '.join(missing)}")
        arrays = {key: data[key] for key in data.files if key in needed or key.startswith("hands_")}
    if arrays["J_regressor"].shape[0] != 52:
        raise UserError(f"{path}: J_regressor regresses {arrays['J_regressor'].shape[0]} joints; SMPL+H has 52")
    for side in "lr":
        arrays.setdefault(f"hands_components{side}", np.zeros((45, 45)))
        arrays.setdefault(f"hands_mean{side}", np.zeros(45))
    # smplx prints a warning that SMPL+H has only 10 shape coefficients: true and intended here.
    with contextlib.redirect_stdout(io.StringIO()):
        model = smplx.SMPLH(
            model_path=str(path), data_struct=Struct(**arrays), gender=gender, num_betas=NUM_BETAS,
            use_pca=False, flat_hand_mean=True, batch_size=1,
        )
    return model.to(device).eval()


def sequence_joints(sequence: AmassSequence, body_model: smplx.SMPLH, target_fps: float = FPS) -> np.ndarray:
    """Joints 0..21 of a sequence at `target_fps`, y up: (T', 22, 3) float64 metres.

    The same joints as `body_model(...).joints[:, :22]` (smplx's lbs, steps for the joints only): the
    skeleton is regressed from the shaped template and posed by forward kinematics. The mesh is never
    skinned, since no joint depends on it: about 100 times faster than the full call (measured
    0.04 s instead of 3.9 s for 1000 frames on one CPU core).
    """
    import torch
    from smplx.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, vertices2joints

    keep = resample_indices(len(sequence.poses), sequence.fps, target_fps)
    device = body_model.shapedirs.device
    poses = torch.as_tensor(sequence.poses[keep], dtype=torch.float32, device=device)
    trans = torch.as_tensor(sequence.trans[keep], dtype=torch.float32, device=device)
    betas = torch.as_tensor(sequence.betas[:NUM_BETAS], dtype=torch.float32, device=device)
    frames = len(keep)
    with torch.no_grad():
        # One shape for the whole sequence: regress its skeleton once rather than per frame.
        shaped = body_model.v_template + blend_shapes(betas[None], body_model.shapedirs)
        rest = vertices2joints(body_model.J_regressor, shaped)[:, :NUM_JOINTS].expand(frames, -1, -1)
        rotations = batch_rodrigues(poses[:, : 3 * NUM_JOINTS].reshape(-1, 3)).view(frames, NUM_JOINTS, 3, 3)
        posed, _ = batch_rigid_transform(rotations, rest, body_model.parents[:NUM_JOINTS])
        joints = (posed + trans[:, None]).cpu().numpy().astype(np.float64)
    return joints @ Z_UP_TO_Y_UP


def amass_to_joints(
    npz_path: str | os.PathLike, model_dir: str | os.PathLike, target_fps: float = FPS, device: str = "cpu"
) -> np.ndarray:
    """An AMASS SMPL+H sequence as our 22 joints: (T', 22, 3) float64 metres, y up, `target_fps`.

    model_dir: folder with the user's SMPL+H model files (`<gender>/model.npz`, see smplh_model_path).
    device: torch device for the body model.
    """
    sequence = read_amass(npz_path)
    return sequence_joints(sequence, load_smplh(model_dir, sequence.gender, device), target_fps)


def motion_ids(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """One motion id per input file: its path below the inputs' common folder, without the suffix,
    with '/' and characters that cannot name a file replaced by '_' (`CMU/01/01_01_poses.npz` ->
    `CMU_01_01_01_poses` when inputs span datasets, `01_01_poses` for files of one folder)."""
    paths = [Path(p).resolve() for p in inputs]
    if not paths:
        return []
    common = Path(os.path.commonpath([p.parent for p in paths]))
    ids = [re.sub(r"[^A-Za-z0-9_.\-]", "_", "_".join(p.relative_to(common).with_suffix("").parts)) for p in paths]
    ids = ["_" + i if i.startswith(".") else i for i in ids]
    first = {}
    for motion_id, path in zip(ids, paths):
        if motion_id in first:
            raise UserError(f"{first[motion_id]} and {path} would both become motion id '{motion_id}'; rename one")
        first[motion_id] = path
    return ids


def convert_amass(
    inputs: Sequence[str | os.PathLike],
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    captions: dict[str, list[str]] | None = None,
    device: str = "cpu",
) -> list[str]:
    """Convert AMASS sequences and write them under `out_dir`; returns the motion ids (see motion_ids).

    Always writes `<out_dir>/joints/<id>.npy`, (T, 22, 3) float32 metres, y up, 20 fps. With
    `captions` (id -> caption texts, every id needed), also the HumanML3D files: features from
    joints_to_features retargeted to HumanML3D's adult skeleton (new_joint_vecs, (T-1, 263)), the
    joints recovered from them (new_joints) and texts. Split files and Mean/Std are left to the caller.
    HumanML3D keeps clips of 40-199 frames: caption long captures by sub-clip (Caption start/end).
    """
    ids = motion_ids(inputs)
    if captions is not None:
        uncaptioned = [motion_id for motion_id in ids if not captions.get(motion_id)]
        if uncaptioned:
            raise UserError(
                f"no captions for motion ids {', '.join(uncaptioned[:5])}"
                + (f" and {len(uncaptioned) - 5} more" if len(uncaptioned) > 5 else "")
                + f"; captions must map every id (ids come from the file paths, e.g. '{ids[0]}') to texts"
            )
    body_models: dict[str, smplx.SMPLH] = {}
    for path, motion_id in tqdm(list(zip(inputs, ids)), desc="AMASS -> joints", unit="file", disable=None):
        sequence = read_amass(path)
        if sequence.gender not in body_models:
            body_models[sequence.gender] = load_smplh(model_dir, sequence.gender, device)
        joints = sequence_joints(sequence, body_models[sequence.gender])
        storage.write_with(Path(out_dir) / JOINTS_DIR / f"{motion_id}.npy",
                           lambda stream: np.save(stream, joints.astype(np.float32), allow_pickle=False))
        if captions is None:
            continue
        if len(joints) < 2:
            raise UserError(f"{path}: {len(joints)} frame(s) at {FPS} fps; features need at least 2")
        features = joints_to_features(joints, target_skeleton=Skeleton.adult())
        texts = tuple(humanml3d.Caption(text, tokenize(text)) for text in captions[motion_id])
        record = humanml3d.MotionRecord(motion_id, features, texts, joints=features_to_joints(features))
        humanml3d.write_motion(out_dir, record)
    return ids
