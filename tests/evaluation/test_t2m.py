"""The original T2M evaluator: files written here in the released format, with random weights.

(Checked once against upstream's own modules.py / word_vectorizer.py on the same files: identical
motion and text embeddings.)
"""

import pickle

import numpy as np
import pytest
import torch

from scl_ray.config import EvaluatorConfig
from scl_ray.evaluation.evaluator import evaluator_file, load_or_train_evaluator, read_evaluator
from scl_ray.evaluation.t2m import T2MEvaluator, load_t2m_evaluator
from scl_ray.motion.features import Normalizer
from scl_ray.text.encoders import HashingTextEncoder
from scl_ray.text.tokens import tokenize


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_motions(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(40, 197)), 263)).astype(np.float32) for _ in range(count)]


def upstream_state_dicts(generator: torch.Generator) -> dict:
    """finest.tar's state dicts with T2M's key names and HumanML3D shapes (evaluator_wrapper.py, modules.py)."""
    def gru(hidden):
        return {f"gru.{kind}_{part}_l0{suffix}": (3 * hidden, hidden) if kind == "weight" else (3 * hidden,)
                for kind in ("weight", "bias") for part in ("ih", "hh") for suffix in ("", "_reverse")}

    def head(hidden, out):
        return {"output_net.0.weight": (hidden, 2 * hidden), "output_net.0.bias": (hidden,),
                "output_net.1.weight": (hidden,), "output_net.1.bias": (hidden,),
                "output_net.3.weight": (out, hidden), "output_net.3.bias": (out,), "hidden": (2, 1, hidden)}

    shapes = {
        "movement_encoder": {"main.0.weight": (512, 259, 4), "main.0.bias": (512,), "main.3.weight": (512, 512, 4),
                             "main.3.bias": (512,), "out_net.weight": (512, 512), "out_net.bias": (512,)},
        "text_encoder": {"pos_emb.weight": (300, 15), "pos_emb.bias": (300,), "input_emb.weight": (512, 300),
                         "input_emb.bias": (512,), **gru(512), **head(512, 512)},
        "motion_encoder": {"input_emb.weight": (1024, 512), "input_emb.bias": (1024,), **gru(1024), **head(1024, 512)},
    }
    return {name: {key: 0.05 * torch.randn(shape, generator=generator) for key, shape in keys.items()}
            for name, keys in shapes.items()}


@pytest.fixture(scope="module")
def t2m_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2m")
    generator = torch.Generator().manual_seed(0)
    state = upstream_state_dicts(generator)
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)]).state_dict()
    state.update(opt_text_encoder=optimizer, opt_motion_encoder=optimizer, epoch=7, iter=1234)
    (root / "t2m" / "text_mot_match" / "model").mkdir(parents=True)
    torch.save(state, root / "t2m" / "text_mot_match" / "model" / "finest.tar")
    rng = np.random.default_rng(0)
    mean, std = rng.standard_normal(263).astype(np.float32), rng.uniform(0.5, 2, 263).astype(np.float32)
    for model in ("Comp_v6_KLD005", "Decomp_SP001_SM001_H512"):
        (root / "t2m" / model / "meta").mkdir(parents=True)
        np.save(root / "t2m" / model / "meta" / "mean.npy", mean)
        np.save(root / "t2m" / model / "meta" / "std.npy", std)
    words = ["sos", "eos", "unk", "a", "man", "walk", "to", "the", "left", "right", "slowly"]
    (root / "glove").mkdir()
    np.save(root / "glove" / "our_vab_data.npy", rng.standard_normal((len(words), 300)).astype(np.float32))
    (root / "glove" / "our_vab_words.pkl").write_bytes(pickle.dumps(words))
    (root / "glove" / "our_vab_idx.pkl").write_bytes(pickle.dumps({word: i for i, word in enumerate(words)}))
    return root, mean, std


def test_t2m_evaluator_loads_the_released_format(t2m_files):
    root, mean, std = t2m_files
    evaluator = load_t2m_evaluator(root / "t2m", root / "glove")
    same = load_t2m_evaluator(root / "t2m" / "text_mot_match" / "model" / "finest.tar", root / "glove")
    motions = random_motions(8, seed=7)
    embeddings = evaluator.embed_motions(motions)
    assert embeddings.shape == (8, 512) and np.isfinite(embeddings).all()
    np.testing.assert_array_equal(same.embed_motions(motions), embeddings)
    np.testing.assert_allclose(evaluator.embed_motions([(m - mean) / std for m in motions], normalised=True),
                               embeddings, atol=1e-4)
    np.testing.assert_allclose(np.concatenate([evaluator.embed_motions([m]) for m in motions]), embeddings, atol=1e-4)
    texts = evaluator.embed_texts(["a man walks to the left slowly", ["a/DET", "man/NOUN", "walk/VERB"]])
    assert texts.shape == (2, 512) and np.isfinite(texts).all()
    np.testing.assert_allclose(evaluator.embed_texts([tokenize("a man walks to the left slowly")])[0], texts[0],
                               atol=1e-6)
    # Unknown words become `unk` with POS OTHER; T2M's VIP words keep their category whatever the tagger said.
    unknown = evaluator.embed_texts([["zebra/NOUN"], ["quux/VERB"], ["left/NOUN"], ["left/ADV"], ["left/OTHER"]])
    np.testing.assert_array_equal(unknown[0], unknown[1])
    np.testing.assert_array_equal(unknown[2], unknown[3])
    np.testing.assert_array_equal(unknown[2], unknown[4])
    assert not np.allclose(unknown[0], unknown[2])


def test_t2m_evaluator_bundles_into_one_file_that_embeds_the_same(t2m_files, tmp_path):
    """What an experiment keeps: trials on other nodes need none of the released files."""
    root, _, _ = t2m_files
    config = EvaluatorConfig(t2m_checkpoint=str(root / "t2m"), glove_dir=str(root / "glove"))
    normalizer = Normalizer(mean=np.zeros(263), std=np.ones(263))
    data = evaluator_file([], [], normalizer, config, HashingTextEncoder(dim=8), tmp_path)
    assert data == evaluator_file([], [], normalizer, config, HashingTextEncoder(dim=8), tmp_path)
    bundled, original = read_evaluator(data, "bundle"), load_t2m_evaluator(root / "t2m", root / "glove")
    assert isinstance(bundled, T2MEvaluator) and bundled.to_bytes() == data
    motions, captions = random_motions(4, seed=8), ["a man walks to the left slowly", "zebra"]
    np.testing.assert_array_equal(bundled.embed_motions(motions), original.embed_motions(motions))
    np.testing.assert_array_equal(bundled.embed_texts(captions), original.embed_texts(captions))


def test_t2m_mode_through_the_config_and_its_errors(t2m_files, tmp_path):
    root, mean, _ = t2m_files
    config = EvaluatorConfig(t2m_checkpoint=str(root / "t2m"), glove_dir=str(root / "glove"))
    normalizer = Normalizer(mean=np.zeros(263), std=np.ones(263))
    loaded = load_or_train_evaluator([], [], normalizer, config, HashingTextEncoder(dim=8), tmp_path)
    assert isinstance(loaded, T2MEvaluator)
    with pytest.raises(ValueError, match="glove_dir"):
        load_t2m_evaluator(root / "t2m", None)
    with pytest.raises(FileNotFoundError, match="our_vab_idx.pkl"):
        (tmp_path / "glove").mkdir()
        (tmp_path / "glove" / "our_vab_data.npy").write_bytes((root / "glove" / "our_vab_data.npy").read_bytes())
        (tmp_path / "glove" / "our_vab_words.pkl").write_bytes((root / "glove" / "our_vab_words.pkl").read_bytes())
        load_t2m_evaluator(root / "t2m", tmp_path / "glove")
    with pytest.raises(FileNotFoundError, match="text_mot_match/model/finest.tar"):
        load_t2m_evaluator(tmp_path, root / "glove")
    (tmp_path / "text_mot_match" / "model").mkdir(parents=True)
    (tmp_path / "text_mot_match" / "model" / "finest.tar").write_bytes(
        (root / "t2m" / "text_mot_match" / "model" / "finest.tar").read_bytes())
    with pytest.raises(FileNotFoundError, match="no T2M feature statistics"):
        load_t2m_evaluator(tmp_path, root / "glove")
    for model, shift in (("A", 0.0), ("B", 1.0)):
        (tmp_path / model / "meta").mkdir(parents=True)
        np.save(tmp_path / model / "meta" / "mean.npy", mean + shift)
        np.save(tmp_path / model / "meta" / "std.npy", np.ones(263, np.float32))
    with pytest.raises(ValueError, match="disagree"):
        load_t2m_evaluator(tmp_path, root / "glove")


def test_t2m_mode_crops_each_motion_to_a_multiple_of_4_frames(t2m_files):
    """T2M's loaders keep the first (m_length // 4) * 4 frames: the last 1-3 frames never reach the encoder."""
    root, _, _ = t2m_files
    evaluator = load_t2m_evaluator(root / "t2m", root / "glove")
    motions = random_motions(4, seed=9)
    base = [motion[: 4 * (len(motion) // 4) - 4] for motion in motions]  # 4k frames, room for 3 more
    for extra in (1, 2, 3):
        longer = [motion[: len(short) + extra] for motion, short in zip(motions, base)]
        np.testing.assert_array_equal(evaluator.embed_motions(longer), evaluator.embed_motions(base))
        padded = np.stack([np.pad(m, ((0, 196 - len(m)), (0, 0))) for m in longer])
        np.testing.assert_array_equal(evaluator.embed_motions(padded, [len(m) for m in longer]),
                                      evaluator.embed_motions(base))
    four_more = [motion[: len(short) + 4] for motion, short in zip(motions, base)]
    assert not np.allclose(evaluator.embed_motions(four_more), evaluator.embed_motions(base))
