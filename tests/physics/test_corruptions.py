"""Each corruption damages its own metric; the judge passes a faithful correction and fails bad ones."""

from __future__ import annotations

import numpy as np
import pytest

from scl_ray.motion.constants import FPS
from scl_ray.motion.procedural import generate_motion
from scl_ray.motion.procedural.families import FAMILIES
from scl_ray.motion.skeleton import FOOT_JOINTS, JOINT
from scl_ray.physics.corruptions import (
    CLEAN, CONDITIONS, CORRUPTIONS, CRITERIA, OWN_METRIC, SNAP_JOINTS, assess_case, corrupt_all, format_table,
    mpjpe_mm, pass_counts, tolerance,
)
from scl_ray.physics.metrics import physics_metrics


def procedural(family, seed=0):
    return generate_motion(family, np.random.default_rng(seed)).joints


@pytest.fixture(scope="module")
def walk():
    return procedural("walk")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_corruption_raises_its_own_metric_beyond_tolerance(family):
    clean = procedural(family)
    before = physics_metrics(clean)
    for condition, corrupted in corrupt_all(clean, np.random.default_rng(1)).items():
        if condition == CLEAN:
            continue
        metric = OWN_METRIC[condition]
        damage = physics_metrics(corrupted)[metric] - before[metric]
        assert damage > tolerance(metric, before[metric]), f"{condition}: {metric} rose only {damage:.3f}"


def test_corruptions_are_new_arrays_and_reproducible(walk):
    original = walk.copy()
    for name, corruption in CORRUPTIONS.items():
        first, second = corruption(walk, np.random.default_rng(3)), corruption(walk, np.random.default_rng(3))
        assert first is not walk and first.dtype == np.float64 and first.shape == walk.shape
        np.testing.assert_array_equal(first, second, err_msg=name)
    np.testing.assert_array_equal(walk, original)
    assert list(CORRUPTIONS) == ["sink", "hover", "slide", "noise", "snap"] == list(CONDITIONS[1:])


def test_slide_is_horizontal_at_half_a_metre_per_second(walk):
    offset = CORRUPTIONS["slide"](walk, np.random.default_rng(0)) - walk
    velocity = np.diff(offset, axis=0) * FPS
    np.testing.assert_allclose(velocity[..., 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(velocity, axis=-1), 0.5)
    np.testing.assert_allclose(offset[0], 0.0, atol=1e-12)


def test_snap_lifts_the_legs_15cm_for_3_frames_away_from_the_ends(walk):
    for seed in range(20):
        lift = CORRUPTIONS["snap"](walk, np.random.default_rng(seed)) - walk
        frames = np.flatnonzero(np.abs(lift).sum(axis=(1, 2)) > 0)
        assert len(frames) == 3 and np.all(np.diff(frames) == 1)
        assert frames[0] >= 0.1 * len(walk) and frames[-1] < 0.9 * len(walk)
        np.testing.assert_allclose(lift[frames][:, list(SNAP_JOINTS), 1], 0.15)
        others = [j for j in range(22) if j not in SNAP_JOINTS]
        assert not lift[:, others].any() and not lift[..., [0, 2]].any()
    with pytest.raises(ValueError, match="only 4 frames"):
        CORRUPTIONS["snap"](walk[:4], np.random.default_rng(0))


@pytest.mark.parametrize("family", ["walk", "jump_in_place", "wave"])
def test_an_exact_correction_passes_every_criterion(family):
    clean = procedural(family)
    for condition, corrupted in corrupt_all(clean, np.random.default_rng(1)).items():
        row = assess_case(family, condition, clean, corrupted, clean)
        assert row.passed, (condition, row.checks, row.worse)
        assert (row.checks["own_metric"] is None) == (condition == CLEAN)
        assert (row.checks["pelvis_height"] is None) == (condition != CLEAN)


def test_the_identity_passes_on_clean_input_and_fails_every_corruption(walk):
    for condition, corrupted in corrupt_all(walk, np.random.default_rng(1)).items():
        row = assess_case("walk", condition, walk, corrupted, corrupted)
        assert row.passed == (condition == CLEAN), condition
        if condition != CLEAN:
            assert row.checks["own_metric"] is False and row.removed == pytest.approx(0.0)


def test_a_single_frame_teleport_fails_on_its_jerk_spike(walk):
    teleport = walk.copy()
    teleport[len(walk) // 2] += np.array([0.4, 0.0, 0.0])
    row = assess_case("walk", CLEAN, walk, walk, teleport)
    assert row.checks["peak_jerk"] is False
    assert row.checks["mpjpe"] and row.checks["pelvis_height"]


def test_a_motion_left_sunk_fails_its_own_metric(walk):
    sunk = CORRUPTIONS["sink"](walk, np.random.default_rng(0))
    half_lifted = sunk + np.array([0.0, 0.03, 0.0])  # 60 % of the damage removed, 80 % are needed
    for corrected in (sunk, half_lifted):
        row = assess_case("walk", "sink", walk, sunk, corrected)
        assert row.checks["own_metric"] is False and row.removed < 0.8
    assert assess_case("walk", "sink", walk, sunk, walk + np.array([0.0, -0.005, 0.0])).checks["own_metric"]


def test_extra_skating_fails_the_other_metrics_check():
    clean = procedural("squat")
    skating = clean.copy()
    wobble = 0.02 * np.sin(2 * np.pi * np.arange(len(clean)) / FPS)  # stance feet swaying 2 cm at 1 Hz
    skating[:, list(FOOT_JOINTS), 0] += wobble[:, None]
    row = assess_case("squat", CLEAN, clean, clean, skating)
    assert row.checks["other_metrics"] is False and "skate_mm" in row.worse
    assert row.checks["mpjpe"] and row.checks["peak_jerk"]
    # Where the corruption already skated as much, the same output is no worse than its input.
    assert "skate_mm" not in assess_case("squat", "slide", clean, skating, skating).worse


def test_a_motion_80mm_off_fails_mpjpe_but_a_slide_is_judged_pelvis_relative(walk):
    inputs = corrupt_all(walk, np.random.default_rng(1))
    away = walk + np.array([0.08, 0.0, 0.0])
    assert mpjpe_mm(away, walk) == pytest.approx(80.0)
    assert mpjpe_mm(away, walk, pelvis_relative=True) == pytest.approx(0.0, abs=1e-9)
    for condition in (CLEAN, "hover"):
        row = assess_case("walk", condition, walk, inputs[condition], away)
        assert row.checks["mpjpe"] is False and row.mpjpe_mm == pytest.approx(80.0)
    # Undoing a slide may leave the body elsewhere: only the pose relative to the pelvis counts.
    assert assess_case("walk", "slide", walk, inputs["slide"], away).checks["mpjpe"]
    off_the_pelvis = away.copy()
    off_the_pelvis[:, JOINT["pelvis"]] = walk[:, JOINT["pelvis"]]  # 21 of 22 joints 80 mm off: 76 mm
    assert assess_case("walk", "slide", walk, inputs["slide"], off_the_pelvis).checks["mpjpe"] is False


def test_a_jump_that_no_longer_leaves_the_ground_fails_pelvis_height():
    clean = procedural("jump_in_place")
    grounded = clean.copy()
    grounded[..., 1] = np.minimum(grounded[..., 1], grounded[0, :, 1])  # nothing rises above its start
    row = assess_case("jump_in_place", CLEAN, clean, clean, grounded)
    assert row.pelvis_drop_m > 0.05 and row.checks["pelvis_height"] is False


def test_pass_counts_and_table_summarise_rows(walk):
    inputs = corrupt_all(walk, np.random.default_rng(1))
    rows = [assess_case("walk", condition, walk, corrupted, corrupted) for condition, corrupted in inputs.items()]
    counts = pass_counts(rows)
    assert set(counts) == set(CRITERIA) | {"all"}
    assert counts["all"] == {"passed": 1, "judged": 6}
    assert counts["own_metric"] == {"passed": 0, "judged": 5}
    assert counts["pelvis_height"] == {"passed": 1, "judged": 1}
    table = format_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert "| walk | sink | penetration_mm |" in table[3] and "own_metric" in table[3]
    assert table[2].endswith("| none |")


def test_unknown_condition_is_rejected_with_the_choices(walk):
    with pytest.raises(ValueError, match="'drift'.*'clean', 'sink'"):
        assess_case("walk", "drift", walk, walk, walk)
