"""Validate a HumanML3D directory: find every problem at once, never stop at the first.

`check_dataset(root)` reads every split file, feature, joint and text file and Mean/Std, and returns
a `CheckReport` with the problems grouped by kind (a count and the first few examples per kind).
Errors make the directory unusable as it is; warnings describe data that `load_split` handles by
its rules (lengths it drops or crops, optional joint files). It never raises on bad data.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scl_ray.motion.constants import FEATURE_DIM, MAX_FRAMES, MIN_FRAMES
from scl_ray.motion.humanml3d import (
    DROP_FRAMES, FEATURES_DIR, JOINTS_DIR, MEAN_FILE, OPTIONAL_SPLITS, SPLITS, STD_FILE, TEXTS_DIR, parse_text_line,
)
from scl_ray.motion.skeleton import NUM_JOINTS

ERROR, WARNING = "error", "warning"

# Every kind of problem, in report order: (severity, what it means and what would be right).
KINDS: dict[str, tuple[str, str]] = {
    "missing_directory": (ERROR, f"the dataset root, {FEATURES_DIR}/ or {TEXTS_DIR}/ is absent"),
    "missing_split": (ERROR, f"a split file ({', '.join(s + '.txt' for s in SPLITS)}) is absent"),
    "missing_mean_std": (ERROR, f"{MEAN_FILE} or {STD_FILE} is absent; compute them on the train split"),
    "missing_features": (ERROR, f"a split lists an id with no {FEATURES_DIR}/<id>.npy"),
    "missing_text": (ERROR, f"a motion has no {TEXTS_DIR}/<id>.txt; every motion needs a caption"),
    "unreadable_file": (ERROR, "a .npy or text file cannot be read (corrupt, pickled or not UTF-8)"),
    "feature_shape": (ERROR, f"features are not (frames, {FEATURE_DIM})"),
    "joints_shape": (ERROR, f"joints are not (frames, {NUM_JOINTS}, 3)"),
    "frame_mismatch": (ERROR, "joints and features of a motion have different frame counts"),
    "mean_std_shape": (ERROR, f"{MEAN_FILE} or {STD_FILE} is not ({FEATURE_DIM},)"),
    "std_not_positive": (ERROR, f"{STD_FILE} has entries <= 0; normalising divides by it"),
    "nonfinite": (ERROR, "NaN or inf values"),
    "malformed_text_line": (ERROR, "a caption line is not `caption#tokens#start#end` with 0 <= start <= end"),
    "empty_text": (ERROR, "a text file has no caption lines"),
    "missing_joints": (WARNING, f"{JOINTS_DIR}/<id>.npy is absent (optional: joints can be recovered)"),
    "length_out_of_range": (WARNING, f"fewer than {MIN_FRAMES} or more than {MAX_FRAMES} frames; "
                                     f"load_split drops < {MIN_FRAMES} and >= {DROP_FRAMES}, crops the rest"),
}


@dataclass(frozen=True)
class Problem:
    """One problem: the file (relative to the dataset root) and what is wrong with it."""

    file: str
    detail: str


@dataclass
class ProblemKind:
    """All problems of one kind: how many, and the first few as examples."""

    kind: str
    severity: str
    meaning: str
    count: int = 0
    examples: list[Problem] = field(default_factory=list)


@dataclass
class CheckReport:
    """What `check_dataset` found; `kinds` holds only the kinds that occurred, in `KINDS` order."""

    root: str
    num_motions: int
    kinds: dict[str, ProblemKind]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not any(kind.severity == ERROR for kind in self.kinds.values())

    def count(self, kind: str) -> int:
        """Number of problems of `kind` (0 when none)."""
        if kind not in KINDS:
            raise KeyError(f"unknown problem kind {kind!r}; kinds are {', '.join(KINDS)}")
        return self.kinds[kind].count if kind in self.kinds else 0

    def format(self) -> str:
        """A readable multi-line report."""
        errors = sum(k.count for k in self.kinds.values() if k.severity == ERROR)
        warnings = sum(k.count for k in self.kinds.values() if k.severity == WARNING)
        verdict = "OK" if self.ok else "NOT OK"
        lines = [f"HumanML3D check of {self.root}: {verdict}, {self.num_motions} motions, "
                 f"{errors} errors, {warnings} warnings"]
        for kind in self.kinds.values():
            lines.append(f"  {kind.severity:7s} {kind.kind} ({kind.count}): {kind.meaning}")
            lines.extend(f"      {problem.file}: {problem.detail}" for problem in kind.examples)
            if kind.count > len(kind.examples):
                lines.append(f"      ... and {kind.count - len(kind.examples)} more")
        return "\n".join(lines)


class _Collector:
    def __init__(self, root: Path, max_examples: int):
        self.root, self.max_examples = root, max_examples
        self.kinds: dict[str, ProblemKind] = {}

    def add(self, kind: str, path: Path, detail: str) -> None:
        severity, meaning = KINDS[kind]
        entry = self.kinds.setdefault(kind, ProblemKind(kind, severity, meaning))
        entry.count += 1
        if len(entry.examples) < self.max_examples:
            where = path.relative_to(self.root) if path.is_relative_to(self.root) else path
            entry.examples.append(Problem(str(where), detail))

    def report(self, num_motions: int) -> CheckReport:
        ordered = {kind: self.kinds[kind] for kind in KINDS if kind in self.kinds}
        return CheckReport(str(self.root), num_motions, ordered)


def _load(path: Path, found: _Collector) -> np.ndarray | None:
    try:
        with open(path, "rb") as file:
            if file.read(6) != b"\x93NUMPY":
                found.add("unreadable_file", path, "not a .npy file (no NUMPY header)")
                return None
        return np.load(path, allow_pickle=False)
    except Exception as error:  # any failure to read a .npy is reported as such, whatever its cause
        found.add("unreadable_file", path, f"{type(error).__name__}: {error}")
        return None


def _check_finite(array: np.ndarray, path: Path, found: _Collector) -> None:
    if not np.issubdtype(array.dtype, np.number):
        found.add("unreadable_file", path, f"dtype {array.dtype} is not numeric")
        return
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        where = f"in {len(rows)} frames, first frame {rows[0]}" if array.ndim > 1 else f"first at index {rows[0]}"
        found.add("nonfinite", path, f"{int(bad.sum())} NaN/inf values {where}")


def _check_mean_std(root: Path, found: _Collector) -> None:
    for name in (MEAN_FILE, STD_FILE):
        path = root / name
        if not path.is_file():
            found.add("missing_mean_std", path, "absent")
            continue
        array = _load(path, found)
        if array is None:
            continue
        if array.shape != (FEATURE_DIM,):
            found.add("mean_std_shape", path, f"shape {array.shape}, expected ({FEATURE_DIM},)")
            continue
        _check_finite(array, path, found)
        if name == STD_FILE and np.issubdtype(array.dtype, np.number) and (array <= 0).any():
            found.add("std_not_positive", path, f"{int((array <= 0).sum())} entries <= 0, first at "
                                                f"index {int(np.argmax(array <= 0))}")


def _read_splits(root: Path, found: _Collector) -> dict[str, list[str]]:
    """Ids -> names of the split files listing them."""
    listed: dict[str, list[str]] = defaultdict(list)
    for name in SPLITS + OPTIONAL_SPLITS:
        path = root / f"{name}.txt"
        if not path.is_file():
            if name in SPLITS:
                found.add("missing_split", path, "absent")
            continue
        try:
            ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            found.add("unreadable_file", path, f"{type(error).__name__}: {error}")
            continue
        for motion_id in ids:
            listed[motion_id].append(path.name)
    return listed


def _check_features(path: Path, found: _Collector) -> int | None:
    """Check one feature file; its frame count when the shape is right."""
    features = _load(path, found)
    if features is None:
        return None
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        found.add("feature_shape", path, f"shape {features.shape}, expected (frames, {FEATURE_DIM})")
        return None
    _check_finite(features, path, found)
    if not MIN_FRAMES <= len(features) <= MAX_FRAMES:
        found.add("length_out_of_range", path, f"{len(features)} frames")
    return len(features)


def _check_joints(path: Path, frames: int | None, found: _Collector) -> None:
    if not path.is_file():
        found.add("missing_joints", path, "absent")
        return
    joints = _load(path, found)
    if joints is None:
        return
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        found.add("joints_shape", path, f"shape {joints.shape}, expected (frames, {NUM_JOINTS}, 3)")
        return
    if frames is not None and len(joints) != frames:
        found.add("frame_mismatch", path, f"{len(joints)} joint frames, {frames} feature frames")
    _check_finite(joints, path, found)


def _check_text(path: Path, found: _Collector) -> None:
    if not path.is_file():
        found.add("missing_text", path, "absent")
        return
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        found.add("unreadable_file", path, f"{type(error).__name__}: {error}")
        return
    captions = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        captions += 1
        try:
            parse_text_line(line, f"line {number}")
        except ValueError as error:
            found.add("malformed_text_line", path, str(error))
    if captions == 0:
        found.add("empty_text", path, "no caption lines")


def check_dataset(root, max_examples: int = 5) -> CheckReport:
    """Check a HumanML3D directory (layout in `humanml3d.py`) and report every problem found.

    Motions checked: every id listed in a split file and every file in new_joint_vecs/; the joints
    and captions of a motion are checked when its feature file exists, and `num_motions` counts
    those. At most `max_examples` examples per kind.
    """
    root = Path(root)
    found = _Collector(root, max_examples)
    if not root.is_dir():
        found.add("missing_directory", root, "the dataset root is not a directory")
        return found.report(0)
    directories = {name: (root / name).is_dir() for name in (FEATURES_DIR, JOINTS_DIR, TEXTS_DIR)}
    for name in (FEATURES_DIR, TEXTS_DIR):
        if not directories[name]:
            found.add("missing_directory", root / name, "absent")
    if not directories[JOINTS_DIR]:
        found.add("missing_joints", root / JOINTS_DIR, "directory absent")
    _check_mean_std(root, found)
    listed = _read_splits(root, found)
    stored = set()
    if directories[FEATURES_DIR]:
        stored = {p.stem for p in (root / FEATURES_DIR).glob("*.npy") if not p.name.startswith(".")}
    num_motions = 0
    for motion_id in sorted(stored | set(listed)):
        feature_path = root / FEATURES_DIR / f"{motion_id}.npy"
        if motion_id not in stored:
            if directories[FEATURES_DIR]:
                found.add("missing_features", feature_path, f"listed in {', '.join(listed[motion_id])}")
            continue
        num_motions += 1
        frames = _check_features(feature_path, found)
        if directories[JOINTS_DIR]:
            _check_joints(root / JOINTS_DIR / f"{motion_id}.npy", frames, found)
        if directories[TEXTS_DIR]:
            _check_text(root / TEXTS_DIR / f"{motion_id}.txt", found)
    return found.report(num_motions)
