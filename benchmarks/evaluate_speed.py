"""How fast one evaluation runs on the CPU: evaluator embeddings plus every protocol metric.

Prints one JSON object and saves it to benchmarks/results/evaluate_speed_cpu.json:
  motions_per_s        evaluated motions per second: --motions generated motions embedded, their
                       captions embedded, the MultiModality samples (evaluate.mm_prompts x
                       evaluate.mm_samples = 16 x 30 motions) embedded, and `compute_all` (FID against
                       the real reference, R-precision, Matching score, Diversity, MultiModality)
  embed_motions_s, embed_texts_s, embed_mm_s, metrics_s
                       that time split by stage (each the best of --repeats)
  fid_s                the FID part of metrics_s, timed on its own (scipy's sqrtm of a 512 x 512
                       matrix product)
  embed_real_s         embedding the real reference set: once per trial, not per generation, so
                       not counted in motions_per_s
  unbatched_embed_motions_per_s, batching_speedup
                       the baseline: motions embedded one at a time (batch of 1, as a per-motion
                       loop would) on the first 100 motions, against the batched rate above

The evaluator is built from `EvaluatorConfig()` defaults and freshly initialised (the time does not
depend on the weights), with the hashing text encoder (per-word vectors, no model: its time is a
lower bound next to MiniLM's). Motions and captions come from the embedded procedural dataset (raw
263-d features, 40-195 frames, mean ≈ 120); the real reference is another procedural set of the
same size; the MultiModality samples reuse the first 480 generated motions.

Everything runs on one thread (torch and the BLAS behind numpy/scipy), as in a Ray Train worker with
one CPU. BLAS is capped because on a shared 2-core machine OpenBLAS's default 2 threads made FID's
sqrtm about 8x slower and erratic (2.2-5.6 s instead of 0.27 s, measured with this script's data).

Usage: python benchmarks/evaluate_speed.py [--motions 1000] [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import os

# One thread for BLAS: set before numpy loads (see above).
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scl_ray.config import EvaluateConfig, EvaluatorConfig  # noqa: E402
from scl_ray.evaluation.encoders import EvaluatorNetwork  # noqa: E402
from scl_ray.evaluation.evaluator import Evaluator  # noqa: E402
from scl_ray.evaluation.metrics import compute_all, fid  # noqa: E402
from scl_ray.text.encoders import HashingTextEncoder  # noqa: E402
# The sibling benchmark's data and machine helpers (this folder is on sys.path when run as a script).
from train_throughput import RESULTS, describe_machine, procedural_motions  # noqa: E402

UNBATCHED_MOTIONS = 100


def best_run(function, repeats: int):
    """(shortest wall seconds of `repeats` calls of function(), the last call's result)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return min(times), value


def fresh_evaluator(normalizer, seed: int) -> Evaluator:
    """An untrained evaluator of the default size, with the hashing text encoder."""
    config = EvaluatorConfig()
    encoder = HashingTextEncoder()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = EvaluatorNetwork(config, encoder.dim, normalizer.mean, normalizer.std)
    return Evaluator(network, encoder, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--motions", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each stage; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = EvaluateConfig()
    mm_count = settings.mm_prompts * settings.mm_samples
    if args.motions < max(mm_count, settings.r_precision_batch):
        raise SystemExit(f"--motions must be at least {max(mm_count, settings.r_precision_batch)} "
                         f"(the MultiModality samples reuse {mm_count} of them), got {args.motions}")

    generated, captions, normalizer = procedural_motions(args.motions, args.seed)
    real, _, _ = procedural_motions(args.motions, args.seed + 1)
    evaluator = fresh_evaluator(normalizer, args.seed)
    evaluator.embed_motions(generated[:64])  # warm-up
    evaluator.embed_texts(captions[:64])

    embed_motions_s, motion_emb = best_run(lambda: evaluator.embed_motions(generated), args.repeats)
    embed_texts_s, text_emb = best_run(lambda: evaluator.embed_texts(captions), args.repeats)
    embed_mm_s, mm_flat = best_run(lambda: evaluator.embed_motions(generated[:mm_count]), args.repeats)
    embed_real_s, real_emb = best_run(lambda: evaluator.embed_motions(real), 1)
    mm_emb = mm_flat.reshape(settings.mm_prompts, settings.mm_samples, -1)
    metrics_s, metrics = best_run(lambda: compute_all(text_emb, motion_emb, real_emb, mm_emb, settings), args.repeats)
    # FID as compute_all takes it: the generated motions of the full R-precision pools.
    pooled = args.motions // settings.r_precision_batch * settings.r_precision_batch
    fid_s, _ = best_run(lambda: fid(motion_emb[:pooled], real_emb), args.repeats)
    unbatched_s, _ = best_run(lambda: evaluator.embed_motions(generated[:UNBATCHED_MOTIONS], batch_size=1), 1)

    total = embed_motions_s + embed_texts_s + embed_mm_s + metrics_s
    batched_rate = args.motions / embed_motions_s
    unbatched_rate = UNBATCHED_MOTIONS / unbatched_s
    result = {
        "motions_per_s": round(args.motions / total, 1),
        "seconds": round(total, 3),
        "motions": args.motions,
        "embed_motions_s": round(embed_motions_s, 3),
        "embed_texts_s": round(embed_texts_s, 3),
        "embed_mm_s": round(embed_mm_s, 3),
        "metrics_s": round(metrics_s, 3),
        "fid_s": round(fid_s, 3),
        "embed_real_s": round(embed_real_s, 3),
        "unbatched_embed_motions_per_s": round(unbatched_rate, 1),
        "batching_speedup": round(batched_rate / unbatched_rate, 2),
        "mm_samples": mm_count,
        "metrics": sorted(metrics),
        "evaluator": (f"EvaluatorConfig() defaults (width {evaluator.config.width}, embed_dim "
                      f"{evaluator.embed_dim}), freshly initialised, HashingTextEncoder"),
        "mean_frames": round(float(np.mean([len(motion) for motion in generated])), 1),
        "machine": describe_machine(torch.device("cpu")) + ", BLAS threads 1",
    }
    path = RESULTS / "evaluate_speed_cpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
