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
    """A 4-CPU local Ray shared by the whole session (one `ray.init` for every Ray test: starting Ray
    per test costs seconds each on 2 cores)."""
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


@pytest.fixture(scope="session")
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


S3_BUCKET = "scl-ray-test"


@pytest.fixture(scope="session")
def s3_bucket():
    """A real S3 HTTP endpoint: moto's server on 127.0.0.1 (a free port) holding the bucket S3_BUCKET.

    Points this process and every process it starts (scl-ray, its Ray workers) at it through the
    environment pyarrow reads for an s3:// URI: AWS_ENDPOINT_URL_S3 (path-style addressing is
    pyarrow's default with an endpoint override), test credentials and region. Yields the bucket's
    URI, s3://S3_BUCKET.
    """
    import logging
    import socket

    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir(S3_BUCKET)
    yield f"s3://{S3_BUCKET}"
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


@pytest.fixture
def s3_prefix(s3_bucket, request):
    """A fresh s3:// prefix for one test, in the endpoint's bucket."""
    import re
    import uuid

    return f"{s3_bucket}/{re.sub('[^A-Za-z0-9_-]', '-', request.node.name)[:40]}-{uuid.uuid4().hex[:8]}"
