"""Checkpoint files of the denoiser: atomic writes, safe loads, and a model rebuilt from a file.

A checkpoint is a `torch.save`d dict holding only tensors and plain Python values, so it loads
with `weights_only=True` (no pickled code runs on load):
  format, dims {text_dim, feature_dim, max_frames}, config {model, train} (resolved, as dicts),
  step, model, ema (or None), optimizer, normalizer {mean, std} (or None), extra (caller's).
"""

from __future__ import annotations

import io
import os
import pickle

import torch

from scl_ray import storage
from scl_ray.config import ModelConfig
from scl_ray.diffusion.denoiser import Denoiser
from scl_ray.fields import from_dict
from scl_ray.motion.features import Normalizer

CHECKPOINT_FORMAT = 1
# Model keys that change the weights' shapes or what the timesteps mean; the others (dropout,
# cond_mask_prob, text_max_tokens) may differ between the run that wrote a file and one reading it.
ARCHITECTURE_KEYS = ("layers", "width", "heads", "ff_size", "diffusion_steps", "noise_schedule")


def write_atomic(state: dict, location: str | os.PathLike) -> str | os.PathLike:
    """torch.save `state` to a local path or URI atomically (`storage.write_with`); returns `location`."""
    storage.write_with(location, lambda stream: torch.save(state, stream))
    return location


def read_checkpoint(location: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict written by `DiffusionTrainer.save_checkpoint` from a local path or URI,
    checking its format. The one way every checkpoint is read (resume, shared generation 0, sampling)."""
    try:
        data = storage.read_bytes(location)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {location} does not exist") from None
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as error:
        # What torch raises for an empty (EOFError), truncated (RuntimeError from its zip reader) or
        # text (KeyError: an unknown pickle opcode) file; its own message rarely names the file.
        cause = (str(error).splitlines() or [""])[0][:120]
        raise ValueError(f"checkpoint {location} cannot be read: it is empty, truncated or not a torch file "
                         f"({type(error).__name__}: {cause})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{location} is not a scl-ray denoiser checkpoint of format {CHECKPOINT_FORMAT} (found {found!r})")
    return state


def check_compatible(state: dict, model_config: dict, dims: dict, path: str | os.PathLike) -> None:
    """Raise if the checkpoint's architecture differs from the one about to receive its weights."""
    saved = state["config"]["model"]
    differences = [f"model.{key}: file {saved[key]!r}, here {model_config[key]!r}"
                   for key in ARCHITECTURE_KEYS if saved[key] != model_config[key]]
    differences += [f"{key}: file {state['dims'][key]!r}, here {value!r}"
                    for key, value in dims.items() if state["dims"][key] != value]
    if differences:
        raise ValueError(f"checkpoint {path} was written for another model: " + "; ".join(differences))


def normalizer_from_state(state: dict) -> Normalizer | None:
    stats = state.get("normalizer")
    return None if stats is None else Normalizer(stats["mean"].cpu().numpy(), stats["std"].cpu().numpy())


def load_denoiser(path: str | os.PathLike, device: str | torch.device = "cpu",
                  use_ema: bool = True) -> tuple[Denoiser, Normalizer | None, dict]:
    """Rebuild the denoiser of a checkpoint for sampling, without optimiser or trainer.

    Returns (model in eval mode on device, with the EMA weights when the file has them and use_ema;
    the dataset's Normalizer or None; the checkpoint dict, for its config, step and extra).
    """
    state = read_checkpoint(path)
    config = from_dict(ModelConfig, state["config"]["model"])
    model = Denoiser(config, **state["dims"])
    weights = state["ema"] if use_ema and state["ema"] is not None else state["model"]
    model.load_state_dict(weights)
    return model.to(device).eval(), normalizer_from_state(state), state
