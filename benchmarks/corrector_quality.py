"""How well PhysicsCorrector removes each corruption, judged by scl_ray.physics.corruptions.

One procedural motion per family (drawn with --seed) is corrected clean and under each corruption
(sink 5 cm, hover 10 cm, slide 0.5 m/s, noise 1.5 cm, snap 15 cm for 3 frames), and every output is
judged against the clean motion with `assess_case`'s criteria (own_metric, other_metrics, mpjpe,
speed, peak_jerk, pelvis_height; see that module's docstring for the thresholds).

Prints one JSON object and saves it to benchmarks/results/corrector_quality.json; the rows' markdown
table (`format_table`) goes to benchmarks/results/corrector_quality.md:
  families, conditions, seed  what was run
  pass_counts                 per criterion (and "all" for whole rows): rows judged and rows passed
  pass_counts_by_condition    the same, per condition
  baseline_pass_counts        the same for the identity (every input returned unchanged), judged in the
                              same run: what the corrector earns over doing nothing
  statuses                    how many corrections ended in each status (corrected, fallback)
  seconds_per_motion          mean wall time of one `correct_joints` call (one core, BLAS 1 thread);
                              seconds_per_motion_max the slowest; frames_per_motion the mean length
  rows                        one per (family, condition): status, seconds, passed, checks (criterion ->
                              true / false / null where it does not apply), removed (share of the own
                              metric's damage removed), worse (metrics above their bound), mpjpe_mm,
                              pelvis_drop_m, and the physics metrics of the clean, corrupted and
                              corrected motion
  machine                     CPU model and python version

Usage: python benchmarks/corrector_quality.py [--families walk jump_in_place] [--conditions clean sink]
                                              [--seed 0]
"""

from __future__ import annotations

import os

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from procedural_speed import cpu_model  # noqa: E402
from scl_ray.motion.procedural import generate_motion  # noqa: E402
from scl_ray.motion.procedural.families import FAMILIES  # noqa: E402
from scl_ray.physics.corrector import PhysicsCorrector  # noqa: E402
from scl_ray.physics.corruptions import CONDITIONS, assess_case, corrupt_all, format_table, pass_counts  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def judge_family(corrector: PhysicsCorrector, family: str, conditions: list[str], seed: int) -> list[dict]:
    """Correct one motion of `family` under each condition; per condition the corrector's row and the
    identity's (baseline) row, with the correction's status and wall time."""
    rng = np.random.default_rng(seed)
    clean = generate_motion(family, rng).joints
    # Every condition is drawn, whichever are run, so a condition's input does not depend on the others.
    inputs = corrupt_all(clean, rng)
    results = []
    for condition in conditions:
        start = time.perf_counter()
        correction = corrector.correct_joints(inputs[condition])
        seconds = time.perf_counter() - start
        row = assess_case(family, condition, clean, inputs[condition], correction.joints)
        baseline = assess_case(family, condition, clean, inputs[condition], inputs[condition])
        results.append({"row": row, "baseline": baseline, "status": correction.status, "seconds": seconds,
                        "frames": len(clean)})
    return results


def counts_by_condition(rows: list, conditions: list[str]) -> dict:
    return {condition: pass_counts([row for row in rows if row.condition == condition]) for condition in conditions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    corrector = PhysicsCorrector()
    results = [result for family in args.families for result in judge_family(corrector, family, args.conditions,
                                                                               args.seed)]
    rows = [result["row"] for result in results]
    seconds = [result["seconds"] for result in results]
    summary = {
        "families": args.families, "conditions": args.conditions, "seed": args.seed,
        "pass_counts": pass_counts(rows),
        "pass_counts_by_condition": counts_by_condition(rows, args.conditions),
        "baseline_pass_counts": pass_counts([result["baseline"] for result in results]),
        "statuses": dict(Counter(result["status"] for result in results)),
        "seconds_per_motion": float(np.mean(seconds)), "seconds_per_motion_max": float(np.max(seconds)),
        "frames_per_motion": float(np.mean([result["frames"] for result in results])),
        "rows": [{"status": result["status"], "seconds": result["seconds"], **result["row"].to_dict()}
                 for result in results],
        "machine": f"{cpu_model()}, 1 core, python {platform.python_version()}",
    }
    text = json.dumps(summary, indent=2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "corrector_quality.json").write_text(text + "\n")
    (RESULTS / "corrector_quality.md").write_text(format_table(rows) + "\n")
    print(text)


if __name__ == "__main__":
    main()
