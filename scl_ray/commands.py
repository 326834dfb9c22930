"""The `scl-ray` subcommands: each validates its inputs and calls one library function
(`scl_ray/cli.py` builds the parser and runs them)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from scl_ray.config import load_config
from scl_ray.errors import UserError

MOTION_SET_SUFFIXES = (".parquet",)


def _config(args: argparse.Namespace):
    return load_config(getattr(args, "config", None), args.overrides)


def _check_output(option: str, location: str, suffixes: tuple[str, ...] = (), directory: bool = False) -> None:
    """Before any work: an output file must end in one of `suffixes`; an output directory must not be a file."""
    path = Path(location)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {location}: the file name must end in {' or '.join(suffixes)}")
    if directory and "://" not in location and path.expanduser().is_file():
        raise UserError(f"{option} {location}: a file is there; give a directory")


# ---- data ----------------------------------------------------------------------------------------

def cmd_data_procedural(args: argparse.Namespace) -> int:
    from scl_ray.motion.procedural import write_procedural_dataset

    _check_output("--out", args.out, directory=True)
    out = write_procedural_dataset(args.out, num=args.num, seed=args.seed)
    print(f"wrote {args.num} procedural motions (seed {args.seed}) in the HumanML3D layout to {out}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from scl_ray.motion.check import check_dataset

    report = check_dataset(args.directory)
    print(report.format())
    return 0 if report.ok else 1


def cmd_data_amass(args: argparse.Namespace) -> int:
    import json

    from scl_ray.motion.amass import convert_amass

    _check_output("--out", args.out, directory=True)
    captions = json.loads(Path(args.captions).read_text()) if args.captions else None
    ids = convert_amass([Path(p) for p in args.inputs], args.model_dir, args.out, captions=captions)
    print(f"converted {len(ids)} sequences into {args.out}")
    return 0


# ---- rendering -----------------------------------------------------------------------------------

def cmd_render(args: argparse.Namespace) -> int:
    from scl_ray.motion.render import load_motions, render_gif, render_png

    _check_output("--out", args.out, (".png", ".gif"))
    joints, captions, ids = load_motions(args.source, ids=args.ids or None, limit=args.limit)
    out = Path(args.out)
    (render_gif if out.suffix.lower() == ".gif" else render_png)(joints, captions, out)
    print(f"rendered {', '.join(ids)} to {out}")
    return 0


# ---- physics and correction ----------------------------------------------------------------------

def cmd_physics_mjcf(args: argparse.Namespace) -> int:
    from scl_ray import storage
    from scl_ray.motion.skeleton import Skeleton
    from scl_ray.physics.corrector import humanoid_settings
    from scl_ray.physics.humanoid import build_humanoid_mjcf

    _check_output("--out", args.out, (".xml",))
    config = _config(args)
    # The corrector's humanoid (sim rate, gains, residual limit); its ankle height is inferred per motion.
    storage.write_text(args.out, build_humanoid_mjcf(Skeleton.adult(args.scale), config.correct.sim_hz,
                                                     humanoid_settings(config.correct)))
    print(f"wrote the MJCF humanoid ({args.scale:g} x the adult skeleton) to {args.out}; "
          f"view it with `python -m mujoco.viewer --mjcf={args.out}`")
    return 0


def cmd_correct(args: argparse.Namespace) -> int:
    from collections import Counter

    from scl_ray.distributed.data import correct_file
    from scl_ray.distributed.runtime import connect

    from scl_ray.motion.store import check_motion_set_file

    config = _config(args)
    _check_output("--out", args.out, MOTION_SET_SUFFIXES)
    check_motion_set_file(args.input)  # before Ray starts
    # Ray Data draws progress bars on a terminal (or with -v); elsewhere it would log every operator every 10 s.
    corrected = correct_file(args.input, args.out, config.correct, connect(config.resources),
                             progress=sys.stderr.isatty() or args.verbose > 0)
    counts = Counter(corrected.status)
    print(f"corrected {len(corrected)} motions into {args.out}: "
          + ", ".join(f"{status} {count}" for status, count in sorted(counts.items())))
    return 0


# ---- diffusion -----------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    from scl_ray import storage
    from scl_ray.distributed.runtime import connect
    from scl_ray.distributed.sweep import experiment_dir
    from scl_ray.distributed.initial_training import train_generation_zero

    config = _config(args)
    if args.out:
        _check_output("--out", args.out, directory=True)
    out = args.out or storage.join(experiment_dir(config), "train")
    checkpoint = train_generation_zero(config, out, connect(config.resources))
    print(f"trained {config.train.steps} steps on {config.loop.train_size} motions; checkpoint: {checkpoint}")
    return 0


SAMPLE_FLAGS = ("sampler", "steps", "eta", "guidance")  # `scl-ray sample` flags that set sample.<flag>


def cmd_sample(args: argparse.Namespace) -> int:
    from scl_ray.distributed.runtime import local_device
    from scl_ray.motion.features import features_to_joints
    from scl_ray.motion.store import write_motion_set
    from scl_ray.workflows import sample_from_checkpoint

    _check_output("--out", args.out, MOTION_SET_SUFFIXES)
    if args.render:
        _check_output("--render", args.render, (".gif",))
    flags = [f"sample.{name}={getattr(args, name)}" for name in SAMPLE_FLAGS if getattr(args, name) is not None]
    config = load_config(args.config, [*args.overrides, *flags])  # a given flag wins over the config and --set
    device = local_device(config.resources.device)
    samples = sample_from_checkpoint(args.checkpoint, args.prompt, args.num, args.length, config.sample, args.seed,
                                     device=device)
    write_motion_set(samples, args.out)
    print(f"wrote {len(samples)} motions to {args.out}")
    if args.render:
        from scl_ray.motion.render import render_gif

        shown = min(len(samples), 4)
        render_gif([features_to_joints(f) for f in samples.features[:shown]],
                   [c[0] for c in samples.captions[:shown]], args.render)
        print(f"rendered {shown} of them to {args.render}")
    return 0


# ---- evaluation ----------------------------------------------------------------------------------

def _data_config(args: argparse.Namespace):
    overrides = list(args.overrides)
    if args.data:
        overrides += ["data.source=humanml3d", f"data.path={args.data}"]
    return load_config(args.config, overrides)


def cmd_data_export(args: argparse.Namespace) -> int:
    from scl_ray.loop.data import RealData
    from scl_ray.motion.store import write_motion_set

    _check_output("--out", args.out, MOTION_SET_SUFFIXES)
    config = _data_config(args)
    real = RealData.load(config.data)
    motions = getattr(real, args.split)
    write_motion_set(motions, args.out)
    print(f"wrote the {args.split} split of {real.root} ({len(motions)} motions) to {args.out}")
    return 0


def cmd_evaluator_train(args: argparse.Namespace) -> int:
    from scl_ray.loop.data import RealData
    from scl_ray.workflows import dataset_evaluator

    config = _data_config(args)
    real = RealData.load(config.data)
    dataset_evaluator(config, real)
    print(f"evaluator for {real.root} ready (cached under {config.data.cache_dir}/evaluators)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:

    from scl_ray import storage
    from scl_ray.loop.data import RealData
    from scl_ray.motion.store import read_motion_set
    from scl_ray.workflows import dataset_evaluator, evaluate_motion_set, format_metrics

    if not args.samples and not args.real:
        raise UserError("nothing to evaluate: give SAMPLES.parquet files and/or --real")
    if args.out:
        _check_output("--out", args.out, (".json",))
    config = _data_config(args)
    samples = [read_motion_set(path) for path in args.samples]  # read before anything is trained or loaded
    real = RealData.load(config.data)
    evaluator = dataset_evaluator(config, real)
    rows = {}
    if args.real:
        rows["real"] = evaluate_motion_set(real.test, config, real, evaluator)
    stems = [Path(path).stem for path in args.samples]
    for path, stem, motions in zip(args.samples, stems, samples):  # rows by file name, or by path where names repeat
        label = stem if stems.count(stem) == 1 and stem != "real" else path
        rows[label] = evaluate_motion_set(motions, config, real, evaluator)
    print(format_metrics(rows))
    if args.out:
        storage.write_json(args.out, rows)
        print(f"wrote {args.out}")
    return 0


# ---- loops, sweeps and reports -------------------------------------------------------------------

def _interrupted(args: argparse.Namespace | None = None, config=None, loops=None) -> int:
    """Ctrl-C / SIGTERM: stop Ray, say so, and for a loop or sweep say how far it got and how to go on."""
    from scl_ray.distributed.runtime import stop_ray

    stop_ray()
    if config is None:
        print("scl-ray: interrupted", file=sys.stderr)
        return 130
    from scl_ray.distributed.sweep import finished_generations

    done = finished_generations(config, loops, args.storage)
    reached = set(done.values())
    if reached == {None}:
        where = "before any generation finished"
    elif len(reached) == 1:
        where = f"after generation {reached.pop()} of {config.loop.generations}"
        where += " in each trial" if len(done) > 1 else ""
    else:
        where = "with these generations finished: " + ", ".join(
            f"{name} {'none' if generation is None else generation}" for name, generation in done.items())
    words = ["scl-ray", args.command, *([args.config] if args.command != "quickstart" else [])]
    for override in args.overrides:
        words += ["--set", override]
    words += ["--storage", args.storage or config.sweep.storage]
    # A loop resumes after its newest finished generation by itself; a sweep also restores its trial list.
    how = "continue with" if args.command == "run" else "resume with"
    words += [] if args.command == "run" else ["--resume"]
    print(f"scl-ray: interrupted {where}; {how}: {shlex.join(words)}", file=sys.stderr)
    return 130


def cmd_run(args: argparse.Namespace) -> int:
    from scl_ray.distributed.sweep import run_single

    config = _config(args)
    try:
        trial_dir = run_single(config, args.storage)
    except KeyboardInterrupt:
        return _interrupted(args, config, [config.loop])
    print(f"loop finished: {trial_dir}\nTensorBoard: tensorboard --logdir {trial_dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from scl_ray.distributed.costs import estimate_cost
    from scl_ray.distributed.sweep import describe_trials, experiment_dir, expand_trials, run_sweep

    config = _config(args)
    if args.dry_run:
        print(describe_trials(config, expand_trials(config)))
        print(estimate_cost(config, expand_trials(config)))
        return 0
    try:
        results = run_sweep(config, args.storage, resume=args.resume)
    except KeyboardInterrupt:
        return _interrupted(args, config, expand_trials(config))
    status = _report(experiment_dir(config, args.storage))
    if results.errors:
        for error in results.errors:
            print(f"scl-ray: a trial failed: {error}", file=sys.stderr)
        return 1
    return status


def _report(results: str, out: str | None = None, tensorboard: bool = True,
            allow_mixed_evaluators: bool = False) -> int:
    from scl_ray.report import format_summary, make_report

    report = make_report(results, out, allow_mixed_evaluators)
    print(format_summary(report))
    print(f"report (figures, summary.md, summary.csv): {report}")
    if tensorboard:
        print(f"TensorBoard: tensorboard --logdir {results}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.out:
        _check_output("--out", args.out, directory=True)
    return _report(args.results, args.out, allow_mixed_evaluators=args.allow_mixed_evaluators)


def quickstart_config_path() -> Path:
    path = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run scl-ray quickstart from a clone of the repository "
                                "installed with `pip install -e .`, or pass a config to `scl-ray sweep`")
    return path


def cmd_quickstart(args: argparse.Namespace) -> int:
    args.config = str(quickstart_config_path())
    args.dry_run = False
    return cmd_sweep(args)


def cmd_toy_gaussian(args: argparse.Namespace) -> int:
    from scl_ray.distributed.toy import run_toy_sweep

    config = _config(args)
    results = run_toy_sweep(config, args.storage, use_tune=args.tune)
    return _report(results, tensorboard=False)
