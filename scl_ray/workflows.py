"""The standalone stages behind `scl-ray sample`, `scl-ray evaluator train` and `scl-ray evaluate`.

Each is one function over the library (no Ray): sample motions from a checkpoint for prompts,
train (or load from the cache) the evaluator of a dataset, and evaluate a motion set against a
dataset's real test split with the standard metrics plus physics metrics.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from scl_ray.config import Config, SampleConfig
from scl_ray.diffusion.checkpoint import load_denoiser
from scl_ray.diffusion.sampler import make_scheduler, sample
from scl_ray.diffusion.schedule import schedule_alphas_cumprod
from scl_ray.errors import UserError
from scl_ray.evaluation.evaluator import load_or_train_evaluator
from scl_ray.evaluation.metrics import is_interval
from scl_ray.evaluation.protocol import evaluate_motions
from scl_ray.loop.data import RealData
from scl_ray.motion.constants import MIN_FRAMES
from scl_ray.motion.store import MotionSet
from scl_ray.text.encoders import embed_captions, get_text_encoder

MAIN_METRICS = ("fid", "r_precision_top1", "r_precision_top2", "r_precision_top3", "matching_score",
                "diversity", "multimodality")


def sample_from_checkpoint(checkpoint: str, prompts: list[str], num: int, length: int, settings: SampleConfig,
                           seed: int = 0, device: str = "cpu", progress: bool = True) -> MotionSet:
    """`num` motions of `length` frames (20 fps) per prompt from a trained checkpoint."""
    try:
        model, normalizer, state = load_denoiser(checkpoint, device)
    except ValueError as error:  # diffusion.checkpoint's damaged, foreign or mismatched file: named in its message
        raise UserError(str(error)) from error
    if normalizer is None:
        raise UserError(f"{checkpoint} holds no dataset statistics (Mean/Std); it cannot produce raw features")
    model_config = state["config"]["model"]
    max_frames = state["dims"]["max_frames"]
    if not MIN_FRAMES <= length <= max_frames:
        raise UserError(f"--length must be in {MIN_FRAMES}..{max_frames} frames (the dataset's motion lengths), "
                        f"got {length}")
    encoder = get_text_encoder(model_config.get("text_encoder", "minilm"))
    captions = [prompt for prompt in prompts for _ in range(num)]
    embeddings, mask = embed_captions(captions, encoder, None, model_config["text_max_tokens"], progress=False)
    alphas = schedule_alphas_cumprod(model_config["noise_schedule"], model_config["diffusion_steps"])
    scheduler = make_scheduler(settings.sampler, alphas, settings.steps, settings.eta)
    generator = torch.Generator(device).manual_seed(seed)
    chunks = []
    bar = tqdm(range(0, len(captions), settings.batch_size), desc="sampling", unit="batch", disable=not progress)
    with torch.no_grad():
        for start in bar:
            part = slice(start, start + settings.batch_size)
            lengths = torch.full((len(captions[part]),), length)
            chunks.append(sample(model, scheduler, torch.from_numpy(embeddings[part]).float(),
                                 torch.from_numpy(mask[part]), lengths, settings.guidance, generator).cpu().numpy())
    raw = normalizer.denormalize(np.concatenate(chunks))[:, :length].astype(np.float32)
    count = len(captions)
    return MotionSet(ids=[f"sample_{i:05d}" for i in range(count)], captions=[(c,) for c in captions],
                     features=list(raw), source=["synthetic"] * count, generation=[0] * count,
                     status=[""] * count, stats=[{} for _ in range(count)])


def dataset_evaluator(config: Config, real: RealData, progress: bool = True):
    encoder = get_text_encoder(config.model.text_encoder)
    return load_or_train_evaluator(real.train.features, real.train.captions, real.normalizer,
                                   config.evaluate.evaluator, encoder, config.data.cache_dir, progress)


def evaluate_motion_set(samples: MotionSet, config: Config, real: RealData | None = None, evaluator=None,
                        progress: bool = True) -> dict[str, float]:
    """Standard metrics, physics metrics and their confidence intervals of `samples` (their first
    captions are the prompts) against the real test split, by the loop's own protocol
    (`scl_ray.evaluation.protocol`): on a generation's eval_samples.parquet, with that run's
    config and evaluator, it gives the generation's metrics.json values. Adds `motions`, the number
    of finite motions.
    """
    real = real or RealData.load(config.data, progress)
    evaluator = evaluator or dataset_evaluator(config, real, progress)
    metrics = evaluate_motions(samples, evaluator, evaluator.embed_motions(real.test.features), config.evaluate)
    metrics["motions"] = float(samples.finite_mask().sum())
    return metrics


def format_metrics(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per evaluated set, the paper's columns then physics."""
    names = [m for m in MAIN_METRICS if any(m in r for r in rows.values())]
    names += sorted({k for r in rows.values() for k in r if k.startswith("physics/") and not is_interval(k)})
    header = f"{'':<12}" + "".join(f"{name.replace('physics/', ''):>18}" for name in names)
    lines = [header]
    for label, metrics in rows.items():
        cells = "".join(f"{metrics[name]:>18.4f}" if name in metrics else f"{'-':>18}" for name in names)
        lines.append(f"{label:<12}{cells}")
    return "\n".join(lines)
