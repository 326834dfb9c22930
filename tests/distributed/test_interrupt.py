"""Ctrl-C of `scl-ray sweep` / `run`: exit 130, say how far it got and how to go on, leave no Ray behind."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scl_ray.cli import main

ROOT = Path(__file__).resolve().parents[2]


def command(name: str, tiny: tuple, storage: Path, cache: str, *extra: str) -> list[str]:
    words = [sys.executable, "-m", "scl_ray.cli", name, str(ROOT / "configs" / "quickstart.yaml"),
             "--storage", str(storage), *extra]
    for override in (*tiny, f"data.cache_dir={cache}", "loop.generations=2", "sweep.synthetic_ratio=[0, 0.5]",
                     "sweep.strength=[1]", "sweep.name=interrupt"):
        words += ["--set", override]
    return words


def start(words: list[str]) -> subprocess.Popen:
    """Start `words` in its own process group, as a terminal starts a command: with Ctrl-C's default.

    A shell starts a background job with SIGINT ignored, and an ignored signal stays ignored across
    exec, where Python installs no KeyboardInterrupt handler: a pytest run started with `&` from a
    script started every scl-ray here deaf to SIGINT (the sweep went on to the end, exit 0). A
    handler, unlike SIG_IGN, is reset to the default in the child, so one is set while it starts."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(words, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt(words: list[str], ready) -> tuple[subprocess.CompletedProcess, float]:
    """Start `words` in its own process group, send the group SIGINT (as a terminal's Ctrl-C does) once
    `ready()` holds, and return the finished process and the seconds it took to stop. Every process of
    the group (Ray's too: they inherit it) must be gone by then."""
    process = start(words)
    try:
        deadline = time.monotonic() + 600
        while not ready():
            assert process.poll() is None, f"ended before the interrupt:\n{process.communicate()}"
            assert time.monotonic() < deadline, "not ready within 600 s"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        sent = time.monotonic()
        out, err = process.communicate(timeout=120)
        stopped = time.monotonic() - sent
        time.sleep(1)  # let the last of them be reaped
        left = processes_in_group(process.pid)
    finally:
        if process.poll() is None or processes_in_group(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
    assert not left, f"left running after the interrupt: {left}"
    return subprocess.CompletedProcess(words, process.returncode, out, err), stopped


def processes_in_group(group: int) -> list[str]:
    listing = subprocess.run(["ps", "-eo", "pgid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines()
            if line.split()[0] == str(group) and not line.split()[1].startswith("Z")]


def check_interrupted(result: subprocess.CompletedProcess, stopped_s: float) -> str:
    """The common promises; returns the command the message says to run next."""
    assert result.returncode == 130, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert "Tuner.restore" not in result.stdout + result.stderr
    assert "report (figures" not in result.stdout  # no summary of a run that did not finish
    line = [text for text in result.stderr.splitlines() if text.startswith("scl-ray: interrupted")][-1]
    assert stopped_s < 20, f"took {stopped_s:.1f} s to stop"  # measured about 4 s on 2 busy cores
    return line.split(" with: ", 1)[1]


def test_commands_under_test_take_ctrl_c_even_where_pytest_ignores_it():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job of a script
    try:
        process = start([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT).__name__)"])
        out, err = process.communicate(timeout=60)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert out.strip() == "default_int_handler", err


def test_ctrl_c_of_a_sweep_exits_130_with_the_resume_command(tmp_path, tiny_overrides, tiny_cache):
    experiment = tmp_path / "results" / "interrupt"
    words = command("sweep", tiny_overrides, tmp_path / "results", tiny_cache)
    result, stopped = interrupt(words, lambda: any(experiment.glob("n*/config.yaml")))  # a trial has started
    resume = check_interrupted(result, stopped)
    assert "interrupted before any generation finished" in result.stderr
    assert shlex.split(resume)[:2] == ["scl-ray", "sweep"] and "--resume" in resume
    assert f"--storage {tmp_path / 'results'}" in resume
    for noise in ("Token authentication is enabled", "Configuration for experiment", "View detailed results"):
        assert noise not in result.stdout + result.stderr  # Ray's and Tune's chatter, silenced


@pytest.mark.slow
def test_interrupted_sweep_resumes_with_the_command_it_names(tmp_path, tiny_overrides, tiny_cache):
    experiment = tmp_path / "results" / "interrupt"
    words = command("sweep", tiny_overrides, tmp_path / "results", tiny_cache)
    result, stopped = interrupt(words, lambda: any(experiment.glob("n*/gen_000/DONE")))
    resume = check_interrupted(result, stopped)
    assert "after generation 0" in result.stderr or "with these generations finished" in result.stderr
    arguments = shlex.split(resume)[1:]
    assert main(arguments) == 0
    assert len(list(experiment.glob("n*/gen_*/DONE"))) == 2 * 3


@pytest.mark.slow
def test_ctrl_c_of_a_run_exits_130(tmp_path, tiny_overrides, tiny_cache):
    experiment = tmp_path / "results" / "interrupt"
    words = command("run", tiny_overrides, tmp_path / "results", tiny_cache)
    result, stopped = interrupt(words, lambda: any(experiment.glob("n*/gen_001/DONE")))
    following = check_interrupted(result, stopped)
    assert "interrupted after generation 1 of 2; continue with: scl-ray run" in result.stderr
    assert "--resume" not in following
    assert (result.stdout + result.stderr).count("generation 0:") == 1  # printed once, not also by Train's logger


def test_resume_of_nothing_is_refused_before_anything_starts(tmp_path, tiny_overrides, capsys):
    storage = tmp_path / "never_used"
    arguments = ["sweep", str(ROOT / "configs" / "quickstart.yaml"), "--storage", str(storage), "--resume"]
    for override in tiny_overrides:
        arguments += ["--set", override]
    assert main(arguments) == 2
    assert "nothing to resume at" in capsys.readouterr().err
    assert not storage.exists()


# Interrupted while training generation 0: the claim on the trials' shared generation 0 is left behind
# by a holder that no longer exists; `--resume` must take it over (not wait for it) and end exactly like
# an uninterrupted sweep. (Before the lease, the resume waited 6 hours on the claim.)
GENERATION_ZERO = ("--set", "loop.generations=1", "--set", "train.steps=600")  # about 30 s of generation 0


def generation_zero_sweep(storage: Path, tiny: tuple, cache: str, *extra: str) -> list[str]:
    return [*command("sweep", tiny, storage, cache, *extra), *GENERATION_ZERO]


def run_to_end(words: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run `words` in its own process group; on timeout kill the group and fail."""
    process = subprocess.Popen(words, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"did not finish within {timeout_s:.0f} s (waiting on a dead claim?):\n{out[-2000:]}\n{err[-2000:]}")
    assert process.returncode == 0, err[-3000:]
    return subprocess.CompletedProcess(words, process.returncode, out, err)


def final_metrics(experiment: Path) -> dict[str, dict]:
    """Each trial's last metrics.json without timings."""
    import json

    finals = {}
    for trial in sorted(experiment.glob("n*")):
        assert len(list(trial.glob("gen_*/DONE"))) == 2, f"{trial.name}: not every generation is done"
        metrics = json.loads((trial / "gen_001" / "metrics.json").read_text())
        finals[trial.name] = {k: v for k, v in metrics.items() if not k.startswith("time/")}
    assert len(finals) == 2
    return finals


@pytest.fixture(scope="module")
def own_ray_directory():
    """Ray's temporary directory for these tests' sweeps alone: a `ray start` of another process on this
    machine (its address file in /tmp/ray) would otherwise be joined by their local Ray."""
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay short
    before = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = directory
    yield directory
    if before is None:
        del os.environ["RAY_TMPDIR"]
    else:
        os.environ["RAY_TMPDIR"] = before
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def uninterrupted_generation_zero_sweep(tmp_path_factory, tiny_cache, own_ray_directory):
    from tests.conftest import TINY_OVERRIDES

    storage = tmp_path_factory.mktemp("uninterrupted")
    run_to_end(generation_zero_sweep(storage, TINY_OVERRIDES, tiny_cache), 600)
    return final_metrics(storage / "interrupt")


def in_generation_zero(experiment: Path):
    """Ready once a trial holds the claim on generation 0 and none has finished it."""
    return lambda: any(experiment.glob("_shared/gen0_*/CLAIMED*")) and not any(experiment.glob("n*/gen_000/DONE"))


@pytest.mark.slow
def test_a_sweep_interrupted_in_generation_zero_resumes_to_the_uninterrupted_result(
        tmp_path, tiny_overrides, tiny_cache, uninterrupted_generation_zero_sweep):
    experiment = tmp_path / "results" / "interrupt"
    words = generation_zero_sweep(tmp_path / "results", tiny_overrides, tiny_cache)
    result, stopped = interrupt(words, in_generation_zero(experiment))
    check_interrupted(result, stopped)
    assert not any(experiment.glob("_shared/gen0_*/DONE")), "generation 0 finished before the interrupt"
    run_to_end([*words, "--resume"], 420)
    assert any(experiment.glob("_shared/gen0_*/CLAIMED.1"))  # the claim was taken over, not waited out
    assert final_metrics(experiment) == uninterrupted_generation_zero_sweep


@pytest.mark.slow
def test_a_sweep_killed_in_generation_zero_resumes_to_the_uninterrupted_result(
        tmp_path, tiny_overrides, tiny_cache, uninterrupted_generation_zero_sweep):
    experiment = tmp_path / "results" / "interrupt"
    words = generation_zero_sweep(tmp_path / "results", tiny_overrides, tiny_cache)
    process = subprocess.Popen(words, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        ready, deadline = in_generation_zero(experiment), time.monotonic() + 600
        while not ready():
            assert process.poll() is None and time.monotonic() < deadline, "ended before it could be killed"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    time.sleep(1)
    assert not processes_in_group(process.pid)
    assert not any(experiment.glob("_shared/gen0_*/DONE")), "generation 0 finished before the kill"
    run_to_end([*words, "--resume"], 420)
    assert any(experiment.glob("_shared/gen0_*/CLAIMED.1"))
    assert final_metrics(experiment) == uninterrupted_generation_zero_sweep
