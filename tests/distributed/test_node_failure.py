"""Node failure on a real multi-node Ray cluster made on one machine (slow).

`ray.cluster_utils.Cluster` starts a head and worker nodes as separate raylets with their own CPUs;
`remove_node(node, allow_graceful=False)` kills one node's processes, as a reclaimed spot instance
would. The head has no CPUs, so every worker and actor runs on a worker node that can be lost.

- A node holding a trial's Train worker dies in the middle of a generation: the trial goes on on
  another node from its newest finished generation, no finished generation is redone, and its final
  metrics equal an uninterrupted run's.
- A node holding corrector actors dies in the middle of a correction: the actors come back on another
  node, the lost blocks are corrected again, and every motion comes back exactly once, in order.
- The head dies (and with it the cluster and the driver): on a new cluster, `--resume` goes on from
  each trial's newest finished generation and ends with an uninterrupted run's metrics.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray.cloudpickle

from scl_ray.config import CorrectConfig
from scl_ray.distributed.correction import CorrectorPool
from scl_ray.distributed.sweep import expand_trials, experiment_dir, run_sweep
from scl_ray.loop.plan import trial_name
from scl_ray.loop.state import DONE, METRICS
from tests.distributed.test_data import ShiftCorrector, _check_corrected, _motions, _pool

# Each test took 29-101 s on a quiet 2-core machine (12-13 min beside other jobs at a load of 10-20).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

# The fake corrector below runs in Ray workers, which cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

WAIT_S = 300
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(monkeypatch):
    """A head with no CPUs (and the dashboard, for the State API) plus worker nodes added by the test.
    RAY_ADDRESS names it: Ray processes that look for "the" cluster must not find another one on the
    same machine."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # this test needs a cluster of its own
        ray.shutdown()
    with socket.socket() as probe:  # another Ray on this machine may hold the default dashboard port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = Cluster(initialize_head=True,
                    head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": port})
    monkeypatch.setenv("RAY_ADDRESS", nodes.address)
    try:
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


def _connect(cluster, workers: int, cpus: int) -> dict[str, object]:
    """Add `workers` nodes of `cpus` CPUs, connect this process; returns the nodes by node id."""
    import ray

    added = [cluster.add_node(num_cpus=cpus) for _ in range(workers)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    return {node.node_id: node for node in added}


def _wait_for(condition, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


class SlowShiftCorrector(ShiftCorrector):
    """Shifts like ShiftCorrector, after writing which node started which block and waiting a while,
    so that a node can be lost while its block is being corrected."""

    def __init__(self, config: CorrectConfig, log_dir: str, seconds: float):
        super().__init__(config)
        self.log_dir, self.seconds = log_dir, seconds

    def __call__(self, batch: dict) -> dict:
        node = ray.get_runtime_context().get_node_id()
        name = f"{batch['ids'][0]}.{os.getpid()}.{time.monotonic_ns()}.json"
        Path(self.log_dir, name).write_text(json.dumps({"node": node, "ids": list(batch["ids"])}))
        time.sleep(self.seconds)
        return super().__call__(batch)


def test_corrector_actors_lost_with_their_node_are_replaced_and_every_motion_comes_back_once(cluster, tmp_path):
    nodes = _connect(cluster, workers=3, cpus=1)  # two actors, one spare node for their replacement
    log_dir = tmp_path / "started"
    log_dir.mkdir()
    motions = _motions(8)
    factory = lambda config: SlowShiftCorrector(config, str(log_dir), seconds=3.0)  # noqa: E731
    result: dict = {}

    with CorrectorPool(CorrectConfig(batch_size=2), _pool(2), factory) as pool:
        def correct() -> None:
            try:
                result["out"] = pool.correct(motions)
            except BaseException as error:  # re-raised in the test's thread
                result["error"] = error

        worker = threading.Thread(target=correct)
        worker.start()
        first = _wait_for(lambda: sorted(log_dir.iterdir()), "a corrector to start a block")[0]
        lost = json.loads(first.read_text())
        cluster.remove_node(nodes[lost["node"]], allow_graceful=False)
        worker.join(WAIT_S)
        assert not worker.is_alive(), "the correction did not finish after its node was lost"
    if "error" in result:
        raise result["error"]
    _check_corrected(motions, result["out"], failed=set())
    starts = [json.loads(path.read_text()) for path in log_dir.iterdir()]
    again = [start for start in starts if start["ids"] == lost["ids"] and start["node"] != lost["node"]]
    assert again, "the block on the lost node was not corrected again on another node"


def _finals(experiment: str) -> dict[str, dict]:
    """Each trial's last generation's metrics, without timings."""
    finals = {}
    for trial in sorted(Path(experiment).glob("n*")):
        last = sorted(trial.glob(f"gen_*/{DONE}"))[-1].parent
        metrics = json.loads((last / METRICS).read_text())
        finals[trial.name] = {key: round(value, 6) if isinstance(value, float) else value
                              for key, value in metrics.items() if not key.startswith("time/")}
    return finals


def _train_worker_node() -> str | None:
    """The node id of the (one) alive Ray Train worker, if any."""
    from ray.util.state import list_actors

    alive = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")], detail=True)
    return alive[0].node_id if alive else None


def test_trial_whose_train_worker_node_dies_resumes_on_another_node_with_the_same_result(cluster, tiny_config,
                                                                                         tmp_path):
    nodes = _connect(cluster, workers=2, cpus=4)  # either node can hold the whole trial
    overrides = ("loop.generations=3", "loop.steps_per_generation=40", "sweep.synthetic_ratio=[0.5]",
                 "sweep.strength=[1]", "sweep.seeds=[0]", "sweep.max_failures=2")
    reference = tiny_config(*overrides, f"sweep.storage={tmp_path / 'reference'}")
    assert not run_sweep(reference).errors

    config = tiny_config(*overrides, f"sweep.storage={tmp_path / 'interrupted'}")
    (loop,) = expand_trials(config)
    trial = Path(experiment_dir(config)) / trial_name(loop)
    killed: dict = {}

    def kill_mid_generation() -> None:
        try:
            _wait_for(lambda: (trial / "gen_001" / DONE).exists(), "generation 1 to finish")
            node = _wait_for(_train_worker_node, "the trial's Train worker")
            killed["done"] = {path: path.stat().st_mtime_ns for path in trial.glob(f"gen_*/{DONE}")}
            cluster.remove_node(nodes[node], allow_graceful=False)
            killed["node"] = node
        except BaseException as error:
            killed["error"] = error

    killer = threading.Thread(target=kill_mid_generation)
    killer.start()
    results = run_sweep(config)
    killer.join(WAIT_S)
    if "error" in killed:
        raise killed["error"]
    assert "node" in killed, "the node was not killed"
    assert len(killed["done"]) < 4, "the run finished before its node could be killed: not a mid-run failure"
    assert not results.errors
    for path, mtime in killed["done"].items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone after the node was lost"
    assert len(list(trial.glob(f"gen_*/{DONE}"))) == 4
    assert _finals(experiment_dir(config)) == _finals(experiment_dir(reference))


def _sweep(cluster_address: str, tiny: tuple, storage: Path, cache: str, *extra: str) -> subprocess.Popen:
    """`scl-ray sweep` of one 3-generation trial, as a driver joining the cluster at cluster_address."""
    overrides = [*tiny, f"data.cache_dir={cache}", "loop.generations=3", "loop.steps_per_generation=40",
                 "sweep.synthetic_ratio=[0.5]", "sweep.strength=[1]", "sweep.seeds=[0]", "sweep.name=lost_head",
                 "sweep.max_concurrent_trials=null"]
    command = [sys.executable, "-m", "scl_ray.cli", "sweep", str(ROOT / "configs" / "quickstart.yaml"),
               "--storage", str(storage), *extra, *(word for override in overrides for word in ("--set", override))]
    # A driver that has lost its head gives up after this many seconds (Ray's default is 60).
    env = {**os.environ, "RAY_ADDRESS": cluster_address, "RAY_gcs_rpc_server_reconnect_timeout_s": "10"}
    log = open(storage.parent / f"{storage.name}-{len(list(storage.parent.glob('*.log')))}.log", "w+")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    process.log = log  # read by _finished
    return process


def _finished(process: subprocess.Popen, timeout_s: float = WAIT_S) -> None:
    process.wait(timeout=timeout_s)
    process.log.seek(0)
    assert process.returncode == 0, process.log.read()[-4000:]


def test_a_sweep_whose_head_dies_resumes_on_a_new_cluster_with_the_same_result(tiny_overrides, tiny_cache,
                                                                              tmp_path):
    """The head holds the GCS: losing it ends the cluster and the driver. What is in storage survives,
    and `--resume` on a new cluster goes on from each trial's newest finished generation."""
    from ray.cluster_utils import Cluster

    def new_cluster() -> Cluster:
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(2):
            nodes.add_node(num_cpus=4)
        nodes.wait_for_nodes()
        return nodes

    reference, storage = tmp_path / "reference", tmp_path / "results"
    trial = None
    first = new_cluster()
    try:
        _finished(_sweep(first.address, tiny_overrides, reference, tiny_cache))
        driver = _sweep(first.address, tiny_overrides, storage, tiny_cache)
        trial = _wait_for(lambda: [path.parent.parent for path in storage.glob(f"lost_head/n*/gen_001/{DONE}")],
                          "generation 1 to finish")[0]
        finished = {path: path.stat().st_mtime_ns for path in trial.glob(f"gen_*/{DONE}")}
        first.remove_node(first.head_node, allow_graceful=False)
        driver.wait(timeout=WAIT_S)
        assert driver.returncode != 0, "the driver finished although its head was lost"
    finally:
        first.shutdown()
    assert len(finished) < 4, "the run finished before its head could be killed"

    second = new_cluster()
    try:
        _finished(_sweep(second.address, tiny_overrides, storage, tiny_cache, "--resume"))
    finally:
        second.shutdown()
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone after the head was lost"
    assert len(list(trial.glob(f"gen_*/{DONE}"))) == 4
    assert _finals(str(storage / "lost_head")) == _finals(str(reference / "lost_head"))
