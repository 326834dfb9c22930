"""The denoiser's training set in memory, and the seeded order in which it is visited.

A `MotionTextDataset` holds normalised motions padded to a fixed length together with caption
token embeddings. A motion may have several captions (HumanML3D has about three): each time a
motion is drawn, one of its captions is picked uniformly. `BatchOrder` yields global batches of
motion indices as concatenated seeded permutations, so every motion is seen once per pass even
when the dataset is smaller than a batch; under DDP every rank draws the same global batch and
keeps its own slice of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from scl_ray.motion.constants import MAX_FRAMES


def _tensor(value, dtype: torch.dtype | None = None) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    return tensor if dtype is None else tensor.to(dtype)


@dataclass
class MotionTextDataset:
    """Normalised padded motions with captions, on the CPU.

    features: (M, F, 263) float32 normalised features, zero on padded frames; lengths: (M,) real
    frames per motion (1..F); text_emb: (K, L, D) token embeddings (float16 or float32);
    text_mask: (K, L) bool, True = real token (an all-False row is the empty caption);
    caption_motion: (K,) index of the motion each caption describes; None means one caption per
    motion in the same order (K = M); motion_ids: optional names used in error messages.
    """

    features: torch.Tensor
    lengths: torch.Tensor
    text_emb: torch.Tensor
    text_mask: torch.Tensor
    caption_motion: torch.Tensor | None = None
    motion_ids: Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.features = _tensor(self.features, torch.float32)
        self.lengths = _tensor(self.lengths, torch.int64)
        self.text_emb = _tensor(self.text_emb)
        self.text_mask = _tensor(self.text_mask, torch.bool)
        if self.features.ndim != 3 or self.features.shape[0] == 0:
            raise ValueError(f"features must be (M, F, D) with M >= 1, got {tuple(self.features.shape)}")
        num_motions, max_frames, _ = self.features.shape
        if self.lengths.shape != (num_motions,):
            raise ValueError(f"lengths must be ({num_motions},) to match features, got {tuple(self.lengths.shape)}")
        if self.motion_ids is not None and len(self.motion_ids) != num_motions:
            raise ValueError(f"motion_ids has {len(self.motion_ids)} names for {num_motions} motions")
        bad = torch.nonzero((self.lengths < 1) | (self.lengths > max_frames)).flatten()
        if len(bad):
            raise ValueError(f"motion {self._name(int(bad[0]))} has length {int(self.lengths[bad[0]])}: "
                             f"lengths must be in 1..{max_frames} (the padded frame count)")
        # Sums keep the checks' memory at (M, F): a NaN or inf anywhere in a frame makes its sum non-finite.
        frame_sums = self.features.sum(-1)
        finite = torch.isfinite(frame_sums).all(1)
        if not finite.all():
            index = int(torch.nonzero(~finite)[0])
            raise ValueError(f"motion {self._name(index)} has NaN or inf features; drop non-finite motions first")
        padded = ~self.frame_mask(torch.arange(num_motions))
        if self.features.abs().sum(-1)[padded].any():
            raise ValueError("features must be zero on padded frames (frames at or beyond each motion's length)")
        self._check_captions(num_motions)

    def _check_captions(self, num_motions: int) -> None:
        if self.text_emb.ndim != 3 or self.text_mask.shape != self.text_emb.shape[:2]:
            raise ValueError(f"text_emb must be (K, L, D) and text_mask (K, L); got {tuple(self.text_emb.shape)} "
                             f"and {tuple(self.text_mask.shape)}")
        if self.caption_motion is None:
            if len(self.text_emb) != num_motions:
                raise ValueError(f"{len(self.text_emb)} captions for {num_motions} motions: pass caption_motion "
                                 "to say which motion each caption describes")
            self.caption_motion = torch.arange(num_motions)
        self.caption_motion = _tensor(self.caption_motion, torch.int64)
        if self.caption_motion.shape != (len(self.text_emb),):
            raise ValueError(f"caption_motion must be ({len(self.text_emb)},), got {tuple(self.caption_motion.shape)}")
        if len(self.caption_motion) and (self.caption_motion.min() < 0 or self.caption_motion.max() >= num_motions):
            raise ValueError(f"caption_motion must index motions 0..{num_motions - 1}")
        counts = torch.bincount(self.caption_motion, minlength=num_motions)
        if (counts == 0).any():
            index = int(torch.nonzero(counts == 0)[0])
            raise ValueError(f"motion {self._name(index)} has no caption; give it one (an empty caption is an "
                             "all-False text_mask row)")
        # Captions grouped by motion: motion m owns caption_order[offsets[m] : offsets[m] + counts[m]].
        self._caption_order = torch.argsort(self.caption_motion, stable=True)
        self._caption_offsets = torch.cumsum(counts, 0) - counts
        self._caption_counts = counts

    def _name(self, index: int) -> str:
        return f"{index} ({self.motion_ids[index]})" if self.motion_ids is not None else str(index)

    @classmethod
    def from_motions(cls, motions: Sequence[np.ndarray], text_emb, text_mask, max_frames: int = MAX_FRAMES,
                     caption_motion=None, motion_ids: Sequence[str] | None = None) -> "MotionTextDataset":
        """Pad a list of normalised motions, each (F_i, D) with F_i <= max_frames, into a dataset."""
        if not len(motions):
            raise ValueError("from_motions needs at least one motion")
        features = np.zeros((len(motions), max_frames, np.shape(motions[0])[-1]), dtype=np.float32)
        for index, motion in enumerate(motions):
            if np.ndim(motion) != 2 or not 1 <= len(motion) <= max_frames:
                name = motion_ids[index] if motion_ids is not None else index
                raise ValueError(f"motion {name} has shape {np.shape(motion)}: expected (F, D), 1 <= F <= {max_frames}")
            features[index, : len(motion)] = motion
        lengths = np.array([len(motion) for motion in motions], dtype=np.int64)
        return cls(features, lengths, text_emb, text_mask, caption_motion, motion_ids)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def max_frames(self) -> int:
        return self.features.shape[1]

    def frame_mask(self, motion_index: torch.Tensor) -> torch.Tensor:
        """(B,) motion indices -> (B, F) bool, True on real frames."""
        return torch.arange(self.max_frames) < self.lengths[motion_index][:, None]

    def pick_captions(self, motion_index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One caption per drawn motion, uniformly among its captions: (B,) caption indices."""
        draw = torch.rand(len(motion_index), generator=generator, dtype=torch.float64)
        counts = self._caption_counts[motion_index]
        within = torch.minimum((draw * counts).long(), counts - 1)
        return self._caption_order[self._caption_offsets[motion_index] + within]

    def batch(self, motion_index: torch.Tensor, caption_index: torch.Tensor, device: torch.device) -> dict:
        """Tensors of one batch on device: features (B, F_b, D) float32, frame_mask (B, F_b),
        text_emb (B, L, D_text) float32, text_mask (B, L).

        F_b is the longest motion of the batch, not the padded length: frames past every motion's end
        are masked anyway, and attention over fewer frames is cheaper (HumanML3D's mean length is
        about 0.6 of the maximum)."""
        frames = int(self.lengths[motion_index].max()) if len(motion_index) else self.max_frames
        return {
            "features": self.features[motion_index, :frames].to(device, non_blocking=True),
            "frame_mask": self.frame_mask(motion_index)[:, :frames].to(device, non_blocking=True),
            "text_emb": self.text_emb[caption_index].to(device, torch.float32, non_blocking=True),
            "text_mask": self.text_mask[caption_index].to(device, non_blocking=True),
        }


class BatchOrder:
    """An endless stream of global batches of motion indices, drawn as concatenated permutations."""

    def __init__(self, num_motions: int, batch_size: int, generator: torch.Generator):
        self.num_motions = num_motions
        self.batch_size = batch_size
        self.generator = generator
        self._pending = torch.empty(0, dtype=torch.int64)

    def next(self) -> torch.Tensor:
        """The next (batch_size,) int64 motion indices."""
        while len(self._pending) < self.batch_size:
            permutation = torch.randperm(self.num_motions, generator=self.generator)
            self._pending = torch.cat([self._pending, permutation])
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        return batch
