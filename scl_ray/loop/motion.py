"""The text-to-motion diffusion model as a loop model, and the per-generation evaluation.

Items are `MotionSet`s of raw 263-d features. The model normalises them with the dataset's
statistics, trains the resident `DiffusionTrainer`, and samples one motion per prompt (a prompt is a
training motion: one of its captions, seeded, and its length). In a distributed loop every rank
samples its share of the prompts (`i::world_size`) and `gather` puts the shares back in prompt order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from scl_ray.config import Config
from scl_ray.diffusion.data import MotionTextDataset
from scl_ray.diffusion.training import DiffusionTrainer
from scl_ray.evaluation.metrics import draw_pools
from scl_ray.evaluation.protocol import MULTIMODALITY_GROUP, evaluate_motions
from scl_ray.loop.data import CaptionBank, RealData
from scl_ray.loop.state import EVAL_SAMPLES, TrialDirectory
from scl_ray.motion.features import Normalizer
from scl_ray.motion.store import MotionSet, write_motion_set
from scl_ray.rng import CAPTIONS, EVAL_MULTIMODALITY, EVAL_PROMPTS, derive_seed, stream

Gather = Callable[[list], list]  # this rank's list -> every rank's lists, in rank order


def single_process_gather(items: list) -> list:
    return [items]


def pick_captions(motions: MotionSet, seed: int) -> list[str]:
    """One caption per motion, chosen uniformly with a seed."""
    rng = stream(seed, CAPTIONS)
    return [captions[rng.integers(len(captions))] for captions in motions.captions]


class MotionLoopModel:
    """A resident diffusion model trained and sampled generation after generation.

    The loop's seeds reach it: `reset(seed)` draws the initial weights from seed, `train(..., seed)`
    the data order, diffusion noise and dropout of that generation (the loop passes each generation's
    seed, derived from `loop.seed`); before any reset the weights come from `train.seed`.
    """

    def __init__(self, config: Config, normalizer: Normalizer, bank: CaptionBank, device: str = "cpu",
                 rank: int = 0, world_size: int = 1, gather: Gather = single_process_gather,
                 progress: bool = False):
        self.config, self.normalizer, self.bank = config, normalizer, bank
        self.device, self.rank, self.world_size, self.gather = device, rank, world_size, gather
        self.progress = progress
        self.trainer = self._new_trainer()
        # Real motions normalised once per loop (every generation trains on the same real set): the
        # raw array's id -> (that array, kept so that the id stays its own; its normalised features).
        self._normalised_real: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _new_trainer(self, seed: int | None = None) -> DiffusionTrainer:
        return DiffusionTrainer(self.config.model, self.config.train, self.device, text_dim=self.bank.dim,
                                max_frames=self.config.data.max_frames, rank=self.rank,
                                world_size=self.world_size, normalizer=self.normalizer, seed=seed)

    def reset(self, seed: int) -> None:
        self.trainer = self._new_trainer(seed)

    def dataset(self, items: MotionSet) -> MotionTextDataset:
        captions = [c for motion in items.captions for c in motion]
        owner = np.repeat(np.arange(len(items)), [len(motion) for motion in items.captions])
        embeddings, mask = self.bank.lookup(captions)
        motions = [self._normalised(f, source == "real") for f, source in zip(items.features, items.source)]
        return MotionTextDataset.from_motions(motions, embeddings, mask, self.config.data.max_frames,
                                              caption_motion=owner, motion_ids=items.ids)

    def _normalised(self, features: np.ndarray, real: bool) -> np.ndarray:
        """(F, 263) float32 normalised features; a real motion's computed on its first use only."""
        cached = self._normalised_real.get(id(features)) if real else None
        if cached is not None and cached[0] is features:
            return cached[1]
        normalised = self.normalizer.normalize(features).astype(np.float32)
        if real:
            self._normalised_real[id(features)] = (features, normalised)
        return normalised

    def train(self, items: MotionSet, steps: int, seed: int) -> dict[str, float]:
        losses = self.trainer.train(self.dataset(items), steps, progress=self.progress, seed=seed)
        tail = losses[-max(1, len(losses) // 10):]
        return {"loss": float(np.mean(tail)), "steps": float(self.trainer.step)}

    def generate(self, captions: list[str], lengths: np.ndarray, seed: int) -> list[np.ndarray]:
        """Raw features (length_i, 263) for each (caption, length), sharded over ranks, in order."""
        mine = np.arange(self.rank, len(captions), self.world_size)
        features: list[np.ndarray] = []
        if len(mine):
            embeddings, mask = self.bank.lookup([captions[i] for i in mine])
            normalised = self.trainer.sample(torch.from_numpy(embeddings).float(), torch.from_numpy(mask),
                                             torch.from_numpy(lengths[mine]), self.config.sample,
                                             derive_seed(seed, self.rank), progress=self.progress)
            raw = self.normalizer.denormalize(normalised.numpy())
            features = [raw[k, : lengths[i]].astype(np.float32) for k, i in enumerate(mine)]
        shares = self.gather(features)
        ordered: list[np.ndarray] = [None] * len(captions)  # type: ignore[list-item]
        for rank, share in enumerate(shares):
            for k, motion in enumerate(share):
                ordered[rank + k * self.world_size] = motion
        return ordered

    def sample(self, prompts: MotionSet, seed: int, generation: int) -> MotionSet:
        captions = pick_captions(prompts, seed)
        lengths = np.array([len(f) for f in prompts.features], dtype=np.int64)
        features = self.generate(captions, lengths, seed)
        count = len(prompts)
        return MotionSet(
            ids=[f"g{generation:03d}_{i:05d}_{prompt}" for i, prompt in enumerate(prompts.ids)],
            captions=[(c,) for c in captions], features=features, source=["synthetic"] * count,
            generation=[generation] * count, status=[""] * count, stats=[{} for _ in range(count)])

    def save(self, location: str) -> None:
        self.trainer.save_checkpoint(location)

    def load(self, location: str) -> None:
        self.trainer.load_checkpoint(location)


@dataclass
class MotionEvaluation:
    """The fixed evaluation of each generation (every one, or as `evaluate.every` says): the same
    prompts, evaluator and real embeddings.

    Each generation's samples, with its MultiModality samples marked (`MULTIMODALITY_GROUP`), are
    scored by the one protocol (`evaluate_motions`) and written to eval_samples.parquet, so
    `scl-ray evaluate` on that file gives the generation's metrics again.
    """

    config: Config
    real: RealData
    evaluator: object  # Evaluator or T2MEvaluator: embed_motions / embed_texts
    directory: TrialDirectory | None = None
    is_writer: bool = True

    def __post_init__(self) -> None:
        # The newest generation's evaluation samples (generation, set), kept for the report's image.
        self.latest: tuple[int, MotionSet] | None = None
        settings, test = self.config.evaluate, self.real.test
        # One caption per test motion; pools of prompts never hold a caption twice, as upstream's.
        captions = pick_captions(test, settings.seed)
        chosen = draw_pools(captions, settings.num_samples, settings.r_precision_batch,
                            stream(settings.seed, EVAL_PROMPTS))
        self.prompts = test.select(chosen)
        self.captions = [captions[i] for i in chosen]
        self.lengths = np.array([len(f) for f in self.prompts.features], dtype=np.int64)
        self.real_embeddings = self.evaluator.embed_motions(test.features)

    def set_metrics(self, motions: MotionSet) -> dict[str, float]:
        """How a motion set looks to the evaluator, e.g. a generation's synthetic set before and after
        correction: the protocol's metrics without physics (FID against the real test split, Matching,
        Diversity, R-precision where a full pool forms) and their intervals, as `scl-ray evaluate`
        gives them for the set. {} when fewer than 2 motions are finite.

        The loop trains on these sets, so these say whether correction moves them towards the real
        data in the evaluator's eyes, which is the premise of the method.
        """
        if motions.finite_mask().sum() < 2:
            return {}
        return evaluate_motions(motions, self.evaluator, self.real_embeddings, self.config.evaluate, physics=False)

    def multimodality_samples(self, model: MotionLoopModel, generation: int, seed: int) -> MotionSet | None:
        """evaluate.mm_samples samples of each of the first evaluate.mm_prompts prompts, marked by prompt."""
        settings = self.config.evaluate
        prompts = min(settings.mm_prompts, len(self.captions))
        if prompts == 0:
            return None
        captions = [c for c in self.captions[:prompts] for _ in range(settings.mm_samples)]
        lengths = np.repeat(self.lengths[:prompts], settings.mm_samples)
        groups = np.repeat(np.arange(prompts), settings.mm_samples)
        ids = [f"mm{group:03d}_{k % settings.mm_samples:03d}_{self.prompts.ids[group]}" for k, group in enumerate(groups)]
        return _evaluation_set(ids, captions, model.generate(captions, lengths, seed), generation,
                               [{MULTIMODALITY_GROUP: int(group)} for group in groups])

    def __call__(self, model: MotionLoopModel, generation: int, seed: int) -> dict[str, float]:
        """The generation's evaluation metrics, or {} for a generation `evaluate.every` skips (nothing
        is sampled or written for it)."""
        settings = self.config.evaluate
        if not settings.evaluates(generation, self.config.loop.generations):
            return {}
        samples = model.generate(self.captions, self.lengths, derive_seed(settings.seed, generation))
        finite = np.array([np.isfinite(s).all() for s in samples])
        if finite.sum() < max(2, settings.r_precision_batch):
            raise RuntimeError(f"generation {generation}: only {finite.sum()} of {len(samples)} evaluation "
                               "samples are finite: the model has diverged")
        motions = _evaluation_set(list(self.prompts.ids), self.captions, samples, generation,
                                  [{} for _ in samples])
        multimodality = self.multimodality_samples(model, generation,
                                                   derive_seed(settings.seed, generation, EVAL_MULTIMODALITY))
        if multimodality is not None:
            motions = motions.concat([multimodality])
        metrics: dict[str, float] = {"eval/nonfinite": float((~finite).sum())}
        metrics.update(evaluate_motions(motions, self.evaluator, self.real_embeddings, settings))
        self.latest = (generation, motions)
        if self.directory is not None and self.is_writer:
            write_motion_set(motions, self.directory.file(generation, EVAL_SAMPLES))
        return metrics

    def samples(self, generation: int) -> MotionSet | None:
        """The evaluation samples of `generation` if this process evaluated it last, else None."""
        return self.latest[1] if self.latest is not None and self.latest[0] == generation else None


def _evaluation_set(ids: list[str], captions: list[str], features: list[np.ndarray], generation: int,
                    stats: list[dict]) -> MotionSet:
    count = len(features)
    return MotionSet(ids=ids, captions=[(c,) for c in captions], features=features, source=["synthetic"] * count,
                     generation=[generation] * count, status=[""] * count, stats=stats)
