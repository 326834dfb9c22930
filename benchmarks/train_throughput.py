"""Training steps per second of DiffusionTrainer against a plain fp32 eager loop, and Ray Train's start-up.

Prints one JSON object and saves it to benchmarks/results/train_throughput_<device>.json:
  steps_per_s           DiffusionTrainer.train with its defaults for the device (on CUDA bf16 autocast
                        and torch.compile; on the CPU neither), each batch trimmed to its longest motion
  baseline_steps_per_s  a plain training step written out here: the same denoiser and data, fp32,
                        eager, every batch padded to 196 frames (forward, masked MSE, backward, AdamW)
  speedup               their ratio, both measured in this run (alternating rounds, the best round of each)
  ray_overhead_s        wall time from `TorchTrainer.fit` to the first `ray.train.report` of a trivial
                        train loop (one worker; on a local Ray started here): what a loop pays once per
                        trial, since one fit runs all of a trial's generations; ray_init_s (starting
                        that Ray) and ray_fit_total_s (the whole fit, worker group shutdown included)
                        come with it. null with --skip-ray or where ray is not installed.
  mean_batch_frames     the expected length a batch is trimmed to (its longest motion) at this batch size

Data: the embedded procedural dataset (256 motions of 40-195 frames, mean ≈ 120, HumanML3D's range),
features normalised with the set's own statistics, captions embedded by the hashing text encoder
(the same (N, 32, 384) token shape as MiniLM's). Warm-up steps (compilation included) are not timed.
On the CPU torch runs 1 thread unless --threads says otherwise: a Ray Train worker with
resources.cpus_per_worker = 1 does the same.

Usage: python benchmarks/train_throughput.py [--model mdm|small|tiny] [--batch 64] [--steps N]
       [--device auto|cpu|cuda] [--rounds 3] [--threads N] [--skip-ray]
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

from scl_ray.config import MODEL_PRESETS, ModelConfig, TrainConfig
from scl_ray.diffusion.data import MotionTextDataset
from scl_ray.diffusion.denoiser import Denoiser, count_parameters
from scl_ray.diffusion.schedule import q_sample
from scl_ray.diffusion.training import DiffusionTrainer
from scl_ray.motion.constants import MAX_FRAMES  # HumanML3D's padded length
from scl_ray.motion.features import Normalizer, joints_to_features
from scl_ray.motion.procedural import generate_motions
from scl_ray.text.encoders import HashingTextEncoder

RESULTS = Path(__file__).parent / "results"
TEXT_TOKENS = 32  # model.text_max_tokens' default
DATASET_MOTIONS = 256


def resolve_device(name: str) -> torch.device:
    """"auto" = CUDA when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here; use --device cpu or auto")
    return torch.device(name)


def set_threads(threads: int | None, cuda: bool) -> None:
    """torch's CPU threads: `threads`, else 1 on the CPU (what a Ray Train worker with
    resources.cpus_per_worker = 1 uses, and steadier than 2 threads on a shared machine)."""
    if threads is not None or not cuda:
        torch.set_num_threads(threads or 1)


def describe_machine(device: torch.device) -> str:
    """CPU model, cores, python and torch versions, and the GPU when the device is CUDA."""
    cpu = platform.processor() or platform.platform()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    text = (f"{cpu}, {len(os.sched_getaffinity(0))} cores, torch threads {torch.get_num_threads()}, "
            f"python {platform.python_version()}, torch {torch.__version__}")
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def model_config(preset: str) -> ModelConfig:
    """The denoiser section of a named preset (mdm, small, tiny), as a config file naming it gives."""
    return ModelConfig(preset=preset, **MODEL_PRESETS[preset])


def procedural_motions(count: int, seed: int) -> tuple[list[np.ndarray], list[str], Normalizer]:
    """`count` procedural motions: raw (F_i, 263) float32 features (F_i in 40..195), each motion's
    first caption, and the set's feature statistics."""
    motions = generate_motions(count, seed)
    features = [joints_to_features(motion.joints) for motion in motions]
    frames = np.concatenate(features)
    # A feature that never varies in this set (e.g. a contact flag) gets std 1 rather than 0.
    std = frames.std(0)
    normalizer = Normalizer(frames.mean(0), np.where(std > 1e-6, std, 1.0))
    return features, [motion.captions[0] for motion in motions], normalizer


def caption_tokens(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions -> token embeddings (N, 32, 384) float32 and mask (N, 32) bool, hashing encoder."""
    tokens, mask = HashingTextEncoder().encode(captions, TEXT_TOKENS)
    return torch.from_numpy(tokens), torch.from_numpy(mask)


def training_set(count: int, seed: int) -> tuple[MotionTextDataset, Normalizer]:
    """A MotionTextDataset of `count` normalised procedural motions padded to 196 frames."""
    features, captions, normalizer = procedural_motions(count, seed)
    tokens, mask = caption_tokens(captions)
    normalised = [normalizer.normalize(motion) for motion in features]
    return MotionTextDataset.from_motions(normalised, tokens, mask, MAX_FRAMES), normalizer


def mean_batch_frames(lengths: torch.Tensor, batch: int, seed: int, draws: int = 1000) -> float:
    """Expected padded length of a batch trimmed to its longest motion (frames), over random batches."""
    generator = torch.Generator().manual_seed(seed)
    longest = [lengths[torch.randperm(len(lengths), generator=generator)[:batch]].max() for _ in range(draws)]
    return float(torch.stack(longest).float().mean())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PlainTraining:
    """The baseline: an fp32 eager training step on full 196-frame padding, written out in plain PyTorch."""

    def __init__(self, config: ModelConfig, alphas_cumprod: np.ndarray, dataset: MotionTextDataset,
                 batch: int, device: torch.device, seed: int):
        torch.manual_seed(seed)
        self.model = Denoiser(config, text_dim=dataset.text_emb.shape[-1], max_frames=MAX_FRAMES).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=TrainConfig().lr)
        self.config, self.alphas_cumprod, self.dataset = config, alphas_cumprod, dataset
        self.batch, self.device = batch, device
        self.generator = torch.Generator().manual_seed(seed)

    def step(self) -> torch.Tensor:
        index = torch.randint(0, len(self.dataset), (self.batch,), generator=self.generator)
        x0 = self.dataset.features[index].to(self.device)
        frame_mask = self.dataset.frame_mask(index).to(self.device)
        text_emb = self.dataset.text_emb[index].to(self.device, torch.float32)
        text_mask = self.dataset.text_mask[index].to(self.device)
        t = torch.randint(0, self.config.diffusion_steps, (self.batch,), generator=self.generator).to(self.device)
        uncond = (torch.rand(self.batch, generator=self.generator) < self.config.cond_mask_prob).to(self.device)
        mask = frame_mask[..., None].float()
        x_t = q_sample(x0, t, torch.randn_like(x0), self.alphas_cumprod) * mask
        pred = self.model(x_t, t, text_emb, text_mask, frame_mask, force_uncond=uncond)
        # Masked MSE, each motion weighted equally whatever its length (MDM's loss).
        per_motion = ((pred - x0) ** 2 * mask).flatten(1).sum(1) / (frame_mask.sum(1) * x0.shape[-1])
        loss = per_motion.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def train(self, steps: int) -> None:
        for _ in range(steps):
            self.step()


def timed(function, device: torch.device) -> float:
    """Wall seconds of function(), the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def first_report_loop(_config: dict) -> float:
    """A trivial `train_loop_per_worker`: report one step at once; returns when it reported (epoch s)."""
    import ray.train

    reported = time.time()
    ray.train.report({"step": 0})
    return reported


def ray_startup(use_gpu: bool) -> dict:
    """Seconds to start a local Ray, and from `TorchTrainer.fit` to the first reported step."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError:
        return {"ray_overhead_s": None, "ray_note": "ray is not installed here: start-up not measured"}
    from scl_ray.distributed.runtime import ray_environment

    os.environ.update(ray_environment())
    start = time.time()
    # address="local": a fresh Ray for this process, never someone else's running cluster.
    ray.init(address="local", num_cpus=4, include_dashboard=False,
             runtime_env={"env_vars": ray_environment()})
    init_s = time.time() - start
    try:
        with tempfile.TemporaryDirectory() as storage:
            trainer = TorchTrainer(
                first_report_loop,
                scaling_config=ScalingConfig(num_workers=1, use_gpu=use_gpu),
                run_config=RunConfig(name="ray_overhead", storage_path=storage,
                                     worker_runtime_env={"env_vars": ray_environment()}),
            )
            start = time.time()
            result = trainer.fit()
            fit_s = time.time() - start
    finally:
        ray.shutdown()
    return {"ray_overhead_s": round(result.return_value - start, 2), "ray_fit_total_s": round(fit_s, 2),
            "ray_init_s": round(init_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODEL_PRESETS), default="small")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default: 100 CUDA, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 30 CUDA, 2 CPU)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds; the best of each counts")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 on the CPU, as a one-CPU Train worker; else torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ray", action="store_true", help="do not measure Ray Train's start-up")
    parser.add_argument("--out", help="result file (default benchmarks/results/train_throughput_<device>.json)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    set_threads(args.threads, cuda)
    steps = args.steps or (100 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (30 if cuda else 2)

    dataset, normalizer = training_set(DATASET_MOTIONS, args.seed)
    config = model_config(args.model)
    trainer = DiffusionTrainer(config, TrainConfig(batch_size=args.batch, seed=args.seed), device,
                               text_dim=dataset.text_emb.shape[-1], max_frames=MAX_FRAMES, normalizer=normalizer)
    baseline = PlainTraining(config, trainer.alphas_cumprod, dataset, args.batch, device, args.seed)
    trainer.train(dataset, warmup)
    baseline.train(warmup)
    ours_s, baseline_s = [], []
    for _ in range(args.rounds):
        ours_s.append(timed(lambda: trainer.train(dataset, steps), device))
        baseline_s.append(timed(lambda: baseline.train(steps), device))

    result = {
        "device": str(device),
        "model": args.model,
        "batch": args.batch,
        "steps_per_s": round(steps / min(ours_s), 3),
        "baseline_steps_per_s": round(steps / min(baseline_s), 3),
        "speedup": round(min(baseline_s) / min(ours_s), 3),
        "ray_overhead_s": None,
        "bf16": trainer.bf16,
        "compile": trainer.network is not trainer.model,
        "parameters": count_parameters(trainer.model),
        "steps_timed": steps,
        "warmup_steps": warmup,
        "rounds": args.rounds,
        "mean_frames": round(float(dataset.lengths.float().mean()), 1),
        "mean_batch_frames": round(mean_batch_frames(dataset.lengths, args.batch, args.seed), 1),
    }
    if not args.skip_ray:
        result.update(ray_startup(use_gpu=cuda))
    result["machine"] = describe_machine(device)
    path = Path(args.out) if args.out else RESULTS / f"train_throughput_{device.type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
