"""Motions sampled per second: our DDIM-50 sampling against MDM's 1000-step DDPM, with guidance 2.5.

Prints one JSON object and saves it to benchmarks/results/sample_throughput_<device>.json:
  motions_per_s            DiffusionTrainer.sample with the default SampleConfig (DDIM, 50 steps,
                           guidance 2.5 as one batched 2N forward, batch 64), the trainer's defaults
                           for the device (bf16 autocast on CUDA), denoising only up to the longest
                           requested motion
  ddpm1000_motions_per_s   the same prompts, lengths and sample loop with the 1000-step DDPM chain,
                           fp32 (MDM's sampler); ddpm_steps_timed < 1000 means that many steps of it
                           were timed and the time scaled by 1000 / ddpm_steps_timed (every DDPM step
                           costs the same: one guided forward and one posterior step)
  speedup                  their ratio, measured in this run

The weights are freshly initialised (the cost of a step does not depend on them). Prompts are 64
captions of the embedded procedural dataset (hashing text encoder) with their motions' lengths
(40-195 frames, mean ≈ 120). Times are the best of --repeats, after an untimed warm-up.

Usage: python benchmarks/sample_throughput.py [--model mdm|small|tiny] [--device auto|cpu|cuda]
       [--ddpm-steps N] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from scl_ray.config import MODEL_PRESETS, SampleConfig, TrainConfig
from scl_ray.diffusion.denoiser import count_parameters
from scl_ray.diffusion.sampler import DDPMScheduler, sample
from scl_ray.diffusion.training import DiffusionTrainer
# The sibling benchmark's data and machine helpers (this folder is on sys.path when run as a script).
from train_throughput import (MAX_FRAMES, RESULTS, caption_tokens, describe_machine, model_config,
                              procedural_motions, resolve_device, set_threads, synchronize)

BATCH = 64  # sample.batch_size's default
DDPM_STEPS = 1000  # MDM's T


def best_time(function, device: torch.device, repeats: int) -> float:
    """The shortest wall time of `repeats` calls of function(), the device's queued work included."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODEL_PRESETS), default="small")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--ddpm-steps", type=int, default=None,
                        help="DDPM steps timed, scaled to 1000 (default: all 1000 on CUDA, 25 on the CPU)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each sampler; the best counts")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 on the CPU; torch's own on CUDA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="result file (default benchmarks/results/sample_throughput_<device>.json)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    set_threads(args.threads, cuda)
    ddpm_steps = args.ddpm_steps or (DDPM_STEPS if cuda else 25)
    if not 1 <= ddpm_steps <= DDPM_STEPS:
        raise SystemExit(f"--ddpm-steps must be in 1..{DDPM_STEPS}, got {ddpm_steps}")

    features, captions, _ = procedural_motions(BATCH, args.seed)
    lengths = torch.tensor([len(motion) for motion in features])
    text_emb, text_mask = caption_tokens(captions)
    trainer = DiffusionTrainer(model_config(args.model), TrainConfig(seed=args.seed), device,
                               text_dim=text_emb.shape[-1], max_frames=MAX_FRAMES)
    ours = SampleConfig(batch_size=BATCH)
    # MDM's chain visits every one of its T = 1000 steps; a respaced chain of `ddpm_steps` costs
    # exactly that many of those steps.
    ddpm = DDPMScheduler(trainer.alphas_cumprod)
    ddpm.set_timesteps(ddpm_steps)
    generator = torch.Generator(device).manual_seed(args.seed)

    def ddim50() -> None:
        trainer.sample(text_emb, text_mask, lengths, ours, args.seed)

    def ddpm_chain() -> None:
        sample(trainer.model, ddpm, text_emb, text_mask, lengths, ours.guidance, generator)

    trainer.sample(text_emb, text_mask, lengths, SampleConfig(steps=2, batch_size=BATCH), args.seed)  # warm-up
    ddim_s = best_time(ddim50, device, args.repeats)
    ddpm_s = best_time(ddpm_chain, device, args.repeats) * DDPM_STEPS / ddpm_steps

    result = {
        "device": str(device),
        "model": args.model,
        "motions_per_s": round(BATCH / ddim_s, 2),
        "ddpm1000_motions_per_s": round(BATCH / ddpm_s, 3),
        "speedup": round(ddpm_s / ddim_s, 2),
        "batch": BATCH,
        "guidance": ours.guidance,
        "ddim_steps": ours.steps,
        "ddim50_s": round(ddim_s, 3),
        "ddpm1000_s": round(ddpm_s, 2),
        "ddpm_steps_timed": ddpm_steps,
        "bf16": trainer.bf16,
        "parameters": count_parameters(trainer.model),
        "mean_frames": round(float(lengths.float().mean()), 1),
        "longest_frames": int(lengths.max()),
        "repeats": args.repeats,
        "machine": describe_machine(device),
    }
    path = Path(args.out) if args.out else RESULTS / f"sample_throughput_{device.type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
