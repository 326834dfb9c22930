"""`ray job submit` of a tiny sweep to a real Ray head started with `ray start` (slow, about 2-4 min).

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

import psutil
import pytest

from scl_ray.config import load_config
from scl_ray.distributed.sweep import expand_trials
from scl_ray.loop.plan import trial_name
from scl_ray.loop.state import TrialDirectory
from tests.conftest import TINY_OVERRIDES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HEAD_START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 600
STOP_GRACE_S = 30
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
    """
    env = {name: value for name, value in os.environ.items()
           if name not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
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


def _tail(text: str, chars: int = 4000) -> str:
    return text[-chars:]


@contextmanager
def ray_head(temp_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """A 4-CPU Ray head with a dashboard on free ports; yields the dashboard URL, then stops the head.

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
        # Its own session, so that the fallback kill below reaches this head's processes and no others.
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=temp_dir,
                                start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for_dashboard(head, url, env["RAY_AUTH_TOKEN"], log_path)
        yield url
    finally:
        _stop_head(head)


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


def _stop_head(head: subprocess.Popen) -> None:
    """SIGTERM the `ray start --block` process (it then stops the head's processes), then make sure.

    Its descendants (GCS, raylet, dashboard, workers, the job's driver) are listed first, so that any
    still alive after the grace period are killed by their process ids.
    """
    try:
        descendants = psutil.Process(head.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    _, alive = psutil.wait_procs(descendants, timeout=STOP_GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _uploaded_working_dir(temp_dir: Path) -> Path:
    """The job's unpacked copy of `--working-dir .` under the head's temp dir."""
    packages = list(temp_dir.glob("session_*/runtime_resources/working_dir_files/_ray_pkg_*"))
    assert len(packages) == 1, f"expected one unpacked working_dir package under {temp_dir}, found {packages}"
    return packages[0]


def _tree_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def test_ray_job_submit_runs_a_sweep_on_a_started_head(tiny_cache, tmp_path):
    storage = tmp_path / "results"
    overrides = [*TINY_OVERRIDES, "loop.generations=1", "sweep.synthetic_ratio=[0, 0.5]", "sweep.strength=[1]",
                 f"data.cache_dir={tiny_cache}"]
    config = load_config(str(ROOT / "configs" / "quickstart.yaml"), overrides)
    trials = sorted(trial_name(loop) for loop in expand_trials(config))
    assert len(trials) == 2, trials

    token = secrets.token_hex(32)
    env = _ray_environment(token)
    ray = _executable("ray", env)
    # A short path: Ray's Unix sockets live under the temp dir and socket paths must stay < 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="scl-ray-job-", dir="/tmp"))
    submission_id = f"scl-ray-test-{secrets.token_hex(4)}"
    try:
        with ray_head(temp_dir, env) as url:
            assert _http_status(f"{url}/api/jobs/") == 401, "the dashboard accepted a request without a token"
            sets = [argument for override in overrides for argument in ("--set", override)]
            submit = subprocess.run(
                [ray, "job", "submit", "--address", url, "--submission-id", submission_id, "--working-dir",
                 ".", "--", "scl-ray", "sweep", "configs/quickstart.yaml", "--storage", str(storage), *sets],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
            output = submit.stdout + submit.stderr
            assert submit.returncode == 0, f"`ray job submit` exited with {submit.returncode}:\n{_tail(output)}"
            status = subprocess.run([ray, "job", "status", "--address", url, submission_id], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=60)
            assert "SUCCEEDED" in status.stdout + status.stderr, _tail(status.stdout + status.stderr + output)

        uploaded = _uploaded_working_dir(temp_dir)
        assert (uploaded / "scl_ray" / "cli.py").is_file() and (uploaded / "configs" / "quickstart.yaml").is_file()
        assert not [name for name in NOT_UPLOADED if (uploaded / name).exists()], sorted(os.listdir(uploaded))
        assert _tree_bytes(uploaded) < MAX_UPLOAD_BYTES, f"{_tree_bytes(uploaded)} bytes uploaded"
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)

    experiment = storage / "quickstart"
    for name in trials:
        assert TrialDirectory(experiment / name).done_generations() == [0, 1], name
    with open(experiment / "report" / "summary.csv", newline="") as summary:
        assert sorted(row["trial"] for row in csv.DictReader(summary)) == trials
