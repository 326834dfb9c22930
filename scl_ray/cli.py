"""`scl-ray`: one entry point, one subcommand per capability.

Each subcommand parses its arguments, loads the config where it takes one, and calls one library
function. Errors a user can fix (bad options or config, missing or damaged files, too few resources)
print one clear line and exit with status 2 (`--debug` adds the traceback); any other exception is
a bug and prints its traceback, exit status 1. Ctrl-C or SIGTERM stops Ray and exits with
status 130, saying how to go on where there is something to resume. Output is one line per
generation and trial; `-v` (before or after the command) also shows Ray's, Tune's and Train's own.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable

from scl_ray import __version__
from scl_ray.commands import (
    _interrupted, cmd_correct, cmd_data_amass, cmd_data_check, cmd_data_export, cmd_data_procedural,
    cmd_evaluate, cmd_evaluator_train, cmd_physics_mjcf, cmd_quickstart, cmd_render, cmd_report, cmd_run,
    cmd_sample, cmd_sweep, cmd_toy_gaussian, cmd_train,
)
from scl_ray.errors import UserError


def _add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("config", nargs=None if required else "?", help="experiment YAML (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (repeatable), e.g. --set loop.generations=3")

def _add_config_option(parser: argparse.ArgumentParser, purpose: str) -> None:
    """--config FILE and --set overrides, for commands whose main argument is not a config."""
    parser.add_argument("--config", help=f"experiment YAML for {purpose} settings")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (repeatable)")

def _positive(kind: type) -> Callable[[str], int | float]:
    """An argparse type: a number > 0 (argparse names the argument in its error)."""

    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse says "invalid int value" for what kind() rejects
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scl-ray",
        description="Self-correcting self-consuming loops for text-to-motion diffusion, on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"scl-ray {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    data = commands.add_parser("data", help="make, import and check motion datasets").add_subparsers(
        dest="data_command", metavar="DATA_COMMAND")
    data.required = True
    procedural = data.add_parser("procedural", help="write the embedded procedural dataset (HumanML3D layout)")
    procedural.add_argument("--out", required=True, help="output directory")
    procedural.add_argument("--num", type=_positive(int), default=2000, help="number of motions (default 2000)")
    procedural.add_argument("--seed", type=int, default=0)
    procedural.set_defaults(func=cmd_data_procedural)
    check = data.add_parser("check", help="validate a HumanML3D-layout directory and list every problem")
    check.add_argument("directory")
    check.set_defaults(func=cmd_data_check)
    export = data.add_parser("export", help="write a split of the configured dataset as a Parquet motion set")
    export.add_argument("--split", choices=("train", "test"), default="test")
    export.add_argument("--out", required=True, help="output motion set (.parquet, local path or URI)")
    export.add_argument("--data", help="HumanML3D-layout directory (default: the procedural dataset)")
    _add_config_option(export, "data")
    export.set_defaults(func=cmd_data_export)
    amass = data.add_parser("amass", help="convert AMASS .npz sequences with your SMPL-H model files")
    amass.add_argument("inputs", nargs="+", help="AMASS .npz files")
    amass.add_argument("--model-dir", required=True, help="directory with SMPL-H model files (you bring them)")
    amass.add_argument("--out", required=True, help="output HumanML3D-layout directory")
    amass.add_argument("--captions", help="JSON file: {sequence file stem: [captions]}")
    amass.set_defaults(func=cmd_data_amass)

    render = commands.add_parser("render", help="stick-figure PNG grid or GIF of motions")
    render.add_argument("source", help="HumanML3D-layout directory or Parquet motion set")
    render.add_argument("--out", required=True, help="output .png or .gif")
    render.add_argument("--ids", nargs="*", help="motion ids (default: the first --limit)")
    render.add_argument("--limit", type=_positive(int), default=4)
    render.set_defaults(func=cmd_render)

    physics = commands.add_parser("physics", help="the MuJoCo humanoid").add_subparsers(
        dest="physics_command", metavar="PHYSICS_COMMAND")
    physics.required = True
    mjcf = physics.add_parser("mjcf", help="write the humanoid's MJCF (loads in MuJoCo's viewer)")
    mjcf.add_argument("--out", required=True, help="output .xml")
    mjcf.add_argument("--scale", type=_positive(float), default=1.0, help="uniform scale of the adult skeleton (> 0)")
    _add_config_arguments(mjcf, required=False)
    mjcf.set_defaults(func=cmd_physics_mjcf)

    correct = commands.add_parser("correct", help="physics-correct a Parquet motion set with a Ray Data actor pool")
    correct.add_argument("input", help="input motion set (.parquet, local path or URI)")
    correct.add_argument("--out", required=True, help="output motion set (.parquet)")
    _add_config_arguments(correct, required=False)
    correct.set_defaults(func=cmd_correct)

    train = commands.add_parser("train", help="train the diffusion model from scratch on Ray Train (a generation 0)")
    _add_config_arguments(train)
    train.add_argument("--out", help="output directory (default <sweep.storage>/<sweep.name>/train)")
    train.set_defaults(func=cmd_train)

    sample_cmd = commands.add_parser("sample", help="sample motions from a checkpoint for text prompts")
    sample_cmd.add_argument("checkpoint", help="model.pt from scl-ray train or a loop's newest generation (every generation with loop.keep_all)")
    sample_cmd.add_argument("--prompt", action="append", required=True, help="a caption (repeatable)")
    sample_cmd.add_argument("--num", type=_positive(int), default=4, help="motions per prompt")
    sample_cmd.add_argument("--length", type=int, default=120, help="frames at 20 fps (default 120 = 6 s)")
    # Unset flags leave the config's `sample:` section (after --set) as it is; a given flag wins over both.
    sample_cmd.add_argument("--steps", type=_positive(int), help="sampling steps (default: sample.steps)")
    sample_cmd.add_argument("--sampler", choices=("ddim", "ddpm"), help="default: sample.sampler")
    sample_cmd.add_argument("--eta", type=float, help="DDIM stochasticity (default: sample.eta)")
    sample_cmd.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: sample.guidance)")
    sample_cmd.add_argument("--seed", type=int, default=0)
    sample_cmd.add_argument("--out", required=True, help="output motion set (.parquet)")
    sample_cmd.add_argument("--render", help="also render the first motions to this .gif")
    _add_config_option(sample_cmd, "sample and resources.device")
    sample_cmd.set_defaults(func=cmd_sample)

    evaluator = commands.add_parser("evaluator", help="the text/motion evaluator").add_subparsers(
        dest="evaluator_command", metavar="EVALUATOR_COMMAND")
    evaluator.required = True
    evaluator_train = evaluator.add_parser("train", help="train (or load from cache) a dataset's evaluator")
    evaluator_train.add_argument("data", nargs="?", help="HumanML3D-layout directory (default: procedural data)")
    _add_config_option(evaluator_train, "evaluator and data")
    evaluator_train.set_defaults(func=cmd_evaluator_train)

    evaluate = commands.add_parser("evaluate", help="FID, R-precision, Matching, Diversity, MultiModality, physics")
    evaluate.add_argument("samples", nargs="*", help="motion sets (.parquet); captions are the prompts")
    evaluate.add_argument("--data", help="HumanML3D-layout directory (default: the procedural dataset)")
    evaluate.add_argument("--real", action="store_true", help="also evaluate the real test split (the 'Real' row)")
    evaluate.add_argument("--out", help="write the metrics as JSON here")
    _add_config_option(evaluate, "evaluation and data")
    evaluate.set_defaults(func=cmd_evaluate)

    run = commands.add_parser("run", help="one self-consuming loop (config.loop) on Ray Train, without Tune")
    _add_config_arguments(run)
    run.add_argument("--storage", help="results location (local path or s3://...), overrides sweep.storage")
    run.set_defaults(func=cmd_run)

    sweep = commands.add_parser("sweep", help="the grid of loops as one Ray Tune sweep, then the report")
    _add_config_arguments(sweep)
    sweep.add_argument("--storage", help="results location (local path or s3://...), overrides sweep.storage")
    sweep.add_argument("--resume", action="store_true",
                       help="continue an interrupted sweep (the command an interrupt prints); refused where none was started")
    sweep.add_argument("--dry-run", action="store_true", help="print the trials and their estimated cost")
    sweep.set_defaults(func=cmd_sweep)

    quickstart = commands.add_parser("quickstart", help="a small sweep of all three arms on this machine")
    quickstart.add_argument("--set", dest="overrides", action="append", default=[])
    quickstart.add_argument("--storage", help="results location (default from configs/quickstart.yaml)")
    quickstart.add_argument("--resume", action="store_true", help="continue an interrupted quickstart")
    quickstart.set_defaults(func=cmd_quickstart)

    report = commands.add_parser("report", help="paper-style figures and summary tables of a results directory")
    report.add_argument("results", help="<storage>/<experiment> directory of a sweep")
    report.add_argument("--out", help="output directory, local path or URI (default RESULTS/report, beside the results)")
    report.add_argument("--allow-mixed-evaluators", action="store_true",
                        help="report trials scored by different evaluators together (refused by default: their "
                             "FID, R-precision, Matching and Diversity are not comparable)")
    report.set_defaults(func=cmd_report)

    toy = commands.add_parser("toy", help="the paper's theory experiments").add_subparsers(
        dest="toy_command", metavar="TOY_COMMAND")
    toy.required = True
    gaussian = toy.add_parser("gaussian", help="the 2-D Gaussian toy: W2 vs generation for each gamma")
    _add_config_arguments(gaussian, required=False)
    gaussian.add_argument("--storage", help="results location (default sweep.storage)")
    gaussian.add_argument("--tune", action="store_true", help="run the grid as a Ray Tune sweep")
    gaussian.set_defaults(func=cmd_toy_gaussian)
    _add_global_options(parser)
    return parser


VERBOSE_HELP = "also show Ray's, Tune's and Train's own output (silenced by default: one line per generation)"
DEBUG_HELP = "show the traceback of an error a user can fix too (always shown for any other error)"


def _add_global_options(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """-v/--verbose and --debug before the command or after it, on every subcommand (a subcommand's own
    default would override the value given before it, so only the top level has one)."""
    parser.add_argument("-v", "--verbose", action="count", help=VERBOSE_HELP,
                        **({"default": 0} if top else {"default": argparse.SUPPRESS}))
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP,
                        **({"default": False} if top else {"default": argparse.SUPPRESS}))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _add_global_options(subparser, top=False)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Every command starts Ray explicitly (`init_ray`). Without this, after Ctrl-C a Tune or Train thread's
    # next Ray call would start a fresh local Ray while the interrupted one shuts down (read at Ray's import).
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    from scl_ray.distributed.runtime import VERBOSE_ENV, ResourceError

    quiet = os.environ.get(VERBOSE_ENV)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # read where Ray, Tune and Train are set up, and by every Ray worker
    from scl_ray.storage import StorageError

    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler) if main_thread else None  # as Ctrl-C
    # What a user can fix: one line, exit 2. Anything else is a bug: its traceback, exit 1.
    user_errors = (UserError, ResourceError, StorageError, FileNotFoundError, IsADirectoryError,
                   NotADirectoryError, PermissionError)
    try:
        return args.func(args)
    except user_errors as error:
        if args.debug:
            traceback.print_exc()
        print(f"scl-ray: error: {error}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - a bug, whatever its type: show where
        traceback.print_exc()
        print("scl-ray: internal error (a bug): the traceback above says where", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _interrupted()
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, sigterm)
        if args.verbose and quiet is None:
            del os.environ[VERBOSE_ENV]
        elif args.verbose:
            os.environ[VERBOSE_ENV] = quiet


if __name__ == "__main__":
    sys.exit(main())
