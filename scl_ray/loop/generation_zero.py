"""Generation 0 cached across runs, beside the driver's other caches (`data.cache_dir`).

Generation 0 trains from scratch on real data only, so every loop, arm and run with the same settings
computes the same one. Within a sweep its loops share it through `<experiment>/_shared/gen0_<key>`
(`loop/generation.py`); across runs the driver keeps a copy:

  <data.cache_dir>/generation_zero/<cache key>/  model.pt  metrics.json  eval_samples.parquet  DONE

Before any trial starts the driver copies a cached generation 0 into the experiment's shared place
(the trials then load it instead of training it, on any node); after the trials it copies a newly
trained one into the cache. The cache key is `generation_zero_key` (data, model, train, sample and
evaluate settings, the loop's seed and n, device and Train workers), plus the hash of the evaluator
that scored it, the scl_ray source and the torch version. Delete the directory to retrain.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from collections.abc import Callable, Iterable
from pathlib import Path

from scl_ray import storage
from scl_ray.loop.plan import generation_zero_key
from scl_ray.loop.state import DONE, EVAL_SAMPLES, METRICS, MODEL

CACHE_DIR = "generation_zero"
FILES = (MODEL, METRICS, EVAL_SAMPLES)


@functools.cache
def code_digest() -> str:
    """sha256 of every scl_ray source file and the torch version: what code computed a generation 0
    (read once per process: every loop of a sweep, before and after its trials, asks for it)."""
    digest = hashlib.sha256(importlib.metadata.version("torch").encode())
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def shared_name(config) -> str:
    """The directory name of a loop's shared generation 0 under `<experiment>/_shared`."""
    return f"gen0_{generation_zero_key(config)}"


def cache_location(config, evaluator_hash: str | None) -> str:
    material = f"{generation_zero_key(config)}\0{evaluator_hash}\0{code_digest()}".encode()
    return storage.join(config.data.cache_dir, CACHE_DIR, hashlib.sha256(material).hexdigest()[:16])


def copy_generation_zero(source: str, target: str) -> None:
    """Copy a finished generation 0's files from one directory to another, `DONE` last."""
    for name in FILES:
        if storage.exists(storage.join(source, name)):
            storage.write_bytes(storage.join(target, name), storage.read_bytes(storage.join(source, name)))
    storage.write_text(storage.join(target, DONE), "generation 0\n")


def restore_from_cache(configs: Iterable, shared_root: str, evaluator_hash: str | None,
                       log: Callable[[str], None] = print) -> list[str]:
    """Put each cached generation 0 of `configs` (one per loop) where the loops share it, unless it is
    there already; returns the cache directories used."""
    used = []
    for config in _distinct(configs):
        cached, shared = cache_location(config, evaluator_hash), storage.join(shared_root, shared_name(config))
        if not storage.exists(storage.join(cached, DONE)):
            continue
        if not storage.exists(storage.join(shared, DONE)):
            copy_generation_zero(cached, shared)
        log(f"generation 0: reused from cache {cached}")
        used.append(cached)
    return used


def store_in_cache(configs: Iterable, shared_root: str, evaluator_hash: str | None) -> list[str]:
    """Copy each finished shared generation 0 of `configs` into the cache, unless it is there already;
    returns the cache directories written."""
    written = []
    for config in _distinct(configs):
        cached, shared = cache_location(config, evaluator_hash), storage.join(shared_root, shared_name(config))
        if storage.exists(storage.join(shared, DONE)) and not storage.exists(storage.join(cached, DONE)):
            copy_generation_zero(shared, cached)
            written.append(cached)
    return written


def _distinct(configs: Iterable) -> list:
    unique = {}
    for config in configs:
        unique.setdefault(generation_zero_key(config), config)
    return list(unique.values())
