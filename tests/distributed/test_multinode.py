"""A sweep on a two-node Ray cluster on one machine: each node with its own (empty) cache.

The head (0 CPUs, so every trial's Train worker runs on the other node) is the driver's node; the
worker node gets another HOME, so `data.cache_dir: ~/cache` is a different, empty directory there,
as on a real cluster. Every generation of every trial must name the evaluator the driver trained,
and nothing may be built in the worker node's cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scl_ray import storage
from scl_ray.distributed.sweep import expand_trials, experiment_dir, run_sweep
from scl_ray.evaluation.evaluator import evaluator_hash
from scl_ray.loop.plan import trial_name
from scl_ray.loop.resources import MANIFEST
from scl_ray.loop.state import EVALUATOR_METRIC, TrialDirectory

pytestmark = pytest.mark.slow


@pytest.fixture
def two_nodes(tmp_path, monkeypatch):
    """(driver HOME, worker node HOME) of a head + one worker node, connected; torn down after."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # this test needs a cluster of its own
        ray.shutdown()
    driver_home, worker_home = tmp_path / "driver_home", tmp_path / "worker_home"
    driver_home.mkdir()
    worker_home.mkdir()
    monkeypatch.setenv("HOME", str(driver_home))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=4, env_vars={"HOME": str(worker_home)})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        yield driver_home, worker_home
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_every_trial_on_another_node_is_scored_by_the_drivers_evaluator(two_nodes, tiny_config, tmp_path):
    driver_home, worker_home = two_nodes
    config = tiny_config("data.cache_dir=~/cache", "loop.generations=1", "sweep.synthetic_ratio=[0, 0.5]",
                         "sweep.strength=[0]", "sweep.seeds=[0]")
    results = run_sweep(config)
    assert not results.errors
    cached = list((driver_home / "cache" / "evaluators").glob("*.pt"))
    assert len(cached) == 1, "the driver trains the evaluator once, into its own cache"
    digest = evaluator_hash(cached[0].read_bytes())
    experiment = experiment_dir(config)
    assert storage.read_json(storage.join(experiment, MANIFEST))["evaluator"] == digest
    for loop in expand_trials(config):
        trial = TrialDirectory(Path(experiment) / trial_name(loop))
        history = trial.metrics_history()
        assert [m["generation"] for m in history] == [0, 1]
        assert {m[EVALUATOR_METRIC] for m in history} == {digest}, trial_name(loop)
    assert {result.metrics[EVALUATOR_METRIC] for result in results} == {digest}
    assert not (worker_home / "cache").exists(), "a trial built data or an evaluator in its node's cache"
