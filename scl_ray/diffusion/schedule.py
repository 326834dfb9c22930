"""Noise schedules of the forward diffusion process, as pure float64 functions.

Timesteps are indices t = 0 … T-1 (improved-diffusion's and MDM's convention): `betas[t]` is the
noise added going from step t to step t+1 of the chain, and `alphas_cumprod[t]` = ᾱ_t = ∏_{s≤t}(1 − β_s)
is the signal fraction left after t+1 steps, so x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε. "Before step 0" is
ᾱ = 1 (clean data). Everything is float64 numpy; `q_sample` casts the two coefficients to the
sample's dtype only at the end.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only q_sample takes tensors; the schedules themselves are numpy
    import torch

# Nichol & Dhariwal's offset: keeps β_0 from being vanishingly small (their s = 0.008).
COSINE_OFFSET = 0.008
# Nichol & Dhariwal clip β below 1 so the last step never destroys the signal with probability one.
MAX_BETA = 0.999


def cosine_alpha_bar(tau: np.ndarray | float) -> np.ndarray:
    """The cosine schedule's continuous ᾱ(τ) for τ = t / T in [0, 1]: 1 at τ = 0, 0 at τ = 1."""
    tau = np.asarray(tau, dtype=np.float64)
    f = np.cos((tau + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * math.pi / 2) ** 2
    f0 = math.cos(COSINE_OFFSET / (1.0 + COSINE_OFFSET) * math.pi / 2) ** 2
    return f / f0


def cosine_betas(num_steps: int) -> np.ndarray:
    """(T,) float64 betas of the cosine schedule (Nichol & Dhariwal 2021, used by MDM).

    β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), 0.999), so ∏(1 − β) follows the cosine curve exactly
    except where the clip bites (the last step or two for any T).
    """
    _check_steps(num_steps)
    tau = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    alpha_bar = cosine_alpha_bar(tau)
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)


def linear_betas(num_steps: int) -> np.ndarray:
    """(T,) float64 betas of Ho et al.'s linear schedule, rescaled to any T.

    β goes linearly from 1e-4·1000/T to 0.02·1000/T, which keeps the total noise (and ᾱ at the
    end) about the same for every T, as improved-diffusion does. Below T = 21 the end would pass
    1, so β is clipped at 0.999 as in the cosine schedule.
    """
    _check_steps(num_steps)
    scale = 1000.0 / num_steps
    return np.minimum(np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64), MAX_BETA)


def make_betas(name: str, num_steps: int) -> np.ndarray:
    """Betas of a named schedule ("cosine" or "linear"); (T,) float64."""
    if name == "cosine":
        return cosine_betas(num_steps)
    if name == "linear":
        return linear_betas(num_steps)
    raise ValueError(f"unknown noise schedule {name!r}: expected 'cosine' or 'linear' (model.noise_schedule)")


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """ᾱ_t = ∏_{s≤t} (1 − β_s), (T,) float64, strictly decreasing in t for β in (0, 1)."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
        raise ValueError("betas must be a 1-D array of numbers strictly between 0 and 1")
    return np.cumprod(1.0 - betas)


def schedule_alphas_cumprod(name: str, num_steps: int) -> np.ndarray:
    """ᾱ of a named schedule with T = num_steps; (T,) float64."""
    return alphas_cumprod(make_betas(name, num_steps))


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: np.ndarray) -> torch.Tensor:
    """Forward process: x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·noise.

    x0, noise: (N, ...) any float dtype; t: (N,) integer timesteps in [0, T); alpha_bar: (T,)
    float64. The coefficients are computed in float64 and cast to x0's dtype. Returns (N, ...).
    """
    import torch

    table = torch.as_tensor(alpha_bar, dtype=torch.float64, device=x0.device)
    a = table[t.to(x0.device)]
    shape = (-1,) + (1,) * (x0.ndim - 1)
    signal = a.sqrt().to(x0.dtype).view(shape)
    sigma = (1.0 - a).sqrt().to(x0.dtype).view(shape)
    return signal * x0 + sigma * noise


def _check_steps(num_steps: int) -> None:
    if int(num_steps) != num_steps or num_steps < 2:
        raise ValueError(f"a noise schedule needs an integer number of steps >= 2 (model.diffusion_steps), got {num_steps}")
