"""The Gaussian toy as a plug-in of the self-consuming loop (`scl_ray.loop.generation`).

The model is `GaussianModel` refit from scratch on real + synthetic points each generation; the
corrector is the histogram or mixture corrector applied to every synthetic point (strength 1: the
correction strength is the corrector's gamma); evaluation is the closed-form W2 to N(0, I).
`run_toy_loop` gives the same curve as the vectorised `run_toy` (same random streams), which is how
the toy checks the loop code itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scl_ray.config import LoopConfig, ToyConfig
from scl_ray.loop.generation import LoopParts, SelfConsumingLoop
from scl_ray.rng import TOY_CORRECTOR, TOY_MODEL, TOY_REAL, stream
from scl_ray.toy.gaussian import GaussianModel, make_corrector, w2_gaussian


@dataclass
class PointSet:
    """Toy items: points (N, d), with the corrector's status per point."""

    points: np.ndarray
    status: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float64)
        if not self.status:
            self.status = [""] * len(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def select(self, indices) -> "PointSet":
        indices = np.asarray(indices, dtype=int)
        return PointSet(self.points[indices], [self.status[i] for i in indices])

    def finite_mask(self) -> np.ndarray:
        return np.isfinite(self.points).all(axis=1)

    def failed_mask(self) -> np.ndarray:
        return np.zeros(len(self.points), dtype=bool)  # a toy corrector corrects every point or raises


def concat_points(sets: list[PointSet]) -> PointSet:
    return PointSet(np.concatenate([s.points for s in sets]), [x for s in sets for x in s.status])


class ToyModel:
    """The loop's model: a Gaussian refit by maximum likelihood on whatever it is trained on."""

    def __init__(self, rng: np.random.Generator, dims: int):
        self.rng = rng
        self.fit = GaussianModel(np.zeros(dims), np.eye(dims))

    def reset(self, seed: int) -> None:
        """Every generation refits from scratch, so there is nothing to reset."""

    def train(self, items: PointSet, steps: int, seed: int) -> dict[str, float]:
        self.fit = GaussianModel.fit(items.points)
        return {"points": float(len(items))}

    def sample(self, prompts: PointSet, seed: int, generation: int) -> PointSet:
        return PointSet(self.fit.sample(len(prompts), self.rng))

    def save(self, location: str) -> None:
        raise RuntimeError("the toy loop keeps nothing on disk (run it with directory=None)")

    load = save


def run_toy_loop(gamma: float, corrector: str, seed: int, config: ToyConfig | None = None) -> dict:
    """One toy loop through `SelfConsumingLoop`; returns the same record as `run_toy`."""
    config = config or ToyConfig()
    correct = make_corrector(corrector, gamma, config.histogram_bins)
    real_rng, model_rng, corrector_rng = (stream(seed, name) for name in (TOY_REAL, TOY_MODEL, TOY_CORRECTOR))
    real = PointSet(real_rng.standard_normal((config.real_points, config.dims)))
    model = ToyModel(model_rng, config.dims)
    target_mean, target_cov = np.zeros(config.dims), np.eye(config.dims)

    def evaluate(current: ToyModel, generation: int, seed: int) -> dict[str, float]:
        return {"w2": float(w2_gaussian(current.fit.mean, current.fit.cov, target_mean, target_cov))}

    def correct_points(synthetic: PointSet, seed: int) -> PointSet:
        return PointSet(correct(synthetic.points, corrector_rng), ["corrected"] * len(synthetic))

    parts = LoopParts(model=model, real=real, concat=concat_points, correct=correct_points, evaluate=evaluate,
                      write_items=lambda items, location: None, read_items=lambda location: None)
    loop = LoopConfig(generations=config.generations, train_size=config.real_points,
                      synthetic_ratio=config.synthetic_ratio, strength=1.0, steps_per_generation=1,
                      accumulate=config.accumulate, seed=seed)
    metrics = SelfConsumingLoop(loop, 1, parts, directory=None).run()
    return {"gamma": gamma, "corrector": corrector, "seed": seed, "accumulate": config.accumulate,
            "w2": [m["w2"] for m in metrics]}
