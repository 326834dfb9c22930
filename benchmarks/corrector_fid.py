"""Does the physics corrector move physically corrupted real motions back towards the data, as the
evaluator sees them?

Real motions (a train-split sample of the configured dataset) are corrupted in joint space with each
corruption of `scl_ray.physics.corruptions` (sink 5 cm, hover 10 cm, slide 0.5 m/s, noise 1.5 cm, snap
15 cm for 3 frames), re-extracted to HumanML3D features, corrected by PhysicsCorrector (joints in, the
simulated joints out), and each set's FID is measured against the dataset's real test split with the
configured evaluator (trained once and cached). The issue's bar: the correction recovers at least half
of the FID damage, FID(corrected) <= FID(corrupted) - 0.5 (FID(corrupted) - FID(clean)).

FID on a few hundred motions is noisy, and the features re-floor every motion (HumanML3D puts the
lowest joint of the whole motion on the floor), so a whole-body sink or hover does no FID damage at
all: for those the bar only asks that correction does not make the set worse. Each FID comes with a
bootstrap standard error (resampling the corrected/corrupted set's motions, --bootstrap times).

Prints one JSON object and saves it to benchmarks/results/corrector_fid.json:
  config, overrides, motions, test_motions   what was measured
  clean                                       FID of the clean motions (and its standard error)
  clean_corrected                             FID of the clean motions after correction
  conditions                                  per corruption: fid_corrupted, fid_corrected (with standard
                                              errors), damage, recovered (share of the damage removed,
                                              null where the damage is below two standard errors),
                                              meets_bar, statuses, seconds_per_motion
  machine                                     the CPU

Usage: python benchmarks/corrector_fid.py [--config configs/quickstart.yaml] [--set key=value ...]
                                          [--motions 320] [--seed 0] [--bootstrap 200]
"""

from __future__ import annotations

import os

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from procedural_speed import cpu_model, save_and_print  # noqa: E402
from scl_ray.config import load_config  # noqa: E402
from scl_ray.evaluation.metrics import fid  # noqa: E402
from scl_ray.loop.data import RealData  # noqa: E402
from scl_ray.motion.features import features_to_joints, joints_to_features  # noqa: E402
from scl_ray.physics.corrector import PhysicsCorrector  # noqa: E402
from scl_ray.physics.corruptions import CLEAN, CORRUPTIONS  # noqa: E402
from scl_ray.workflows import dataset_evaluator  # noqa: E402

RESULT = Path(__file__).parent / "results" / "corrector_fid.json"
DEFAULT_OVERRIDES = ("data.procedural_num=2000",)  # a 200-motion test split


def extended(joints: np.ndarray) -> np.ndarray:
    """T joint frames plus one at constant velocity: T+1 joint frames make T feature frames."""
    return np.concatenate([joints, joints[-1:] + (joints[-1] - joints[-2])], axis=0)


def fid_with_error(evaluator, features: list[np.ndarray], real_embeddings: np.ndarray, bootstrap: int,
                   seed: int) -> tuple[float, float]:
    """FID of a motion set against the real embeddings, and its bootstrap standard error."""
    embeddings = evaluator.embed_motions(features)
    value = fid(embeddings, real_embeddings)
    rng = np.random.default_rng(seed)
    resampled = [fid(embeddings[rng.integers(0, len(embeddings), len(embeddings))], real_embeddings)
                 for _ in range(bootstrap)]
    return float(value), float(np.std(resampled))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).parents[1] / "configs" / "quickstart.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=list(DEFAULT_OVERRIDES))
    parser.add_argument("--motions", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    real = RealData.load(config.data)
    evaluator = dataset_evaluator(config, real)
    real_embeddings = evaluator.embed_motions(real.test.features)
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(real.train), size=min(args.motions, len(real.train)), replace=False)
    clean = [features_to_joints(real.train.features[i]).astype(np.float64) for i in chosen]
    corrector = PhysicsCorrector(config.correct)

    def measure(condition: str) -> dict:
        inputs = [joints if condition == CLEAN else CORRUPTIONS[condition](joints, np.random.default_rng([args.seed, i]))
                  for i, joints in enumerate(clean)]
        started = time.perf_counter()
        corrections = [corrector.correct_joints(extended(joints))
                       for joints in tqdm(inputs, desc=f"correcting ({condition})", unit="motion")]
        seconds = (time.perf_counter() - started) / len(inputs)
        corrupted_features = [joints_to_features(extended(joints)) for joints in inputs]
        corrected_features = [joints_to_features(c.joints) if c.status == "corrected" else joints_to_features(
            extended(joints)) for c, joints in zip(corrections, inputs)]
        before = fid_with_error(evaluator, corrupted_features, real_embeddings, args.bootstrap, args.seed)
        after = fid_with_error(evaluator, corrected_features, real_embeddings, args.bootstrap, args.seed)
        return {"fid_corrupted": before[0], "fid_corrupted_se": before[1], "fid_corrected": after[0],
                "fid_corrected_se": after[1], "statuses": dict(Counter(c.status for c in corrections)),
                "seconds_per_motion": seconds}

    baseline = measure(CLEAN)
    clean_fid, clean_se = baseline["fid_corrupted"], baseline["fid_corrupted_se"]
    conditions = {}
    for condition in CORRUPTIONS:
        row = measure(condition)
        damage = row["fid_corrupted"] - clean_fid
        noise = 2.0 * np.hypot(row["fid_corrupted_se"], clean_se)
        row["damage"] = damage
        row["recovered"] = (row["fid_corrupted"] - row["fid_corrected"]) / damage if damage > noise else None
        row["meets_bar"] = bool(row["fid_corrected"] <= row["fid_corrupted"] - 0.5 * damage)
        conditions[condition] = row
    config = os.path.relpath(args.config, Path(__file__).parents[1])  # the repository's, not this machine's path
    result = {"config": config, "overrides": args.overrides, "motions": len(clean),
              "test_motions": len(real.test), "clean": {"fid": clean_fid, "fid_se": clean_se},
              "clean_corrected": {"fid": baseline["fid_corrected"], "fid_se": baseline["fid_corrected_se"],
                                  "statuses": baseline["statuses"]},
              "conditions": conditions, "machine": cpu_model()}
    save_and_print(result, RESULT)


if __name__ == "__main__":
    main()
