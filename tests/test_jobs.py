"""`ray job submit` of a tiny sweep to a real Ray head started with `ray start` (slow: 65-80 s on 2 cores).

This is docs/cluster.md's "Start, watch, submit" on one machine: a head with a dashboard and token
authentication, the repository uploaded with `--working-dir .`, and `scl-ray sweep` as the job's
entrypoint, joining the job's cluster through the RAY_ADDRESS that `ray job submit` sets.

Token authentication in Ray 2.60 depends on the environment of each command: `ray start` turns it on
when RAY_AUTH_MODE=token, or when RAY_AUTH_MODE is unset and a token exists (~/.ray/auth_token), while
`ray job` sends a token only when RAY_AUTH_MODE=token. So every command here runs with RAY_AUTH_MODE=token
and a fresh RAY_AUTH_TOKEN (which Ray prefers to ~/.ray/auth_token): the same behaviour whatever the
machine holds in ~/.ray.

The head runs as `ray start --head --block` and is stopped by signalling that process: `ray stop` has no
address or temp-dir option and would stop every Ray on the machine, other test sessions' included.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from scl_ray.config import load_config
from scl_ray.distributed.sweep import expand_trials
from scl_ray.loop.plan import trial_name
from scl_ray.loop.state import METRICS, MODEL, TrialDirectory
from tests.conftest import TINY_OVERRIDES

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/stat").is_file(),
                                                   reason="stopping the head reads /proc (Linux)")]

ROOT = Path(__file__).resolve().parents[1]
HEAD_START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 600
STOP_GRACE_S = 60
MAX_UPLOAD_BYTES = 20 * 2**20
NOT_UPLOADED = (".git", ".venv", ".venv-ci", "results", "runs", ".device-bundle", "scl_ray.egg-info")


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free right now (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ray_environment(token: str) -> dict[str, str]:
    """The environment of every `ray` command: token auth on, this venv's executables first on PATH.

    The head's processes, and so the job's driver, inherit it: `scl-ray` must be on their PATH.
    No drain on SIGTERM: it is for Ray Serve and would hold the head's stop for its whole 30 s.
    """
    env = {name: value for name, value in os.environ.items()
           if name not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def _executable(name: str, env: dict[str, str]) -> str:
    path = shutil.which(name, path=env["PATH"])
    if path is None:
        pytest.fail(f"`{name}` is not on PATH ({env['PATH']}): install the project with `pip install -e .`")
    return path


def _http_status(url: str, token: str | None = None) -> int | None:
    """HTTP status of GET url (with a bearer token if given), None while nothing answers."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _tail(text: str | bytes | None, chars: int = 4000) -> str:
    text = text.decode(errors="replace") if isinstance(text, bytes) else text or ""
    return text[-chars:]


def _run(command: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run a `ray` command from the repository root; on a timeout, fail with the end of its output."""
    try:
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"`{' '.join(command[1:4])}` ran past {timeout_s} s:\n"
                    f"{_tail(expired.stdout)}\n{_tail(expired.stderr)}")


@contextmanager
def ray_head(temp_dir: Path, env: dict[str, str], killed: list[int]) -> Iterator[str]:
    """A 4-CPU Ray head with a dashboard on free ports; yields the dashboard URL, then stops the head
    and adds to `killed` the ids of its processes that outlived the stop's grace period.

    Every port is picked free, because Ray's defaults (client server 10001, agent 52365) may be taken
    by another Ray on the same machine.
    """
    (gcs, dashboard, client, agent_http, agent_grpc, runtime_env_agent, metrics, node_manager,
     object_manager) = _free_ports(9)
    command = [
        _executable("ray", env), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=4",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env_agent}",
        f"--metrics-export-port={metrics}", f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}", f"--object-store-memory={256 * 2**20}",
        f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]
    log_path = temp_dir / "ray-start.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=temp_dir)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for_dashboard(head, url, env["RAY_AUTH_TOKEN"], log_path)
        yield url
    finally:
        killed += _stop_head(head)


def _wait_for_dashboard(head: subprocess.Popen, url: str, token: str, log_path: Path) -> None:
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while _http_status(f"{url}/api/jobs/", token) != 200:
        if head.poll() is not None:
            pytest.fail(f"`ray start --head` exited with status {head.returncode}:\n"
                        f"{_tail(log_path.read_text())}")
        if time.monotonic() > deadline:
            pytest.fail(f"the Ray dashboard at {url} did not answer within {HEAD_START_TIMEOUT_S} s:\n"
                        f"{_tail(log_path.read_text())}")
        time.sleep(1)


def _descendants(pid: int) -> list[int]:
    """Process ids of every descendant of `pid`, read from /proc.

    Ray's workers and the job's driver start their own process groups and sessions, so neither a
    process group nor a session holds all of the head's processes; the parent links do.
    """
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # "pid (comm) state ppid ..."
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we read
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_head(head: subprocess.Popen) -> list[int]:
    """SIGTERM the `ray start --block` process, which then stops its processes (GCS, raylet, dashboard,
    workers, the job's driver); those still running after the grace period are killed by their process
    ids, which are returned."""
    processes = _descendants(head.pid)
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while (head.poll() is None or any(map(_running, processes))) and time.monotonic() < deadline:
        time.sleep(0.5)
    killed = []
    for pid in [head.pid, *processes]:
        if _running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:  # it ended between the check and the kill
                pass
    head.wait()
    return killed


def _uploaded_working_dir(temp_dir: Path) -> Path:
    """The job's unpacked copy of `--working-dir .` under the head's temp dir."""
    packages = [path for path in temp_dir.glob("session_latest/runtime_resources/working_dir_files/_ray_pkg_*")
                if path.is_dir()]  # beside it: the package's .zip.lock
    assert len(packages) == 1, f"expected one unpacked working_dir package under {temp_dir}, found {packages}"
    return packages[0]


def _tree_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def test_ray_job_submit_runs_a_sweep_on_a_started_head(tiny_cache, tmp_path):
    """docs/cluster.md's `ray job submit` of a sweep: the job succeeds, its 2 trials finish generations 0
    and 1 and are in the report, the upload holds the code but no venv, and the head stops cleanly."""
    storage = tmp_path / "results"
    # configs/quickstart.yaml asks for 2 trials at once (6.02 CPUs), which a sweep joining a running
    # cluster waits for from an autoscaler this head lacks; null sizes it from the head (1 at a time), as
    # docs/cluster.md advises for fixed-size clusters.
    overrides = [*TINY_OVERRIDES, "loop.generations=1", "sweep.synthetic_ratio=[0, 0.5]", "sweep.strength=[1]",
                 "sweep.max_concurrent_trials=null", f"data.cache_dir={tiny_cache}"]
    config = load_config(str(ROOT / "configs" / "quickstart.yaml"), overrides)
    trials = sorted(trial_name(loop) for loop in expand_trials(config))
    assert len(trials) == 2, trials

    env = _ray_environment(token=secrets.token_hex(32))
    ray = _executable("ray", env)
    # A short path: Ray's Unix sockets live under the temp dir and socket paths must stay < 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="scl-ray-job-", dir="/tmp"))
    submission_id = f"scl-ray-test-{secrets.token_hex(4)}"
    killed: list[int] = []
    try:
        with ray_head(temp_dir, env, killed) as url:
            assert _http_status(f"{url}/api/jobs/") == 401, "the dashboard accepted a request without a token"
            sets = [argument for override in overrides for argument in ("--set", override)]
            submit = _run([ray, "job", "submit", "--address", url, "--submission-id", submission_id,
                           "--working-dir", ".", "--", "scl-ray", "sweep", "configs/quickstart.yaml",
                           "--storage", str(storage), *sets], env, JOB_TIMEOUT_S)
            output = submit.stdout + submit.stderr
            assert submit.returncode == 0, f"`ray job submit` exited with {submit.returncode}:\n{_tail(output)}"
            client = JobSubmissionClient(url, headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
            info = client.get_job_info(submission_id)
            assert info.status == JobStatus.SUCCEEDED, f"{info.status}: {info.message}\n{_tail(output)}"
            assert info.entrypoint.startswith("scl-ray sweep configs/quickstart.yaml"), info.entrypoint

        uploaded = _uploaded_working_dir(temp_dir)
        assert (uploaded / "scl_ray" / "cli.py").is_file() and (uploaded / "configs" / "quickstart.yaml").is_file()
        assert not [name for name in NOT_UPLOADED if (uploaded / name).exists()], sorted(os.listdir(uploaded))
        assert _tree_bytes(uploaded) < MAX_UPLOAD_BYTES, f"{_tree_bytes(uploaded)} bytes uploaded"
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not killed, f"processes {killed} of the head were still running {STOP_GRACE_S} s after its SIGTERM"

    experiment = storage / "quickstart"
    for name in trials:
        assert TrialDirectory(experiment / name).done_generations() == [0, 1], name
    with open(experiment / "report" / "summary.csv", newline="") as summary:
        assert sorted(row["trial"] for row in csv.DictReader(summary)) == trials


def _finals(experiment: Path) -> dict[str, dict]:
    """Each trial's last finished generation and its metrics, without timings."""
    finals = {}
    for trial in sorted(experiment.glob("n*")):
        directory = TrialDirectory(trial)
        last = directory.done_generations()[-1]
        metrics = json.loads(Path(directory.file(last, METRICS)).read_text())
        finals[trial.name] = (last, {key: round(value, 6) if isinstance(value, float) else value
                                     for key, value in metrics.items() if not key.startswith("time/")})
    return finals


def test_ray_job_stop_mid_sweep_then_resubmit_with_resume_finishes_like_an_uninterrupted_run(tiny_cache, tmp_path):
    """docs/cluster.md's lost driver: `ray job stop` in the middle of a sweep stops it (the job ends
    STOPPED, no generation is marked DONE without its files), and the same job re-submitted with
    `--resume` redoes no finished generation and ends with an uninterrupted run's metrics."""
    overrides = [*TINY_OVERRIDES, "loop.generations=3", "loop.steps_per_generation=40", "sweep.synthetic_ratio=[0.5]",
                 "sweep.strength=[1]", "sweep.max_concurrent_trials=null", f"data.cache_dir={tiny_cache}"]
    sets = [argument for override in overrides for argument in ("--set", override)]
    reference = tmp_path / "reference"
    env = _ray_environment(token=secrets.token_hex(32))
    uninterrupted = subprocess.run([_executable("scl-ray", env), "sweep", "configs/quickstart.yaml", "--storage",
                                    str(reference), *sets], cwd=ROOT, env=env,
                                   capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert uninterrupted.returncode == 0, _tail(uninterrupted.stdout + uninterrupted.stderr)

    storage = tmp_path / "results"
    experiment = storage / "quickstart"
    ray = _executable("ray", env)
    temp_dir = Path(tempfile.mkdtemp(prefix="scl-ray-job-", dir="/tmp"))
    killed: list[int] = []
    try:
        with ray_head(temp_dir, env, killed) as url:
            client = JobSubmissionClient(url, headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})

            def submit(*extra: str) -> str:
                job = f"scl-ray-test-{secrets.token_hex(4)}"
                started = _run([ray, "job", "submit", "--address", url, "--submission-id", job, "--no-wait",
                                "--working-dir", ".", "--", "scl-ray", "sweep", "configs/quickstart.yaml",
                                "--storage", str(storage), *sets, *extra], env, JOB_TIMEOUT_S)
                assert started.returncode == 0, _tail(started.stdout + started.stderr)
                return job

            first = submit()
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while not list(experiment.glob("n*/gen_001/DONE")):
                assert client.get_job_status(first) in (JobStatus.PENDING, JobStatus.RUNNING), \
                    f"the job ended before it could be stopped:\n{_tail(client.get_job_logs(first))}"
                assert time.monotonic() < deadline, "generation 1 did not finish"
                time.sleep(0.5)
            stop = _run([ray, "job", "stop", "--address", url, first], env, STOP_GRACE_S * 2)
            assert stop.returncode == 0, _tail(stop.stdout + stop.stderr)
            assert client.get_job_status(first) == JobStatus.STOPPED
            finished = {path: path.stat().st_mtime_ns for path in experiment.glob("n*/gen_*/DONE")}
            assert finished and len(finished) < 4, sorted(finished)
            for done in finished:  # a resume starts from the newest finished generation's model
                assert (done.parent / METRICS).is_file(), done.parent
            for trial in experiment.glob("n*"):
                newest = TrialDirectory(trial).latest_done()
                assert newest is not None and Path(TrialDirectory(trial).file(newest, MODEL)).is_file(), trial

            second = submit("--resume")
            while client.get_job_status(second) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                assert time.monotonic() < deadline + JOB_TIMEOUT_S, "the resumed job did not finish"
                time.sleep(1)
            assert client.get_job_status(second) == JobStatus.SUCCEEDED, _tail(client.get_job_logs(second))
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not killed, f"processes {killed} of the head were still running {STOP_GRACE_S} s after its SIGTERM"
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone"
    assert _finals(experiment) == _finals(reference / "quickstart")
