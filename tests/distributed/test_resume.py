"""A sweep killed with SIGKILL in the middle and resumed ends exactly like an uninterrupted one (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def sweep_command(tiny: tuple, storage: Path, cache: Path, *extra: str) -> list[str]:
    overrides = [*tiny, f"data.cache_dir={cache}", "loop.generations=3", "sweep.synthetic_ratio=[0, 0.5]",
                 "sweep.strength=[1]", "sweep.name=resume"]
    command = [sys.executable, "-m", "scl_ray.cli", "sweep", str(ROOT / "configs" / "quickstart.yaml"),
               "--storage", str(storage), *extra]
    for override in overrides:
        command += ["--set", override]
    return command


def final_metrics(storage: Path) -> dict[str, dict]:
    finals = {}
    for trial in sorted((storage / "resume").glob("n*")):
        generations = sorted(trial.glob("gen_*/DONE"))
        assert len(generations) == 4, f"{trial.name}: {len(generations)} generations done"
        finals[trial.name] = (trial / "gen_003" / "metrics.json").read_text()
    return finals


def comparable(metrics_json: str) -> dict:
    import json

    return {k: round(v, 6) if isinstance(v, float) else v  # the evaluator's hash is a string
            for k, v in json.loads(metrics_json).items() if not k.startswith("time/")}


def test_sigkilled_sweep_resumes_to_the_same_result(tmp_path, tiny_overrides):
    cache = tmp_path / "cache"
    reference = tmp_path / "reference"
    subprocess.run(sweep_command(tiny_overrides, reference, cache), check=True, timeout=900, capture_output=True)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(sweep_command(tiny_overrides, interrupted, cache), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list((interrupted / "resume").glob("n*/gen_001/DONE")):
            assert process.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished_before = {path: path.stat().st_mtime_ns for path in (interrupted / "resume").glob("n*/gen_*/DONE")}
    assert finished_before and len(finished_before) < 8

    subprocess.run(sweep_command(tiny_overrides, interrupted, cache, "--resume"), check=True, timeout=900, capture_output=True)
    for path, mtime in finished_before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone"
    resumed, uninterrupted = final_metrics(interrupted), final_metrics(reference)
    assert resumed.keys() == uninterrupted.keys()
    for trial in resumed:
        assert comparable(resumed[trial]) == comparable(uninterrupted[trial]), trial
