"""Connecting to Ray, and the one place where resources are added up.

A trial (one loop) holds: its own driver fraction (`trial_cpus`), the Ray Train workers, the MuJoCo
corrector actor pool, and at least one CPU for Ray Data's read/write tasks. Ray does not reserve the
last two for a trial, so if the trials running at once leave fewer free CPUs than a pipeline needs, the
pipeline waits forever without an error (measured with Ray 2.60: trial 0.01 + worker 1 + pool 1 +
read 1 on 3 CPUs hangs). `plan_resources` therefore sizes the concurrency so that every running trial's
whole need fits at once, and refuses a plan that cannot run before anything starts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from scl_ray.config import ResourcesConfig


T = TypeVar("T")

STOP_GRACE_S = 10.0  # after an interrupt, how long a local Ray's processes get to end before they are killed


class ResourceError(RuntimeError):
    """The cluster cannot run even one trial as configured (says what is missing)."""


@dataclass(frozen=True)
class ResourcePlan:
    use_gpu: bool
    trial_cpus: float          # the trial's driver (Tune function trainable)
    worker_cpus: float         # per Train worker
    worker_gpus: float         # per Train worker
    num_workers: int
    actor_cpus: float          # per corrector actor
    num_actors: int
    data_cpus: float           # Ray Data read/write tasks
    max_concurrent_trials: int

    @property
    def cpus_per_trial(self) -> float:
        return (self.trial_cpus + self.num_workers * self.worker_cpus + self.num_actors * self.actor_cpus
                + self.data_cpus)

    @property
    def gpus_per_trial(self) -> float:
        return self.num_workers * self.worker_gpus if self.use_gpu else 0.0

    @property
    def data_cpu_limit(self) -> float:
        """The CPU limit for one trial's Ray Data pipelines: its actor pool plus its task CPUs."""
        return self.num_actors * self.actor_cpus + self.data_cpus

    def describe(self) -> str:
        gpu = f", {self.gpus_per_trial:g} GPU" if self.use_gpu else ""
        return (f"each trial: {self.cpus_per_trial:g} CPU{gpu} (driver {self.trial_cpus:g} + "
                f"{self.num_workers} Train worker(s) x {self.worker_cpus:g} + {self.num_actors} corrector "
                f"actor(s) x {self.actor_cpus:g} + {self.data_cpus:g} for Ray Data tasks); "
                f"up to {self.max_concurrent_trials} trial(s) at once")


# "No limit": a cluster size, and a count of trials that fit, that nothing reaches.
UNBOUNDED = 10**6


def _fits(cluster: float, need: float) -> int:
    return math.floor(cluster / need + 1e-9) if need > 0 else UNBOUNDED


def trial_plan(resources: ResourcesConfig, gpus: bool = False) -> ResourcePlan:
    """What one trial asks for, whatever the cluster (sized on an unbounded one; with GPUs if `gpus`)."""
    return plan_resources(resources, cluster_cpus=UNBOUNDED, cluster_gpus=UNBOUNDED if gpus else 0.0)


def plan_resources(resources: ResourcesConfig, cluster_cpus: float, cluster_gpus: float = 0.0,
                   max_concurrent_trials: int | None = None) -> ResourcePlan:
    """Size one trial and how many may run at once on a cluster of the given size."""
    if resources.device == "cuda" and cluster_gpus <= 0:
        raise ResourceError("resources.device is cuda but the Ray cluster has no GPU")
    use_gpu = resources.device == "cuda" or (resources.device == "auto" and cluster_gpus > 0)
    plan = ResourcePlan(
        use_gpu=use_gpu,
        trial_cpus=resources.trial_cpus,
        worker_cpus=resources.cpus_per_worker,
        worker_gpus=resources.gpus_per_worker if use_gpu else 0.0,
        num_workers=resources.num_workers,
        actor_cpus=resources.cpus_per_actor,
        num_actors=resources.corrector_actors,
        data_cpus=resources.data_cpus,
        max_concurrent_trials=1,
    )
    fit = _fits(cluster_cpus, plan.cpus_per_trial)
    if use_gpu:
        fit = min(fit, _fits(cluster_gpus, plan.gpus_per_trial))
    if fit < 1:
        have = f"{cluster_cpus:g} CPU" + (f" and {cluster_gpus:g} GPU" if use_gpu else "")
        raise ResourceError(
            f"one trial needs {plan.cpus_per_trial:g} CPU" + (f" and {plan.gpus_per_trial:g} GPU" if use_gpu else "")
            + f" but the Ray cluster has {have}: lower resources.num_workers, resources.corrector_actors or "
            "their CPUs, or add nodes (a Ray Data pipeline short of CPUs would wait forever)")
    if max_concurrent_trials is not None:
        if max_concurrent_trials > fit:
            raise ResourceError(
                f"sweep.max_concurrent_trials={max_concurrent_trials} but only {fit} trial(s) fit at once "
                f"({plan.describe()}); more would starve each other's Ray Data pipelines")
        fit = max_concurrent_trials
    return ResourcePlan(**{**plan.__dict__, "max_concurrent_trials": fit})


VERBOSE_ENV = "SCL_RAY_VERBOSE"  # `scl-ray -v`: set by the CLI, forwarded to every Ray worker
# Where pyarrow finds an S3-compatible store (docs/storage.md): forwarded to every Ray worker so that a
# driver pointed at MinIO or a test endpoint reaches the same one. Credentials are not forwarded (they
# would show in the job's runtime environment); workers get them from their node.
STORAGE_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


def verbose() -> bool:
    """Whether Ray's, Tune's and Train's own output is wanted (`scl-ray -v`); by default it is silenced."""
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0")


def ray_environment() -> dict[str, str]:
    """Environment that trims Train's start-up (a 0.1 s health check, no metrics exporter or preemption
    watcher: seconds per fit on 2 cores), keeps runs offline and names the storage endpoint."""
    forwarded = {name: os.environ[name] for name in (VERBOSE_ENV, *STORAGE_ENVIRONMENT)
                 if name in os.environ}
    return {
        **forwarded,
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1"),
        "RAY_TRAIN_METRICS_ENABLED": os.environ.get("RAY_TRAIN_METRICS_ENABLED", "0"),
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": os.environ.get("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0"),
        # Train sends a worker's print() to its logger, which reaches the console besides the print
        # itself: every progress line twice.
        "RAY_TRAIN_ENABLE_PRINT_PATCH": os.environ.get("RAY_TRAIN_ENABLE_PRINT_PATCH", "0"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }


def check_local_request(resources: ResourcesConfig) -> None:
    """`check_local_machine` unless the run joins a cluster: for commands that write before `init_ray`."""
    if not (resources.ray_address or os.environ.get("RAY_ADDRESS")):
        check_local_machine(resources)


def local_gpus() -> int:
    """CUDA devices on this machine (0 where torch is not installed)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    return torch.cuda.device_count()


def local_device(device: str) -> str:
    """`resources.device` for work in this process: auto is cuda where torch sees a GPU, else cpu."""
    gpus = local_gpus() if device != "cpu" else 0
    if device == "cuda" and gpus == 0:
        raise ResourceError("resources.device is cuda but this machine has no GPU torch can use; "
                            "use resources.device=cpu or auto")
    return "cuda" if gpus > 0 else "cpu"


def check_local_machine(resources: ResourcesConfig, cores: int | None = None, gpus: int | None = None) -> None:
    """Before starting a local Ray: refuse processes that ask for more than this machine has.

    The logical CPUs of a local Ray may exceed the cores (`init_ray`), but a Train worker's CPUs are
    also its torch threads: 64 of them on 2 cores made generation 0 three times slower (measured), so
    one worker, actor or task, and the Train workers together, must fit the machine. A cluster
    (`resources.ray_address`) is left to its autoscaler.
    """
    cores = cores if cores is not None else os.cpu_count() or 1
    asks = {"resources.cpus_per_worker": resources.cpus_per_worker,
            "resources.num_workers x cpus_per_worker": resources.num_workers * resources.cpus_per_worker,
            "resources.cpus_per_actor": resources.cpus_per_actor, "resources.data_cpus": resources.data_cpus,
            "resources.trial_cpus": resources.trial_cpus}
    for name, cpus in asks.items():
        if cpus > cores:
            raise ResourceError(f"{name} = {cpus:g} CPU but this machine has {cores} CPU core(s); lower it, or "
                                "run on a cluster (resources.ray_address)")
    if resources.device == "cuda":
        gpus = local_gpus() if gpus is None else gpus
        if resources.num_workers * resources.gpus_per_worker > gpus:
            raise ResourceError(f"resources.device is cuda with {resources.num_workers} Train worker(s) x "
                                f"{resources.gpus_per_worker:g} GPU but this machine has {gpus} GPU(s); use "
                                "resources.device=cpu or auto, or run on a cluster (resources.ray_address)")


def _quiet_token_auth_notice() -> None:
    """Drop Ray 2.60's warning that a new local cluster uses token authentication (its default; setting
    RAY_AUTH_MODE=token after Ray's import instead fails to start the cluster, measured). Its other
    warnings, e.g. that authentication is off, still show."""

    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(getattr(f, "scl_ray", False) for f in logger.filters):
        notice = logging.Filter()
        notice.filter = lambda record: not record.getMessage().startswith("Token authentication is enabled")
        notice.scl_ray = True
        logger.addFilter(notice)


STARTUP_CONCURRENCY_WARNING = "x the maximum expected startup concurrency"  # after "which is 4", "5", ...


def _quiet_startup_concurrency_warning() -> None:
    """Drop the raylet's warning that more Python workers started than it expects at once (a sweep's
    trials, Train workers and corrector actors start together on a small machine; it says nothing the
    user can act on). The driver prints the raylet's messages through `print_to_stdstream`; only that
    message is dropped."""
    from ray._private import worker

    printer = worker.print_to_stdstream
    if getattr(printer, "scl_ray", False):
        return

    def print_to_stdstream(data, ignore_prefix: bool):
        if data.get("pid") == "raylet" and any(STARTUP_CONCURRENCY_WARNING in line for line in data.get("lines", ())):
            return
        printer(data, ignore_prefix)

    print_to_stdstream.scl_ray = True
    worker.print_to_stdstream = print_to_stdstream


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now: the first from 8265 (Ray's dashboard default), else any."""
    import socket

    for port in [*range(8265, 8365), 0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise OSError("no free TCP port on 127.0.0.1")


def init_ray(resources: ResourcesConfig, min_cpus: float = 0.0):
    """Join `resources.ray_address` or start a local Ray; returns the module.

    A local Ray gets at least `min_cpus` logical CPUs even on a smaller machine (e.g. a 2-core laptop
    running one trial of 3 CPUs): the CPUs are logical, the work is small, and the alternative is a
    plan that cannot run at all.
    """
    import ray

    os.environ.update(ray_environment())
    if ray.is_initialized():
        return ray
    if not verbose():
        _quiet_token_auth_notice()
        _quiet_startup_concurrency_warning()
    runtime_env = {"env_vars": ray_environment()}
    address = resources.ray_address or os.environ.get("RAY_ADDRESS")  # `ray job submit` sets RAY_ADDRESS
    sigterm = signal.getsignal(signal.SIGTERM)
    # The driver's "ray" logger at WARNING unless -v: no "Started a local Ray instance" line, and none of
    # Tune's INFO lines (e.g. that it wrote its experiment state).
    logging_level = logging.INFO if verbose() else logging.WARNING
    if address:
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging_level)
    else:
        check_local_machine(resources)
        num_cpus = max(os.cpu_count() or 1, math.ceil(min_cpus))
        # The dashboard (on 127.0.0.1, the next free port from 8265) serves the State API that Ray
        # Train's placement-group cleaner polls every second; without it each loop logs a warning a
        # few seconds. It costs about 1.5 s of start-up here.
        # address="local": a new Ray of its own even where another one runs on this machine (without it, Ray
        # joins the newest one it finds, and refuses num_cpus there). Its processes find its dashboard
        # (Train's placement-group cleaner asks its State API) by RAY_API_SERVER_ADDRESS: where several
        # Rays run, looking for "the" local one fails with a traceback every few seconds.
        port = _free_port()
        runtime_env["env_vars"]["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_port=port,
                 runtime_env=runtime_env, logging_level=logging_level)
    if sigterm not in (signal.SIG_DFL, None) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, sigterm)  # ray.init makes SIGTERM sys.exit; keep a handler the caller set
    return ray


def connect(resources: ResourcesConfig, concurrent: int = 1) -> ResourcePlan:
    """Start or join Ray with room for `concurrent` trials and size them on the cluster it finds."""
    needed = trial_plan(resources).cpus_per_trial
    init_ray(resources, min_cpus=needed * concurrent)
    return plan_resources(resources, *cluster_size())


def cluster_size() -> tuple[float, float]:
    """(CPUs, GPUs) of the connected Ray cluster."""
    import ray

    total = ray.cluster_resources()
    return float(total.get("CPU", 0.0)), float(total.get("GPU", 0.0))


def wait_for_capacity(cpus: float, gpus: float, timeout_s: float, enough: tuple[float, float] = (0.0, 0.0),
                      patience_s: float = 120.0, poll_s: float = 10.0) -> tuple[float, float]:
    """Ask the autoscaler for `cpus`/`gpus` and wait until the cluster has them.

    A fresh autoscaling cluster starts with no worker nodes (and a head with 0 CPUs), so sizing the
    sweep from what is up right now would refuse to run; this requests the capacity first. A cluster
    that has not grown for `patience_s` while it already holds `enough` (one trial) is taken to be of
    fixed size, and its current size is returned; otherwise the wait ends after `timeout_s`.
    """
    import time

    from ray.autoscaler.sdk import request_resources

    bundles = [{"CPU": 1.0}] * math.ceil(cpus) + [{"GPU": 1.0}] * math.ceil(gpus)
    request_resources(bundles=bundles)
    started = last_change = time.monotonic()
    have = cluster_size()
    while (have[0] < cpus or have[1] < gpus) and time.monotonic() - started < timeout_s:
        fits_one = have[0] >= enough[0] and have[1] >= enough[1]
        if fits_one and time.monotonic() - last_change > patience_s:
            print(f"the cluster has not grown for {patience_s:g} s: using its {have[0]:g} CPU / {have[1]:g} GPU")
            break
        print(f"waiting for the autoscaler: have {have[0]:g} CPU / {have[1]:g} GPU, want {cpus:g} / {gpus:g}")
        time.sleep(poll_s)
        now = cluster_size()
        if now != have:
            have, last_change = now, time.monotonic()
    return have


def run_interruptibly(work: Callable[[], T]) -> T:
    """Run a blocking driver call (`Tuner.fit`, `TorchTrainer.fit`) so that Ctrl-C stops it at once.

    On the main thread Tune and Train install SIGINT handlers of their own that stop gracefully
    (measured: 10-15 s), after which Tune returns its partial results as if the sweep had finished and
    advises `Tuner.restore`. Off the main thread they install none, so here the signal raises
    KeyboardInterrupt in the waiting main thread, and the caller stops Ray (`stop_ray`). Nothing is
    lost that a resume needs: a loop resumes after its newest finished generation (DONE marker).
    """
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # re-raised in the caller's thread; after an interrupt, dropped
            outcome["error"] = error

    if threading.current_thread() is not threading.main_thread():
        return work()
    thread = threading.Thread(target=target, name="scl-ray-driver", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def stop_ray() -> None:
    """After an interrupt: shut down this driver's Ray session, if it has one (a local Ray's processes
    end with it). Ray's loggers are silenced first: the interrupted Tune or Train thread still running
    in this process warns about every call that finds the session gone."""

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        logging.getLogger("ray").setLevel(logging.CRITICAL)
        import psutil  # Ray's own copy, on sys.path once ray is imported

        started_here = psutil.Process().children(recursive=True)  # a local Ray's raylet, GCS, agents, workers
        ray.shutdown()
        # The raylet's agents (dashboard, runtime env) notice their parent is gone on their own, which
        # on a busy machine took more than a second after shutdown returned: wait for them, then end them.
        _, alive = psutil.wait_procs(started_here, timeout=STOP_GRACE_S)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=STOP_GRACE_S)
