"""PhysicsCorrector turns a features batch into corrected features, accounts for every motion, and moves
corrupted motions (procedural families, HumanML3D-shaped clips, real HumanML3D files) back towards the
clean ones, judged by `scl_ray.physics.corruptions`."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from tests.physics.clips import humanml3d_shaped, procedural, real_motions
from scl_ray.config import CorrectConfig
from scl_ray.motion.constants import FEATURE_DIM, MAX_FRAMES
from scl_ray.motion.features import features_to_joints, joints_to_features
from scl_ray.motion.procedural.families import FAMILIES
from scl_ray.motion.store import STATUSES
from scl_ray.physics.corrector import (
    METRIC_COLUMNS, REPORT_COLUMNS, Correction, PhysicsCorrector, humanoid_settings,
)
from scl_ray.physics.humanoid import HumanoidSettings
from scl_ray.physics.metrics import physics_metrics
from scl_ray.physics.corruptions import CLEAN, CORRUPTIONS, assess_case, pass_counts


@pytest.fixture(scope="module")
def corrector():
    return PhysicsCorrector(CorrectConfig())


def batch_of(*motions):
    """A padded batch from joint arrays (T_i, 22, 3); each motion gives T_i - 1 feature frames."""
    features = np.zeros((len(motions), MAX_FRAMES, FEATURE_DIM), dtype=np.float32)
    lengths = np.zeros(len(motions), dtype=np.int64)
    for index, joints in enumerate(motions):
        motion = joints_to_features(joints)
        features[index, : len(motion)], lengths[index] = motion, len(motion)
    return {"ids": np.array([f"m{index}" for index in range(len(motions))], dtype=object),
            "features": features, "lengths": lengths}


def test_every_motion_gets_a_status_and_the_columns(corrector):
    walk = procedural("walk")[:61]
    flying = walk.copy()
    flying[30:, :, 2] += 50.0  # the whole body 50 m ahead in one frame
    batch = batch_of(walk, walk, walk, walk, flying)
    batch["features"][1, 10, 7] = np.nan
    batch["lengths"][2] = 2  # too short to simulate
    batch["lengths"][3] = MAX_FRAMES + 1
    batch["text"] = np.array(["a person walks"] * 5, dtype=object)  # other columns pass through
    out = corrector(batch)
    assert list(out["status"]) == ["corrected", "nonfinite", "failed", "failed", "failed"]
    assert set(out["status"]) <= set(STATUSES)
    assert out["error"][0] == ""
    assert "motion m1" in out["error"][1] and "NaN" in out["error"][1]
    assert "motion m2" in out["error"][2] and "at least 4" in out["error"][2]
    assert "motion m3" in out["error"][3] and "outside" in out["error"][3]
    assert "motion m4" in out["error"][4] and "flies off" in out["error"][4]
    assert out["features"].shape == batch["features"].shape and out["features"].dtype == np.float32
    assert list(out["text"]) == list(batch["text"]) and list(out["ids"]) == list(batch["ids"])
    for index in (1, 2, 3, 4):  # not corrected: returned as they came
        np.testing.assert_array_equal(out["features"][index], batch["features"][index])
    for column in REPORT_COLUMNS + METRIC_COLUMNS:
        assert out[column].shape == (5,) and out[column].dtype == np.float32
    assert 0.0 < out["tracking_error"][0] < 0.03 and np.isnan(out["tracking_error"][1:]).all()
    assert np.isfinite(out["penetration_mm_before"][0]) and np.isnan(out["penetration_mm_before"][1])


def test_corrected_motion_keeps_its_length_and_stays_close(corrector):
    batch = batch_of(procedural("kick"))
    out = corrector(batch)
    length = batch["lengths"][0]
    assert out["status"][0] == "corrected"
    assert not out["features"][0, length:].any()  # the padding stays zero
    before = features_to_joints(batch["features"][0, :length])
    after = features_to_joints(out["features"][0, :length])
    assert np.linalg.norm(after - before, axis=-1).mean() < 0.03
    # Before and after are the physics metrics of the joints the evaluation recovers from the features.
    for phase, joints in (("before", before), ("after", after)):
        for name, value in physics_metrics(joints).items():
            assert out[f"{name}_{phase}"][0] == np.float32(value), (name, phase)


def test_help_is_reported_per_frame_range():
    correction = Correction(np.zeros((6, 22, 3)), "corrected", help=np.array([0, 1, 1, 0, 2, 2]))
    assert correction.help_where == "1-2:1 4-5:2"
    assert Correction(np.zeros((3, 22, 3)), "corrected", help=np.zeros(3, dtype=int)).help_where == ""


# The judge over every procedural family and condition, and over HumanML3D-shaped clips and real
# HumanML3D files: corrected once per module, checked criterion by criterion below.

def clean_motions() -> dict[str, np.ndarray]:
    real = real_motions()
    keys = sorted(real)
    motions = {family: procedural(family) for family in FAMILIES}
    motions.update({f"humanml3d-shaped {family}": humanml3d_shaped(procedural(family), real[keys[i % len(keys)]])
                    for i, family in enumerate(("walk", "jump_in_place", "squat", "kick", "sit_down"))})
    motions.update({f"real {key}": joints for key, joints in real.items()})
    return motions


@cache
def judged() -> tuple:
    corrector = PhysicsCorrector(CorrectConfig())
    rows = []
    for name, clean in clean_motions().items():
        for condition in (CLEAN, *CORRUPTIONS):
            corrupted = clean if condition == CLEAN else CORRUPTIONS[condition](clean, np.random.default_rng(1))
            correction = corrector.correct_joints(corrupted)
            assert correction.status == "corrected", f"{name} {condition}: {correction.error}"
            rows.append(assess_case(name, condition, clean, corrupted, correction.joints))
    return tuple(rows)


def passed(criterion: str, condition: str | None = None) -> tuple[int, int]:
    rows = [row for row in judged() if condition is None or row.condition == condition]
    counts = pass_counts(rows)[criterion]
    return counts["passed"], counts["judged"]


@pytest.mark.parametrize("condition", list(CORRUPTIONS))
def test_each_corruption_loses_most_of_its_own_damage(condition):
    """>= 80 % of the damage to the corruption's own metric removed, on (nearly) every motion."""
    done, judged_rows = passed("own_metric", condition)
    allowed = {"slide": 4}.get(condition, 0)  # measured 20/22: run and a real clip keep some slide
    assert done >= judged_rows - allowed, f"{condition}: {done}/{judged_rows}"


def test_corrected_motions_stay_near_the_clean_ones():
    done, judged_rows = passed("mpjpe")
    # Measured 132 of 132 (130 before one ankle height for both feet; 131 before the output's exposure
    # and the toe's swing pull; 128 with a 4 Hz swing servo, which missed on the real files).
    assert done >= 128, f"{done}/{judged_rows}"


def test_real_humanml3d_files_are_tracked_within_30_mm():
    """The issue's bar for clean input, on the upstream HumanML3D joint files (not made by this project)."""
    rows = [row for row in judged() if row.motion.startswith("real ") and row.condition == CLEAN]
    assert len(rows) == len(real_motions())
    # Measured 25.1 and 28.5 mm (26.3 and 28.4 before the contact plan read the reference's soles; 26.1
    # and 27.4 before one ankle height for both feet; 23.1 and 27.4
    # before the output's exposure and the toe's swing pull; 39.2 and 38.2 with a 4 Hz swing servo;
    # 36.9 and 56.5 with the toe pulled along the floor too).
    assert all(row.mpjpe_mm <= 30.0 for row in rows), {row.motion: round(row.mpjpe_mm, 1) for row in rows}


def test_most_cases_pass_whole():
    done, judged_rows = passed("all")
    # Measured 98 of 132 (also 98 before the contact plan read the reference's soles; 99 before one
    # ankle height for both feet, whose sole tilt had lifted the body 1.2 cm and its swinging toes out
    # of the contact band sooner; 84 before the output's exposure and the toe's swing pull; 70 before
    # the risk-chosen smoothing and the swing-foot servo: docs/results.md).
    assert done >= 95, f"{done}/{judged_rows}"


def test_no_teleports_and_jumps_stay_jumps():
    done, judged_rows = passed("peak_jerk")
    assert done >= judged_rows - 8, f"peak_jerk {done}/{judged_rows}"
    done, judged_rows = passed("pelvis_height")
    # Measured 18 of 22 (20 before the contact plan read the reference's soles): the procedural
    # jump_forward and jump_in_place, the HumanML3D-shaped jump_in_place and real file 000000 peak 5.1-6.5
    # cm low. The first jump of jump_in_place falls 6 cm short either way (its take-off needs help); before,
    # its second jump, tracked with help, reached the height, and file 000000 peaked 4.5 cm low (now 5.3).
    assert done >= judged_rows - 4, f"pelvis_height {done}/{judged_rows}"


@pytest.mark.xfail(strict=True, reason="open (issue 12): tracked walks, runs and side steps gain 0.06-0.19 m/s "
                                       "of foot skating; docs/results.md has the table")
def test_clean_motions_get_no_worse():
    done, judged_rows = passed("other_metrics", CLEAN)
    assert done == judged_rows, f"{done}/{judged_rows}"


def test_the_humanoid_defaults_are_the_configs():
    """HumanoidSettings' defaults (a library call without a config) build the configured humanoid."""
    assert HumanoidSettings() == humanoid_settings(CorrectConfig())
