"""How fast PhysicsCorrector corrects 196-frame motions, per core, against bare MuJoCo stepping.

Prints one JSON object and saves it to benchmarks/results/corrector_throughput.json:
  sim_hz                  the simulation rate chosen as default (the first of --sim-hz)
  motions_per_s_per_core  PhysicsCorrector on a features batch (196 frames each: feature recovery,
                          retargeting, tracking, feature extraction, physics metrics) in one process
  motions_per_cpu_s       the same per CPU-second of this process: on a machine shared with other jobs
                          (load_average, the 1-minute load at the end, says how busy it was) wall
                          times grow with the load, CPU times much less
  limit_ratio             that rate over bare mj_step of the same model for the same number of steps
                          per motion, measured in the same run (1.0 = no overhead beyond stepping;
                          the corrector also builds a humanoid per motion, retargets, computes the
                          inverse dynamics and the contact forces, and rolls back where it needs help)
  actors                  processes in the scaling run
  scaling                 motions/s of `actors` processes (one corrector each, one core each) over one
  by_sim_hz               the same rate and ratio, and the tracking quality (mean tracking error, share
                          corrected, share of motions that needed help, mean residual force in body
                          weights), at every --sim-hz, to choose the default from
  machine                 the CPU

Motions are procedural (walks, runs, jumps, kicks, ...; the embedded dataset) stretched to 196
frames by playing them forwards then backwards (each motion gets its own humanoid, built on its
geometry, as in production). Times are the best of --repeats.

Usage: python benchmarks/corrector_throughput.py [--sim-hz 300 100 150 200 450] [--motions 8]
"""

from __future__ import annotations

import os

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from procedural_speed import cpu_model, save_and_print  # noqa: E402
from scl_ray.config import CorrectConfig  # noqa: E402
from scl_ray.motion.constants import MAX_FRAMES  # noqa: E402
from scl_ray.motion.features import features_to_joints  # noqa: E402
from scl_ray.motion.features import joints_to_features  # noqa: E402
from scl_ray.motion.procedural import generate_motions  # noqa: E402
from scl_ray.physics.corrector import PhysicsCorrector  # noqa: E402

RESULT = Path(__file__).parent / "results" / "corrector_throughput.json"
FRAMES = MAX_FRAMES  # feature frames per motion, HumanML3D's maximum


def batch(motions: int, seed: int) -> dict[str, np.ndarray]:
    """A features batch of `motions` procedural motions, each FRAMES feature frames long."""
    features = np.zeros((motions, FRAMES, 263), dtype=np.float32)
    for index, motion in enumerate(generate_motions(motions, seed)):
        joints = motion.joints
        while len(joints) < FRAMES + 1:
            joints = np.concatenate([joints, joints[::-1][1:]])
        features[index] = joints_to_features(joints[: FRAMES + 1])
    return {"ids": np.array([f"P{i:06d}" for i in range(motions)], dtype=object), "features": features,
            "lengths": np.full(motions, FRAMES)}


def best_time(function, repeats: int) -> tuple[float, float]:
    """The shortest wall time and the shortest CPU time of this process over `repeats` calls. On a
    machine shared with other jobs the CPU time is what one dedicated core would take."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def measure(sim_hz: int, motions: dict[str, np.ndarray], repeats: int) -> dict:
    corrector = PhysicsCorrector(CorrectConfig(sim_hz=sim_hz))
    count = len(motions["features"])
    out = corrector(motions)  # warm-up, and the quality of the result
    per_motion, cpu_per_motion = (t / count for t in best_time(lambda: corrector(motions), repeats))
    model = corrector.humanoid_for(features_to_joints(motions["features"][0])).model
    data = mujoco.MjData(model)
    # The corrector simulates FRAMES + 1 joint frames, so FRAMES frame intervals per motion.
    steps = int(round(FRAMES * sim_hz / corrector.settings.fps))

    def bare() -> None:
        for _ in range(count):
            mujoco.mj_resetData(model, data)
            mujoco.mj_step(model, data, nstep=steps)

    bare_per_motion, bare_cpu_per_motion = (t / count for t in best_time(bare, repeats))
    corrected = out["status"] == "corrected"
    return {"sim_hz": sim_hz, "motions_per_s_per_core": 1.0 / per_motion, "limit_ratio": bare_per_motion / per_motion,
            "motions_per_cpu_s": 1.0 / cpu_per_motion, "limit_ratio_cpu": bare_cpu_per_motion / cpu_per_motion,
            "bare_steps_per_s": steps / bare_per_motion, "share_corrected": float(corrected.mean()),
            "tracking_error_mm": float(np.nanmean(out["tracking_error"][corrected]) * 1000),
            "share_helped": float((out["help_max"][corrected] > 0).mean()),
            "residual_body_weights": float(np.nanmean(out["residual"][corrected]))}


def _worker(args: tuple[int, int, dict, int]) -> float:
    core, sim_hz, motions, repeats = args
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    corrector = PhysicsCorrector(CorrectConfig(sim_hz=sim_hz))
    corrector(motions)
    return len(motions["features"]) / best_time(lambda: corrector(motions), repeats)[0]


def scaling(sim_hz: int, motions: dict[str, np.ndarray], repeats: int, actors: int) -> float:
    """Total motions/s of `actors` processes on distinct cores over that of one process."""
    cores = sorted(os.sched_getaffinity(0))[:actors]
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        alone = pool.map(_worker, [(cores[0], sim_hz, motions, repeats)])[0]
    with context.Pool(actors) as pool:
        together = sum(pool.map(_worker, [(core, sim_hz, motions, repeats) for core in cores]))
    return together / alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-hz", type=int, nargs="+", default=[300, 100, 150, 200, 450])
    parser.add_argument("--motions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    motions = batch(args.motions, args.seed)
    by_sim_hz = [measure(sim_hz, motions, args.repeats) for sim_hz in args.sim_hz]
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    default = by_sim_hz[0]
    result = {"sim_hz": default["sim_hz"], "motions_per_s_per_core": default["motions_per_s_per_core"],
              "limit_ratio": default["limit_ratio"], "motions_per_cpu_s": default["motions_per_cpu_s"],
              "load_average": os.getloadavg()[0], "actors": args.actors,
              "scaling": scaling(default["sim_hz"], motions, args.repeats, args.actors),
              "by_sim_hz": sorted(by_sim_hz, key=lambda row: row["sim_hz"]),
              "motions": args.motions, "frames": FRAMES, "cores": len(os.sched_getaffinity(0)),
              "machine": cpu_model()}
    save_and_print(result, RESULT)


if __name__ == "__main__":
    main()
