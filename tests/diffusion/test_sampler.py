import numpy as np
import pytest
import torch

from scl_ray.config import ModelConfig
from scl_ray.diffusion.denoiser import Denoiser
from scl_ray.diffusion.sampler import (
    DDIMScheduler, DDPMScheduler, frame_mask_from_lengths, make_scheduler, sample, trailing_timesteps,
)
from scl_ray.diffusion.schedule import schedule_alphas_cumprod

T = 100
FRAMES, FEATURES, TOKENS, TEXT_DIM = 24, 263, 5, 384


@pytest.fixture(scope="module")
def alpha_bar():
    return schedule_alphas_cumprod("cosine", T)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny", layers=2, width=64, heads=4, ff_size=128, dropout=0.0, diffusion_steps=T)
    return Denoiser(config, TEXT_DIM, FEATURES, FRAMES).eval()


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(1)
    text_emb = torch.randn(3, TOKENS, TEXT_DIM, generator=g)
    text_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    return text_emb, text_mask, torch.tensor([FRAMES, 17, 9])


@pytest.mark.parametrize("steps", [1, 7, 50, T])
def test_trailing_timesteps_start_at_the_noisiest_step(steps):
    timesteps = trailing_timesteps(T, steps)
    assert len(timesteps) == steps and timesteps[0] == T - 1
    assert (np.diff(timesteps) < 0).all() and timesteps[-1] >= 0
    with pytest.raises(ValueError, match="sampling steps"):
        trailing_timesteps(T, T + 1)


def _chain(scheduler, x0_of, x, seed):
    """Run a scheduler with a fixed x0 predictor; return every intermediate sample."""
    generator = torch.Generator().manual_seed(seed)
    path = []
    for t in scheduler.timesteps:
        x, _ = scheduler.step(x0_of(x, t), int(t), x, generator)
        path.append(x)
    return torch.stack(path)


def test_ddim_with_eta_one_and_all_steps_is_ddpm(alpha_bar):
    # A fixed, input-dependent x0 predictor: both chains see the same function.
    x0_of = lambda x, t: torch.tanh(0.5 * x) + 0.001 * t
    x_T = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ddpm = _chain(DDPMScheduler(alpha_bar), x0_of, x_T, seed=3)
    ddim = _chain(DDIMScheduler(alpha_bar, eta=1.0), x0_of, x_T, seed=3)
    torch.testing.assert_close(ddim, ddpm, rtol=1e-9, atol=1e-9)
    # And not with eta = 0 (the test can fail).
    deterministic = _chain(DDIMScheduler(alpha_bar, eta=0.0), x0_of, x_T, seed=3)
    assert (deterministic - ddpm).abs().max() > 1e-2


@pytest.mark.parametrize("scheduler_class", [DDPMScheduler, DDIMScheduler])
def test_a_perfect_x0_predictor_lands_on_x0(alpha_bar, scheduler_class):
    target = torch.randn(2, 5, generator=torch.Generator().manual_seed(5))
    scheduler = scheduler_class(alpha_bar)
    scheduler.set_timesteps(10)
    path = _chain(scheduler, lambda x, t: target, torch.randn(2, 5), seed=0)
    torch.testing.assert_close(path[-1], target)


def test_step_rejects_timesteps_outside_the_chain(alpha_bar):
    scheduler = DDIMScheduler(alpha_bar)
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(torch.zeros(1), 50, torch.zeros(1))


def test_make_scheduler_follows_the_sample_config(alpha_bar):
    assert len(make_scheduler("ddim", alpha_bar, 20).timesteps) == 20
    assert len(make_scheduler("ddpm", alpha_bar, 20).timesteps) == T
    with pytest.raises(ValueError, match="sample.sampler"):
        make_scheduler("euler", alpha_bar, 20)


def _manual_guided(model, alpha_bar, text_emb, text_mask, lengths, guidance, seed):
    """The guided DDIM chain written out with separate conditional and unconditional forwards."""
    scheduler = make_scheduler("ddim", alpha_bar, 10)
    generator = torch.Generator().manual_seed(seed)
    frame_mask = frame_mask_from_lengths(lengths, FRAMES)
    x = torch.randn((len(lengths), FRAMES, FEATURES), generator=generator) * frame_mask[..., None]
    with torch.no_grad():
        for t in scheduler.timesteps:
            timesteps = torch.full((len(lengths),), int(t))
            cond = model(x, timesteps, text_emb, text_mask, frame_mask)
            free = model(x, timesteps, text_emb, text_mask, frame_mask, force_uncond=True)
            x, _ = scheduler.step(free + guidance * (cond - free), int(t), x, generator)
            x = x * frame_mask[..., None]
    return x


@pytest.mark.parametrize("guidance", [0.0, 1.0, 2.5])
def test_guidance_matches_separate_forwards(model, alpha_bar, prompts, guidance):
    text_emb, text_mask, lengths = prompts
    out = sample(model, make_scheduler("ddim", alpha_bar, 10), text_emb, text_mask, lengths, guidance,
                 torch.Generator().manual_seed(9))
    expected = _manual_guided(model, alpha_bar, text_emb, text_mask, lengths, guidance, seed=9)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_guidance_one_is_the_conditional_model_and_guidance_changes_samples(model, alpha_bar, prompts):
    text_emb, text_mask, lengths = prompts
    run = lambda s: sample(model, make_scheduler("ddim", alpha_bar, 10), text_emb, text_mask, lengths, s,
                           torch.Generator().manual_seed(4))
    conditional = run(1.0)
    torch.testing.assert_close(run(1.0 + 1e-7), conditional, rtol=1e-4, atol=1e-4)
    assert (run(2.5) - conditional).abs().max() > 1e-3


def test_samples_are_zero_on_padded_frames_and_seeded(model, alpha_bar, prompts):
    text_emb, text_mask, lengths = prompts
    run = lambda seed: sample(model, make_scheduler("ddim", alpha_bar, 10, eta=1.0), text_emb, text_mask, lengths, 2.5,
                              torch.Generator().manual_seed(seed))
    first = run(0)
    assert first.shape == (3, FRAMES, FEATURES) and torch.isfinite(first).all()
    padded = ~frame_mask_from_lengths(lengths, FRAMES)
    assert (first[padded] == 0).all() and (first[~padded] != 0).any(-1).all()
    assert torch.equal(run(0), first)
    assert not torch.equal(run(1), first)
    assert model.training is False


def test_lengths_outside_the_padding_are_explained():
    with pytest.raises(ValueError, match="frame counts in 1..24"):
        frame_mask_from_lengths(torch.tensor([10, 25]), FRAMES)
