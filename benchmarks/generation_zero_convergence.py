"""How many initial training steps a config's generation 0 needs before its samples are recognisable.

Prints one JSON object and saves it to benchmarks/results/generation_zero_convergence.json:

    python benchmarks/generation_zero_convergence.py [--config configs/cpu_study.yaml]
        [--steps 100,300,600,1000,1500,2000,3000] [--seed 0] [--set KEY=VALUE ...]

One loop's generation 0 (the config's data, model, training, n = loop.train_size and `loop.seed`) is
trained in-process and, after each step count of `--steps`, scored by the loop's own evaluation (the
config's prompts, evaluator and protocol: R-precision top 1/3, FID, Matching, Diversity, with 95%
intervals). Training goes on from one count to the next (the optimiser has no schedule, so only the
data order of each stretch differs from one run of that many steps).

The baseline, measured in the same run: the real test motions the prompts come from, scored by the
same protocol (their R-precision is the ceiling a model can reach with this evaluator), and the untrained
model (step 0: the floor). `recognisable_top3` is each count's R-precision top-3 as a share of the way
from the floor to the ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import RESULTS, describe_machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("r_precision_top1", "r_precision_top3", "fid", "matching_score", "diversity",
        "r_precision_top3_ci_low", "r_precision_top3_ci_high", "fid_ci_low", "fid_ci_high")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu_study.yaml"))
    parser.add_argument("--steps", default="100,300,600,1000,1500,2000,3000")
    parser.add_argument("--seed", type=int, default=0, help="loop.seed (the real subset, weights, noise)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)

    from scl_ray.config import load_config
    from scl_ray.loop.motion import MotionEvaluation, MotionLoopModel
    from scl_ray.loop.plan import generation_seed
    from scl_ray.loop.resources import LoopResources
    from scl_ray.motion.store import MotionSet

    config = load_config(args.config, [*args.overrides, f"loop.seed={args.seed}"])
    counts = sorted(int(step) for step in args.steps.split(","))
    started = time.perf_counter()
    resources = LoopResources.build(config, progress=False)
    evaluation = MotionEvaluation(config, resources.real, resources.evaluator)
    prompts = evaluation.prompts
    ceiling = evaluation.set_metrics(MotionSet(
        ids=list(prompts.ids), captions=[(caption,) for caption in evaluation.captions], features=list(prompts.features),
        source=["real"] * len(prompts), generation=[0] * len(prompts), status=[""] * len(prompts),
        stats=[{} for _ in prompts.ids]))
    model = MotionLoopModel(config, resources.real.normalizer, resources.bank, "cpu")
    seed = generation_seed(config.loop.seed, 0)
    model.reset(seed)
    real = resources.real.subset(config.loop.train_size, config.loop.seed)
    rows, trained, train_s = [], 0, 0.0
    for count in [0, *counts]:
        tic = time.perf_counter()
        if count > trained:
            model.train(real, count - trained, seed + count)
            trained = count
        train_s += time.perf_counter() - tic
        metrics = evaluation(model, 0, seed)
        rows.append({"steps": count, "train_s": round(train_s, 1),
                     **{key: round(float(metrics[key]), 4) for key in KEYS if key in metrics}})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    floor, top = rows[0]["r_precision_top3"], ceiling["r_precision_top3"]
    for row in rows:
        row["recognisable_top3"] = round((row["r_precision_top3"] - floor) / (top - floor), 3) if top > floor else None
    result = {
        "config": os.path.relpath(args.config, ROOT),
        "overrides": args.overrides,
        "train_size": config.loop.train_size,
        "batch_size": config.train.batch_size,
        "evaluation_samples": len(evaluation.captions),
        "real_test_motions": {key: round(float(ceiling[key]), 4) for key in KEYS if key in ceiling},
        "rows": rows,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": describe_machine(torch.device("cpu")),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generation_zero_convergence.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
