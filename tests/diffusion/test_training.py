import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scl_ray.config import ModelConfig, SampleConfig, TrainConfig
from scl_ray.diffusion.checkpoint import load_denoiser
from scl_ray.diffusion.data import MotionTextDataset
from scl_ray.diffusion.training import DiffusionTrainer, diffusion_loss, geometric_losses, masked_mean
from scl_ray.motion.features import FOOT_CONTACTS, Normalizer

FRAMES, FEATURES, TOKENS, TEXT_DIM = 32, 263, 4, 384
T = 100


def _model_config(**overrides):
    values = dict(preset="tiny", layers=2, width=64, heads=4, ff_size=128, dropout=0.0, diffusion_steps=T)
    return ModelConfig(**{**values, **overrides})


def _dataset(num_motions=4, seed=0):
    """Distinct smooth motions (sums of sinusoids per feature), one random caption each."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([FRAMES, FRAMES - 8, FRAMES - 4, FRAMES - 12][:num_motions])
    time = torch.arange(FRAMES)[:, None] / 20.0
    frequency = torch.rand(num_motions, 1, FEATURES, generator=g) + 0.2
    phase = torch.rand(num_motions, 1, FEATURES, generator=g) * 2 * np.pi
    mask = (torch.arange(FRAMES) < lengths[:, None])[..., None]
    features = torch.sin(2 * np.pi * frequency * time + phase) * mask
    text_emb = torch.randn(num_motions, TOKENS, TEXT_DIM, generator=g)
    return MotionTextDataset(features, lengths, text_emb, torch.ones(num_motions, TOKENS, dtype=torch.bool))


def _trainer(seed=0, **train):
    model = _model_config(dropout=0.1, cond_mask_prob=0.5)
    config = TrainConfig(**{"batch_size": 4, "lr": 1e-3, "seed": seed, "ema_decay": 0.9, **train})
    return DiffusionTrainer(model, config, "cpu", TEXT_DIM, FEATURES, FRAMES)


def test_masked_mean_weighs_real_frames_of_each_motion_equally():
    values = torch.tensor([[1.0, 1.0, 9.0], [2.0, 9.0, 9.0]])[..., None].expand(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert masked_mean(values, mask).tolist() == [1.0, 2.0]


def _loss_inputs():
    dataset = _dataset()
    batch = dataset.batch(torch.arange(4), torch.arange(4), torch.device("cpu"))
    noise = torch.randn(4, FRAMES, FEATURES, generator=torch.Generator().manual_seed(1))
    return batch, noise, torch.tensor([3, 30, 60, 99]), torch.tensor([False, True, False, False])


def test_loss_ignores_padded_frames_and_is_zero_for_a_perfect_model():
    batch, noise, t, uncond = _loss_inputs()
    trainer = _trainer()
    trainer.model.eval()  # no dropout: the two losses must see the same network
    args = (batch["text_emb"], batch["text_mask"], batch["frame_mask"], uncond, trainer.alphas_cumprod)
    loss = diffusion_loss(trainer.model, batch["features"], t, noise, *args)["loss"]
    padded = ~batch["frame_mask"][..., None]
    other_noise = torch.where(padded, 50 * torch.randn_like(noise), noise)
    torch.testing.assert_close(diffusion_loss(trainer.model, batch["features"], t, other_noise, *args)["loss"], loss)
    assert loss > 0.1
    oracle = lambda x_t, t, *rest, force_uncond: batch["features"]
    assert diffusion_loss(oracle, batch["features"], t, noise, *args)["loss"] == 0


def test_geometric_losses_vanish_at_the_target_and_count_planted_feet_only():
    batch, *_ = _loss_inputs()
    normalizer = Normalizer(np.zeros(FEATURES), np.ones(FEATURES))
    target = batch["features"].clone()
    target[..., FOOT_CONTACTS] = 0.0  # no foot planted anywhere
    same = geometric_losses(target, target, batch["frame_mask"], normalizer)
    assert all(value.abs().max() == 0 for value in same.values())
    moved = target + 0.1 * torch.randn_like(target) * batch["frame_mask"][..., None]
    terms = geometric_losses(moved, target, batch["frame_mask"], normalizer)
    assert terms["joint_position"].min() > 0 and terms["joint_velocity"].min() > 0
    assert terms["foot_contact"].abs().max() == 0
    target[..., FOOT_CONTACTS] = 1.0
    assert geometric_losses(moved, target, batch["frame_mask"], normalizer)["foot_contact"].min() > 0


def test_training_with_geometric_losses_needs_and_uses_the_normalizer():
    with pytest.raises(ValueError, match="Normalizer"):
        _trainer(geometric_losses=True).train(_dataset(), 1)
    trainer = _trainer(geometric_losses=True)
    trainer.normalizer = Normalizer(np.zeros(FEATURES), np.ones(FEATURES))
    # Same weights and batch on the first step: the geometric terms only add.
    assert trainer.train(_dataset(), 1)[0] > _trainer().train(_dataset(), 1)[0]


def test_training_is_deterministic_given_the_seed():
    dataset = _dataset()
    first = _trainer(seed=3).train(dataset, 4)
    assert _trainer(seed=3).train(dataset, 4) == first
    assert _trainer(seed=4).train(dataset, 4) != first


def test_resume_from_checkpoint_gives_identical_next_losses(tmp_path):
    dataset = _dataset()
    normalizer = Normalizer(np.zeros(FEATURES), np.full(FEATURES, 2.0))
    original = _trainer()
    original.normalizer = normalizer
    original.train(dataset, 3)
    path = original.save_checkpoint(tmp_path / "gen_000" / "model.pt", extra={"generation": 0})
    continued = original.train(dataset, 3)

    resumed = _trainer()
    assert resumed.load_checkpoint(path) == {"generation": 0}
    assert resumed.step == 3 and np.array_equal(resumed.normalizer.std, normalizer.std)
    assert resumed.train(dataset, 3) == continued
    for a, b in zip(resumed.ema.parameters(), original.ema.parameters()):
        assert torch.equal(a, b)
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no temporary file left


def test_checkpoints_refuse_another_architecture_and_rebuild_the_model(tmp_path):
    trainer = _trainer()
    trainer.train(_dataset(), 1)
    path = trainer.save_checkpoint(tmp_path / "model.pt")
    other = DiffusionTrainer(_model_config(width=32), TrainConfig(), "cpu", TEXT_DIM, FEATURES, FRAMES)
    with pytest.raises(ValueError, match="model.width: file 64, here 32"):
        other.load_checkpoint(path)
    model, normalizer, state = load_denoiser(path)
    assert normalizer is None and state["step"] == 1 and not model.training
    for a, b in zip(model.parameters(), trainer.ema.parameters()):
        assert torch.equal(a, b)


def test_overfitting_four_motions_reproduces_each_from_its_caption():
    dataset = _dataset()
    model = _model_config(cond_mask_prob=0.0)
    trainer = DiffusionTrainer(model, TrainConfig(batch_size=4, lr=2e-3, seed=0), "cpu", TEXT_DIM, FEATURES, FRAMES)
    losses = trainer.train(dataset, 100)
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:3])
    samples = trainer.sample(dataset.text_emb, dataset.text_mask, dataset.lengths,
                             SampleConfig(steps=20, guidance=1.0), seed=0)
    mask = dataset.frame_mask(torch.arange(4))[..., None]
    errors = torch.stack([masked_mean((samples - dataset.features[j]) ** 2 * mask, mask[..., 0])
                          for j in range(4)], 1)  # errors[i, j]: sample i against motion j
    own = errors.diagonal()
    others = errors + torch.diag(torch.full((4,), float("inf")))
    assert (own < 0.25 * others.min(1).values).all(), errors


def test_global_batch_must_split_evenly_across_workers():
    with pytest.raises(ValueError, match="divisible"):
        DiffusionTrainer(_model_config(), TrainConfig(batch_size=5), "cpu", world_size=2, rank=0)


def _ddp_worker(rank, world_size, rendezvous, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        config = TrainConfig(batch_size=4, lr=1e-3, seed=0, ema_decay=0.9)
        trainer = DiffusionTrainer(_model_config(cond_mask_prob=0.5), config, "cpu", TEXT_DIM, FEATURES, FRAMES,
                                   rank=rank, world_size=world_size)
        losses = trainer.train(_dataset(), 4)
        torch.save({"losses": losses, "model": trainer.model.state_dict()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ddp_workers_train_like_one(tmp_path):
    mp.start_processes(_ddp_worker, args=(2, tmp_path / "rendezvous", tmp_path), nprocs=2, start_method="spawn")
    single = DiffusionTrainer(_model_config(cond_mask_prob=0.5), TrainConfig(batch_size=4, lr=1e-3, seed=0, ema_decay=0.9),
                              "cpu", TEXT_DIM, FEATURES, FRAMES)
    losses = single.train(_dataset(), 4)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        np.testing.assert_allclose(result["losses"], losses, rtol=1e-5)
        for name, value in single.model.state_dict().items():
            # Adam rescales near-zero gradients, so summation-order noise moves weights by up to ~lr/10.
            torch.testing.assert_close(result["model"][name], value, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_compiled_and_bf16_training_follow_eager():
    run = lambda **switches: DiffusionTrainer(_model_config(), TrainConfig(batch_size=4, seed=0, **switches), "cpu",
                                              TEXT_DIM, FEATURES, FRAMES).train(_dataset(), 3)
    eager = run(compile="off", bf16="off")
    np.testing.assert_allclose(run(compile="on", bf16="off"), eager, rtol=1e-4)
    np.testing.assert_allclose(run(compile="off", bf16="on"), eager, rtol=2e-2)
