"""A sweep on a real S3 endpoint (moto's server): run, report, evaluate, SIGKILL and resume (slow).

Every command runs as its own process, as a user would run it; each starts its own local Ray, whose
workers inherit the endpoint's environment that the `s3_bucket` fixture set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scl_ray import storage

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
NAME = "s3sweep"
TRIALS = ("n16_lambda0.5_strength1_seed0", "n16_lambda0_strength0_seed0")
LAST = 2  # loop.generations of TINY_OVERRIDES: generations 0, 1 and 2
pytestmark = pytest.mark.slow


def overrides(tiny: tuple, cache: str) -> list[str]:
    words = []
    for override in (*tiny, f"data.cache_dir={cache}", "sweep.synthetic_ratio=[0,0.5]", "sweep.strength=[1]",
                     f"sweep.name={NAME}"):
        words += ["--set", override]
    return words


def scl_ray(*words: str) -> list[str]:
    return [sys.executable, "-m", "scl_ray.cli", *words]


def run(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, timeout=540, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command[3:5])} failed:\n{result.stderr[-3000:]}"
    return result


def comparable(metrics: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items() if not k.startswith("time/")}


def final_metrics(experiment: str) -> dict[str, dict]:
    finals = {}
    for trial in TRIALS:
        done = [g for g in range(LAST + 1) if storage.exists(storage.join(experiment, trial, f"gen_{g:03d}", "DONE"))]
        assert done == list(range(LAST + 1)), f"{trial}: generations {done} done"
        finals[trial] = comparable(storage.read_json(storage.join(experiment, trial, f"gen_{LAST:03d}", "metrics.json")))
    return finals


@pytest.fixture(scope="module")
def uninterrupted(tiny_overrides, tiny_cache, s3_bucket):
    """One uninterrupted sweep on S3: (experiment URI, the overrides every command of this file uses)."""
    prefix = f"{s3_bucket}/uninterrupted-{os.getpid()}"
    words = overrides(tiny_overrides, tiny_cache)
    run(scl_ray("sweep", QUICKSTART, "--storage", prefix, *words))
    return storage.join(prefix, NAME), words


def test_sweep_report_and_evaluate_on_s3(uninterrupted, tmp_path):
    experiment, words = uninterrupted
    final_metrics(experiment)
    assert storage.exists(storage.join(experiment, "report", "summary.md"))  # the sweep's own report
    assert any(name.startswith("events.out.tfevents") for name in storage.list_dir(storage.join(experiment, TRIALS[0])))

    report = storage.join(experiment, "report-again")
    result = run(scl_ray("report", experiment, "--out", report))
    assert "corrected" in result.stdout and storage.exists(storage.join(report, "summary.csv"))
    assert any(name.startswith("fid_") for name in storage.list_dir(report))

    generation = storage.join(experiment, TRIALS[0], f"gen_{LAST:03d}")
    out = tmp_path / "metrics.json"
    run(scl_ray("evaluate", storage.join(generation, "eval_samples.parquet"), "--config", QUICKSTART, *words,
                "--out", str(out)))
    evaluated = json.loads(out.read_text())["eval_samples"]
    recorded = storage.read_json(storage.join(generation, "metrics.json"))
    assert evaluated["fid"] == pytest.approx(recorded["fid"], rel=1e-5)


def test_sigkilled_sweep_on_s3_resumes_to_the_same_result(uninterrupted, s3_prefix):
    reference, words = uninterrupted
    experiment = storage.join(s3_prefix, NAME)
    process = subprocess.Popen(scl_ray("sweep", QUICKSTART, "--storage", s3_prefix, *words), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 420
        while not any(storage.exists(storage.join(experiment, trial, "gen_001", "DONE")) for trial in TRIALS):
            assert process.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    markers = [storage.join(experiment, trial, f"gen_{g:03d}", "DONE") for trial in TRIALS for g in range(LAST + 1)]
    finished_before = {m: (storage.read_text(m), storage.age_s(m)) for m in markers if storage.exists(m)}
    assert finished_before and len(finished_before) < len(markers), "killed mid-sweep"
    started = time.time()

    run(scl_ray("sweep", QUICKSTART, "--storage", s3_prefix, *words, "--resume"))
    for marker, (text, age) in finished_before.items():  # done once: not rewritten by the resume
        assert storage.read_text(marker) == text and storage.age_s(marker) > time.time() - started, marker
    assert final_metrics(experiment) == final_metrics(reference)
