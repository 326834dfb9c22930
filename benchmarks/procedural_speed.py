"""How fast the procedural dataset is generated on one CPU core.

Prints one JSON object and saves it to benchmarks/results/procedural_speed.json:
  motions_per_s           generate_motions (planning, IK and FK vectorised over frames, captions)
  baseline_motions_per_s  the same motions rebuilt from their parameters and posed one frame at a
                          time (the same IK and FK code called per frame, as an implementation that
                          loops over frames would), measured in the same run
  speedup                 their ratio

Usage: python benchmarks/procedural_speed.py [--motions 200] [--seed 0]
"""

from __future__ import annotations

import os

# One core: pin the process and keep BLAS single-threaded before numpy loads.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from scl_ray.motion.procedural import generate_motions  # noqa: E402
from scl_ray.motion.procedural.body import pose  # noqa: E402
from scl_ray.motion.procedural.dataset import rebuild_track  # noqa: E402

RESULT = Path(__file__).parent / "results" / "procedural_speed.json"


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's description."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.platform()


def save_and_print(result: dict, path: Path) -> None:
    """Write a benchmark's JSON object to `path` (benchmarks/results/...) and print it."""
    text = json.dumps(result, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(text)


def per_frame(motions) -> float:
    """Seconds to rebuild and pose `motions` one frame at a time; checks the joints agree."""
    start = time.perf_counter()
    for motion in motions:
        track, body = rebuild_track(motion.family, motion.params)
        joints = np.concatenate([pose(track.window(i, i + 1), body) for i in range(track.frames)])
        if np.abs(joints - motion.joints).max() > 1e-9:
            raise AssertionError(f"motion {motion.id}: per-frame posing differs from the generated joints")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--motions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    generate_motions(10, args.seed + 1)  # warm imports and caches
    start = time.perf_counter()
    motions = generate_motions(args.motions, args.seed)
    vectorised = time.perf_counter() - start
    baseline = per_frame(motions)

    frames = sum(len(motion.joints) for motion in motions)
    result = {
        "motions_per_s": round(args.motions / vectorised, 1),
        "baseline_motions_per_s": round(args.motions / baseline, 1),
        "speedup": round(baseline / vectorised, 1),
        "frames_per_s": round(frames / vectorised),
        "motions": args.motions,
        "mean_frames": round(frames / args.motions, 1),
        "machine": f"{cpu_model()}, 1 core, python {platform.python_version()}, numpy {np.__version__}",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
