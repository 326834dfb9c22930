"""What one generation of a self-consuming loop does, as data (docs/method.md, "The motion experiment").

Generation 0 trains from scratch on the n real motions. Generation g >= 1 starts from g-1's weights,
samples floor(lambda * n) synthetic motions from training prompts, corrects them, replaces each by its
correction with probability `strength`, and trains a fixed budget on real + synthetic.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from scl_ray.config import LoopConfig
from scl_ray.rng import REPLACEMENT, stream

def arm_name(synthetic_ratio: float, strength: float) -> str:
    """The paper's three arms: no synthetic data, synthetic uncorrected, synthetic corrected."""
    if synthetic_ratio == 0:
        return "baseline"
    return "self-consuming" if strength == 0 else "corrected"


def trial_name(loop: LoopConfig) -> str:
    """A readable, unique directory name for one loop of a sweep."""
    return (f"n{loop.train_size}_lambda{loop.synthetic_ratio:g}_strength{loop.strength:g}"
            f"_seed{loop.seed}")


@dataclass(frozen=True)
class GenerationPlan:
    generation: int
    train_steps: int
    num_synthetic: int
    strength: float
    from_scratch: bool
    seed: int

    @property
    def name(self) -> str:
        return generation_dir_name(self.generation)


def generation_dir_name(generation: int) -> str:
    return f"gen_{generation:03d}"


def generation_seed(loop_seed: int, generation: int) -> int:
    """Independent, reproducible seed per (loop seed, generation)."""
    return int(np.random.SeedSequence([loop_seed, generation]).generate_state(1)[0])


def plan_generation(loop: LoopConfig, generation: int, initial_steps: int, real_size: int) -> GenerationPlan:
    """The plan of `generation` for a loop over `real_size` real items (n)."""
    if generation < 0 or generation > loop.generations:
        raise ValueError(f"generation {generation} is outside 0..{loop.generations}")
    first = generation == 0
    return GenerationPlan(
        generation=generation,
        train_steps=initial_steps if first else loop.steps_per_generation,
        num_synthetic=0 if first else math.floor(loop.synthetic_ratio * real_size + 1e-9),
        strength=loop.strength,
        from_scratch=first,
        seed=generation_seed(loop.seed, generation),
    )


def replacement_mask(num: int, strength: float, seed: int) -> np.ndarray:
    """(num,) bool: which synthetic items are replaced by their correction (probability strength)."""
    rng = stream(seed, REPLACEMENT)
    return rng.random(num) < strength


def generation_zero_key(config) -> str:
    """What generation 0 depends on: everything but lambda, strength and the later generations (and
    where this machine caches things).

    Loops with the same key compute the same generation 0 (from-scratch training on the same real
    subset with the same workers, evaluated the same way), so they can share it.
    """
    from scl_ray.fields import to_dict

    material = {section: to_dict(getattr(config, section)) for section in ("data", "model", "train", "sample", "evaluate")}
    del material["data"]["cache_dir"]
    material["loop"] = {"train_size": config.loop.train_size, "seed": config.loop.seed}
    material["resources"] = {"device": config.resources.device, "num_workers": config.resources.num_workers}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
