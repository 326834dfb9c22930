"""The networks of our evaluator: a motion encoder and a caption encoder into one embedding space.

T2M's design (Guo et al. 2022), with a frozen sentence encoder's token embeddings in place of
GloVe + part-of-speech vectors:

    motion (F, 263) raw ─ normalise with the dataset's mean/std ─ drop the 4 foot contacts
      ─ movement encoder: 2 strided temporal convolutions (F frames -> F/4 "movements")
      ─ bidirectional GRU over the first length//4 movements ─ last states of both directions ─ MLP ─ (E,)
    caption ─ text encoder (frozen, e.g. MiniLM) token embeddings (L, 384) + mask
      ─ linear ─ bidirectional GRU over the valid tokens ─ MLP ─ (E,)

Both sides end in unit vectors (see evaluator.py for why). Foot contacts are left out as in T2M:
they are derived flags, and a generated motion's flags need not agree with its positions.
Padding is zeros after normalisation, each convolution's outputs past a motion's length are zeroed
and the GRU stops at the motion's own length, so a motion's embedding does not depend on its batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from scl_ray.config import EvaluatorConfig
from scl_ray.motion.constants import FEATURE_DIM

__all__ = ["MotionEncoder", "CaptionEncoder", "EvaluatorNetwork", "pad_motions", "motion_batches", "caption_words",
           "CONTACT_DIMS", "UNIT_LENGTH", "TEXT_MAX_TOKENS"]

CONTACT_DIMS = 4
# Frames per movement: the two stride-2 convolutions downsample time by 4, as T2M's unit_length.
UNIT_LENGTH = 4
TEXT_MAX_TOKENS = 32


def pad_motions(features: Sequence[np.ndarray] | np.ndarray, lengths: Sequence[int] | np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Motions -> (padded (N, F_max, D) float32, lengths (N,) int64).

    features: a list of (F_i, D) arrays, or an already padded (N, F, D) array with `lengths`
    (all F frames valid when lengths is None). Frames past a motion's length are zeroed.
    """
    if isinstance(features, np.ndarray) and features.ndim == 3:
        padded = np.array(features, dtype=np.float32)
        lengths = np.full(len(padded), padded.shape[1], np.int64) if lengths is None else np.asarray(lengths, np.int64)
        if lengths.shape != (len(padded),) or (lengths < 1).any() or (lengths > padded.shape[1]).any():
            raise ValueError(f"lengths must be {len(padded)} frame counts in [1, {padded.shape[1]}] for "
                             f"padded motions of shape {padded.shape}, got {lengths.tolist()}")
        padded[np.arange(padded.shape[1])[None, :] >= lengths[:, None]] = 0.0
        return padded, lengths
    if lengths is not None:
        raise ValueError("lengths are read from the arrays when motions come as a list; pass lengths "
                         "only with a padded (N, F, D) array")
    motions = [np.asarray(motion, dtype=np.float32) for motion in features]
    for index, motion in enumerate(motions):
        if motion.ndim != 2 or len(motion) < 1 or motion.shape[1] != motions[0].shape[1]:
            raise ValueError(f"motion {index} has shape {motion.shape}, expected (frames >= 1, "
                             f"{motions[0].shape[-1]}) like motion 0")
    lengths = np.array([len(motion) for motion in motions], np.int64)
    dim = motions[0].shape[1] if motions else FEATURE_DIM
    padded = np.zeros((len(motions), int(lengths.max(initial=1)), dim), np.float32)
    for index, motion in enumerate(motions):
        padded[index, :len(motion)] = motion
    return padded, lengths


def motion_batches(features: Sequence[np.ndarray] | np.ndarray, lengths: Sequence[int] | np.ndarray | None,
                   batch_size: int):
    """Yield `pad_motions` of consecutive batches, so a long list is never padded all at once.

    Checks every motion: FEATURE_DIM features per frame, finite values (names the offending motions).
    """
    is_padded = isinstance(features, np.ndarray) and features.ndim == 3
    if is_padded and lengths is None:
        lengths = np.full(len(features), features.shape[1], np.int64)
    for start in range(0, len(features), batch_size):
        stop = start + batch_size
        padded, batch_lengths = pad_motions(features[start:stop], lengths[start:stop] if is_padded else None)
        if padded.shape[-1] != FEATURE_DIM:
            raise ValueError(f"motions have {padded.shape[-1]} features per frame, expected {FEATURE_DIM} (HumanML3D)")
        finite = np.isfinite(padded).reshape(len(padded), -1).all(axis=1)
        if not finite.all():
            raise ValueError(f"motions {(start + np.flatnonzero(~finite))[:10].tolist()} contain NaN or inf; "
                             "exclude non-finite samples before evaluating")
        yield padded, batch_lengths


def caption_words(caption: str | Sequence[str]) -> str:
    """A caption as text: strings pass through; HumanML3D `word/POS` tokens are joined without their tags."""
    if isinstance(caption, str):
        return caption
    return " ".join(token.split("/")[0] for token in caption)


def _head(width: int, embed_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2 * width, width), nn.LayerNorm(width), nn.LeakyReLU(0.2),
                         nn.Linear(width, embed_dim))


def _last_states(gru: nn.GRU, sequence: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(N, S, W) + lengths -> (N, 2W): the forward state after the last valid step, the backward one at step 0."""
    packed = pack_padded_sequence(sequence, lengths.cpu(), batch_first=True, enforce_sorted=False)
    _, last = gru(packed)
    return torch.cat([last[0], last[1]], dim=-1)


class MotionEncoder(nn.Module):
    """Normalised features without contacts (N, F, 259) + lengths (N,) frames -> (N, E) unit vectors."""

    def __init__(self, input_dim: int, width: int, embed_dim: int, dropout: float = 0.2):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(input_dim, width, kernel_size=4, stride=2, padding=1),
                                    nn.Conv1d(width, width, kernel_size=4, stride=2, padding=1)])
        self.activation = nn.Sequential(nn.Dropout(dropout), nn.LeakyReLU(0.2))
        self.gru = nn.GRU(width, width, batch_first=True, bidirectional=True)
        self.head = _head(width, embed_dim)

    def forward(self, motions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        movements, valid = motions.transpose(1, 2), lengths
        for conv in self.convs:
            # Outputs past a motion's own length are zeroed, as if the convolution had seen the
            # motion alone (its zero padding), so the next layer does not read the batch's padding.
            valid = valid // 2
            movements = self.activation(conv(movements))
            movements = movements * (torch.arange(movements.shape[-1]) < valid[:, None])[:, None, :]
        steps = torch.clamp(lengths // UNIT_LENGTH, min=1, max=movements.shape[-1])
        return nn.functional.normalize(self.head(_last_states(self.gru, movements.transpose(1, 2), steps)), dim=-1)


class CaptionEncoder(nn.Module):
    """Frozen token embeddings (N, L, D) + prefix mask (N, L) -> (N, E) unit vectors."""

    def __init__(self, token_dim: int, width: int, embed_dim: int):
        super().__init__()
        self.input = nn.Linear(token_dim, width)
        self.gru = nn.GRU(width, width, batch_first=True, bidirectional=True)
        self.head = _head(width, embed_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = torch.clamp(mask.sum(dim=1), min=1)
        return nn.functional.normalize(self.head(_last_states(self.gru, self.input(tokens), lengths)), dim=-1)


class EvaluatorNetwork(nn.Module):
    """Both encoders plus the feature statistics the motion side normalises with (buffers: saved with it)."""

    def __init__(self, config: EvaluatorConfig, token_dim: int, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        if mean.shape != (FEATURE_DIM,) or std.shape != (FEATURE_DIM,):
            raise ValueError(f"normaliser mean/std have shapes {mean.shape}/{std.shape}, expected ({FEATURE_DIM},)")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("normaliser std must be finite and > 0 in every feature (and mean finite); "
                             f"bad features: {np.flatnonzero(~np.isfinite(std) | ~(std > 0)).tolist()}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.motion = MotionEncoder(FEATURE_DIM - CONTACT_DIMS, config.width, config.embed_dim)
        self.text = CaptionEncoder(token_dim, config.width, config.embed_dim)

    def motion_inputs(self, motions: torch.Tensor, lengths: torch.Tensor, normalised: bool) -> torch.Tensor:
        """Padded features (N, F, 263) -> what the motion encoder reads: normalised, no contacts, zero padding."""
        if not normalised:
            motions = (motions - self.mean) / self.std
        valid = torch.arange(motions.shape[1])[None, :] < lengths[:, None]
        return motions[..., :FEATURE_DIM - CONTACT_DIMS] * valid[..., None]
