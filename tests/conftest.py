"""Shared fixtures: one local Ray for every test that needs it, and a small procedural dataset."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")

# Small models on a 2-core CI machine: one intra-op thread is 5-12x faster than two (measured).
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_local():
    """A 4-CPU local Ray shared by the whole session (FACTS.md: the fixture that works)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, object_store_memory=256 * 2**20, include_dashboard=False)
    yield ray
    ray.shutdown()


TINY_OVERRIDES = (
    "data.procedural_num=200", "model.preset=tiny", "model.text_encoder=hashing", "train.steps=8",
    "train.batch_size=8", "loop.generations=2", "loop.train_size=16", "loop.steps_per_generation=4",
    "sample.steps=3", "sample.batch_size=32", "evaluate.num_samples=32", "evaluate.mm_prompts=2",
    "evaluate.mm_samples=2", "evaluate.evaluator.epochs=1", "evaluate.evaluator.width=32",
    "evaluate.evaluator.embed_dim=32", "correct.sim_hz=100", "correct.batch_size=4", "sweep.train_size=[16]",
    # A pool never holds a caption twice, and the test split of 200 procedural motions holds 20.
    "evaluate.r_precision_batch=16",
    # Tests share one cache: a sweep of one test must not reuse the generation 0 another test's cached.
    "sweep.reuse_generation_zero=false",
)


@pytest.fixture
def tiny_overrides():
    return TINY_OVERRIDES


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """One cache (procedural data, caption embeddings, evaluator) shared by every tiny loop."""
    return str(tmp_path_factory.mktemp("scl_cache"))


@pytest.fixture
def tiny_config(tiny_cache, tmp_path):
    """A Config for a loop that runs in seconds: 200 procedural motions, the tiny model, 2 generations."""
    from scl_ray.config import load_config

    def make(*overrides: str):
        return load_config(None, [*TINY_OVERRIDES, f"data.cache_dir={tiny_cache}",
                                  f"sweep.storage={tmp_path / 'results'}", *overrides])

    return make
