"""Every seeded random stream of the project, named in one place.

A numpy stream is `stream(seed, NAME, *more)`: a Generator on SeedSequence entropy [seed, NAME, *more],
so two purposes under one seed never share numbers. Torch seeds come from `derive_seed(seed, ...)`.
The ids are part of every recorded result: changing one changes the runs that use it.
"""

from __future__ import annotations

import numpy as np

# The loop (scl_ray/loop). Under a generation's seed (plan.generation_seed):
PROMPTS = 0  # which real items prompt the synthetic samples
REPLACEMENT = 1  # which synthetic items their correction replaces
CAPTIONS = 3  # one caption per prompt motion (also under evaluate.seed, for the evaluation prompts)
# Under evaluate.seed:
EVAL_POOLS = 5  # the R-precision pools' order (evaluation/protocol.py)
EVAL_PROMPTS = 11  # which test motions prompt the evaluation samples
EVAL_BOOTSTRAP = 13  # the bootstrap resamples of every interval (evaluation/protocol.py)
# Under loop.seed:
TRAIN_SUBSET = 7  # the loop's n real training motions

# The procedural dataset, under its seed (motion/procedural/dataset.py).
PROCEDURAL_SCHEDULE = 0  # which family each motion is
PROCEDURAL_MOTION = 1  # motion i's parameters, with i after the name
PROCEDURAL_SPLITS = 2  # the train/val/test split

# The Gaussian toy, under a run's seed (toy/).
TOY_REAL, TOY_MODEL, TOY_CORRECTOR = 0, 1, 2

# Torch seeds, derive_seed(seed, step, NAME, ...) in diffusion/training.py: the trainer's purposes.
TRAIN_INIT, TRAIN_DATA, TRAIN_NOISE, TRAIN_DROPOUT = range(4)
# derive_seed(evaluate.seed, generation, EVAL_MULTIMODALITY): the MultiModality samples (the other
# evaluation samples take derive_seed(evaluate.seed, generation)).
EVAL_MULTIMODALITY = 1


def stream(seed: int, name: int, *more: int) -> np.random.Generator:
    """The numpy Generator of stream `name` (one of the constants above) under `seed`."""
    return np.random.default_rng([seed, name, *more])


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, step, purpose, rank…), decorrelated by numpy's SeedSequence."""
    words = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])
