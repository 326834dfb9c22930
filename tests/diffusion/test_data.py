import numpy as np
import pytest
import torch

from scl_ray.diffusion.data import BatchOrder, MotionTextDataset


def _dataset(lengths=(10, 7, 4), captions=None, caption_motion=None, ids=None):
    motions = [np.full((n, 5), i + 1.0, dtype=np.float32) for i, n in enumerate(lengths)]
    captions = len(lengths) if captions is None else captions
    text_emb = torch.arange(captions, dtype=torch.float16)[:, None, None].expand(captions, 2, 3)
    return MotionTextDataset.from_motions(motions, text_emb, torch.ones(captions, 2, dtype=torch.bool),
                                          max_frames=12, caption_motion=caption_motion, motion_ids=ids)


def test_from_motions_pads_and_batches():
    dataset = _dataset()
    assert len(dataset) == 3 and dataset.max_frames == 12
    batch = dataset.batch(torch.tensor([2, 0]), torch.tensor([2, 0]), torch.device("cpu"))
    assert batch["features"].shape == (2, 10, 5) and batch["text_emb"].dtype == torch.float32  # longest motion: 10
    assert batch["frame_mask"].sum(1).tolist() == [4, 10]
    assert (batch["features"][0, :4] == 3).all() and (batch["features"][0, 4:] == 0).all()


def test_batch_order_visits_every_motion_once_per_pass():
    order = BatchOrder(5, 2, torch.Generator().manual_seed(0))
    drawn = torch.cat([order.next() for _ in range(5)])
    assert sorted(drawn.tolist()) == sorted(list(range(5)) * 2)
    # Batches larger than the dataset are filled from the next pass.
    big = BatchOrder(3, 7, torch.Generator().manual_seed(0)).next()
    assert len(big) == 7 and set(big.tolist()) == {0, 1, 2}


def test_captions_are_picked_among_the_motions_own():
    dataset = _dataset(captions=5, caption_motion=[0, 1, 0, 2, 0])
    generator = torch.Generator().manual_seed(0)
    picks = dataset.pick_captions(torch.zeros(3000, dtype=torch.int64), generator)
    counts = torch.bincount(picks, minlength=5)
    assert counts[[1, 3]].sum() == 0
    assert (counts[[0, 2, 4]] - 1000).abs().max() < 150
    assert dataset.pick_captions(torch.tensor([1, 2]), generator).tolist() == [1, 3]


def test_bad_datasets_are_explained():
    with pytest.raises(ValueError, match="pass caption_motion"):
        _dataset(captions=4)
    with pytest.raises(ValueError, match=r"motion 1 \(walk\) has no caption"):
        _dataset(captions=3, caption_motion=[0, 0, 2], ids=["run", "walk", "jump"])
    with pytest.raises(ValueError, match="has shape"):
        _dataset(lengths=(10, 13))
    features = torch.zeros(2, 6, 5)
    features[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"motion 1 \(b\) has NaN"):
        MotionTextDataset(features, [6, 6], torch.zeros(2, 1, 3), torch.ones(2, 1), motion_ids=["a", "b"])
    features = torch.ones(2, 6, 5)
    with pytest.raises(ValueError, match="zero on padded frames"):
        MotionTextDataset(features, [6, 3], torch.zeros(2, 1, 3), torch.ones(2, 1))
