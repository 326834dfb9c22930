"""The real data of a loop: the dataset directory, its splits as motion sets, and caption embeddings.

The procedural dataset is generated once per (num, seed) into the cache directory (written to a
temporary directory and renamed, so concurrent processes never see half a dataset); a HumanML3D
directory is used where the user put it. Both are built on the driver only: trials read the copies
the experiment keeps (`scl_ray.loop.resources`), because the procedural generator's numpy math and
the text encoder's torch math round differently on another CPU (same bytes at 1 and 2 threads on one
machine; not with another instruction set: measured, see resources.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scl_ray import storage
from scl_ray.config import DataConfig
from scl_ray.errors import UserError
from scl_ray.motion.features import Normalizer
from scl_ray.motion.humanml3d import load_split
from scl_ray.motion.store import MotionSet
from scl_ray.progress import building
from scl_ray.rng import TRAIN_SUBSET, stream
from scl_ray.text.encoders import TextEncoder, embed_captions


def procedural_root(data: DataConfig) -> Path:
    return Path(data.cache_dir).expanduser() / "procedural" / f"n{data.procedural_num}_seed{data.procedural_seed}"


# Generating and writing one procedural motion (benchmarks/results/procedural_speed.json: 310 motions/s
# generated on one core; writing the files takes most of the rest).
PROCEDURAL_S_PER_MOTION = 0.01


def dataset_root(data: DataConfig, progress: bool = True) -> Path:
    """The HumanML3D-layout directory of the configured data, generating the procedural one if needed."""
    if data.source == "humanml3d":
        root = Path(str(data.path)).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data.path {root} is not a directory (expected the HumanML3D layout; "
                                    "`scl-ray data check DIR` explains what a directory needs)")
        return root
    root = procedural_root(data)
    if (root / "Std.npy").is_file():
        return root
    from scl_ray.motion.procedural import write_procedural_dataset

    with building(f"the procedural dataset ({data.procedural_num} motions) in {root}",
                  data.procedural_num * PROCEDURAL_S_PER_MOTION, progress):
        storage.write_directory(root, lambda staging: write_procedural_dataset(
            Path(staging), num=data.procedural_num, seed=data.procedural_seed))
    return root


@dataclass
class RealData:
    """A dataset's train and test splits (raw features) and its normaliser."""

    root: Path | str  # where the splits were read from (a dataset directory, or an experiment's copy)
    normalizer: Normalizer
    train: MotionSet
    test: MotionSet

    @classmethod
    def load(cls, data: DataConfig, progress: bool = True) -> "RealData":
        root = dataset_root(data, progress)
        splits = {}
        for split in ("train", "test"):
            records = load_split(root, split, min_frames=data.min_frames, max_frames=data.max_frames)
            if len(records) < 2:
                raise UserError(f"{root}/{split}.txt gives {len(records)} usable motions "
                                f"({data.min_frames}-{data.max_frames} frames); a loop needs more")
            splits[split] = MotionSet.from_records(records)
        return cls(root, Normalizer.load(root), splits["train"], splits["test"])

    def subset(self, size: int, seed: int) -> MotionSet:
        """The loop's n real training motions: a seeded choice without replacement from the train split."""
        if size > len(self.train):
            raise UserError(f"loop.train_size is {size} but {self.root} has only {len(self.train)} training "
                            "motions: lower loop.train_size or use a bigger dataset")
        chosen = np.sort(stream(seed, TRAIN_SUBSET).choice(len(self.train), size, replace=False))
        return self.train.select(chosen)


class CaptionBank:
    """Token embeddings of every caption a loop can meet, encoded once (cached on disk) and looked up.

    captions: distinct, sorted; embeddings (U, L, D) float16 and mask (U, L) bool, row i for captions[i].
    """

    def __init__(self, captions: list[str], embeddings: np.ndarray, mask: np.ndarray):
        if embeddings.shape[:2] != mask.shape or len(mask) != len(captions):
            raise ValueError(f"a caption bank needs one (L, D) embedding and (L,) mask per caption: {len(captions)} "
                             f"captions, embeddings {embeddings.shape}, mask {mask.shape}")
        self.captions, self.embeddings, self.mask = list(captions), embeddings, mask
        self.row = {caption: index for index, caption in enumerate(self.captions)}
        self.dim = embeddings.shape[-1]

    @classmethod
    def encode(cls, captions: list[str], encoder: TextEncoder, max_tokens: int, cache_dir: str | None,
               progress: bool = True) -> "CaptionBank":
        unique = sorted(set(captions) | {""})
        return cls(unique, *embed_captions(unique, encoder, cache_dir, max_tokens, progress))

    @classmethod
    def for_data(cls, real: RealData, encoder: TextEncoder, max_tokens: int, cache_dir: str | None,
                 progress: bool = True) -> "CaptionBank":
        captions = [c for motion in real.train.captions + real.test.captions for c in motion]
        return cls.encode(captions, encoder, max_tokens, cache_dir, progress)

    def save(self, location: str) -> None:
        """Write the bank as .npz (captions, embeddings, mask) atomically, to a local path or a URI."""
        storage.write_with(location, lambda stream: np.savez(
            stream, captions=np.array(self.captions, dtype=str), embeddings=self.embeddings, mask=self.mask))

    @classmethod
    def read(cls, location: str) -> "CaptionBank":
        with np.load(io.BytesIO(storage.read_bytes(location))) as saved:
            return cls(saved["captions"].tolist(), saved["embeddings"], saved["mask"])

    def lookup(self, captions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(N, L, D) embeddings and (N, L) masks of known captions."""
        missing = [c for c in captions if c not in self.row]
        if missing:
            raise KeyError(f"caption {missing[0]!r} is not in the dataset's caption bank")
        rows = np.array([self.row[c] for c in captions], dtype=np.int64)
        return self.embeddings[rows], self.mask[rows]
