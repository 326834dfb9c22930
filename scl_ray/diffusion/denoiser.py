"""The MDM-style text-to-motion denoiser: a transformer encoder over frames that predicts x0.

One sequence per motion: [timestep token, caption tokens (≤ L), frames (F)], through pre-norm
transformer blocks with `F.scaled_dot_product_attention`, read out at the frame positions.

Why the caption tokens are prepended to the sequence rather than attended to by cross-attention:
- per-token conditioning is needed (pooled MiniLM vectors barely separate "left" from "right"), and
  in-context tokens give it with the same single attention mechanism as MDM's encoder: every frame
  attends to every word in every layer;
- cross-attention adds about 1 M parameters per layer at width 512; prepending keeps the paper's
  MDM size (17.9 M; this model is 17.8 M at preset mdm) for comparable results;
- the cost is a longer sequence (1 + 32 + 196 = 229 vs 197 tokens at the defaults), about 16 %
  more attention work, which is small next to the rest of a step.
The empty caption (classifier-free guidance, and text dropout in training) is an all-False token
mask: the caption tokens are removed from every key set, so the unconditional model sees only
the timestep token and the frames. No learned null embedding is needed, and an empty caption from
any text encoder means the same thing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scl_ray.config import ModelConfig
from scl_ray.motion.constants import FEATURE_DIM, MAX_FRAMES
from scl_ray.text.encoders import MINILM_DIM


def sinusoidal_embedding(positions: torch.Tensor, width: int) -> torch.Tensor:
    """(…,) positions (frame indices or timesteps) -> (…, width) float32 sin/cos features
    (Vaswani et al.), interleaved sin, cos, with periods from 2π to 10000·2π."""
    frequencies = torch.exp(
        torch.arange(0, width, 2, dtype=torch.float32, device=positions.device) * (-math.log(10000.0) / width)
    )
    angles = positions.to(torch.float32)[..., None] * frequencies
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)[..., :width]


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + FF(LN(x)); GELU, dropout as MDM."""

    def __init__(self, width: int, heads: int, ff_size: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attention_out = nn.Linear(width, width)
        self.feedforward_norm = nn.LayerNorm(width)
        self.feedforward = nn.Sequential(
            nn.Linear(width, ff_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_size, width)
        )
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x: (N, S, W); key_mask: (N, 1, 1, S) bool, True = a key every query may attend to."""
        n, s, w = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(n, s, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.residual_dropout(self.attention_out(attended.transpose(1, 2).reshape(n, s, w)))
        return x + self.residual_dropout(self.feedforward(self.feedforward_norm(x)))


class Denoiser(nn.Module):
    """x0-predicting text-to-motion denoiser (MDM's transformer encoder, pre-norm, token conditioning).

    config: the model section (layers, width, heads, ff_size, dropout, text_max_tokens);
    text_dim: size of a caption token embedding (384 for all-MiniLM-L6-v2);
    feature_dim: motion features per frame (263, HumanML3D); max_frames: padded length (196).
    """

    def __init__(self, config: ModelConfig, text_dim: int = MINILM_DIM, feature_dim: int = FEATURE_DIM,
                 max_frames: int = MAX_FRAMES):
        super().__init__()
        self.config = config
        self.text_dim = text_dim
        self.feature_dim = feature_dim
        self.max_frames = max_frames
        width = config.width
        self.input_projection = nn.Linear(feature_dim, width)
        self.register_buffer("frame_positions", sinusoidal_embedding(torch.arange(max_frames), width), persistent=False)
        self.timestep_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        # Its bias doubles as the "this is a caption token" marker: frames carry positions, words don't.
        self.text_projection = nn.Linear(text_dim, width)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(width, config.heads, config.ff_size, config.dropout) for _ in range(config.layers)
        )
        self.final_norm = nn.LayerNorm(width)
        self.output_projection = nn.Linear(width, feature_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_emb: torch.Tensor, text_mask: torch.Tensor,
                frame_mask: torch.Tensor, force_uncond: bool | torch.Tensor = False) -> torch.Tensor:
        """Predict clean normalised motions from noisy ones.

        x: (N, F, feature_dim) x_t, F <= max_frames; t: (N,) integer timesteps in [0, T);
        text_emb: (N, L, text_dim), L <= text_max_tokens; text_mask: (N, L) bool, True = real token;
        frame_mask: (N, F) bool, True = real frame; force_uncond: True, or an (N,) bool tensor,
        drops the caption (of those rows) as for the empty caption.
        Returns (N, F, feature_dim) x0 prediction, zero on padded frames. Padded frames are not
        attended to, so their content cannot change the output at real frames.
        """
        n, frames, dim = x.shape
        if dim != self.feature_dim or frames > self.max_frames:
            raise ValueError(f"x must be (N, F <= {self.max_frames}, {self.feature_dim}), got {tuple(x.shape)}")
        if text_emb.ndim != 3 or text_emb.shape[-1] != self.text_dim or text_emb.shape[1] > self.config.text_max_tokens:
            raise ValueError(f"text_emb must be (N, L <= {self.config.text_max_tokens} (model.text_max_tokens), "
                             f"{self.text_dim}), got {tuple(text_emb.shape)}")
        if text_mask.shape != text_emb.shape[:2] or frame_mask.shape != x.shape[:2] or t.shape != (n,):
            raise ValueError(f"expected text_mask {tuple(text_emb.shape[:2])}, frame_mask {tuple(x.shape[:2])}, t ({n},); "
                             f"got {tuple(text_mask.shape)}, {tuple(frame_mask.shape)}, {tuple(t.shape)}")
        caption_keys = text_mask.bool()
        if isinstance(force_uncond, torch.Tensor):
            caption_keys = caption_keys & ~force_uncond.bool()[:, None]
        elif force_uncond:
            caption_keys = torch.zeros_like(caption_keys)

        time_token = self.timestep_mlp(sinusoidal_embedding(t, self.config.width).to(x.dtype))[:, None]
        caption_tokens = self.text_projection(text_emb.to(self.text_projection.weight.dtype))
        frame_tokens = self.input_projection(x) + self.frame_positions[:frames].to(x.dtype)
        h = self.input_dropout(torch.cat([time_token, caption_tokens, frame_tokens], dim=1))
        always = torch.ones((n, 1), dtype=torch.bool, device=x.device)
        key_mask = torch.cat([always, caption_keys, frame_mask.bool()], dim=1)[:, None, None, :]
        for block in self.blocks:
            h = block(h, key_mask)
        out = self.output_projection(self.final_norm(h[:, 1 + text_emb.shape[1]:]))
        return out * frame_mask[..., None].to(out.dtype)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
