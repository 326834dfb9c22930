"""Corrupted motions and the judge of a physics corrector's output on them.

A corrector is judged on clean motions and on five corruptions of them, each of which damages one
physics metric (`OWN_METRIC`). Motions are joints (T, 22, 3), metres, y up, 20 fps. Per condition,
with m(x) a metric of motion x and tol its tolerance (`TOLERANCES`), the corrected motion must:

- own_metric: remove at least 80 % of the damage to the corruption's own metric, (m(corrupted) -
  m(corrected)) / (m(corrupted) - m(clean)) >= 0.8; where the damage is below the tolerance there is
  nothing to remove, and m(corrected) <= m(clean) + tol passes;
- other_metrics: make no judged metric worse than max(m(corrupted), m(clean) + tol); on the clean
  condition, every judged metric must stay within m(clean) + tol;
- mpjpe: stay within 60 mm mean per-joint position error of the clean motion (30 mm on the clean
  condition); for `slide`, pelvis-relative, as undoing a slide may leave the body elsewhere;
- speed: move no faster than 1.1 times the clean motion's mean joint speed (no added motion);
- peak_jerk: have no single-frame spike: peak_jerk <= max(2 peak_jerk(clean), PEAK_JERK_FLOOR);
- pelvis_height (clean condition only): reach the clean motion's highest pelvis within 5 cm, so a
  jump is still a jump.

`assess_case` measures one (motion, condition) and returns an `Assessment` row; `format_table` and
`pass_counts` summarise rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from scl_ray.motion.constants import FPS
from scl_ray.motion.skeleton import JOINT
from scl_ray.physics.metrics import HORIZONTAL_AXES, MM_PER_M, UP_AXIS, physics_metrics

SINK_M = 0.05
HOVER_M = 0.10
SLIDE_M_PER_S = 0.5
NOISE_M = 0.015
SNAP_M = 0.15
SNAP_FRAMES = 3
SNAP_MARGIN = 0.1  # share of frames at either end where a snap does not start or end
SNAP_JOINTS = tuple(JOINT[f"{side}_{part}"] for side in ("left", "right") for part in ("knee", "ankle", "foot"))

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]
CLEAN = "clean"


def _shifted(joints: np.ndarray, offset) -> np.ndarray:
    return np.asarray(joints, dtype=np.float64) + np.asarray(offset, dtype=np.float64)


def sink(joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The whole body SINK_M (5 cm) down."""
    return _shifted(joints, [0.0, -SINK_M, 0.0])


def hover(joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The whole body HOVER_M (10 cm) up."""
    return _shifted(joints, [0.0, HOVER_M, 0.0])


def slide(joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A constant horizontal slide of SLIDE_M_PER_S (0.5 m/s) in a direction drawn from rng."""
    angle = rng.uniform(0.0, 2 * np.pi)
    velocity = np.zeros(3)
    velocity[list(HORIZONTAL_AXES)] = SLIDE_M_PER_S * np.array([np.cos(angle), np.sin(angle)])
    seconds = np.arange(len(joints)) / FPS
    return _shifted(joints, seconds[:, None, None] * velocity)


def noise(joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """N(0, NOISE_M = 1.5 cm) added to every coordinate."""
    joints = np.asarray(joints, dtype=np.float64)
    return joints + rng.normal(0.0, NOISE_M, joints.shape)


def snap(joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Knees, ankles and toe joints of both legs raised SNAP_M (15 cm) for SNAP_FRAMES (3) frames.

    The frames are consecutive, drawn from rng, and lie outside the first and last 10 % of frames.
    """
    joints = np.array(joints, dtype=np.float64)
    margin = int(np.ceil(SNAP_MARGIN * len(joints)))
    last_start = len(joints) - margin - SNAP_FRAMES
    if last_start < margin:
        raise ValueError(f"snap needs {SNAP_FRAMES} frames clear of the first and last 10 % of frames; "
                         f"the motion has only {len(joints)} frames")
    start = int(rng.integers(margin, last_start + 1))
    joints[start:start + SNAP_FRAMES, list(SNAP_JOINTS), UP_AXIS] += SNAP_M
    return joints


CORRUPTIONS: dict[str, Corruption] = {"sink": sink, "hover": hover, "slide": slide, "noise": noise, "snap": snap}
CONDITIONS = (CLEAN,) + tuple(CORRUPTIONS)
OWN_METRIC = {"sink": "penetration_mm", "hover": "float_mm", "slide": "skate_mm", "noise": "jitter",
              "snap": "bone_mm"}
JUDGED_METRICS = ("penetration_mm", "float_mm", "skate_mm", "jitter", "bone_mm")

# metric -> (absolute, share of the clean value): how much worse than clean still counts as equal.
TOLERANCES = {
    # 2 mm: below what a viewer sees, and 4 % of the sink's 50 mm and 2 % of the hover's 100 mm.
    "penetration_mm": (2.0, 0.0),
    "float_mm": (2.0, 0.0),
    # 2.5 mm per frame = 0.05 m/s at 20 fps: a tenth of the slide corruption's 25, and about what clean
    # procedural walks score (1-4 mm per frame, heel and toe rolling within the contact height).
    "skate_mm": (2.5, 0.0),
    # Jitter scales with the motion (clean runs score ~150 m/s^3, standing ~5), hence 10 % of clean;
    # the 10 m/s^3 floor is white noise of about 0.2 mm per coordinate, invisible, against ~850 m/s^3
    # from the noise corruption's 1.5 cm.
    "jitter": (10.0, 0.10),
    # The mean over 21 bones and every frame dilutes a local fault: the snap (thigh bones off by up to
    # 15 cm in 3 frames) scores 0.1-0.8 mm, and as little as 0.013 mm on a seated body, whose raised
    # thighs turn about the hips rather than stretch. A simulated rigid body scores 0 and a float32
    # features round trip 2e-5 mm, so 0.01 mm is a numerical tolerance.
    "bone_mm": (0.01, 0.0),
}
MIN_DAMAGE_REMOVED = 0.8
MAX_MPJPE_MM = 60.0
MAX_MPJPE_CLEAN_MM = 30.0
MAX_SPEED_RATIO = 1.1
# Clean procedural motions peak at 12-620 m/s^3 (jump landings highest); a factor 2 lets a simulated
# landing be harder than the kinematic one. The floor keeps slow motions (peak ~12) from failing on
# simulation noise, yet a single frame where every joint jumps 4 cm already peaks at
# 3 * 0.04 m * 20^3 = 960 m/s^3, and the 0.4 m teleport at 9600.
PEAK_JERK_FACTOR = 2.0
PEAK_JERK_FLOOR = 1000.0  # m/s^3
MAX_PELVIS_DROP_M = 0.05
CRITERIA = ("own_metric", "other_metrics", "mpjpe", "speed", "peak_jerk", "pelvis_height")


def corrupt_all(clean: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every condition's input: {"clean": clean, "sink": ..., ...} in CONDITIONS order, float64."""
    clean = np.asarray(clean, dtype=np.float64)
    return {CLEAN: clean, **{name: corruption(clean, rng) for name, corruption in CORRUPTIONS.items()}}


def tolerance(metric: str, clean_value: float) -> float:
    """How far above the clean value a judged metric may go and still count as unchanged."""
    absolute, relative = TOLERANCES[metric]
    return absolute + relative * clean_value


def damage_removed(metric: str, clean: float, corrupted: float, corrected: float) -> float:
    """(corrupted - corrected) / (corrupted - clean) of one metric; NaN where the damage is below tolerance."""
    damage = corrupted - clean
    if damage < tolerance(metric, clean):
        return float("nan")
    return (corrupted - corrected) / damage


def mpjpe_mm(joints: np.ndarray, reference: np.ndarray, pelvis_relative: bool = False) -> float:
    """Mean per-joint position error of joints against reference, both (T, 22, 3) metres, in mm.

    pelvis_relative: subtract each frame's pelvis position from both first.
    """
    joints, reference = np.asarray(joints, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if joints.shape != reference.shape:
        raise ValueError(f"MPJPE needs joints of the same shape, got {joints.shape} and {reference.shape}")
    if pelvis_relative:
        pelvis = JOINT["pelvis"]
        joints, reference = joints - joints[:, pelvis:pelvis + 1], reference - reference[:, pelvis:pelvis + 1]
    return float(np.linalg.norm(joints - reference, axis=-1).mean() * MM_PER_M)


def pelvis_height_peak(joints: np.ndarray) -> float:
    """The pelvis's greatest height over the motion, metres. joints (T, 22, 3), y up."""
    return float(np.max(np.asarray(joints)[:, JOINT["pelvis"], UP_AXIS]))


@dataclass(frozen=True)
class Assessment:
    """One (motion, condition) row: metrics of the three motions and each criterion's verdict.

    clean / corrupted / corrected: `physics_metrics` of each (the corrupted is the clean on the clean
    condition). removed: the share of the own metric's damage removed (NaN on the clean condition or
    where the damage is below tolerance). worse: judged metrics above their allowed bound. checks:
    criterion -> True / False, or None where it does not apply to the condition.
    """

    motion: str
    condition: str
    clean: dict[str, float]
    corrupted: dict[str, float]
    corrected: dict[str, float]
    removed: float
    worse: tuple[str, ...]
    mpjpe_mm: float
    pelvis_drop_m: float
    checks: dict[str, bool | None]

    @property
    def passed(self) -> bool:
        return all(verdict is not False for verdict in self.checks.values())

    def to_dict(self) -> dict:
        """JSON-ready: every field, plus `passed`."""
        return {"motion": self.motion, "condition": self.condition, "passed": self.passed,
                "checks": dict(self.checks), "removed": self.removed, "worse": list(self.worse),
                "mpjpe_mm": self.mpjpe_mm, "pelvis_drop_m": self.pelvis_drop_m,
                "clean": dict(self.clean), "corrupted": dict(self.corrupted), "corrected": dict(self.corrected)}


def _own_metric_check(metric: str, clean: float, corrupted: float, corrected: float) -> tuple[float, bool]:
    removed = damage_removed(metric, clean, corrupted, corrected)
    if np.isnan(removed):
        return removed, corrected <= clean + tolerance(metric, clean)
    return removed, removed >= MIN_DAMAGE_REMOVED


def _worse_metrics(clean: dict, corrupted: dict, corrected: dict, skip: str | None) -> tuple[str, ...]:
    """Judged metrics (other than `skip`) of corrected above max(corrupted, clean + tolerance)."""
    bound = {name: max(corrupted[name], clean[name] + tolerance(name, clean[name])) for name in JUDGED_METRICS}
    return tuple(name for name in JUDGED_METRICS if name != skip and corrected[name] > bound[name])


def assess_case(motion: str, condition: str, clean: np.ndarray, corrupted: np.ndarray,
                corrected: np.ndarray, fps: float = FPS) -> Assessment:
    """Judge one corrected motion: all three (T, 22, 3) metres, y up, at fps; condition in CONDITIONS.

    motion: a label for the row (e.g. the family). On the clean condition pass the clean motion as
    `corrupted` too.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; conditions are {list(CONDITIONS)}")
    before, damaged, after = (physics_metrics(joints, fps) for joints in (clean, corrupted, corrected))
    own = OWN_METRIC.get(condition)
    removed, own_passed = float("nan"), None
    if own is not None:
        removed, own_passed = _own_metric_check(own, before[own], damaged[own], after[own])
    worse = _worse_metrics(before, damaged, after, skip=own)
    error = mpjpe_mm(corrected, clean, pelvis_relative=condition == "slide")
    drop = pelvis_height_peak(clean) - pelvis_height_peak(corrected)
    checks = {
        "own_metric": own_passed,
        "other_metrics": not worse,
        "mpjpe": error <= (MAX_MPJPE_CLEAN_MM if condition == CLEAN else MAX_MPJPE_MM),
        "speed": after["speed"] <= MAX_SPEED_RATIO * before["speed"],
        "peak_jerk": after["peak_jerk"] <= max(PEAK_JERK_FACTOR * before["peak_jerk"], PEAK_JERK_FLOOR),
        "pelvis_height": drop <= MAX_PELVIS_DROP_M if condition == CLEAN else None,
    }
    return Assessment(motion, condition, before, damaged, after, float(removed), worse, error, drop, checks)


def pass_counts(rows: Sequence[Assessment]) -> dict[str, dict[str, int]]:
    """Per criterion, and for whole rows ("all"): how many rows it applied to and how many passed."""
    counts = {}
    for criterion in CRITERIA:
        verdicts = [row.checks[criterion] for row in rows if row.checks[criterion] is not None]
        counts[criterion] = {"passed": sum(verdicts), "judged": len(verdicts)}
    counts["all"] = {"passed": sum(row.passed for row in rows), "judged": len(rows)}
    return counts


def format_table(rows: Sequence[Assessment]) -> str:
    """A markdown table, one line per row: own metric before and after, damage removed, MPJPE, the
    speed and peak-jerk ratios to clean, and the failed criteria (with the metrics that got worse)."""
    lines = ["| motion | condition | own metric | clean | corrupted | corrected | removed | MPJPE mm "
             "| speed / clean | peak jerk / clean | failed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        own = OWN_METRIC.get(row.condition, "phys_err_mm")
        failed = [name for name, verdict in row.checks.items() if verdict is False]
        if row.worse:
            failed[failed.index("other_metrics")] = f"other_metrics ({', '.join(row.worse)})"
        removed = "-" if np.isnan(row.removed) else f"{row.removed:.0%}"
        lines.append(
            f"| {row.motion} | {row.condition} | {own} | {row.clean[own]:.2f} | {row.corrupted[own]:.2f} "
            f"| {row.corrected[own]:.2f} | {removed} | {row.mpjpe_mm:.1f} "
            f"| {_ratio(row.corrected['speed'], row.clean['speed'])} "
            f"| {_ratio(row.corrected['peak_jerk'], row.clean['peak_jerk'])} | {', '.join(failed) or 'none'} |")
    return "\n".join(lines)


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference > 0 else "-"
