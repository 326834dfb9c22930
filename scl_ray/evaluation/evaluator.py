"""The evaluator behind FID, R-precision, Matching score, Diversity and MultiModality: train, cache, load.

`Evaluator` embeds raw 263-d motions and captions into one space (networks in encoders.py).
`train_evaluator` fits it contrastively on a dataset's train split; `evaluator_file` gives the bytes
of the evaluator a dataset and config call for: ours, trained once and cached under cache_dir (keyed
by the training data's content, the normaliser, the evaluator config and the text encoder), or the
original T2M evaluator bundled into one file. An experiment keeps those bytes as its evaluator, so
every trial on every node scores with the same one; `evaluator_hash` names it in each generation's
metrics. `load_or_train_evaluator` is the standalone commands' way (`scl-ray evaluate`).

Training is reproducible: the same data, config and seed give the same file, byte for byte, whatever
the caller's torch thread count or the machine's load. CPU kernels reduce in a thread-count-dependent
order (two threads gave other weights than one, measured), so training runs with `config.threads`
intra-op threads, under torch's deterministic algorithms, with the random streams seeded from
`config.seed` (the caller's thread count, determinism flag and random state are restored after).
Another CPU instruction set may still round differently, which is why trials load the experiment's
file instead of training their own.

Loss: symmetric InfoNCE over the cosine similarities of a batch's N captions and N motions,
rather than T2M's margin loss on one shifted negative pair per sample: every other motion in the
batch is a negative (N - 1 per caption instead of 1), which trains in minutes on CPU, and the
ranking it optimises is R-precision's own. Pairs whose captions are the same string are not
counted as negatives, because a procedural dataset repeats captions across motions and pushing
those apart would teach the evaluator noise. Embeddings are unit vectors, so the Euclidean
distance the protocol ranks by (d^2 = 2 - 2 cos) orders pairs exactly as the loss did.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from scl_ray import storage
from scl_ray.config import EvaluatorConfig
from scl_ray.errors import UserError
from scl_ray.evaluation.encoders import (TEXT_MAX_TOKENS, EvaluatorNetwork, caption_words, motion_batches,
                                         pad_motions)
from scl_ray.evaluation.t2m import T2M_FORMAT, T2MEvaluator, load_t2m_evaluator
from scl_ray.motion.constants import FEATURE_DIM
from scl_ray.progress import building
from scl_ray.text.encoders import TextEncoder, embed_captions, get_text_encoder

__all__ = ["Evaluator", "train_evaluator", "load_or_train_evaluator", "evaluator_cache_path", "evaluator_file",
           "evaluator_hash", "read_evaluator", "training_threads"]

_FORMAT = "scl-ray-evaluator-v1"
# Hex digits of an evaluator's sha256 kept as its name (64 bits: no two evaluators of a project collide).
HASH_CHARS = 16
# InfoNCE temperature: cosine 1 vs 0 becomes a logit gap of 10.
TEMPERATURE = 0.1


class Evaluator:
    """A trained, frozen evaluator: embeds raw 263-d motions and captions into one space (E-d unit vectors)."""

    def __init__(self, network: EvaluatorNetwork, text_encoder: TextEncoder, config: EvaluatorConfig,
                 max_tokens: int = TEXT_MAX_TOKENS):
        self.network = network.eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self.config = config
        self.max_tokens = max_tokens

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def embed_motions(self, features: Sequence[np.ndarray] | np.ndarray, lengths: Sequence[int] | None = None,
                      normalised: bool = False, batch_size: int = 256) -> np.ndarray:
        """Motions -> (N, E) float32 unit vectors, in input order.

        features: a list of (F_i, 263) arrays, or a padded (N, F, 263) array with lengths (frames;
        all F when None). normalised: True when the features are already normalised with this
        evaluator's dataset statistics (e.g. a diffusion model's outputs); False for raw features.
        A motion's embedding does not depend on the other motions in its batch.
        """
        outputs = [np.zeros((0, self.embed_dim), np.float32)]
        with torch.no_grad():
            for padded, batch_lengths in motion_batches(features, lengths, batch_size):
                motions, batch_lengths = torch.from_numpy(padded), torch.from_numpy(batch_lengths)
                inputs = self.network.motion_inputs(motions, batch_lengths, normalised)
                outputs.append(self.network.motion(inputs, batch_lengths).numpy())
        return np.concatenate(outputs)

    def embed_texts(self, captions: Sequence[str | Sequence[str]], batch_size: int = 256) -> np.ndarray:
        """Captions (strings, or HumanML3D `word/POS` token lists) -> (N, E) float32 unit vectors."""
        texts = [caption_words(caption) for caption in captions]
        outputs = [np.zeros((0, self.embed_dim), np.float32)]
        for start in range(0, len(texts), batch_size):
            tokens, mask = self.text_encoder.encode(texts[start:start + batch_size], self.max_tokens)
            outputs.append(self.embed_tokens(torch.from_numpy(tokens), torch.from_numpy(mask)).numpy())
        return np.concatenate(outputs)

    def embed_tokens(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token embeddings from `self.text_encoder` (N, L, D) + mask (N, L) -> (N, E) unit vectors."""
        with torch.no_grad():
            return self.network.text(tokens.float(), mask)

    def to_bytes(self) -> bytes:
        """Weights, config, feature statistics and the text encoder's name, as `torch.save` writes them."""
        state = {"format": _FORMAT, "config": asdict(self.config), "text_encoder": self.text_encoder.name,
                 "token_dim": self.text_encoder.dim, "max_tokens": self.max_tokens,
                 "network": self.network.state_dict()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def save(self, location: str | os.PathLike) -> str | os.PathLike:
        """Write `to_bytes()` atomically to a local path or a URI; returns the location."""
        storage.write_bytes(location, self.to_bytes())
        return location

    @classmethod
    def load(cls, location: str | os.PathLike, text_encoder: TextEncoder | None = None) -> "Evaluator":
        """Read an evaluator written by `save`; its text encoder is recreated by name unless one is given."""
        evaluator = read_evaluator(storage.read_bytes(location), str(location), text_encoder)
        if not isinstance(evaluator, cls):
            raise UserError(f"{location} holds the original T2M evaluator, not one of ours")
        return evaluator

    @classmethod
    def from_state(cls, state: dict, where: str, text_encoder: TextEncoder | None = None) -> "Evaluator":
        text_encoder = text_encoder or get_text_encoder(state["text_encoder"])
        if text_encoder.name != state["text_encoder"]:
            raise UserError(f"{where} was trained on text encoder {state['text_encoder']!r}, "
                            f"not {text_encoder.name!r}")
        config = EvaluatorConfig(**state["config"])
        network = EvaluatorNetwork(config, state["token_dim"], np.zeros(FEATURE_DIM), np.ones(FEATURE_DIM))
        network.load_state_dict(state["network"])
        return cls(network, text_encoder, config, state["max_tokens"])


def read_evaluator(data: bytes, where: str, text_encoder: TextEncoder | None = None) -> "Evaluator | T2MEvaluator":
    """An evaluator from the bytes of its file (ours, or a T2M bundle); `where` names the file in errors.

    text_encoder: ours recreates its text encoder by name unless one is given (it must have that name).
    """
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{where} is not an evaluator file ({type(error).__name__}: {error})") from None
    kind = state.get("format") if isinstance(state, dict) else None
    if kind == _FORMAT:
        return Evaluator.from_state(state, where, text_encoder)
    if kind == T2M_FORMAT:
        return T2MEvaluator.from_state(state)
    raise UserError(f"{where} is not an evaluator file: its format is {kind!r}, expected {_FORMAT!r} (ours) or "
                    f"{T2M_FORMAT!r} (the original T2M evaluator, bundled)")


def evaluator_hash(data: bytes) -> str:
    """The name of an evaluator: the first HASH_CHARS hex digits of its file's sha256."""
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


@contextlib.contextmanager
def training_threads(threads: int):
    """Run the block with `threads` torch intra-op threads and deterministic algorithms, then restore both."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.set_num_threads(previous_threads)


def _caption_lists(train_captions: Sequence[str] | Sequence[Sequence[str]], count: int) -> list[list[str]]:
    if len(train_captions) != count:
        raise ValueError(f"{count} training motions but {len(train_captions)} caption entries; "
                         "give one caption, or a list of captions, per motion")
    lists = [[captions] if isinstance(captions, str) else list(captions) for captions in train_captions]
    for index, captions in enumerate(lists):
        if not captions or not all(isinstance(c, str) and c.strip() for c in captions):
            raise ValueError(f"training motion {index} has captions {captions!r}; each motion needs at least "
                             "one non-empty caption string")
    return lists


def _info_nce(text: torch.Tensor, motion: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of paired unit vectors (B, E); pairs sharing a caption are not negatives."""
    logits = text @ motion.T / TEMPERATURE
    same_caption = caption_ids[:, None] == caption_ids[None, :]
    same_caption.fill_diagonal_(False)
    logits = logits.masked_fill(same_caption, float("-inf"))
    targets = torch.arange(len(logits))
    return 0.5 * (nn.functional.cross_entropy(logits, targets) + nn.functional.cross_entropy(logits.T, targets))


def train_evaluator(train_features: Sequence[np.ndarray], train_captions: Sequence[str] | Sequence[Sequence[str]],
                    normalizer, config: EvaluatorConfig, text_encoder: TextEncoder, progress: bool = True,
                    cache_dir: str | os.PathLike | None = None) -> Evaluator:
    """Fit the evaluator on a train split: the same inputs give the same weights, bit for bit (module docstring).

    train_features: raw (F_i, 263) float features at 20 fps. train_captions: per motion, one caption
    or a list of them (one is drawn per motion per epoch, as T2M does). normalizer: anything with
    `mean` and `std` arrays of shape (263,), e.g. the dataset's `Normalizer`; stored in the evaluator.
    cache_dir: where the captions' token embeddings are cached (see `embed_captions`).
    The caller's torch random state, thread count and determinism flag are left untouched.
    """
    motions = [np.asarray(features, np.float32) for features in train_features]
    if len(motions) < 2:
        raise ValueError(f"contrastive training needs at least 2 motions, got {len(motions)}")
    for _ in motion_batches(motions, None, config.batch_size):
        pass  # checks every motion's shape and values up front, naming the bad ones
    captions = _caption_lists(train_captions, len(motions))
    unique = sorted({caption for motion_captions in captions for caption in motion_captions})
    caption_index = {caption: index for index, caption in enumerate(unique)}
    caption_ids = [np.array([caption_index[c] for c in motion_captions]) for motion_captions in captions]
    tokens, mask = embed_captions(unique, text_encoder, cache_dir, TEXT_MAX_TOKENS, progress)
    tokens, mask = torch.from_numpy(tokens), torch.from_numpy(mask)

    rng = np.random.default_rng(config.seed)
    num_batches = math.ceil(len(motions) / config.batch_size)
    with torch.random.fork_rng(devices=[]), training_threads(config.threads):
        torch.manual_seed(config.seed)  # initial weights and dropout masks
        network = EvaluatorNetwork(config, text_encoder.dim, normalizer.mean, normalizer.std)
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * num_batches)
        network.train()
        epochs = tqdm(range(config.epochs), desc="evaluator", unit="epoch", disable=not progress)
        for _ in epochs:
            drawn = np.array([ids[rng.integers(len(ids))] for ids in caption_ids])
            total = 0.0
            # Equal-sized batches: a trailing batch of one pair would have no negative.
            for batch in np.array_split(rng.permutation(len(motions)), num_batches):
                padded, lengths = pad_motions([motions[i] for i in batch])
                lengths = torch.from_numpy(lengths)
                motion = network.motion(network.motion_inputs(torch.from_numpy(padded), lengths, False), lengths)
                batch_captions = torch.from_numpy(drawn[batch])
                text = network.text(tokens[batch_captions].float(), mask[batch_captions])
                loss = _info_nce(text, motion, batch_captions)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                total += loss.item()
            epochs.set_postfix(loss=f"{total / num_batches:.3f}")
    return Evaluator(network, text_encoder, config)


def _dataset_fingerprint(motions: Sequence[np.ndarray], captions: Sequence, normalizer) -> str:
    digest = hashlib.sha256()
    for features in motions:
        features = np.ascontiguousarray(features, np.float32)
        digest.update(repr(features.shape).encode())
        digest.update(features.tobytes())
    digest.update(json.dumps([c if isinstance(c, str) else list(c) for c in captions]).encode())
    for statistic in (normalizer.mean, normalizer.std):
        digest.update(np.ascontiguousarray(statistic, np.float64).tobytes())
    return digest.hexdigest()


def evaluator_cache_path(train_features: Sequence[np.ndarray], train_captions: Sequence, normalizer,
                         config: EvaluatorConfig, text_encoder: TextEncoder, cache_dir: str | os.PathLike) -> Path:
    """Where `load_or_train_evaluator` keeps the evaluator for this data, normaliser, config and text encoder."""
    settings = {key: value for key, value in asdict(config).items() if key not in ("t2m_checkpoint", "glove_dir")}
    material = json.dumps([_FORMAT, _dataset_fingerprint(train_features, train_captions, normalizer),
                           settings, text_encoder.name, TEXT_MAX_TOKENS], sort_keys=True)
    key = hashlib.sha256(material.encode()).hexdigest()[:20]
    return Path(cache_dir).expanduser() / "evaluators" / f"evaluator_{key}.pt"


# One motion for one epoch of evaluator training at width 256 (measured on 2 cores: 4.2 s an epoch of
# 400 procedural motions); the cost grows about with the width squared.
TRAIN_S_PER_MOTION_EPOCH = 0.01


def evaluator_file(train_features: Sequence[np.ndarray], train_captions: Sequence[str] | Sequence[Sequence[str]],
                   normalizer, config: EvaluatorConfig, text_encoder: TextEncoder, cache_dir: str | os.PathLike,
                   progress: bool = True) -> bytes:
    """The file of the evaluator for this train split and config, as bytes: the original T2M evaluator
    bundled into one file when config.t2m_checkpoint is set, else ours, trained once (reproducibly) and
    cached under cache_dir/evaluators/ (atomic write). `read_evaluator` turns them into an evaluator.
    """
    if config.t2m_checkpoint:
        return load_t2m_evaluator(config.t2m_checkpoint, config.glove_dir).to_bytes()
    path = evaluator_cache_path(train_features, train_captions, normalizer, config, text_encoder, cache_dir)
    if not path.is_file():
        estimate = config.epochs * len(train_features) * TRAIN_S_PER_MOTION_EPOCH * (config.width / 256) ** 2
        with building(f"the evaluator ({config.epochs} epochs on {len(train_features)} motions) in {path}",
                      estimate, progress):
            evaluator = train_evaluator(train_features, train_captions, normalizer, config, text_encoder,
                                        progress=progress, cache_dir=cache_dir)
            evaluator.save(path)
    return path.read_bytes()


def load_or_train_evaluator(train_features: Sequence[np.ndarray], train_captions: Sequence[str] | Sequence[Sequence[str]],
                            normalizer, config: EvaluatorConfig, text_encoder: TextEncoder,
                            cache_dir: str | os.PathLike, progress: bool = True):
    """The evaluator for this train split: the original T2M one when config.t2m_checkpoint is set,
    else ours, trained once and cached under cache_dir/evaluators/ (see `evaluator_file`), then loaded.

    Returns an `Evaluator`, or a `T2MEvaluator`; both have embed_motions / embed_texts.
    """
    if config.t2m_checkpoint:
        return load_t2m_evaluator(config.t2m_checkpoint, config.glove_dir)
    data = evaluator_file(train_features, train_captions, normalizer, config, text_encoder, cache_dir, progress)
    return read_evaluator(data, f"the evaluator cached under {cache_dir}/evaluators", text_encoder)
