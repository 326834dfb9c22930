"""What every loop of an experiment shares, built once by the driver and kept beside its config.

The driver (`scl-ray sweep`, `run`, `quickstart`, `train`) builds the real data, the caption
embeddings and the evaluator from its own caches (`data.cache_dir`) and writes them into the
experiment (`prepare_experiment`); every trial on every node reads those files (`LoopResources.load`)
and never builds its own:

  <experiment>/resources.json          what they were built from (key) and the evaluator's hash; written last
  <experiment>/evaluator.pt            the evaluator (`evaluator_hash` of these bytes is the `evaluator`
                                       of every metrics.json and of the trials' TensorBoard HParams)
  <experiment>/_data/train.parquet     the real train and test splits (raw 263-d features, captions)
  <experiment>/_data/test.parquet
  <experiment>/_data/normalizer.npz    the dataset's mean and std
  <experiment>/_data/captions.npz      token embeddings of every caption (`CaptionBank`)

Why trials do not rebuild them from their own node's cache: evaluator training rounds differently
with another thread count, and the procedural dataset (numpy) and the caption embeddings (torch) with
another CPU instruction set (measured: with numpy's AVX2/FMA kernels disabled, Mean.npy and every
generated motion differ in their last bits; with torch's kernels at DEFAULT instead of AVX2, 5138 of
2.46 M float16 MiniLM embedding values differ by one step). Bytes made once are the same for every
trial. Not covered: the evaluator's text side still encodes the evaluation prompts on the trial's
node (`Evaluator.embed_texts`), so with MiniLM, nodes of different CPU types may differ in the last
bits of R-precision and Matching.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass

import numpy as np

from scl_ray import storage
from scl_ray.config import Config
from scl_ray.errors import UserError
from scl_ray.evaluation.evaluator import evaluator_file, evaluator_hash, read_evaluator
from scl_ray.fields import to_dict
from scl_ray.loop.data import CaptionBank, RealData
from scl_ray.motion.features import Normalizer
from scl_ray.motion.store import read_motion_set, write_motion_set
from scl_ray.progress import duration
from scl_ray.text.encoders import TextEncoder, get_text_encoder

MANIFEST = "resources.json"
EVALUATOR_FILE = "evaluator.pt"
DATA_DIR = "_data"
SPLITS = ("train", "test")
NORMALIZER_FILE = "normalizer.npz"
CAPTIONS_FILE = "captions.npz"


def resources_key(config: Config) -> str:
    """What the resources depend on: the data settings (not where this node caches them), the text
    encoder and its token budget, and the evaluator settings."""
    data = {key: value for key, value in to_dict(config.data).items() if key != "cache_dir"}
    material = {"data": data, "text_encoder": config.model.text_encoder,
                "text_max_tokens": config.model.text_max_tokens, "evaluator": to_dict(config.evaluate.evaluator)}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class LoopResources:
    """The real data, text encoder, caption bank and evaluator that every loop of an experiment shares.

    evaluator / evaluator_hash: None where the experiment was prepared without one (`scl-ray train`).
    """

    real: RealData
    encoder: TextEncoder
    bank: CaptionBank
    evaluator: object | None
    evaluator_hash: str | None

    @classmethod
    def build(cls, config: Config, progress: bool = True, evaluator: bool = True) -> "LoopResources":
        """From this machine's caches, training the evaluator if none is cached: the driver's way, and an
        in-process loop's (tests, benchmarks)."""
        resources, _ = _build(config, progress, evaluator)
        return resources

    @classmethod
    def load(cls, config: Config, experiment: str, evaluator: bool = True) -> "LoopResources":
        """The experiment's resources as the driver wrote them: what a trial does (it never trains an evaluator)."""
        manifest = _manifest(config, experiment)
        data = storage.join(experiment, DATA_DIR)
        real_sets = {split: read_motion_set(storage.join(data, f"{split}.parquet")) for split in SPLITS}
        with np.load(io.BytesIO(storage.read_bytes(storage.join(data, NORMALIZER_FILE)))) as saved:
            normalizer = Normalizer(saved["mean"], saved["std"])
        real = RealData(data, normalizer, real_sets["train"], real_sets["test"])
        encoder = get_text_encoder(config.model.text_encoder)
        bank = CaptionBank.read(storage.join(data, CAPTIONS_FILE))
        if not evaluator:
            return cls(real, encoder, bank, None, None)
        location = storage.join(experiment, EVALUATOR_FILE)
        if manifest["evaluator"] is None:
            raise FileNotFoundError(f"{storage.join(experiment, MANIFEST)} names no evaluator: that experiment "
                                    "was prepared without one (scl-ray train); a loop needs one")
        content = storage.read_bytes(location)
        if evaluator_hash(content) != manifest["evaluator"]:
            raise UserError(f"{location} has hash {evaluator_hash(content)}, but {MANIFEST} names "
                            f"{manifest['evaluator']}: the experiment's evaluator was replaced after its "
                            "trials started; restore it or start a new experiment (sweep.name)")
        return cls(real, encoder, bank, read_evaluator(content, location, encoder), manifest["evaluator"])


def _build(config: Config, progress: bool, evaluator: bool) -> tuple[LoopResources, bytes | None]:
    real = RealData.load(config.data, progress)
    encoder = get_text_encoder(config.model.text_encoder)
    cache = config.data.cache_dir
    bank = CaptionBank.for_data(real, encoder, config.model.text_max_tokens, cache, progress)
    if not evaluator:
        return LoopResources(real, encoder, bank, None, None), None
    content = evaluator_file(real.train.features, real.train.captions, real.normalizer, config.evaluate.evaluator,
                             encoder, cache, progress)
    resources = LoopResources(real, encoder, bank, read_evaluator(content, "the cached evaluator", encoder),
                              evaluator_hash(content))
    return resources, content


def prepare_experiment(config: Config, experiment: str, progress: bool = True, evaluator: bool = True) -> str | None:
    """On the driver, before any trial starts: write the experiment's resources (module docstring) unless
    they are there already (a resumed experiment keeps its own). Returns the evaluator's hash.

    Raises ValueError when the experiment was prepared from other data or evaluator settings.
    """
    if storage.exists(storage.join(experiment, MANIFEST)):
        manifest = _manifest(config, experiment)
        if evaluator and manifest["evaluator"] is None:
            raise UserError(f"{storage.join(experiment, MANIFEST)} was written without an evaluator; a loop "
                            "needs one: use another sweep.name (or --out) for this run")
        return manifest["evaluator"]
    if progress:
        built = "the real data, caption embeddings" + (" and evaluator" if evaluator else "")
        print(f"preparing {built} for {experiment} from the cache {config.data.cache_dir} (what is not cached "
              "yet is built now: a few minutes on a laptop the first time)", flush=True)
    started = time.perf_counter()
    resources, content = _build(config, progress, evaluator)
    data = storage.join(experiment, DATA_DIR)
    for split in SPLITS:
        write_motion_set(getattr(resources.real, split), storage.join(data, f"{split}.parquet"))
    normalizer = resources.real.normalizer
    storage.write_with(storage.join(data, NORMALIZER_FILE),
                             lambda stream: np.savez(stream, mean=normalizer.mean, std=normalizer.std))
    resources.bank.save(storage.join(data, CAPTIONS_FILE))
    if content is not None:
        storage.write_bytes(storage.join(experiment, EVALUATOR_FILE), content)
    storage.write_json(storage.join(experiment, MANIFEST),
                       {"key": resources_key(config), "evaluator": resources.evaluator_hash,
                        "dataset": str(resources.real.root)})
    if progress and resources.evaluator_hash:
        print(f"evaluator {resources.evaluator_hash}: {storage.join(experiment, EVALUATOR_FILE)}")
    if progress:
        print(f"prepared in {duration(time.perf_counter() - started)}; the trials start now", flush=True)
    return resources.evaluator_hash


def _manifest(config: Config, experiment: str) -> dict:
    location = storage.join(experiment, MANIFEST)
    if not storage.exists(location):
        raise FileNotFoundError(
            f"{location} does not exist: the experiment's data, caption embeddings and evaluator are written by "
            "the driver (scl-ray sweep / run / quickstart) before any trial starts, and a trial never builds "
            "its own; start the loop through one of those commands")
    manifest = storage.read_json(location)
    key = resources_key(config)
    if manifest.get("key") != key:
        raise UserError(f"{location} was written for other data or evaluator settings (key {manifest.get('key')}, "
                        f"this config gives {key}): its trials' metrics would not be comparable with this run's; "
                        "use another sweep.name, or the experiment's own config.yaml")
    return manifest
