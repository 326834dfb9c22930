import math

import numpy as np
import pytest
import torch

from scl_ray.diffusion.schedule import (
    MAX_BETA, alphas_cumprod, cosine_alpha_bar, cosine_betas, linear_betas, make_betas, q_sample,
    schedule_alphas_cumprod,
)


@pytest.mark.parametrize("name", ["cosine", "linear"])
@pytest.mark.parametrize("steps", [2, 50, 1000])
def test_schedules_are_valid_and_monotone(name, steps):
    betas = make_betas(name, steps)
    assert betas.dtype == np.float64 and betas.shape == (steps,)
    assert ((betas > 0) & (betas <= MAX_BETA)).all()
    alpha_bar = alphas_cumprod(betas)
    assert (np.diff(alpha_bar) < 0).all()
    assert 0 < alpha_bar[-1] < alpha_bar[0] < 1


def test_cosine_known_values():
    # The continuous curve: all signal at t = 0, none at t = T.
    assert cosine_alpha_bar(0.0) == pytest.approx(1.0, abs=1e-15)
    assert cosine_alpha_bar(1.0) == pytest.approx(0.0, abs=1e-15)
    # β_0 from Nichol & Dhariwal's formula, written out by hand.
    f = lambda tau: math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = cosine_betas(1000)
    assert betas[0] == pytest.approx(1 - f(1 / 1000) / f(0), rel=1e-12)
    assert betas[0] == pytest.approx(4.1284e-5, rel=1e-4)
    # The last β is the clipped one; ᾱ follows the curve up to there (half the signal at mid-chain).
    assert betas[-1] == MAX_BETA and (betas[:-1] < MAX_BETA).all()
    alpha_bar = alphas_cumprod(betas)
    assert alpha_bar[499] == pytest.approx(f(0.5) / f(0), rel=1e-9)
    assert alpha_bar[-1] < 1e-8


def test_linear_known_values():
    betas = linear_betas(1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert alphas_cumprod(betas)[-1] == pytest.approx(4.0358e-5, rel=1e-4)
    # Rescaled for other T: the end of the chain stays about as noisy.
    assert schedule_alphas_cumprod("linear", 100)[-1] < 1e-3


def test_bad_schedule_arguments_are_explained():
    with pytest.raises(ValueError, match="noise_schedule"):
        make_betas("sigmoid", 10)
    with pytest.raises(ValueError, match="diffusion_steps"):
        cosine_betas(1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        alphas_cumprod(np.array([0.1, 1.0]))


def test_q_sample_mixes_signal_and_noise_with_the_schedule_coefficients():
    alpha_bar = schedule_alphas_cumprod("cosine", 100)
    x0 = torch.randn(3, 5, 7, dtype=torch.float64)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 50, 99])
    x_t = q_sample(x0, t, noise, alpha_bar)
    for i, step in enumerate(t.tolist()):
        expected = math.sqrt(alpha_bar[step]) * x0[i] + math.sqrt(1 - alpha_bar[step]) * noise[i]
        torch.testing.assert_close(x_t[i], expected)
    assert q_sample(x0.float(), t, noise.float(), alpha_bar).dtype == torch.float32
