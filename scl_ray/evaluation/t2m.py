"""The original T2M evaluator (Guo et al. 2022), for numbers comparable with the literature.

Users who have the released files can evaluate with exactly the networks and weights behind
published HumanML3D results. Nothing is downloaded; point the config at the files:

    evaluate.evaluator.t2m_checkpoint: <t2m>   with <t2m>/text_mot_match/model/finest.tar (or the .tar itself)
    evaluate.evaluator.glove_dir:      <glove> with our_vab_data.npy, our_vab_words.pkl, our_vab_idx.pkl

The checkpoint holds the state dicts `movement_encoder`, `text_encoder`, `motion_encoder` of
MovementConvEncoder, TextEncoderBiGRUCo and MotionEncoderBiGRUCo (names and keys as upstream).
Motions are normalised with the evaluator's own statistics (`meta/mean.npy`, `meta/std.npy` of a
model directory under <t2m>, or MDM's `t2m_mean.npy` / `t2m_std.npy`), not the dataset's.
Captions become `word/POS` tokens (HumanML3D's tokens when given, else
`scl_ray.text.tokens.tokenize`), each a 300-d GloVe vector plus a part-of-speech one-hot.

`T2MEvaluator.to_bytes` bundles the networks, statistics and word vectors into one file (format
T2M_FORMAT), which is how an experiment keeps it: its trials need none of the released files.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from scl_ray.errors import UserError
from scl_ray.evaluation.encoders import CONTACT_DIMS, UNIT_LENGTH, motion_batches
from scl_ray.motion.constants import FEATURE_DIM, MAX_FRAMES
from scl_ray.text.tokens import tokenize

__all__ = ["T2MEvaluator", "load_t2m_evaluator", "crop_to_units", "WordVectors", "MovementConvEncoder",
           "TextEncoderBiGRUCo", "MotionEncoderBiGRUCo", "POS_ENUMERATOR", "GLOVE_FILES", "CHECKPOINT_PATH", "T2M_FORMAT"]

T2M_FORMAT = "scl-ray-t2m-evaluator-v1"
NETWORKS = ("movement_encoder", "text_encoder", "motion_encoder")

CHECKPOINT_PATH = Path("text_mot_match", "model", "finest.tar")
GLOVE_FILES = ("our_vab_data.npy", "our_vab_words.pkl", "our_vab_idx.pkl")
# T2M's sizes for HumanML3D (evaluator_wrapper.py).
WORD_DIM, MAX_TEXT_LEN, TEXT_HIDDEN, MOTION_HIDDEN, MOVEMENT_HIDDEN, MOVEMENT_LATENT, COEMB = 300, 20, 512, 1024, 512, 512, 512
POS_ENUMERATOR = {name: index for index, name in enumerate(
    ("VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV",
     "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER"))}
# Words whose part of speech T2M overrides with a motion-specific category, whatever the tagger said.
VIP_WORDS = {
    "Loc_VIP": "left right clockwise counterclockwise anticlockwise forward back backward up down straight curve",
    "Body_VIP": "arm chin foot feet face hand mouth leg waist eye knee shoulder thigh",
    "Obj_VIP": "stair dumbbell chair window floor car ball handrail baseball basketball",
    "Act_VIP": "walk run swing pick bring kick put squat throw hop dance jump turn stumble stop sit lift lower "
               "raise wash stand kneel stroll rub bend balance flap jog shuffle lean rotate spin spread climb",
    "Desc_VIP": "slowly carefully fast careful slow quickly happy angry sad happily angrily sadly",
}
_VIP_OF = {word: category for category, words in VIP_WORDS.items() for word in words.split()}


class MovementConvEncoder(nn.Module):
    """(N, F, 259) normalised features without contacts -> (N, F/4, 512) movements."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(input_size, hidden_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
            nn.Conv1d(hidden_size, output_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2))
        self.out_net = nn.Linear(output_size, output_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.out_net(self.main(inputs.permute(0, 2, 1)).permute(0, 2, 1))


class _BiGRUCo(nn.Module):
    """Input embedding, bidirectional GRU from a learned initial state, MLP on both last states."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size),
                                        nn.LeakyReLU(0.2), nn.Linear(hidden_size, output_size))
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.input_emb(inputs), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed, self.hidden.repeat(1, len(inputs), 1))
        return self.output_net(torch.cat([last[0], last[1]], dim=-1))


class TextEncoderBiGRUCo(_BiGRUCo):
    """Word vectors (N, L, 300) + POS one-hots (N, L, 15) + caption lengths (N,) -> (N, 512)."""

    def __init__(self, word_size: int, pos_size: int, hidden_size: int, output_size: int):
        super().__init__(word_size, hidden_size, output_size)
        self.pos_emb = nn.Linear(pos_size, word_size)

    def forward(self, word_embs: torch.Tensor, pos_onehot: torch.Tensor, cap_lens: torch.Tensor) -> torch.Tensor:
        return self.encode(word_embs + self.pos_emb(pos_onehot), cap_lens)


class MotionEncoderBiGRUCo(_BiGRUCo):
    """Movements (N, F/4, 512) + movement counts (N,) -> (N, 512)."""

    def forward(self, inputs: torch.Tensor, m_lens: torch.Tensor) -> torch.Tensor:
        return self.encode(inputs, m_lens)


class WordVectors:
    """T2M's vocabulary: GloVe vectors of the words HumanML3D uses, `unk` for the rest."""

    def __init__(self, vectors: dict[str, np.ndarray]):
        if "unk" not in vectors:
            raise UserError("T2M's vocabulary has no 'unk' word, which T2M uses for unknown words")
        self.vectors = vectors

    @classmethod
    def load(cls, glove_dir: str | os.PathLike) -> "WordVectors":
        glove_dir = Path(glove_dir).expanduser()
        missing = [name for name in GLOVE_FILES if not (glove_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{glove_dir} lacks {', '.join(missing)}: T2M's text encoder needs its word "
                                    f"vectors ({', '.join(GLOVE_FILES)}, as MDM's prepare/download_glove.sh "
                                    "unpacks them); set evaluate.evaluator.glove_dir to that directory")
        vectors = np.load(glove_dir / GLOVE_FILES[0])
        # Pickles are T2M's format; these are the user's own files.
        with open(glove_dir / GLOVE_FILES[1], "rb") as handle:
            words = pickle.load(handle)
        with open(glove_dir / GLOVE_FILES[2], "rb") as handle:
            word_index = pickle.load(handle)
        if "unk" not in words:
            raise UserError(f"{glove_dir / GLOVE_FILES[1]} has no 'unk' word, which T2M uses for unknown words")
        return cls({word: np.asarray(vectors[word_index[word]], np.float32) for word in words})

    def __getitem__(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """`word/POS` -> (300-d vector, 15-d one-hot); unknown words become `unk` with POS OTHER."""
        word, _, pos = token.partition("/")
        pos_onehot = np.zeros(len(POS_ENUMERATOR), np.float32)
        if word not in self.vectors:
            word, pos = "unk", "OTHER"
        pos = _VIP_OF.get(word, pos)
        pos_onehot[POS_ENUMERATOR.get(pos, POS_ENUMERATOR["OTHER"])] = 1.0
        return self.vectors[word], pos_onehot

    def caption(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
        """Tokens -> (words (22, 300), POS (22, 15), length) framed by sos/eos and padded with unk, as upstream."""
        tokens = ["sos/OTHER", *list(tokens)[:MAX_TEXT_LEN], "eos/OTHER"]
        length = len(tokens)
        tokens += ["unk/OTHER"] * (MAX_TEXT_LEN + 2 - length)
        words, pos = zip(*(self[token] for token in tokens))
        return np.stack(words), np.stack(pos), length


def caption_tokens(caption: str | Sequence[str]) -> list[str]:
    """HumanML3D `word/POS` tokens: given token lists pass through; strings are tagged by our tokenizer."""
    if isinstance(caption, str):
        return list(tokenize(caption))
    return list(caption)


def crop_to_units(lengths: np.ndarray) -> np.ndarray:
    """Frame counts cut down to whole movements: T2M's evaluation loaders keep the first
    `(m_length // unit_length) * unit_length` frames of every motion (unit_length 4). Motions shorter
    than one movement keep their frames."""
    lengths = np.asarray(lengths)
    return np.where(lengths >= UNIT_LENGTH, lengths // UNIT_LENGTH * UNIT_LENGTH, lengths)


class T2MEvaluator:
    """The released T2M evaluator behind embed_motions / embed_texts (embeddings (N, 512) float32, not unit)."""

    embed_dim = COEMB

    def __init__(self, movement_encoder: MovementConvEncoder, text_encoder: TextEncoderBiGRUCo,
                 motion_encoder: MotionEncoderBiGRUCo, words: WordVectors, mean: np.ndarray, std: np.ndarray):
        self.movement_encoder = movement_encoder.eval().requires_grad_(False)
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.motion_encoder = motion_encoder.eval().requires_grad_(False)
        self.words = words
        self.mean = torch.tensor(np.asarray(mean, np.float32))
        self.std = torch.tensor(np.asarray(std, np.float32))

    def to_bytes(self) -> bytes:
        """Networks, statistics and word vectors as one `torch.save` file (format T2M_FORMAT)."""
        words = sorted(self.words.vectors)
        state = {"format": T2M_FORMAT, "mean": self.mean, "std": self.std, "words": words,
                 "vectors": torch.from_numpy(np.stack([self.words.vectors[word] for word in words]))}
        state.update({name: getattr(self, name).state_dict() for name in NETWORKS})
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    @classmethod
    def from_state(cls, state: dict) -> "T2MEvaluator":
        """The evaluator `to_bytes` bundled, from its loaded state."""
        networks = _networks()
        for name, network in networks.items():
            network.load_state_dict(state[name])
        words = WordVectors(dict(zip(state["words"], state["vectors"].numpy())))
        return cls(*networks.values(), words, state["mean"].numpy(), state["std"].numpy())

    def embed_motions(self, features: Sequence[np.ndarray] | np.ndarray, lengths: Sequence[int] | None = None,
                      normalised: bool = False, batch_size: int = 256) -> np.ndarray:
        """Raw (F_i, 263) motions, or padded (N, F, 263) + lengths -> (N, 512) float32, in input order.

        normalised: True when the features are already normalised with this evaluator's mean/std.
        Each motion is cropped to its first multiple of 4 frames (`crop_to_units`), as T2M's loaders do.
        """
        outputs = [np.zeros((0, COEMB), np.float32)]
        with torch.no_grad():
            for padded, batch_lengths in motion_batches(features, lengths, batch_size):
                batch_lengths = crop_to_units(batch_lengths)
                # Upstream pads every motion to 196 frames; the convolutions near a motion's end read that padding.
                padded = np.pad(padded, ((0, 0), (0, max(0, MAX_FRAMES - padded.shape[1])), (0, 0)))
                motions, batch_lengths = torch.from_numpy(padded), torch.from_numpy(batch_lengths)
                if not normalised:
                    motions = (motions - self.mean) / self.std
                valid = torch.arange(motions.shape[1])[None, :] < batch_lengths[:, None]
                movements = self.movement_encoder(motions[..., :FEATURE_DIM - CONTACT_DIMS] * valid[..., None])
                steps = torch.clamp(batch_lengths // UNIT_LENGTH, min=1, max=movements.shape[1])
                outputs.append(self.motion_encoder(movements, steps).numpy())
        return np.concatenate(outputs)

    def embed_texts(self, captions: Sequence[str | Sequence[str]]) -> np.ndarray:
        """Captions (strings, or HumanML3D `word/POS` token lists, which are exact) -> (N, 512) float32."""
        if not captions:
            return np.zeros((0, COEMB), np.float32)
        words, pos, lengths = zip(*(self.words.caption(caption_tokens(caption)) for caption in captions))
        with torch.no_grad():
            return self.text_encoder(torch.from_numpy(np.stack(words)), torch.from_numpy(np.stack(pos)),
                                     torch.tensor(lengths)).numpy()


def _statistics(t2m_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The evaluator's mean/std: <t2m>/meta, <t2m>/<model>/meta (all equal), or MDM's t2m_mean/std.npy."""
    pairs = [(t2m_dir / "meta" / "mean.npy", t2m_dir / "meta" / "std.npy")]
    pairs += [(mean, mean.with_name("std.npy")) for mean in sorted(t2m_dir.glob("*/meta/mean.npy"))]
    pairs += [(t2m_dir / "t2m_mean.npy", t2m_dir / "t2m_std.npy")]
    found = [(np.load(mean), np.load(std)) for mean, std in pairs if mean.is_file() and std.is_file()]
    if not found:
        raise FileNotFoundError(f"no T2M feature statistics under {t2m_dir}: expected meta/mean.npy + std.npy, "
                                "<model>/meta/mean.npy + std.npy (e.g. Comp_v6_KLD005/meta) or t2m_mean.npy + "
                                "t2m_std.npy; or pass mean= and std= to load_t2m_evaluator")
    mean, std = found[0]
    if any(not (np.array_equal(mean, m) and np.array_equal(std, s)) for m, s in found[1:]):
        raise UserError(f"the feature statistics under {t2m_dir} disagree "
                        f"({[str(m) for m, s in pairs if m.is_file()]}); pass mean= and std= explicitly")
    return mean, std


def load_t2m_evaluator(checkpoint: str | os.PathLike, glove_dir: str | os.PathLike | None,
                       mean: np.ndarray | None = None, std: np.ndarray | None = None) -> T2MEvaluator:
    """Load the original evaluator from <t2m> (holding text_mot_match/model/finest.tar) or from the .tar itself.

    mean/std (263,): the evaluator's feature statistics; found under <t2m> when not given.
    """
    checkpoint = Path(checkpoint).expanduser()
    path = checkpoint if checkpoint.is_file() else checkpoint / CHECKPOINT_PATH
    t2m_dir = checkpoint if checkpoint.is_dir() else checkpoint.parents[2]
    if not path.is_file():
        raise FileNotFoundError(f"no T2M evaluator checkpoint at {path}: evaluate.evaluator.t2m_checkpoint must be "
                                f"the T2M directory holding {CHECKPOINT_PATH} (or that file)")
    if glove_dir is None:
        raise UserError(f"the T2M evaluator needs word vectors: set evaluate.evaluator.glove_dir to the directory "
                        f"with {', '.join(GLOVE_FILES)}")
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std, or neither (then they are read from the T2M directory)")
    if mean is None:
        mean, std = _statistics(t2m_dir)
    if np.shape(mean) != (FEATURE_DIM,) or np.shape(std) != (FEATURE_DIM,):
        raise ValueError(f"T2M mean/std have shapes {np.shape(mean)}/{np.shape(std)}, expected ({FEATURE_DIM},)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    networks = _networks()
    for name, network in networks.items():
        if name not in state:
            raise UserError(f"{path} has no '{name}' state dict (keys: {sorted(state)}); is it text_mot_match's finest.tar?")
        network.load_state_dict(state[name])
    return T2MEvaluator(*networks.values(), WordVectors.load(glove_dir), mean, std)


def _networks() -> dict[str, nn.Module]:
    """T2M's three networks at HumanML3D's sizes, in NETWORKS order (weights still to load)."""
    return {
        "movement_encoder": MovementConvEncoder(FEATURE_DIM - CONTACT_DIMS, MOVEMENT_HIDDEN, MOVEMENT_LATENT),
        "text_encoder": TextEncoderBiGRUCo(WORD_DIM, len(POS_ENUMERATOR), TEXT_HIDDEN, COEMB),
        "motion_encoder": MotionEncoderBiGRUCo(MOVEMENT_LATENT, MOTION_HIDDEN, COEMB),
    }
