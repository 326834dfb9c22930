"""Our contrastive text/motion evaluator: training, embeddings, save/load, cache."""

import types

import numpy as np
import pytest
import torch

from scl_ray.config import EvaluatorConfig
from scl_ray.evaluation import evaluator as evaluator_module
from scl_ray.evaluation.evaluator import (Evaluator, evaluator_cache_path, evaluator_file, evaluator_hash,
                                         load_or_train_evaluator, read_evaluator, train_evaluator)
from scl_ray.motion.features import Normalizer
from scl_ray.text.encoders import HashingTextEncoder

CAPTIONS = ["a person walks forward", "a person jumps in place",
            "a person waves the left hand", "a person waves the right hand"]
CONFIG = EvaluatorConfig(width=32, embed_dim=16, epochs=15, batch_size=16, lr=3e-3, seed=0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny networks: a second intra-op thread only adds contention on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic(per_class: int, seed: int):
    """Four motion patterns (a sine in a distinct feature block, distinct frequency), one caption each.

    The two waves differ only in "left"/"right", as the text side must learn from one word.
    """
    rng = np.random.default_rng(seed)
    motions, captions, labels = [], [], []
    for label, caption in enumerate(CAPTIONS):
        for _ in range(per_class):
            frames = int(rng.integers(40, 81))
            time = np.arange(frames) / 20.0
            features = 0.3 * rng.standard_normal((frames, 263))
            block = slice(4 + 40 * label, 44 + 40 * label)
            features[:, block] += 2.0 * np.sin(2 * np.pi * (0.5 + 0.4 * label) * time + rng.uniform(0, 2 * np.pi))[:, None]
            motions.append((features * 0.5 + 1.0).astype(np.float32))
            captions.append(caption)
            labels.append(label)
    return motions, captions, np.array(labels)


NORMALIZER = Normalizer(mean=np.full(263, 1.0), std=np.full(263, 0.5))


@pytest.fixture(scope="module")
def trained():
    motions, captions, _ = synthetic(12, seed=0)
    return train_evaluator(motions, captions, NORMALIZER, CONFIG, HashingTextEncoder(dim=32), progress=False)


def test_trained_evaluator_puts_matching_captions_nearest(trained):
    motions, _, labels = synthetic(5, seed=1)
    motion_embeddings = trained.embed_motions(motions)
    text_embeddings = trained.embed_texts(CAPTIONS)
    assert motion_embeddings.shape == (20, 16) and motion_embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(motion_embeddings, axis=1), 1.0, rtol=1e-5)
    distances = np.linalg.norm(motion_embeddings[:, None] - text_embeddings[None], axis=-1)
    assert (distances.argmin(axis=1) == labels).all()
    matching = distances[np.arange(20), labels]
    mismatched = np.where(np.arange(4)[None, :] == labels[:, None], np.inf, distances).min(axis=1)
    assert (matching < mismatched).all()


def test_pairs_with_the_same_caption_are_not_negatives():
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    motion = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0]]), dim=-1)
    distinct = evaluator_module._info_nce(text, motion, torch.tensor([0, 1]))
    shared = evaluator_module._info_nce(text, motion, torch.tensor([5, 5]))
    assert distinct.item() > 0.0 and shared.item() == 0.0


def test_training_is_deterministic_and_leaves_the_global_rng_alone(trained):
    motions, captions, _ = synthetic(12, seed=0)
    probe, _, _ = synthetic(2, seed=5)
    before = torch.random.get_rng_state()
    again = train_evaluator(motions, captions, NORMALIZER, CONFIG, HashingTextEncoder(dim=32), progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    np.testing.assert_array_equal(again.embed_motions(probe), trained.embed_motions(probe))
    np.testing.assert_array_equal(again.embed_texts(CAPTIONS), trained.embed_texts(CAPTIONS))
    other = train_evaluator(motions, captions, NORMALIZER, EvaluatorConfig(**{**vars(CONFIG), "seed": 1, "epochs": 1}),
                            HashingTextEncoder(dim=32), progress=False)
    assert not np.allclose(other.embed_motions(probe), trained.embed_motions(probe))


def test_motion_embeddings_do_not_depend_on_batching_or_input_layout(trained):
    motions, _, _ = synthetic(3, seed=2)
    together = trained.embed_motions(motions)
    alone = np.concatenate([trained.embed_motions([motion]) for motion in motions])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(trained.embed_motions(motions, batch_size=5), together, atol=1e-5)
    lengths = [len(motion) for motion in motions]
    padded = np.full((len(motions), 100, 263), 7.0, np.float32)  # garbage past each length
    for row, motion in enumerate(motions):
        padded[row, :len(motion)] = motion
    np.testing.assert_allclose(trained.embed_motions(padded, lengths), together, atol=1e-5)
    normalised = [(motion - NORMALIZER.mean) / NORMALIZER.std for motion in motions]
    np.testing.assert_allclose(trained.embed_motions(normalised, normalised=True), together, atol=1e-5)


def test_captions_may_be_given_as_humanml3d_tokens(trained):
    tokens = ["a/DET", "person/NOUN", "waves/VERB", "the/DET", "left/ADV", "hand/NOUN"]
    np.testing.assert_array_equal(trained.embed_texts([tokens]), trained.embed_texts(["a person waves the left hand"]))


def test_save_load_round_trip(trained, tmp_path):
    motions, _, _ = synthetic(2, seed=3)
    path = trained.save(tmp_path / "evaluator.pt")
    loaded = Evaluator.load(path)
    assert loaded.config == trained.config and loaded.text_encoder.name == trained.text_encoder.name
    np.testing.assert_array_equal(loaded.embed_motions(motions), trained.embed_motions(motions))
    np.testing.assert_array_equal(loaded.embed_texts(CAPTIONS), trained.embed_texts(CAPTIONS))
    with pytest.raises(ValueError, match="trained on text encoder 'hashing-d32-s0'"):
        Evaluator.load(path, HashingTextEncoder(dim=32, seed=1))


def test_bad_inputs_are_named():
    motions, captions, _ = synthetic(2, seed=4)
    with pytest.raises(ValueError, match="8 training motions but 7 caption entries"):
        train_evaluator(motions, captions[:7], NORMALIZER, CONFIG, HashingTextEncoder(dim=8), progress=False)
    with pytest.raises(ValueError, match="training motion 3 has captions"):
        train_evaluator(motions, captions[:3] + [[]] + captions[4:], NORMALIZER, CONFIG,
                        HashingTextEncoder(dim=8), progress=False)
    with pytest.raises(ValueError, match="std must be finite and > 0.*\\[5\\]"):
        # Any object with mean and std will do as normaliser; the evaluator checks them itself.
        bad = types.SimpleNamespace(mean=np.zeros(263), std=np.where(np.arange(263) == 5, 0.0, 1.0))
        train_evaluator(motions, captions, bad, CONFIG, HashingTextEncoder(dim=8), progress=False)


def test_non_finite_motions_are_refused_by_index(trained):
    motions, _, _ = synthetic(2, seed=4)
    motions[6][10, 3] = np.nan
    with pytest.raises(ValueError, match=r"motions \[6\] contain NaN"):
        trained.embed_motions(motions, batch_size=4)


def test_load_or_train_caches_by_data_and_config(tmp_path, monkeypatch):
    motions, captions, _ = synthetic(3, seed=6)
    config = EvaluatorConfig(width=16, embed_dim=8, epochs=1, batch_size=4, seed=0)
    encoder = HashingTextEncoder(dim=8)
    first = load_or_train_evaluator(motions, captions, NORMALIZER, config, encoder, tmp_path, progress=False)
    assert evaluator_cache_path(motions, captions, NORMALIZER, config, encoder, tmp_path).is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a cached evaluator was trained again")

    monkeypatch.setattr(evaluator_module, "train_evaluator", no_training)
    second = load_or_train_evaluator(motions, captions, NORMALIZER, config, encoder, tmp_path, progress=False)
    np.testing.assert_array_equal(second.embed_motions(motions), first.embed_motions(motions))
    changed = [motion.copy() for motion in motions]
    changed[0][0, 0] += 1.0
    for args in ((changed, captions, config), (motions, captions, EvaluatorConfig(**{**vars(config), "seed": 1}))):
        with pytest.raises(AssertionError, match="trained again"):
            load_or_train_evaluator(args[0], args[1], NORMALIZER, args[2], encoder, tmp_path, progress=False)


def test_training_gives_the_same_bytes_whatever_the_callers_thread_count():
    """Two threads reduce in another order than one (other weights, measured): training pins its own."""
    motions, captions, _ = synthetic(6, seed=7)
    config = EvaluatorConfig(width=32, embed_dim=16, epochs=3, batch_size=8, lr=3e-3, seed=0)
    files = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        before = torch.are_deterministic_algorithms_enabled()
        evaluator = train_evaluator(motions, captions, NORMALIZER, config, HashingTextEncoder(dim=32), progress=False)
        assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == before
        files.append(evaluator.to_bytes())
    torch.set_num_threads(1)
    assert evaluator_hash(files[0]) == evaluator_hash(files[1])
    assert files[0] == files[1]
    other_seed = train_evaluator(motions, captions, NORMALIZER, EvaluatorConfig(**{**vars(config), "seed": 1}),
                                 HashingTextEncoder(dim=32), progress=False)
    assert evaluator_hash(other_seed.to_bytes()) != evaluator_hash(files[0])


def test_evaluator_file_is_the_cached_file_and_reads_back(tmp_path):
    motions, captions, _ = synthetic(3, seed=6)
    config = EvaluatorConfig(width=16, embed_dim=8, epochs=1, batch_size=4, seed=0)
    encoder = HashingTextEncoder(dim=8)
    data = evaluator_file(motions, captions, NORMALIZER, config, encoder, tmp_path, progress=False)
    assert data == evaluator_cache_path(motions, captions, NORMALIZER, config, encoder, tmp_path).read_bytes()
    assert len(evaluator_hash(data)) == 16
    evaluator = read_evaluator(data, "here")
    assert isinstance(evaluator, Evaluator) and evaluator.to_bytes() == data
    with pytest.raises(ValueError, match="not-an-evaluator is not an evaluator file"):
        read_evaluator(b"garbage", "not-an-evaluator")
