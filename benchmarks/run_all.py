"""Every benchmark that has a device notion, on one device, then one summary JSON object.

    python benchmarks/run_all.py [--device cpu|cuda] [--quick] [--out benchmarks/results]

Runs, each in a fresh process, and saves each one's JSON object as <out>/<name>_<device>.json (the form
the benchmarks save themselves in; README "On a GPU machine"):
  train_throughput    --device DEVICE
  sample_throughput   --device DEVICE
  loop_e2e            --set resources.device=DEVICE (the Ray loop; its in-process baseline as it is)
  paper_n64_loop      `scl-ray run configs/paper_n64.yaml --set loop.generations=3` on the embedded
                      procedural data (a GPU machine has no HumanML3D): wall time, seconds per
                      generation and the last generation's metrics
The others measure the CPU whatever the device, and their committed results already say so; they are
skipped, each with its reason in the summary (SKIPPED).

--quick shrinks every run to a smoke test (tiny model, a few steps, one generation on 200 procedural
motions): it checks that the path works, and its numbers mean nothing. Results of a smoke test belong in
a temporary --out, not in benchmarks/results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
PAPER_CONFIG = ROOT / "configs" / "paper_n64.yaml"
PAPER_GENERATIONS = 3
sys.path.insert(0, str(ROOT))  # this checkout's scl_ray, as in the benchmarks run here (PYTHONPATH)

SKIPPED = {
    "corrector_throughput": "MuJoCo on CPU cores: no device",
    "corrector_quality": "MuJoCo on CPU cores: no device",
    "corrector_fid": "MuJoCo correction judged on CPU: no device",
    "retarget_geometry": "CPU geometry: no device",
    "procedural_speed": "numpy dataset generation: no device",
    "evaluate_speed": "the evaluator on one CPU thread by design: no device",
    "generation_zero_claim": "storage and Ray lease timings: no device",
    "generation_zero_convergence": "a study of training length (hours), not a throughput; run it on its own",
}

# --quick: the test suite's tiny loop (tests/conftest.py TINY_OVERRIDES) on a config, one generation.
QUICK_LOOP = (
    "data.source=procedural", "data.procedural_num=200", "model.preset=tiny", "model.text_encoder=hashing",
    "train.steps=8", "train.batch_size=8", "loop.train_size=16", "loop.steps_per_generation=4",
    "sample.sampler=ddim", "sample.steps=3", "sample.batch_size=32", "evaluate.num_samples=32",
    "evaluate.mm_prompts=2", "evaluate.mm_samples=2", "evaluate.evaluator.epochs=1",
    "evaluate.evaluator.width=32", "evaluate.evaluator.embed_dim=32", "evaluate.r_precision_batch=16",
    "correct.sim_hz=100", "correct.batch_size=4", "resources.corrector_actors=1", "resources.cpus_per_worker=1",
)


def benchmark_arguments(device: str, quick: bool) -> dict[str, list[str]]:
    """Each benchmark script run here -> its arguments (the output file is added by `run_benchmark`)."""
    loop = [f"--set=resources.device={device}"]
    if not quick:
        return {"train_throughput": ["--device", device], "sample_throughput": ["--device", device],
                "loop_e2e": loop}
    return {"train_throughput": ["--device", device, "--model", "tiny", "--batch", "8", "--steps", "2",
                                 "--warmup", "1", "--rounds", "1", "--skip-ray"],
            "sample_throughput": ["--device", device, "--model", "tiny", "--repeats", "1", "--ddpm-steps", "2"],
            "loop_e2e": ["--generations", "1", *loop, *(f"--set={value}" for value in QUICK_LOOP)]}


def last_json(stdout: str) -> dict:
    """The JSON object a benchmark prints (its last line that parses as one)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("printed no JSON object")


def run(command: list[str]) -> tuple[str, float, str | None]:
    """Run one command from the repository root against this checkout's scl_ray: (stdout, seconds,
    error or None)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return done.stdout, seconds, f"exit status {done.returncode}: " + " | ".join(tail)
    return done.stdout, seconds, None


def run_benchmark(name: str, arguments: list[str], path: Path) -> tuple[dict | None, float, str | None]:
    """benchmarks/<name>.py, saving its JSON object to `path`: (that object, seconds, error or None)."""
    stdout, seconds, error = run([sys.executable, str(BENCHMARKS / f"{name}.py"), *arguments, "--out", str(path)])
    if error:
        return None, seconds, error
    try:
        return last_json(stdout), seconds, None
    except ValueError as problem:
        return None, seconds, str(problem)


def paper_loop(device: str, quick: bool, path: Path) -> tuple[dict | None, float, str | None]:
    """`scl-ray run configs/paper_n64.yaml` for PAPER_GENERATIONS generations (one with --quick) in a
    scratch storage; its JSON object is written to `path` here (the CLI prints progress, not JSON)."""
    from scl_ray.config import load_config
    from scl_ray.distributed.sweep import experiment_dir
    from scl_ray.loop.plan import trial_name
    from scl_ray.loop.state import TrialDirectory

    overrides = [f"loop.generations={1 if quick else PAPER_GENERATIONS}", "data.source=procedural",
                 f"resources.device={device}", *(QUICK_LOOP if quick else ())]
    with tempfile.TemporaryDirectory() as scratch:
        _, seconds, error = run([sys.executable, "-m", "scl_ray.cli", "run", str(PAPER_CONFIG), "--storage", scratch,
                                 *(f"--set={value}" for value in overrides)])
        if error:
            return None, seconds, error
        config = load_config(PAPER_CONFIG, overrides)
        history = TrialDirectory(str(Path(experiment_dir(config, scratch)) / trial_name(config.loop))).metrics_history()
    later = [m["time/generation_s"] for m in history if m["generation"] >= 1]
    metrics = ("fid", "r_precision_top3", "matching_score", "diversity")
    result = {"device": device, "config": str(PAPER_CONFIG.relative_to(ROOT)), "overrides": overrides,
              "generations": len(history), "wall_s": seconds,
              "generation_zero_s": round(history[0]["time/generation_s"], 2),
              "s_per_generation": round(sum(later) / len(later), 2) if later else None,
              "last": {name: history[-1][name] for name in metrics if name in history[-1]}}
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result, seconds, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (numbers mean nothing)")
    parser.add_argument("--out", default=str(BENCHMARKS / "results"), help="where <name>_<device>.json go")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("run_all.py: --device cuda but torch sees no GPU (README, 'On a GPU machine')")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"device": args.device, "quick": args.quick, "out": str(out), "results": {}, "skipped": SKIPPED}
    for name, arguments in benchmark_arguments(args.device, args.quick).items():
        path = out / f"{name}_{args.device}.json"
        result, seconds, error = run_benchmark(name, arguments, path)
        summary["results"][name] = {"seconds": seconds, "file": str(path), "error": error, "result": result}
        print(f"{name}: {error or 'ok'} ({seconds} s)", file=sys.stderr, flush=True)
    path = out / f"paper_n64_loop_{args.device}.json"
    result, seconds, error = paper_loop(args.device, args.quick, path)
    summary["results"]["paper_n64_loop"] = {"seconds": seconds, "file": str(path), "error": error, "result": result}
    print(f"paper_n64_loop: {error or 'ok'} ({seconds} s)", file=sys.stderr, flush=True)
    print(json.dumps(summary))
    if any(entry["error"] for entry in summary["results"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
