"""Ray Tune: the experimental grid as one sweep, one trial per loop; and `scl-ray run` (one loop).

Every combination of `sweep.train_size x synthetic_ratio x strength x seeds` is a trial (baseline
trials, synthetic_ratio 0, are the same whatever the strength, so they appear once). A trial is a
Tune function trainable that runs one long-lived TorchTrainer (`distributed/train.py`); Train's
per-generation reports reach Tune through `TuneReportCallback`. A failed trial is retried
(`FailureConfig`) and continues from its newest finished generation; `--resume` restores the Tuner
and every trial continues the same way.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

import yaml

from scl_ray import storage
from scl_ray.config import Config, LoopConfig, config_from_dict, config_to_yaml
from scl_ray.distributed.runtime import (
    ResourcePlan, check_local_request, cluster_size, init_ray, plan_resources, ray_environment,
    run_interruptibly, trial_plan, verbose,
    wait_for_capacity,
)
from scl_ray.errors import UserError
from scl_ray.fields import to_dict
from scl_ray.loop.generation import progress_line
from scl_ray.loop.plan import arm_name, trial_name
from scl_ray.loop.state import TrialDirectory

TUNE_DIR = "_tune"
TRAIN_DIR = "_train"
SHARED_DIR = "_shared"  # generation 0 shared by loops that differ only in lambda and strength
CONFIG_FILE = "config.yaml"  # the resolved config, beside the experiment and in every trial
SWEEP_LOCK = "SWEEP_RUNNING"  # held by the driver of the sweep that writes the experiment (storage.Lock)


def expand_trials(config: Config) -> list[LoopConfig]:
    """The loops of the grid, baseline duplicates removed, in a stable order."""
    sweep, seen, loops = config.sweep, set(), []
    for train_size in sweep.train_size:
        for synthetic_ratio in sweep.synthetic_ratio:
            for strength in sweep.strength:
                for seed in sweep.seeds:
                    key = (train_size, synthetic_ratio, 0.0 if synthetic_ratio == 0 else strength, seed)
                    if key in seen:
                        continue
                    seen.add(key)
                    loops.append(dataclasses.replace(config.loop, train_size=train_size, synthetic_ratio=synthetic_ratio,
                                                     strength=key[2], seed=seed))
    return loops


def experiment_dir(config: Config, storage_override: str | None = None) -> str:
    root = storage_override or config.sweep.storage
    return storage.absolute(storage.join(root, config.sweep.name))


def finished_generations(config: Config, loops: Iterable[LoopConfig],
                         storage_override: str | None = None) -> dict[str, int | None]:
    """Each loop's newest finished generation in the experiment (None: none finished yet)."""
    experiment = experiment_dir(config, storage_override)
    return {trial_name(loop): TrialDirectory(storage.join(experiment, trial_name(loop))).latest_done()
            for loop in loops}


def check_resumable(experiment: str) -> None:
    """Raise FileNotFoundError unless `experiment` holds an experiment that was started (its config.yaml)."""
    if not storage.exists(storage.join(experiment, CONFIG_FILE)):
        raise FileNotFoundError(f"nothing to resume at {experiment}: no experiment was started there (no "
                                f"{CONFIG_FILE}); check the storage location and sweep.name, or start the sweep "
                                "without resuming")


def check_finished_files(experiment: str, loops: Iterable[LoopConfig]) -> None:
    """Before a loop resumes: raise ValueError, naming the file and what to do, if a file that a
    finished (DONE) generation left and that the resume reads is damaged (truncated, corrupt, empty).

    Checked: every metrics.json; the newest finished model.pt (whole); every Parquet set (its footer
    and schema; whole where an accumulating loop reads it back); the shared generation 0's files.
    """
    from scl_ray.diffusion.checkpoint import read_checkpoint
    from scl_ray.loop.state import CORRECTED, DONE, METRICS, MODEL, SYNTHETIC
    from scl_ray.motion.store import check_motion_set_file, read_motion_set

    def check(location: str, read, redo: str) -> None:
        try:
            read(location)
        except (ValueError, OSError) as error:
            cause = (str(error).splitlines() or [type(error).__name__])[0]
            raise UserError(f"cannot resume: {location} is damaged ({cause}); {redo}, then resume again") from None

    for loop in loops:
        trial = TrialDirectory(storage.join(experiment, trial_name(loop)))
        done = trial.done_generations()
        for generation in done:
            redo = (f"delete {trial.generation(generation)} and every later gen_* directory of "
                    f"{trial_name(loop)} to compute them again")
            for name in storage.list_dir(trial.generation(generation)):
                location = trial.file(generation, name)
                if name == METRICS:
                    check(location, storage.read_json, redo)
                elif name == MODEL and generation == done[-1]:
                    check(location, read_checkpoint, redo)
                elif name in (SYNTHETIC, CORRECTED) and loop.accumulate:
                    check(location, read_motion_set, redo)
                elif name.endswith(".parquet"):
                    check(location, check_motion_set_file, redo)
    shared = storage.join(experiment, SHARED_DIR)
    for name in storage.list_dir(shared):
        directory = storage.join(shared, name)
        if storage.exists(storage.join(directory, DONE)):
            redo = f"delete {directory} to train that generation 0 again"
            check(storage.join(directory, METRICS), storage.read_json, redo)
            check(storage.join(directory, MODEL), read_checkpoint, redo)


def trial_config(config: Config, loop: LoopConfig) -> Config:
    return dataclasses.replace(config, loop=loop)


def _plan(config: Config, max_concurrent: int | None) -> ResourcePlan:
    """Size the trials on the connected cluster; on a remote (autoscaling) cluster, first ask for
    the capacity that `max_concurrent` trials need."""
    cpus, gpus = cluster_size()
    remote = bool(config.resources.ray_address or os.environ.get("RAY_ADDRESS"))
    if remote and max_concurrent:
        single = trial_plan(config.resources, gpus=config.resources.device != "cpu")
        want_gpus = single.gpus_per_trial * max_concurrent if config.resources.device == "cuda" else 0.0
        cpus, gpus = wait_for_capacity(single.cpus_per_trial * max_concurrent, want_gpus,
                                       timeout_s=config.resources.autoscale_timeout_s,
                                       enough=(single.cpus_per_trial, want_gpus / max_concurrent))
        fits = plan_resources(config.resources, cpus, gpus).max_concurrent_trials
        if fits < max_concurrent:
            print(f"sweep.max_concurrent_trials={max_concurrent} does not fit the cluster; running {fits} at once")
            max_concurrent = fits
    return plan_resources(config.resources, cpus, gpus, max_concurrent)


def run_trial(tune_config: dict) -> None:
    """The Tune function trainable: one loop, one TorchTrainer.fit."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from scl_ray.distributed.train import loop_trainer

    os.environ.update(tune_config["env"])  # the driver's knobs reach trials started by an earlier raylet
    saved = storage.read_text(storage.join(tune_config["experiment"], CONFIG_FILE))
    sweep_config = config_from_dict(yaml.safe_load(saved))
    config = trial_config(sweep_config, LoopConfig(**tune_config["loop"]))
    plan = ResourcePlan(**tune_config["plan"])
    trial_dir = storage.join(tune_config["experiment"], trial_name(config.loop))
    storage.write_text(storage.join(trial_dir, CONFIG_FILE), config_to_yaml(config))
    trainer = loop_trainer(config, trial_dir, plan, name=trial_name(config.loop),
                           storage_path=storage.join(tune_config["experiment"], TRAIN_DIR),
                           experiment=tune_config["experiment"], callbacks=[TuneReportCallback()],
                           max_failures=config.sweep.max_failures, shared_root=storage.join(tune_config["experiment"], SHARED_DIR))
    result = trainer.fit()
    if result.error is not None:
        raise result.error


def _generation_printer():
    from ray import tune

    from ray.tune.experiment import Trial

    class GenerationPrinter(tune.Callback):
        """One line per finished generation and per finished trial, instead of Tune's tables."""

        def __init__(self, total: int):
            self.total, self.finished = total, set()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            print(f"[{trial}] {progress_line(int(result.get('generation', -1)), result)}", flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            # Trials a resumed sweep restored as finished count too: the count goes on from where it was.
            self.finished |= {str(t) for t in trials if t.status == Trial.TERMINATED} | {str(trial)}
            print(f"[{trial}] done ({len(self.finished)}/{self.total} trials)", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            print(f"[{trial}] FAILED: see {trial.error_file or 'the log above'}", flush=True)

    return GenerationPrinter


def _tune_trial_name(trial) -> str:
    return trial_name(LoopConfig(**trial.config["loop"]))


def describe_trials(config: Config, loops: Iterable[LoopConfig]) -> str:
    lines = [f"{'trial':<44} {'arm':<15} {'n':>5} {'lambda':>6} {'strength':>8} {'seed':>4}"]
    for loop in loops:
        lines.append(f"{trial_name(loop):<44} {arm_name(loop.synthetic_ratio, loop.strength):<15} "
                     f"{loop.train_size:>5} {loop.synthetic_ratio:>6g} {loop.strength:>8g} {loop.seed:>4}")
    return "\n".join(lines)


def longest_first(config: Config, loops: list[LoopConfig]) -> list[LoopConfig]:
    """The loops in the order a sweep starts them: the longest first by the dry run's estimate (more
    synthetic motions to sample and correct, larger n), so that none of them starts last and runs
    alone while the other slots stand idle; ties keep the grid's order."""
    from scl_ray.distributed.costs import estimate_device, trial_seconds, unit_costs

    costs = unit_costs(estimate_device(config)[0], config.model.preset, config.correct.sim_hz)
    return sorted(loops, key=lambda loop: -trial_seconds(config, loop, costs))


def run_sweep(config: Config, storage_override: str | None = None, resume: bool = False):
    """Run (or resume) the whole grid; returns Tune's ResultGrid."""
    # Tune's own TensorBoard logger would write an HParams experiment summary that hides ours
    # (one TensorBoard run per trial, written by the loop); its JSON and CSV loggers are kept.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Tune's newer console output prints a configuration box and a results path whatever `verbose` says;
    # its classic output at verbose=0 prints nothing, and GenerationPrinter gives one line per generation.
    # `scl-ray -v` keeps Tune's own output (its status tables) as well.
    if not verbose():
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    loops = expand_trials(config)
    experiment = experiment_dir(config, storage_override)
    if resume:
        check_resumable(experiment)
    check_local_request(config.resources)  # refused before anything is written
    storage.check_writable(experiment)
    with storage.Lock(storage.join(experiment, SWEEP_LOCK), f"a sweep of {experiment}"):
        check_finished_files(experiment, loops)  # trials go on after their newest finished generation
        return _run_tuner(config, loops, experiment, resume)


def _run_tuner(config: Config, loops: list[LoopConfig], experiment: str, resume: bool):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from scl_ray.loop.generation_zero import restore_from_cache, store_in_cache
    from scl_ray.loop.resources import prepare_experiment

    per_trial = trial_plan(config.resources).cpus_per_trial
    init_ray(config.resources, min_cpus=per_trial * (config.sweep.max_concurrent_trials or 1))
    plan = _plan(config, config.sweep.max_concurrent_trials)
    print(f"{len(loops)} trial(s) in {experiment}; {plan.describe()}")
    storage.make_dirs(experiment)
    storage.write_text(storage.join(experiment, CONFIG_FILE), config_to_yaml(config))
    evaluator_hash = prepare_experiment(config, experiment)  # data, embeddings, evaluator: once, before any trial
    shared_root, trial_configs = storage.join(experiment, SHARED_DIR), [trial_config(config, loop) for loop in loops]
    if config.sweep.reuse_generation_zero:
        restore_from_cache(trial_configs, shared_root, evaluator_hash)
    trainable = tune.with_resources(run_trial, {"CPU": plan.trial_cpus})
    started = longest_first(config, loops)
    GenerationPrinter = _generation_printer()
    tune_path = storage.join(experiment, TUNE_DIR)
    if resume and tune.Tuner.can_restore(tune_path):
        tuner = tune.Tuner.restore(tune_path, trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"plan": dict(plan.__dict__), "experiment": experiment, "env": ray_environment(),
                         "loop": tune.grid_search([to_dict(loop) for loop in started])},
            tune_config=tune.TuneConfig(max_concurrent_trials=plan.max_concurrent_trials,
                                        trial_name_creator=_tune_trial_name, trial_dirname_creator=_tune_trial_name),
            run_config=tune.RunConfig(name=TUNE_DIR, storage_path=experiment, verbose=int(verbose()),
                                      callbacks=[GenerationPrinter(len(loops)), JsonLoggerCallback(),
                                                 CSVLoggerCallback()],
                                      failure_config=tune.FailureConfig(max_failures=config.sweep.max_failures)),
        )
    try:
        return run_interruptibly(tuner.fit)
    finally:
        if config.sweep.reuse_generation_zero:
            store_in_cache(trial_configs, shared_root, evaluator_hash)


def run_single(config: Config, storage_override: str | None = None):
    """`scl-ray run`: one loop (config.loop) on Ray Train, without Tune."""
    from scl_ray.distributed.train import loop_trainer
    from scl_ray.loop.resources import prepare_experiment

    experiment = experiment_dir(config, storage_override)
    check_local_request(config.resources)  # refused before anything is written
    storage.check_writable(experiment)
    check_finished_files(experiment, [config.loop])  # a loop goes on after its newest finished generation
    per_trial = trial_plan(config.resources).cpus_per_trial
    init_ray(config.resources, min_cpus=per_trial)
    plan = _plan(config, 1)
    trial_dir = storage.join(experiment, trial_name(config.loop))
    storage.write_text(storage.join(trial_dir, CONFIG_FILE), config_to_yaml(config))
    prepare_experiment(config, experiment)
    trainer = loop_trainer(config, trial_dir, plan, name=trial_name(config.loop),
                           storage_path=storage.join(experiment, TRAIN_DIR), experiment=experiment,
                           max_failures=config.sweep.max_failures, announce=True)
    result = run_interruptibly(trainer.fit)
    if result.error is not None:
        raise result.error
    return trial_dir

