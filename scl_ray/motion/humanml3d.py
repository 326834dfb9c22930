"""Read and write the HumanML3D directory layout, bit-compatible with the released dataset.

    <root>/new_joint_vecs/<id>.npy   (F, 263) float32 features, 20 fps
    <root>/new_joints/<id>.npy       (F, 22, 3) float32 joint positions, metres (optional)
    <root>/texts/<id>.txt            one caption per line: `caption#word/POS word/POS ...#start#end`
                                     (tokens of new captions: scl_ray.text.tokens.tokenize)
    <root>/{train,val,test}.txt      motion ids, one per line (`train_val.txt`, `all.txt` may exist)
    <root>/Mean.npy, Std.npy         (263,) feature normaliser

`load_split` applies the rules of the upstream loader (MDM's Text2MotionDatasetV2): a caption with
start = end = 0 (or NaN) describes the whole clip; any other caption describes the sub-clip
features[int(start * 20):int(end * 20)], which becomes its own item with a prefixed id; clips and
sub-clips with fewer than 40 or at least 200 frames are dropped. `scl_ray.motion.check.check_dataset`
reports every problem of a directory at once. Writes are atomic (temporary file, then os.replace).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from scl_ray import storage
from scl_ray.errors import UserError
from scl_ray.motion.constants import FEATURE_DIM, FPS, MAX_FRAMES, MIN_FRAMES
from scl_ray.motion.skeleton import NUM_JOINTS

__all__ = ["Caption", "MotionRecord", "parse_text_line", "format_text_line",
           "write_motion", "write_split", "read_split", "read_motion", "load_split"]

FEATURES_DIR, JOINTS_DIR, TEXTS_DIR = "new_joint_vecs", "new_joints", "texts"
MEAN_FILE, STD_FILE = "Mean.npy", "Std.npy"
SPLITS = ("train", "val", "test")
OPTIONAL_SPLITS = ("train_val", "all")
DROP_FRAMES = 200  # upstream drops clips of 200 frames or more, and crops kept ones to 196 when batching
# Upstream names a sub-clip item `<letter>_<id>` with a random letter from this alphabet.
SUBCLIP_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVW"
_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
_TEXT_FORMAT = "caption#word/POS word/POS ...#start#end (start and end in seconds, 0.0#0.0 = whole clip)"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caption:
    """One description of a motion: `text`, its `word/POS` tokens, and the described span in seconds.

    start = end = 0.0 means the whole clip; otherwise the sub-clip [start, end) seconds.
    """

    text: str
    tokens: tuple[str, ...]
    start: float = 0.0
    end: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if not self.text.strip() or "#" in self.text or len(self.text.splitlines()) != 1:
            raise ValueError(f"caption text {self.text!r} must be non-empty, on one line, without '#'")
        for token in self.tokens:
            if not token or any(c in token for c in " #\n"):
                raise ValueError(f"token {token!r} of caption {self.text!r} must be a non-empty "
                                 "`word/POS` without spaces or '#'")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"caption {self.text!r}: {name} = {value!r} must be finite seconds >= 0")
            object.__setattr__(self, name, float(value))
        if self.end < self.start:
            raise ValueError(f"caption {self.text!r}: end {self.end} s is before start {self.start} s")

    @property
    def whole_clip(self) -> bool:
        return self.start == 0.0 and self.end == 0.0


@dataclass(frozen=True, eq=False)
class MotionRecord:
    """One motion: features (F, 263) float32 at 20 fps, its captions, optional joints (F, 22, 3) metres."""

    id: str
    features: np.ndarray
    captions: tuple[Caption, ...]
    joints: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.id, str) or not _ID_PATTERN.fullmatch(self.id):
            raise ValueError(f"motion id {self.id!r} must be letters, digits, '_', '-' or '.', "
                             "not starting with '.' (it names files)")
        features = np.asarray(self.features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
            raise ValueError(f"motion {self.id}: features have shape {features.shape}, "
                             f"expected (frames, {FEATURE_DIM})")
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "captions", tuple(self.captions))
        if self.joints is not None:
            joints = np.asarray(self.joints, dtype=np.float32)
            if joints.shape != (len(features), NUM_JOINTS, 3):
                raise ValueError(f"motion {self.id}: joints have shape {joints.shape}, expected "
                                 f"({len(features)}, {NUM_JOINTS}, 3) to match its {len(features)} feature frames")
            object.__setattr__(self, "joints", joints)


def parse_text_line(line: str, where: str) -> Caption:
    """Parse one `caption#tokens#start#end` line; NaN start/end become 0.0 as upstream.

    where: the place to name in errors, e.g. `texts/000001.txt:3`.
    Raises ValueError naming `where` and the expected format.
    """
    fields = line.strip().split("#")
    if len(fields) != 4:
        raise UserError(f"{where}: {len(fields)} '#'-separated fields in {line.strip()!r}, "
                        f"expected 4: {_TEXT_FORMAT}")
    text, tokens, start_text, end_text = fields
    try:
        start, end = float(start_text), float(end_text)
    except ValueError:
        raise UserError(f"{where}: start {start_text!r} / end {end_text!r} are not numbers, "
                        f"expected seconds: {_TEXT_FORMAT}") from None
    try:
        return Caption(text, tuple(tokens.split()), 0.0 if math.isnan(start) else start,
                       0.0 if math.isnan(end) else end)
    except ValueError as error:
        raise UserError(f"{where}: {error}; expected {_TEXT_FORMAT}") from None


def format_text_line(caption: Caption) -> str:
    """The `caption#tokens#start#end` line for a caption (no newline), as upstream writes it."""
    return f"{caption.text}#{' '.join(caption.tokens)}#{caption.start!r}#{caption.end!r}"


def _npy_bytes(array: np.ndarray) -> bytes:
    np.save(buffer := io.BytesIO(), array, allow_pickle=False)
    return buffer.getvalue()


def write_motion(root: str | os.PathLike, record: MotionRecord) -> None:
    """Write a motion's features, joints and captions under `root`, atomically per file.

    A record without joints removes a stale joints file of the same id.
    """
    if not record.captions:
        raise UserError(f"motion {record.id} has no captions; HumanML3D needs at least one per motion")
    root, joints_path = Path(root), Path(root) / JOINTS_DIR / f"{record.id}.npy"
    storage.write_bytes(root / FEATURES_DIR / f"{record.id}.npy", _npy_bytes(record.features))
    if record.joints is not None:
        storage.write_bytes(joints_path, _npy_bytes(record.joints))
    else:
        joints_path.unlink(missing_ok=True)
    text = "".join(format_text_line(caption) + "\n" for caption in record.captions)
    storage.write_bytes(root / TEXTS_DIR / f"{record.id}.txt", text.encode("utf-8"))


def write_split(root: str | os.PathLike, name: str, ids: Iterable[str]) -> None:
    """Write `<root>/<name>.txt` with one motion id per line."""
    ids = list(ids)
    bad = [motion_id for motion_id in ids if not _ID_PATTERN.fullmatch(str(motion_id))]
    if bad:
        raise UserError(f"split {name}: ids {bad[:5]} are not valid motion ids")
    storage.write_bytes(Path(root) / f"{name}.txt", "".join(f"{i}\n" for i in ids).encode("utf-8"))


def read_split(root: str | os.PathLike, name: str) -> list[str]:
    """Motion ids listed in `<root>/<name>.txt`, in file order (blank lines skipped)."""
    path = Path(root) / f"{name}.txt"
    if not path.is_file():
        present = sorted(p.stem for p in Path(root).glob("*.txt")) if Path(root).is_dir() else []
        raise FileNotFoundError(f"{path}: no split file '{name}'; split files here: {present or 'none'}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _load_npy(path: Path, shape_tail: tuple[int, ...], motion_id: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing file for motion {motion_id}")
    array = np.load(path, allow_pickle=False)
    if array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        raise UserError(f"{path}: motion {motion_id} has shape {array.shape}, expected (frames, "
                        f"{', '.join(map(str, shape_tail))})")
    return array.astype(np.float32, copy=False)


def read_captions(root: str | os.PathLike, motion_id: str) -> tuple[Caption, ...]:
    """All captions of a motion from `texts/<id>.txt` (blank lines skipped)."""
    path = Path(root) / TEXTS_DIR / f"{motion_id}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing caption file for motion {motion_id}")
    lines = path.read_text(encoding="utf-8").splitlines()
    captions = tuple(parse_text_line(line, f"{path}:{number}")
                     for number, line in enumerate(lines, start=1) if line.strip())
    if not captions:
        raise UserError(f"{path}: motion {motion_id} has no captions; expected lines {_TEXT_FORMAT}")
    return captions


def read_motion(root: str | os.PathLike, motion_id: str) -> MotionRecord:
    """One motion as stored: all its captions (sub-clip ones included), joints if the file exists."""
    root = Path(root)
    features = _load_npy(root / FEATURES_DIR / f"{motion_id}.npy", (FEATURE_DIM,), motion_id)
    joints_path = root / JOINTS_DIR / f"{motion_id}.npy"
    joints = _load_npy(joints_path, (NUM_JOINTS, 3), motion_id) if joints_path.is_file() else None
    return MotionRecord(motion_id, features, read_captions(root, motion_id), joints)


def subclip_id(motion_id: str, index: int) -> str:
    """Id of a motion's index-th sub-clip caption: `A_<id>` … `W_<id>`, `AA_<id>` … (upstream: a random letter)."""
    letters = len(SUBCLIP_LETTERS)
    prefix = SUBCLIP_LETTERS[index % letters]
    if index >= letters:
        prefix = SUBCLIP_LETTERS[index // letters - 1] + prefix
    return f"{prefix}_{motion_id}"


def load_split(root: str | os.PathLike, split: str, min_frames: int = MIN_FRAMES,
               max_frames: int = MAX_FRAMES) -> list[MotionRecord]:
    """Training items of a split, with upstream's rules (see the module docstring).

    Each motion with whole-clip captions gives one item holding all of them; each sub-clip caption
    gives one item `<letter>_<id>` (see `subclip_id`). Clips or sub-clips with fewer than
    `min_frames` or at least 200 frames are dropped; kept ones longer than `max_frames` keep their
    first `max_frames` frames (upstream crops them to 196 when batching). Items come in split order,
    a motion's whole-clip item before its sub-clips; `joints` is None (recover them from features).
    Raises FileNotFoundError/ValueError naming the file for missing or malformed data.
    """
    if not 1 <= min_frames <= max_frames:
        raise ValueError(f"need 1 <= min_frames <= max_frames, got {min_frames} and {max_frames}")
    root = Path(root)
    items: list[MotionRecord] = []
    dropped = 0
    for motion_id in read_split(root, split):
        features = _load_npy(root / FEATURES_DIR / f"{motion_id}.npy", (FEATURE_DIM,), motion_id)
        if not min_frames <= len(features) < DROP_FRAMES:
            dropped += 1
            continue
        captions = read_captions(root, motion_id)
        whole = tuple(caption for caption in captions if caption.whole_clip)
        if whole:
            items.append(MotionRecord(motion_id, features[:max_frames], whole))
        spans = [caption for caption in captions if not caption.whole_clip]
        for index, caption in enumerate(spans):
            segment = features[int(caption.start * FPS):int(caption.end * FPS)]
            if min_frames <= len(segment) < DROP_FRAMES:
                items.append(MotionRecord(subclip_id(motion_id, index), segment[:max_frames], (caption,)))
            else:
                dropped += 1
    log.info("%s/%s: %d items, %d clips or sub-clips dropped for length", root, split, len(items), dropped)
    return items
