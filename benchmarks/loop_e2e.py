"""End-to-end cost of a self-consuming loop generation, on Ray and in-process (the baseline).

Runs the quickstart's corrected arm (lambda 1, strength 1, n 64) for a few generations twice in the
same run: once through the Ray backend (one TorchTrainer.fit, Ray Data corrector pool, reports) and
once in-process with the same parts and no Ray. The Ray orchestration overhead of a generation is the
difference of the two per-generation times over the Ray one (generations >= 1; generation 0 trains
from scratch and is the same work in both). Prints one JSON object and saves it.

    python benchmarks/loop_e2e.py [--generations 3] [--config configs/quickstart.yaml] [--set k=v ...]

`--set correct.pool=data` measures the loop with a Ray Data pipeline per generation instead of the
resident corrector pool (the default); `--out` names the result file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("sample_s", "correct_s", "train_s", "evaluate_s", "save_s")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, python {platform.python_version()}, torch {torch.__version__}"


def per_generation(directory: str) -> dict:
    """Per-generation figures of a finished loop directory, generations >= 1.

    s_per_generation is wall-clock: the mean interval between consecutive DONE markers, so it holds
    everything a generation costs, the report to Tune and TensorBoard after DONE included.
    loop_s_per_generation is what the loop timed itself (sample to save), and stage_s its parts.
    """
    from scl_ray.loop.state import DONE, TrialDirectory

    trial = TrialDirectory(directory)
    history = trial.metrics_history()
    done = [os.stat(trial.file(int(m["generation"]), DONE)).st_mtime for m in history]
    later = [m for m in history if m["generation"] >= 1]
    return {"s_per_generation": float(np.mean(np.diff(done))),
            "loop_s_per_generation": float(np.mean([m["time/generation_s"] for m in later])),
            "stage_s": {stage: float(np.mean([m.get(f"time/{stage}", 0.0) for m in later])) for stage in STAGES},
            "span_s": done[-1] - done[0] + history[0]["time/generation_s"]}


def run_local(config, directory: str) -> dict:
    """The same loop in-process: PhysicsCorrector called directly, no Ray anywhere."""
    from scl_ray.distributed.correction import CorrectorActor
    from scl_ray.loop.build import build_motion_loop
    from scl_ray.loop.resources import LoopResources
    from scl_ray.loop.state import TrialDirectory
    from scl_ray.loop.tensorboard import GenerationLogger
    from scl_ray.motion.store import MotionSet

    corrector = CorrectorActor(None, config.correct)

    def correct(synthetic: MotionSet, seed: int) -> MotionSet:
        return corrector.correct(synthetic)

    resources = LoopResources.build(config, progress=False)
    logger = GenerationLogger(directory, config.loop, evaluator=resources.evaluator_hash)  # TensorBoard costs the same in both runs
    try:
        build_motion_loop(config, resources, TrialDirectory(directory), correct,
                          report=lambda generation, metrics, _, samples: logger(generation, metrics, samples)).run()
    finally:
        logger.close()
    return per_generation(directory)


def run_ray(config) -> tuple[dict, float, float]:
    """Per-generation figures, wall time, and the one-off start-up (wall minus the generations)."""
    from scl_ray.distributed.sweep import run_single

    started = time.perf_counter()
    figures = per_generation(str(run_single(config)))
    wall = time.perf_counter() - started
    return figures, wall, wall - figures["span_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "loop_e2e_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from scl_ray.config import load_config

    with tempfile.TemporaryDirectory() as scratch:
        overrides = [f"loop.generations={args.generations}", "loop.synthetic_ratio=1.0", "loop.strength=1.0",
                     f"sweep.storage={scratch}/ray", *args.overrides]
        config = load_config(args.config, overrides)
        ray_side, wall, startup = run_ray(config)
        local = run_local(config, f"{scratch}/local")
    generations = args.generations + 1
    result = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "generations": generations,
        "wall_s": round(wall, 2),
        "s_per_generation": round(ray_side["s_per_generation"], 2),
        "loop_s_per_generation": round(ray_side["loop_s_per_generation"], 2),
        "stage_s": {k: round(v, 2) for k, v in ray_side["stage_s"].items()},
        "local_s_per_generation": round(local["s_per_generation"], 2),
        "local_stage_s": {k: round(v, 2) for k, v in local["stage_s"].items()},
        "pool": config.correct.pool,
        "overhead_fraction": round(1 - local["s_per_generation"] / ray_side["s_per_generation"], 3),
        "startup_s": round(startup, 2),
        "model": config.model.preset,
        "machine": machine(),
    }
    print(json.dumps(result))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
