"""make_report on a small fake results directory whose every value is known in closed form."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scl_ray.config import Config, LoopConfig, save_config
from scl_ray.loop.plan import trial_name
from scl_ray.report import ReportError, format_summary, load_results, make_report
from scl_ray.report.figures import metric_figure
from scl_ray.report.metrics import best_value, better
from scl_ray.report.paired import CLOSER, FARTHER, UNRESOLVED, Interval, compare, verdict
from scl_ray.report.results import align, group_by_condition, seed_spread
from scl_ray.report.tables import late_mean

GENERATIONS = 4  # generations 0..3 finished
RATIOS = (0.5, 1.0)
# (synthetic_ratio, strength, seed) of every trial: baselines of two strengths are one condition.
TRIALS = ([(0.0, 1.0, 0), (0.0, 0.0, 1)]
          + [(ratio, strength, seed) for ratio in RATIOS for strength in (0.0, 1.0) for seed in (0, 1)])
EVALUATOR = "0123456789abcdef"
TOYS = [(corrector, gamma, seed) for corrector in ("histogram", "mixture") for gamma in (0.0, 1.0) for seed in (0, 1)]


def fid(ratio: float, strength: float, seed: int, generation: int) -> float:
    """Baselines stay flat, self-consuming loops drift up with lambda, corrected ones dip at generation 2."""
    if ratio == 0:
        drift = 0.0
    else:
        drift = 0.5 * ratio * generation if strength == 0 else 0.3 * (generation - 2) ** 2
    return 1.0 + drift + 0.1 * seed


def r_precision(ratio: float, strength: float, seed: int, generation: int) -> float:
    return 0.6 - 0.05 * ratio * abs(generation - 1) - 0.01 * seed


def metrics(ratio: float, strength: float, seed: int, generation: int) -> dict[str, float]:
    values = {"generation": float(generation), "evaluator": EVALUATOR, "fid": fid(ratio, strength, seed, generation),
              "r_precision_top1": 0.3, "r_precision_top3": r_precision(ratio, strength, seed, generation),
              "matching_score": 3.0 + 0.1 * generation, "diversity": 9.0 - ratio * generation,
              "multimodality": 2.0 + seed, "physics/penetration": 0.02 * (generation + 1) * (1 - strength / 2),
              # 95% intervals around FID, 0.2 below and 0.3 above (half-width 0.25), and around penetration.
              "fid_ci_low": fid(ratio, strength, seed, generation) - 0.2,
              "fid_ci_high": fid(ratio, strength, seed, generation) + 0.3,
              "physics/penetration_ci_low": 0.0, "physics/penetration_ci_high": 0.1,
              "physics/skate": 0.1, "train/loss": 1.0 / (generation + 1),
              "time/train_s": 2.0, "time/evaluate_s": 1.0, "time/generation_s": 4.0}
    if ratio > 0 and generation > 0:
        values.update({"time/sample_s": 0.5, "time/correct_s": 0.4 * strength, "correction/corrected": 12.0})
    return values


def write_results(root) -> None:
    save_config(Config(), root / "config.yaml")  # the sweep's own config is not a trial
    for ratio, strength, seed in TRIALS:
        loop = LoopConfig(synthetic_ratio=ratio, strength=strength, train_size=64, seed=seed, generations=50)
        trial = root / trial_name(loop)
        save_config(Config(loop=loop), trial / "config.yaml")
        for generation in range(GENERATIONS):
            (trial / f"gen_{generation:03d}").mkdir(parents=True)
            (trial / f"gen_{generation:03d}" / "metrics.json").write_text(
                json.dumps(metrics(ratio, strength, seed, generation)))
            (trial / f"gen_{generation:03d}" / "DONE").write_text("done\n")
    # A generation still running (metrics written, DONE not yet) is not part of the results.
    running = root / trial_name(LoopConfig(synthetic_ratio=1.0, strength=1.0, train_size=64, seed=0)) / "gen_004"
    running.mkdir()
    (running / "metrics.json").write_text(json.dumps(metrics(1.0, 1.0, 0, 4) | {"fid": -100.0}))
    for corrector, gamma, seed in TOYS:
        w2 = [0.5 * (1 + seed) / (1 + gamma * g) for g in range(11)]
        toy = root / "toy" / f"{corrector}_gamma{gamma:g}_seed{seed}"
        toy.mkdir(parents=True)
        (toy / "toy_w2.json").write_text(json.dumps({"gamma": gamma, "corrector": corrector, "seed": seed, "w2": w2}))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_results(root)
    return root, Path(make_report(root))


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_lands_in_results_report_with_every_expected_figure(report):
    root, out = report
    assert out == root / "report"
    expected = {f"{m}_n64.png" for m in ("fid", "r_precision_top3", "matching_score", "diversity", "multimodality",
                                         "physics_penetration", "physics_skate")} | {"timing.png", "toy_w2.png"}
    assert {path.name for path in out.glob("*.png")} == expected
    for name in expected:
        pixels = np.asarray(Image.open(out / name).convert("L"), dtype=float)
        assert pixels.std() > 10, f"{name} looks blank"


def test_summary_csv_has_one_row_per_trial_with_final_and_best(report):
    root, out = report
    rows = read_csv(out / "summary.csv")
    assert len(rows) == len(TRIALS)
    columns = set(rows[0])
    assert {"trial", "arm", "synthetic_ratio", "strength", "train_size", "seed", "last_generation",
            "fid_final", "fid_best", "r_precision_top3_best", "physics/penetration_best", "diversity_final"} <= columns
    assert "diversity_best" not in columns and "multimodality_best" not in columns
    assert "train/loss_final" not in columns and "correction/corrected_final" not in columns
    last = GENERATIONS - 1
    for row in rows:
        ratio, strength, seed = float(row["synthetic_ratio"]), float(row["strength"]), int(row["seed"])
        history = [metrics(ratio, strength, seed, g) for g in range(GENERATIONS)]
        assert row["arm"] == ("baseline" if ratio == 0 else "self-consuming" if strength == 0 else "corrected")
        assert int(row["last_generation"]) == last and int(row["planned_generations"]) == 50
        assert float(row["fid_final"]) == pytest.approx(fid(ratio, strength, seed, last))
        assert float(row["fid_best"]) == pytest.approx(min(m["fid"] for m in history))
        assert float(row["fid_late"]) == pytest.approx(fid(ratio, strength, seed, last))  # 4 generations: the last
        assert float(row["r_precision_top3_best"]) == pytest.approx(max(m["r_precision_top3"] for m in history))
        assert float(row["physics/penetration_best"]) == pytest.approx(min(m["physics/penetration"] for m in history))
        assert float(row["diversity_final"]) == pytest.approx(history[-1]["diversity"])
        assert float(row["fid_ci_low_final"]) == pytest.approx(fid(ratio, strength, seed, last) - 0.2)
        assert float(row["physics/penetration_ci_high_final"]) == 0.1 and row["diversity_ci_low_final"] == ""
        assert not any(column.startswith("time/") or column.endswith("_s") for column in row)  # reproducible
        assert row["evaluator"] == EVALUATOR
    corrected = next(r for r in rows if r["arm"] == "corrected")
    assert float(corrected["fid_best"]) < float(corrected["fid_final"])  # the dip at generation 2


def test_summary_md_tables_and_figure_links(report):
    root, out = report
    text = (out / "summary.md").read_text()
    assert f"{len(TRIALS)} loop trials, {len(TOYS)} toy runs" in text
    trial_lines = [line for line in text.splitlines() if line.startswith("| n64_")]
    assert len(trial_lines) == len(TRIALS)
    assert "FID final" in text and "FID best" in text
    # Means over seeds: baselines of both strengths are one row of 2 seeds; fid at generation 3 is 1.0 and 1.1.
    baseline = next(line for line in text.splitlines() if "| baseline |" in line)
    assert "| 2 |" in baseline and "1.05 ± 0.071 (CI ± 0.25)" in baseline and "(CI ± 0.05)" in baseline
    assert "| 9 ± 0 |" in baseline  # diversity: recorded without an interval
    assert "![fid_n64](fid_n64.png)" in text and "![toy_w2](toy_w2.png)" in text
    assert "## Late values (mean over the last quarter of the generations)" in text


def test_corrected_is_compared_with_the_self_consuming_loop_of_the_same_seed(report):
    root, _ = report
    trials = load_results(root).trials
    found = {(c.synthetic_ratio, c.metric): c for c in compare(trials, ["fid", "r_precision_top3",
                                                                        "physics/penetration", "diversity"])}
    # Late = generation 3. FID: corrected 1.3 + 0.1 seed, self-consuming 1 + 1.5 lambda + 0.1 seed, baseline
    # 1 + 0.1 seed: the difference is 0.3 - 1.5 lambda in both seeds, and so is the change of the gap.
    for ratio in RATIOS:
        fid_row = found[(ratio, "fid")]
        assert fid_row.seeds == (0, 1) and fid_row.strength == 1.0 and fid_row.better_in == 2
        assert fid_row.difference.mean == pytest.approx(0.3 - 1.5 * ratio)
        assert fid_row.difference.low == pytest.approx(0.3 - 1.5 * ratio)  # no spread over seeds
        assert fid_row.gap_change.mean == pytest.approx(0.3 - 1.5 * ratio) and fid_row.verdict == CLOSER
    # R-precision does not depend on the strength: no difference, not resolved, better in no seed.
    assert found[(1.0, "r_precision_top3")].difference.mean == pytest.approx(0.0)
    assert found[(1.0, "r_precision_top3")].verdict == UNRESOLVED and found[(1.0, "r_precision_top3")].better_in == 0
    # Penetration 0.04 (corrected) and 0.08 (self-consuming); the baselines are 0.04 (seed 0, strength 1) and
    # 0.08 (seed 1, strength 0): the gap changes by -0.04 and +0.04, so the mean is 0 and unresolved.
    penetration = found[(1.0, "physics/penetration")]
    assert penetration.gap_change.mean == pytest.approx(0.0) and penetration.verdict == UNRESOLVED
    assert penetration.gap_change.high == pytest.approx(12.706 * 0.04, rel=1e-3)  # t(0.975, 1) * sd / sqrt(2)
    assert found[(1.0, "diversity")].better_in is None  # no direction


def test_the_paired_table_is_in_the_report(report):
    _, out = report
    text = (out / "summary.md").read_text()
    assert "## Corrected against self-consuming, paired by seed (late values)" in text
    row = next(line for line in text.splitlines() if line.startswith("| 64 | 1 | 1 | FID |"))
    assert "-1.2 [-1.2, -1.2]" in row and "2 of 2" in row and row.rstrip(" |").endswith(CLOSER)


def test_seed_interval_is_students_t_and_the_verdict_needs_the_interval_off_zero():
    interval = Interval.of([1.0, 2.0, 3.0, np.nan])
    assert (interval.mean, interval.seeds) == (2.0, 3)
    assert interval.high - 2.0 == pytest.approx(4.303 / np.sqrt(3), rel=1e-3)  # t(0.975, 2) = 4.303
    assert verdict(Interval.of([0.1, 0.12, 0.11, 0.1])) == FARTHER
    assert verdict(Interval.of([-0.1, -0.12, -0.11, -0.1])) == CLOSER
    assert verdict(Interval.of([0.1, 0.2])) == UNRESOLVED  # t(0.975, 1) = 12.7: two seeds rarely decide
    assert verdict(Interval.of([-0.1, 0.2, 0.1])) == UNRESOLVED and verdict(Interval.of([-0.5])) == UNRESOLVED


def test_late_mean_is_the_mean_of_the_finite_values_in_the_last_quarter():
    assert late_mean(np.arange(21.0)) == pytest.approx(18.0)  # generations 16..20
    assert late_mean(np.array([1.0, 2.0])) == 2.0
    assert late_mean(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, np.nan])) == 7.0
    assert np.isnan(late_mean(np.array([1.0, np.nan])))


def test_toy_summary_is_the_mean_final_w2_over_seeds(report):
    root, out = report
    rows = read_csv(out / "toy_summary.csv")
    assert [(row["corrector"], float(row["gamma"])) for row in rows] == sorted({(c, g) for c, g, _ in TOYS})
    for row in rows:
        gamma = float(row["gamma"])
        expected = np.mean([0.5 * (1 + seed) / (1 + gamma * 10) for seed in (0, 1)])
        assert float(row["final_w2_mean"]) == pytest.approx(expected) and row["seeds"] == "2"


def test_format_summary_is_a_compact_table(report):
    root, out = report
    lines = format_summary(out).splitlines()
    assert lines[0].split()[:6] == ["arm", "n", "λ", "strength", "seed", "gen"]
    assert sum(line.startswith("corrected") for line in lines) == 4
    assert any(line.startswith("mixture") for line in lines)
    with pytest.raises(ReportError, match="make the report first"):
        format_summary(root)


def test_baseline_is_drawn_in_every_synthetic_ratio_panel(report):
    root, _ = report
    groups = group_by_condition(load_results(root).trials)
    figure = metric_figure("fid", 64, groups)
    panels = figure.axes
    assert [axes.get_title() for axes in panels] == ["λ = 0.5", "λ = 1"]
    for axes in panels:
        labels = [line.get_label() for line in axes.get_lines() if not line.get_label().startswith("_")]
        assert labels == ["baseline (2 seeds)", "self-consuming (2 seeds)", "corrected (2 seeds)"]
    corrected = next(line for line in panels[1].get_lines() if line.get_label() == "corrected (2 seeds)")
    mean = [np.mean([fid(1.0, 1.0, s, g) for s in (0, 1)]) for g in range(GENERATIONS)]
    np.testing.assert_allclose(corrected.get_ydata(), mean)
    # Its band is the mean interval, 0.2 below to 0.3 above; the seeds' min and max are dotted lines.
    band = panels[1].collections[2].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(min(mean) - 0.2) and band.max() == pytest.approx(max(mean) + 0.3)
    dotted = [line for line in panels[1].get_lines() if line.get_linestyle() == ":" and line.get_color() == corrected.get_color()]
    np.testing.assert_allclose(dotted[1].get_ydata(), [fid(1.0, 1.0, 1, g) for g in range(GENERATIONS)])
    assert "95% bootstrap CI" in figure._suptitle.get_text()


def test_physics_errors_are_lower_is_better_but_speed_has_no_best():
    assert better("physics/skate_mm") == better("physics/bone_mm") == better("physics/peak_jerk") == "lower"
    assert better("physics/speed") is None and better("diversity") is None
    assert best_value("physics/bone_mm", np.array([0.4, 0.2, 0.3])) == 0.2
    assert np.isnan(best_value("physics/speed", np.array([0.4, 0.5])))


def test_seed_spread_ignores_missing_values():
    x, matrix = align([(np.array([0, 1, 2]), np.array([1.0, 2.0, 3.0])), (np.array([0, 1]), np.array([3.0, np.nan]))])
    assert list(x) == [0, 1, 2] and np.isnan(matrix[1, 2])
    mean, low, high = seed_spread(matrix)
    np.testing.assert_allclose(mean, [2.0, 2.0, 3.0])
    np.testing.assert_allclose(low, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(high, [3.0, 2.0, 3.0])


def test_results_on_a_uri_are_read_the_same(report, tmp_path):
    root, _ = report
    from_uri = load_results(f"file://{root}")
    assert len(from_uri.trials) == len(TRIALS) and len(from_uri.toys) == len(TOYS)
    # A URI's report goes beside its results, on the same storage.
    report_dir = make_report(f"file://{root}")
    assert report_dir == f"file://{root}/report"
    assert (root / "report" / "summary.md").is_file() and (root / "report" / "summary.csv").is_file()
    assert "fid" in format_summary(report_dir).lower()


def test_trials_of_different_evaluators_are_refused_unless_asked_for(tmp_path, capsys):
    from scl_ray.cli import main

    write_results(tmp_path)
    other = LoopConfig(synthetic_ratio=0.5, strength=1.0, train_size=64, seed=1)
    unrecorded = LoopConfig(synthetic_ratio=1.0, strength=0.0, train_size=64, seed=0)
    path = tmp_path / trial_name(other) / "gen_003" / "metrics.json"
    path.write_text(json.dumps(metrics(0.5, 1.0, 1, 3) | {"evaluator": "fedcba9876543210"}))
    path = tmp_path / trial_name(unrecorded) / "gen_000" / "metrics.json"
    path.write_text(json.dumps({k: v for k, v in metrics(1.0, 0.0, 0, 0).items() if k != "evaluator"}))
    assert main(["report", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "scored by different evaluators" in error and "--allow-mixed-evaluators" in error
    assert f"fedcba9876543210: {trial_name(other)}" in error
    assert f"no evaluator recorded: {trial_name(unrecorded)}" in error
    assert f"{EVALUATOR}: " in error and not (tmp_path / "report").exists()
    assert main(["report", str(tmp_path), "--allow-mixed-evaluators"]) == 0
    rows = {row["trial"]: row["evaluator"] for row in read_csv(tmp_path / "report" / "summary.csv")}
    assert rows[trial_name(other)] == f"{EVALUATOR}+fedcba9876543210"
    assert rows[trial_name(unrecorded)] == f"{EVALUATOR}+unrecorded"
    assert sum(evaluator == EVALUATOR for evaluator in rows.values()) == len(TRIALS) - 2
    with pytest.raises(ReportError, match="'evaluator' is 3.0; it must be the evaluator's hash"):
        path.write_text(json.dumps(metrics(1.0, 0.0, 0, 0) | {"evaluator": 3.0}))
        load_results(tmp_path)


def test_nothing_to_report_says_what_was_expected(tmp_path):
    (tmp_path / "trial" / "gen_000").mkdir(parents=True)
    (tmp_path / "trial" / "config.yaml").write_text("loop: {seed: 0}\n")
    with pytest.raises(ReportError, match=rf"no results found under {tmp_path}.*gen_NNN/metrics.json.*toy_w2.json"):
        make_report(tmp_path)
    with pytest.raises(ReportError, match="does not exist"):
        make_report(tmp_path / "missing")


def test_malformed_files_are_named(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy_w2.json").write_text(json.dumps({"gamma": 1.0, "seed": 0, "w2": [1.0]}))
    with pytest.raises(ReportError, match=r"toy_w2.json: run 0 lacks corrector"):
        load_results(tmp_path)
    trial = tmp_path / "trial"
    (trial / "gen_000").mkdir(parents=True)
    (trial / "config.yaml").write_text("loop: {strength: 2.0}\n")
    (trial / "gen_000" / "metrics.json").write_text("{}")
    (trial / "gen_000" / "DONE").write_text("")
    (tmp_path / "toy" / "toy_w2.json").unlink()
    with pytest.raises(ReportError, match=r"trial/config.yaml is not a valid scl-ray config: loop.strength"):
        load_results(tmp_path)
    (trial / "config.yaml").write_text("loop: {strength: 1.0}\n")
    (trial / "gen_000" / "metrics.json").write_text('{"fid": 1.0,')
    with pytest.raises(ReportError, match=r"trial/gen_000/metrics.json is not valid JSON"):
        load_results(tmp_path)
    (trial / "gen_000" / "metrics.json").write_text('{"fid": "low"}')
    with pytest.raises(ReportError, match=r"gen_000/metrics.json: metric 'fid' is 'low'"):
        load_results(tmp_path)


def test_generations_without_evaluation_are_skipped_in_figures_and_tables(tmp_path):
    """evaluate.every = 2 over 5 generations: metrics.json of generations 1 and 3 hold no evaluation
    metrics; the curve joins the evaluated generations, and final and late come from those."""
    from scl_ray.report.tables import trial_rows

    save_config(Config(), tmp_path / "config.yaml")
    loop = LoopConfig(synthetic_ratio=1.0, strength=1.0, train_size=64, seed=0, generations=4)
    trial = tmp_path / trial_name(loop)
    save_config(Config(loop=loop), trial / "config.yaml")
    for generation in range(5):
        values = metrics(1.0, 1.0, 0, generation)
        if generation % 2:
            values = {k: v for k, v in values.items() if k in ("generation", "evaluator") or "/" in k}
        (trial / f"gen_{generation:03d}").mkdir(parents=True)
        (trial / f"gen_{generation:03d}" / "metrics.json").write_text(json.dumps(values))
        (trial / f"gen_{generation:03d}" / "DONE").write_text("done\n")
    trials = load_results(tmp_path).trials
    assert np.isnan(trials[0].series("fid")[[1, 3]]).all()
    (row,) = trial_rows(trials, ["fid"])
    assert row["fid_final"] == fid(1.0, 1.0, 0, 4) and row["fid_late"] == fid(1.0, 1.0, 0, 4)
    (axes,) = metric_figure("fid", 64, group_by_condition(trials)).axes
    (line,) = [line for line in axes.get_lines() if line.get_label().startswith("corrected")]
    np.testing.assert_array_equal(line.get_xdata(), [0, 2, 4])
    np.testing.assert_allclose(line.get_ydata(), [fid(1.0, 1.0, 0, g) for g in (0, 2, 4)])
