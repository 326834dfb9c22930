"""Reverse-process schedulers for an x0-predicting denoiser, and the sampling loop.

The schedulers follow diffusers' split: they know the noise schedule and nothing of the network.
`set_timesteps(n)` chooses which of the T training timesteps the reverse chain visits ("trailing"
spacing: it always starts at t = T-1, the step whose marginal is closest to pure noise, and the
last visited step jumps to clean data), and `step(x0_pred, t, sample, generator)` moves one step back.
`sample` is the one written-out loop: classifier-free guidance batched as a single 2N forward,
padded frames held at zero.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm


def trailing_timesteps(num_train_steps: int, num_steps: int) -> np.ndarray:
    """`num_steps` timesteps from T-1 down to about T/n - 1, evenly spaced, descending, int64."""
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"sampling steps must be in 1..{num_train_steps} (the training T), got {num_steps}")
    starts = num_train_steps - np.arange(num_steps, dtype=np.float64) * (num_train_steps / num_steps)
    return np.unique(np.round(starts).astype(np.int64) - 1)[::-1].copy()


class _Scheduler:
    """Shared bookkeeping: ᾱ over the training timesteps and the chosen reverse chain."""

    def __init__(self, alphas_cumprod: np.ndarray):
        self.alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
        self.num_train_timesteps = len(self.alphas_cumprod)
        self.set_timesteps(self.num_train_timesteps)

    def set_timesteps(self, num_steps: int) -> None:
        """Visit `num_steps` timesteps (1..T) in the reverse chain; fills `self.timesteps`."""
        self.timesteps = trailing_timesteps(self.num_train_timesteps, num_steps)
        # -1 marks "after the last step": ᾱ = 1, clean data.
        self._previous = dict(zip(self.timesteps.tolist(), self.timesteps[1:].tolist() + [-1]))

    def _alpha_bars(self, t: int) -> tuple[float, float]:
        if t not in self._previous:
            raise ValueError(f"timestep {t} is not in this scheduler's chain; call set_timesteps and iterate .timesteps")
        prev = self._previous[t]
        return float(self.alphas_cumprod[t]), 1.0 if prev < 0 else float(self.alphas_cumprod[prev])

    @staticmethod
    def _noise_like(sample: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        device = generator.device if generator is not None else sample.device
        noise = torch.randn(sample.shape, generator=generator, device=device, dtype=sample.dtype)
        return noise.to(sample.device)


class DDPMScheduler(_Scheduler):
    """Ancestral sampling from the Gaussian posterior q(x_prev | x_t, x0), x0 given by the model.

    With fewer steps than T the chain is respaced: the posterior between the visited steps t and
    prev uses β = 1 − ᾱ_t/ᾱ_prev (as improved-diffusion's respacing). The variance is the posterior
    variance β̃ ("fixed small", MDM's choice); no noise is added on the final step.
    """

    def step(self, model_output_x0: torch.Tensor, t: int, sample: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One reverse step. model_output_x0, sample: (N, ...) at timestep t. Returns (x_prev, x0)."""
        a_t, a_prev = self._alpha_bars(int(t))
        beta = 1.0 - a_t / a_prev
        # Posterior mean coefficients (Ho et al. eq. 7), computed in float64.
        coef_x0 = math.sqrt(a_prev) * beta / (1.0 - a_t)
        coef_xt = math.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a_t)
        prev = coef_x0 * model_output_x0 + coef_xt * sample
        variance = beta * (1.0 - a_prev) / (1.0 - a_t)
        if variance > 0:
            prev = prev + math.sqrt(variance) * self._noise_like(sample, generator)
        return prev, model_output_x0


class DDIMScheduler(_Scheduler):
    """DDIM (Song et al. 2021) for any number of steps; eta = 0 deterministic, eta = 1 with all T
    steps is the DDPM posterior (the same mean and variance)."""

    def __init__(self, alphas_cumprod: np.ndarray, eta: float = 0.0):
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"DDIM eta must be in [0, 1] (sample.eta), got {eta}")
        self.eta = float(eta)
        super().__init__(alphas_cumprod)

    def step(self, model_output_x0: torch.Tensor, t: int, sample: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One reverse step. model_output_x0, sample: (N, ...) at timestep t. Returns (x_prev, x0)."""
        a_t, a_prev = self._alpha_bars(int(t))
        eps = (sample - math.sqrt(a_t) * model_output_x0) / math.sqrt(1.0 - a_t)
        sigma = self.eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
        direction = math.sqrt(max(1.0 - a_prev - sigma**2, 0.0))
        prev = math.sqrt(a_prev) * model_output_x0 + direction * eps
        if sigma > 0:
            prev = prev + sigma * self._noise_like(sample, generator)
        return prev, model_output_x0


def make_scheduler(sampler: str, alphas_cumprod: np.ndarray, steps: int, eta: float = 0.0) -> _Scheduler:
    """A scheduler from `SampleConfig` values: "ddim" visits `steps` timesteps; "ddpm" visits all T
    (as `sample.steps` documents)."""
    if sampler == "ddim":
        scheduler = DDIMScheduler(alphas_cumprod, eta)
        scheduler.set_timesteps(steps)
        return scheduler
    if sampler == "ddpm":
        return DDPMScheduler(alphas_cumprod)
    raise ValueError(f"unknown sampler {sampler!r}: expected 'ddim' or 'ddpm' (sample.sampler)")


def frame_mask_from_lengths(lengths: torch.Tensor, max_frames: int) -> torch.Tensor:
    """(N,) frame counts -> (N, max_frames) bool, True on real frames."""
    lengths = torch.as_tensor(lengths)
    if lengths.ndim != 1 or (lengths < 1).any() or (lengths > max_frames).any():
        raise ValueError(f"lengths must be a 1-D list of frame counts in 1..{max_frames}, got {lengths.tolist()}")
    return torch.arange(max_frames, device=lengths.device) < lengths[:, None]


@torch.no_grad()
def sample(model: torch.nn.Module, scheduler: _Scheduler, text_emb: torch.Tensor, text_mask: torch.Tensor,
           lengths: torch.Tensor, guidance: float, generator: torch.Generator | None,
           progress: bool = False) -> torch.Tensor:
    """Draw normalised motions from an x0-predicting denoiser.

    model: a `Denoiser` (or anything with its forward and `max_frames`, `feature_dim`);
    text_emb: (N, L, D) token embeddings; text_mask: (N, L) bool, True = real token;
    lengths: (N,) frames per motion (1..max_frames); guidance: classifier-free scale s,
    out = uncond + s·(cond − uncond), computed from one forward of 2N (s = 1 is the plain
    conditional model, one forward of N); generator: the source of every random draw (its device
    decides where the noise is drawn, so a seed gives the same bytes on that device type).
    Returns (N, max_frames, feature_dim) float32 on the model's device, zero on padded frames.
    """
    device = next(model.parameters()).device
    n = len(lengths)
    # Denoise only up to the longest requested motion (the rest is masked anyway; attention over
    # fewer frames is cheaper), then pad back to max_frames.
    frames = int(torch.as_tensor(lengths).max()) if n else model.max_frames
    frame_mask = frame_mask_from_lengths(torch.as_tensor(lengths), frames).to(device)
    text_emb, text_mask = text_emb.to(device), text_mask.to(device)
    mask = frame_mask[..., None]
    noise_device = generator.device if generator is not None else device
    x = torch.randn((n, model.max_frames, model.feature_dim), generator=generator, device=noise_device)
    x = x[:, :frames].to(device) * mask
    guided = guidance != 1.0
    if guided:
        # One batch of 2N: the first half conditional, the second half with the caption removed.
        uncond = torch.arange(2 * n, device=device) >= n
        text_emb2, text_mask2 = text_emb.repeat(2, 1, 1), text_mask.repeat(2, 1)
        frame_mask2 = frame_mask.repeat(2, 1)
    was_training = model.training
    model.eval()
    try:
        for t in tqdm(scheduler.timesteps, disable=not progress, desc="sampling", leave=False):
            if guided:
                timesteps = torch.full((2 * n,), int(t), device=device, dtype=torch.long)
                out = model(x.repeat(2, 1, 1), timesteps, text_emb2, text_mask2, frame_mask2, force_uncond=uncond)
                cond, free = out[:n].float(), out[n:].float()
                x0 = free + guidance * (cond - free)
            else:
                timesteps = torch.full((n,), int(t), device=device, dtype=torch.long)
                x0 = model(x, timesteps, text_emb, text_mask, frame_mask).float()
            x, _ = scheduler.step(x0, int(t), x, generator)
            x = x * mask
    finally:
        model.train(was_training)
    return torch.nn.functional.pad(x, (0, 0, 0, model.max_frames - frames))
