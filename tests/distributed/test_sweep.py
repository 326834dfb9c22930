"""Ray Tune sweeps: a 2-trial grid, a retried trial, a diverged trial, and config errors before Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scl_ray.distributed.sweep import expand_trials, experiment_dir, run_sweep
from scl_ray.loop.plan import trial_name
from scl_ray.loop.state import TrialDirectory
from scl_ray.report import make_report

ROOT = Path(__file__).resolve().parents[2]


def test_grid_expansion_dedupes_baselines(tiny_config):
    config = tiny_config("sweep.synthetic_ratio=[0, 0.5]", "sweep.strength=[0, 1]", "sweep.seeds=[0, 1]")
    loops = expand_trials(config)
    assert len(loops) == 6  # 2 baselines (one per seed) + 2 x 2 arms at lambda 0.5
    assert len({trial_name(loop) for loop in loops}) == 6


def test_two_trial_sweep_shares_generation_zero_and_reports(ray_local, tiny_config):
    config = tiny_config("sweep.synthetic_ratio=[0, 0.5]", "sweep.strength=[1]", "sweep.seeds=[0]")
    results = run_sweep(config)
    assert not results.errors
    experiment = experiment_dir(config)
    histories = {}
    for loop in expand_trials(config):
        trial = TrialDirectory(Path(experiment) / trial_name(loop))
        assert trial.done_generations() == [0, 1, 2]
        histories[loop.synthetic_ratio] = trial.metrics_history()
    assert histories[0.0][0]["fid"] == histories[0.5][0]["fid"]  # one generation 0, shared
    assert sum("time/shared_generation_zero_s" in h[0] for h in histories.values()) == 1
    assert "correction/corrected" in histories[0.5][1] and "correction/corrected" not in histories[0.0][1]
    report = Path(make_report(experiment))
    assert (report / "summary.csv").is_file() and list(report.glob("fid_*.png"))


def test_failed_trial_is_retried_from_its_generation_and_diverged_trial_fails_alone(
        ray_local, tiny_config, tmp_path):
    grid = ("sweep.synthetic_ratio=[0, 0.5]", "sweep.strength=[1]")
    loops = {loop.synthetic_ratio: loop for loop in expand_trials(tiny_config(*grid))}
    marker = tmp_path / "failed-once"
    config = tiny_config(*grid, "sweep.max_failures=1", f"testing.fault={trial_name(loops[0.5])}:2:raise:{marker}")
    results = run_sweep(config)
    assert not results.errors
    assert marker.exists(), "the fault was injected"
    trial = TrialDirectory(Path(experiment_dir(config)) / trial_name(loops[0.5]))
    assert trial.done_generations() == [0, 1, 2]
    done_1 = Path(trial.file(1, "DONE")).stat().st_mtime
    assert done_1 <= marker.stat().st_mtime, "generation 1 was not redone after the failure at generation 2"

    diverging = tiny_config(*grid, "sweep.name=diverge", f"testing.fault={trial_name(loops[0.5])}:1:nonfinite")
    results = run_sweep(diverging)
    errors = [str(error) for error in results.errors]
    assert len(errors) == 1 and "all 8 synthetic samples are non-finite" in errors[0]
    baseline = TrialDirectory(Path(experiment_dir(diverging)) / trial_name(loops[0.0]))
    assert baseline.done_generations() == [0, 1, 2]


def test_bad_config_fails_before_ray_starts():
    result = subprocess.run(
        [sys.executable, "-m", "scl_ray.cli", "sweep", str(ROOT / "configs" / "quickstart.yaml"),
         "--set", "loop.strength=3"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "loop.strength: must be in [0.0, 1.0], got 3.0" in result.stderr
    assert "Traceback" not in result.stderr and "Ray" not in result.stdout + result.stderr


def test_the_done_count_goes_on_after_a_resume(capsys):
    from scl_ray.distributed.sweep import _generation_printer

    class FakeTrial:
        def __init__(self, name, status):
            self.name, self.status = name, status

        def __str__(self):
            return self.name

    restored, running = FakeTrial("a", "TERMINATED"), FakeTrial("b", "RUNNING")
    printer = _generation_printer()(total=2)
    printer.on_trial_complete(0, [restored, running], running)
    assert capsys.readouterr().out == "[b] done (2/2 trials)\n"
