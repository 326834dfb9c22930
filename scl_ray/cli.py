"""`scl-ray`: one entry point, one subcommand per capability.

Each subcommand parses its arguments, loads the config where it takes one, and calls one library
function. Errors a user can fix (bad config, missing files, bad data) print one clear line and exit
with status 2; set SCL_RAY_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from scl_ray import __version__
from scl_ray.config import ConfigError, load_config

Command = Callable[[argparse.Namespace], int]


def _add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("config", nargs=None if required else "?", help="experiment YAML (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (repeatable), e.g. --set loop.generations=3")


def _config(args: argparse.Namespace):
    return load_config(getattr(args, "config", None), args.overrides)


# ---- data ----------------------------------------------------------------------------------------

def cmd_data_procedural(args: argparse.Namespace) -> int:
    from scl_ray.motion.procedural import write_procedural_dataset

    out = write_procedural_dataset(args.out, num=args.num, seed=args.seed)
    print(f"wrote {args.num} procedural motions (seed {args.seed}) in the HumanML3D layout to {out}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from scl_ray.motion.humanml3d import check_dataset

    report = check_dataset(args.directory)
    print(report.format())
    return 0 if report.ok else 1


def cmd_data_amass(args: argparse.Namespace) -> int:
    import json

    from scl_ray.motion.amass import convert_amass

    captions = json.loads(Path(args.captions).read_text()) if args.captions else None
    ids = convert_amass([Path(p) for p in args.inputs], args.model_dir, args.out, captions=captions)
    print(f"converted {len(ids)} sequences into {args.out}")
    return 0


# ---- rendering -----------------------------------------------------------------------------------

def cmd_render(args: argparse.Namespace) -> int:
    from scl_ray.motion.render import load_motions, render_gif, render_png

    joints, captions, ids = load_motions(args.source, ids=args.ids or None, limit=args.limit)
    out = Path(args.out)
    if out.suffix.lower() == ".gif":
        render_gif(joints, captions, out)
    elif out.suffix.lower() == ".png":
        render_png(joints, captions, out)
    else:
        raise ValueError(f"--out {out}: the file name must end in .png or .gif")
    print(f"rendered {', '.join(ids)} to {out}")
    return 0


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
    procedural.add_argument("--num", type=int, default=2000, help="number of motions (default 2000)")
    procedural.add_argument("--seed", type=int, default=0)
    procedural.set_defaults(func=cmd_data_procedural)
    check = data.add_parser("check", help="validate a HumanML3D-layout directory and list every problem")
    check.add_argument("directory")
    check.set_defaults(func=cmd_data_check)
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
    render.add_argument("--limit", type=int, default=4)
    render.set_defaults(func=cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError, KeyError, PermissionError) as error:
        if os.environ.get("SCL_RAY_DEBUG"):
            raise
        print(f"scl-ray: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scl-ray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
