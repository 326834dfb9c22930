"""Resource arithmetic: the plan that would deadlock a Ray Data pipeline is refused up front."""

import logging

import pytest

from scl_ray.config import ResourcesConfig
from scl_ray.distributed.runtime import ResourceError, plan_resources, ray_environment


def test_one_cpu_short_is_refused_with_the_numbers():
    resources = ResourcesConfig(num_workers=1, corrector_actors=1, data_cpus=1, trial_cpus=0.01)
    with pytest.raises(ResourceError, match=r"one trial needs 3.01 CPU but the Ray cluster has 3 CPU"):
        plan_resources(resources, cluster_cpus=3)
    assert plan_resources(resources, cluster_cpus=4).max_concurrent_trials == 1


def test_concurrency_fits_every_trial_whole():
    resources = ResourcesConfig(num_workers=2, corrector_actors=3, trial_cpus=0.5)
    plan = plan_resources(resources, cluster_cpus=64)
    assert plan.cpus_per_trial == 0.5 + 2 + 3 + 1
    assert plan.max_concurrent_trials == 9  # floor(64 / 6.5)
    assert plan.data_cpu_limit == 4
    with pytest.raises(ResourceError, match="max_concurrent_trials=10 but only 9"):
        plan_resources(resources, cluster_cpus=64, max_concurrent_trials=10)
    assert plan_resources(resources, cluster_cpus=64, max_concurrent_trials=3).max_concurrent_trials == 3


def test_gpus_bound_concurrency_and_cuda_needs_a_gpu():
    resources = ResourcesConfig(device="auto", num_workers=1, gpus_per_worker=0.5)
    plan = plan_resources(resources, cluster_cpus=16, cluster_gpus=1)
    assert plan.use_gpu and plan.max_concurrent_trials == 2
    assert not plan_resources(resources, cluster_cpus=16, cluster_gpus=0).use_gpu
    with pytest.raises(ResourceError, match="no GPU"):
        plan_resources(ResourcesConfig(device="cuda"), cluster_cpus=16, cluster_gpus=0)


def test_a_local_machine_refuses_processes_larger_than_itself():
    from scl_ray.distributed.runtime import check_local_machine

    check_local_machine(ResourcesConfig(num_workers=2, cpus_per_worker=1.0, device="cpu"), cores=2, gpus=0)
    with pytest.raises(ResourceError, match=r"resources.cpus_per_worker = 64 CPU but this machine has 2 CPU core"):
        check_local_machine(ResourcesConfig(cpus_per_worker=64.0), cores=2, gpus=0)
    with pytest.raises(ResourceError, match=r"num_workers x cpus_per_worker = 3 CPU"):
        check_local_machine(ResourcesConfig(num_workers=3), cores=2, gpus=0)
    with pytest.raises(ResourceError, match=r"resources.cpus_per_actor = 4 CPU"):
        check_local_machine(ResourcesConfig(cpus_per_actor=4.0), cores=2, gpus=0)
    with pytest.raises(ResourceError, match=r"this machine has 0 GPU"):
        check_local_machine(ResourcesConfig(device="cuda"), cores=2, gpus=0)
    check_local_machine(ResourcesConfig(device="cuda", num_workers=2, gpus_per_worker=0.5), cores=2, gpus=1)


def test_the_cli_refuses_an_impossible_local_request_before_starting_ray(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
    cores = os.cpu_count()
    result = subprocess.run([sys.executable, "-m", "scl_ray.cli", "sweep", str(config), "--storage", str(tmp_path / "r"),
                             "--set", f"resources.cpus_per_worker={cores + 1}"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"scl-ray: error: resources.cpus_per_worker = {cores + 1} CPU but this machine "
                                     f"has {cores} CPU core(s); lower it, or run on a cluster (resources.ray_address)")
    assert not (tmp_path / "r").exists()


def test_the_raylets_startup_concurrency_warning_is_dropped_and_its_other_messages_kept(monkeypatch):
    from ray._private import worker

    from scl_ray.distributed.runtime import _quiet_startup_concurrency_warning

    printed = []
    monkeypatch.setattr(worker, "print_to_stdstream", lambda data, ignore_prefix: printed.append(data["lines"]))
    _quiet_startup_concurrency_warning()
    _quiet_startup_concurrency_warning()  # once only, however often Ray is started
    warning = ("WARNING: 8 PYTHON worker processes have been started on node: abc with address: 1.2.3.4, which is "
               "4x the maximum expected startup concurrency (2). This could be a result of ...")
    worker.print_to_stdstream({"lines": [warning], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    worker.print_to_stdstream({"lines": [warning.replace("4x", "5x")], "pid": "raylet", "is_err": False},
                              ignore_prefix=False)
    worker.print_to_stdstream({"lines": ["out of memory"], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    worker.print_to_stdstream({"lines": [warning], "pid": 1234, "is_err": False}, ignore_prefix=False)
    assert printed == [["out of memory"], [warning]]


def test_a_local_ray_is_started_even_where_another_runs_on_the_machine(monkeypatch):
    """Without address="local" ray.init joins the newest Ray on the machine (another user's, another
    sweep's) and then refuses num_cpus: 'When connecting to an existing cluster, num_cpus ... must not be
    provided' (seen with three Rays on one machine)."""
    import ray

    from scl_ray.config import ResourcesConfig
    from scl_ray.distributed.runtime import init_ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    init_ray(ResourcesConfig(cpus_per_worker=1.0))
    assert calls[0]["address"] == "local"
    # Its processes (Train's placement-group cleaner) find its dashboard without looking for "the" local Ray.
    port = calls[0]["dashboard_port"]
    assert calls[0]["runtime_env"]["env_vars"]["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{port}"
    # Quiet unless -v: no "Started a local Ray instance" line, no INFO lines of Tune's on the driver.
    assert calls[0]["logging_level"] == logging.WARNING
    monkeypatch.setenv("SCL_RAY_VERBOSE", "1")
    init_ray(ResourcesConfig(cpus_per_worker=1.0))
    assert calls[1]["logging_level"] == logging.INFO


def test_workers_get_the_storage_endpoint_but_not_the_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio.example:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    environment = ray_environment()
    assert environment["AWS_ENDPOINT_URL_S3"] == "http://minio.example:9000"
    assert environment["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert "AWS_SECRET_ACCESS_KEY" not in environment
