"""Training the denoiser: the loss, and a trainer that stays resident across generations.

The loss is MDM's: masked MSE between the predicted and the true x0 over real frames (each motion
weighted equally, whatever its length), plus, behind `train.geometric_losses`, MDM's joint
position, joint velocity and foot-contact losses on joints recovered from the features.

`DiffusionTrainer` keeps the model, optimiser, EMA and (on CUDA) compiled graph alive, so a
self-consuming loop calls `train(dataset, steps)` once per generation on a changing dataset,
`sample(...)` for synthetic and evaluation motions, and `save_checkpoint`/`load_checkpoint` at
generation boundaries. The initial weights come from (seed, _INIT), and every random draw of a
`train` call from generators seeded by (the call's seed, the step count at the start of the call,
purpose[, rank]); given the same seed, the checkpoint's step is therefore all it takes to continue
exactly, on every rank, with the same next losses. The seed is the trainer's (`train.seed` unless
given) or the one passed to `train`: a self-consuming loop passes its generation's, from `loop.seed`.
"""

from __future__ import annotations

import contextlib
import copy
import os

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from scl_ray.config import ModelConfig, SampleConfig, TrainConfig
from scl_ray.diffusion.checkpoint import (
    CHECKPOINT_FORMAT, check_compatible, normalizer_from_state, read_checkpoint, write_atomic,
)
from scl_ray.diffusion.data import BatchOrder, MotionTextDataset
from scl_ray.diffusion.denoiser import Denoiser
from scl_ray.diffusion.sampler import make_scheduler, sample
from scl_ray.diffusion.schedule import q_sample, schedule_alphas_cumprod
from scl_ray.fields import to_dict
from scl_ray.motion.constants import FEATURE_DIM, MAX_FRAMES
from scl_ray.motion.features import FOOT_CONTACTS, Normalizer, features_to_joints
from scl_ray.motion.skeleton import FOOT_JOINTS
from scl_ray.rng import TRAIN_DATA, TRAIN_DROPOUT, TRAIN_INIT, TRAIN_NOISE, derive_seed
from scl_ray.text.encoders import MINILM_DIM

# MDM's weights of the geometric terms (its paper uses 1 for each).
GEOMETRIC_WEIGHTS = {"joint_position": 1.0, "joint_velocity": 1.0, "foot_contact": 1.0}


def resolve_switch(value: str, device: torch.device) -> bool:
    """"on"/"off", or "auto" = on for CUDA devices (train.bf16, train.compile)."""
    return value == "on" or (value == "auto" and device.type == "cuda")


def masked_mean(values: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """(N, F, …) values, (N, F) bool mask -> (N,) mean over the real frames of each motion."""
    weights = frame_mask.to(values.dtype).view(*frame_mask.shape, *([1] * (values.ndim - 2)))
    per_frame = values[0, 0].numel()
    return (values * weights).flatten(1).sum(1) / (frame_mask.sum(1).clamp(min=1) * per_frame)


def geometric_losses(pred: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor,
                     normalizer: Normalizer) -> dict[str, torch.Tensor]:
    """MDM's geometric terms, each (N,), in metres² (per frame, joint and axis).

    pred, target: (N, F, 263) normalised features; joints are recovered with `features_to_joints`.
    joint_position: MSE of joint positions; joint_velocity: MSE of per-frame joint displacements;
    foot_contact: squared displacement of each foot joint on frames where the target's contact
    label says it is planted (it should not move).
    """
    pred_joints = features_to_joints(normalizer.denormalize(pred.float()))
    target_features = normalizer.denormalize(target.float())
    target_joints = features_to_joints(target_features)
    pair_mask = frame_mask[:, 1:] & frame_mask[:, :-1]
    pred_velocity = pred_joints[:, 1:] - pred_joints[:, :-1]
    target_velocity = target_joints[:, 1:] - target_joints[:, :-1]
    planted = (target_features[:, :-1, FOOT_CONTACTS] > 0.5).to(pred_velocity.dtype)
    foot_velocity = pred_velocity[:, :, list(FOOT_JOINTS)]
    return {
        "joint_position": masked_mean((pred_joints - target_joints) ** 2, frame_mask),
        "joint_velocity": masked_mean((pred_velocity - target_velocity) ** 2, pair_mask),
        "foot_contact": masked_mean(foot_velocity**2 * planted[..., None], pair_mask),
    }


def diffusion_loss(model: torch.nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                   text_emb: torch.Tensor, text_mask: torch.Tensor, frame_mask: torch.Tensor,
                   uncond: torch.Tensor, alpha_bar: np.ndarray, normalizer: Normalizer | None = None,
                   geometric: bool = False) -> dict[str, torch.Tensor]:
    """The training loss of one batch, with the noise given (lucidrains' injectable noise).

    x0, noise: (N, F, 263) normalised features (x0 zero on padded frames); t: (N,) timesteps;
    text_emb (N, L, D), text_mask (N, L), frame_mask (N, F) as for `Denoiser.forward`;
    uncond: (N,) bool, captions dropped for classifier-free guidance; alpha_bar: (T,) float64.
    Returns scalars: "loss" (to minimise), "x0_mse" and, when geometric, the weighted terms' parts.
    """
    mask = frame_mask[..., None].to(x0.dtype)
    # Padded frames of x_t are zeroed as in sampling, so the network sees the same inputs in both.
    x_t = q_sample(x0, t, noise, alpha_bar) * mask
    pred = model(x_t, t, text_emb, text_mask, frame_mask, force_uncond=uncond).float()
    terms = {"x0_mse": masked_mean((pred - x0) ** 2, frame_mask).mean()}
    loss = terms["x0_mse"]
    if geometric:
        if normalizer is None:
            raise ValueError("train.geometric_losses needs the dataset's Normalizer (pass normalizer= to the trainer)")
        for name, value in geometric_losses(pred, x0, frame_mask, normalizer).items():
            terms[name] = value.mean()
            loss = loss + GEOMETRIC_WEIGHTS[name] * terms[name]
    terms["loss"] = loss
    return terms


class DiffusionTrainer:
    """A resident denoiser with its optimiser, EMA and schedule, trained and sampled per generation.

    model_config, train_config: the config sections; device: where it runs; text_dim, feature_dim,
    max_frames: see `Denoiser`; rank, world_size: this worker's place in a torch.distributed group
    created beforehand (Ray Train does it); with world_size > 1 the model is wrapped in DDP
    (gradients averaged), each rank takes its slice of every global batch (train.batch_size is
    global) and the reported losses are the global batch's. normalizer: the dataset's feature
    statistics (stored in checkpoints; needed by geometric losses). seed: the initial weights' seed and
    the default seed of `train` (None: train_config.seed).
    """

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig, device: str | torch.device = "cpu",
                 text_dim: int = MINILM_DIM, feature_dim: int = FEATURE_DIM, max_frames: int = MAX_FRAMES, rank: int = 0,
                 world_size: int = 1, normalizer: Normalizer | None = None, seed: int | None = None):
        self.model_config, self.train_config = model_config, train_config
        self.seed = train_config.seed if seed is None else seed
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.normalizer = normalizer
        self.dims = {"text_dim": text_dim, "feature_dim": feature_dim, "max_frames": max_frames}
        if train_config.batch_size % world_size:
            raise ValueError(f"train.batch_size ({train_config.batch_size}) must be divisible by the number of "
                             f"workers ({world_size}): each worker takes an equal share of the global batch")
        self.alphas_cumprod = schedule_alphas_cumprod(model_config.noise_schedule, model_config.diffusion_steps)
        # Same weights on every rank and every device type for a seed: initialise on the CPU.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, TRAIN_INIT))
            self.model = Denoiser(model_config, **self.dims)
        self.model.to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if train_config.ema_decay > 0 else None
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train_config.lr,
                                           weight_decay=train_config.weight_decay, fused=self.device.type == "cuda")
        self.bf16 = resolve_switch(train_config.bf16, self.device)
        self.network = self._wrap(self.model, resolve_switch(train_config.compile, self.device))
        self.step = 0

    def _wrap(self, model: torch.nn.Module, compile_model: bool) -> torch.nn.Module:
        network = model
        if self.world_size > 1:
            if not (dist.is_available() and dist.is_initialized()):
                raise RuntimeError(f"world_size {self.world_size} needs a torch.distributed process group "
                                   "(Ray Train's TorchTrainer creates one); none is initialised")
            if (dist.get_rank(), dist.get_world_size()) != (self.rank, self.world_size):
                raise ValueError(f"rank/world_size {self.rank}/{self.world_size} disagree with the process group's "
                                 f"{dist.get_rank()}/{dist.get_world_size()}")
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            network = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return torch.compile(network) if compile_model else network

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @contextlib.contextmanager
    def _seeded_global_rng(self, seed: int):
        """Dropout draws from torch's global generators: fork them, seed them, restore them after.
        On the CPU, deterministic algorithms are switched on for the duration (they cost nothing there)."""
        cuda = self.device.type == "cuda"
        deterministic = torch.are_deterministic_algorithms_enabled()
        # Filling fresh tensors with NaN (the deterministic mode's default) costs time and buys nothing here.
        fill = torch.utils.deterministic.fill_uninitialized_memory
        cuda_devices = [torch.cuda.current_device() if self.device.index is None else self.device.index] if cuda else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.default_generator.manual_seed(seed)
            if cuda:
                torch.cuda.default_generators[cuda_devices[0]].manual_seed(seed)
            else:
                torch.use_deterministic_algorithms(True)
                torch.utils.deterministic.fill_uninitialized_memory = False
            try:
                yield
            finally:
                torch.use_deterministic_algorithms(deterministic)
                torch.utils.deterministic.fill_uninitialized_memory = fill

    def train(self, dataset: MotionTextDataset, steps: int, progress: bool = False,
              seed: int | None = None) -> list[float]:
        """Run `steps` optimisation steps on dataset; returns each step's loss (the global batch's).

        seed: of the data order, diffusion noise and dropout of this call (None: the trainer's seed).
        """
        if dataset.features.shape[-1] != self.dims["feature_dim"] or dataset.max_frames > self.dims["max_frames"]:
            raise ValueError(f"dataset features {tuple(dataset.features.shape)} do not fit the model "
                             f"(feature_dim {self.dims['feature_dim']}, max_frames {self.dims['max_frames']})")
        seed, start = self.seed if seed is None else seed, self.step
        data_generator = torch.Generator().manual_seed(derive_seed(seed, start, TRAIN_DATA))
        noise_generator = torch.Generator(self.device).manual_seed(derive_seed(seed, start, TRAIN_NOISE))
        order = BatchOrder(len(dataset), self.train_config.batch_size, data_generator)
        losses = []
        bar = tqdm(range(steps), disable=not progress or self.rank != 0, desc="training", leave=False)
        self.network.train()
        with self._seeded_global_rng(derive_seed(seed, start, TRAIN_DROPOUT, self.rank)):
            for _ in bar:
                losses.append(self._train_step(dataset, order, data_generator, noise_generator))
                if not bar.disable and self.step % self.train_config.log_every == 0:
                    bar.set_postfix(loss=f"{losses[-1].item():.4f}")
        if not losses:
            return []
        # One device-to-host copy for the whole call instead of a synchronisation per step.
        stacked = torch.stack(losses)
        if self.world_size > 1:
            dist.all_reduce(stacked)
            stacked /= self.world_size
        return stacked.tolist()

    def _train_step(self, dataset: MotionTextDataset, order: BatchOrder, data_generator: torch.Generator,
                    noise_generator: torch.Generator) -> torch.Tensor:
        config = self.train_config
        # Every rank draws the whole global batch's randomness and keeps its slice, so the global
        # batch is the same whatever the number of workers.
        motions = order.next()
        captions = dataset.pick_captions(motions, data_generator)
        t = torch.randint(0, self.model_config.diffusion_steps, (len(motions),), generator=data_generator)
        uncond = torch.rand(len(motions), generator=data_generator) < self.model_config.cond_mask_prob
        shape = (len(motions), dataset.max_frames, self.dims["feature_dim"])
        noise = torch.randn(shape, generator=noise_generator, device=noise_generator.device)
        share = len(motions) // self.world_size
        mine = slice(self.rank * share, (self.rank + 1) * share)
        batch = dataset.batch(motions[mine], captions[mine], self.device)
        with self._autocast():
            terms = diffusion_loss(
                self.network, batch["features"], t[mine].to(self.device),
                noise[mine, : batch["features"].shape[1]].to(self.device),
                batch["text_emb"], batch["text_mask"], batch["frame_mask"], uncond[mine].to(self.device),
                self.alphas_cumprod, self.normalizer, config.geometric_losses,
            )
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            with torch.no_grad():
                for ema_param, param in zip(self.ema.parameters(), self.model.parameters()):
                    ema_param.lerp_(param, 1.0 - config.ema_decay)
        self.step += 1
        return terms["loss"].detach()

    def sample(self, text_emb: torch.Tensor, text_mask: torch.Tensor, lengths: torch.Tensor,
               config: SampleConfig, seed: int, progress: bool = False, use_ema: bool = True) -> torch.Tensor:
        """Normalised motions for N prompts, in batches of `config.batch_size`.

        text_emb (N, L, D), text_mask (N, L) bool, lengths (N,) frames; the EMA weights are used
        when kept and use_ema. Returns (N, max_frames, feature_dim) float32 on the CPU, zero on
        padded frames; the same seed gives the same bytes on the same device type.
        """
        model = self.ema if use_ema and self.ema is not None else self.model
        scheduler = make_scheduler(config.sampler, self.alphas_cumprod, config.steps, config.eta)
        generator = torch.Generator(self.device).manual_seed(seed)
        lengths = torch.as_tensor(lengths)
        chunks = []
        for start in range(0, len(lengths), config.batch_size):
            part = slice(start, start + config.batch_size)
            with self._autocast():
                chunks.append(sample(model, scheduler, text_emb[part], text_mask[part], lengths[part],
                                     config.guidance, generator, progress).cpu())
        return torch.cat(chunks) if chunks else torch.zeros((0, self.dims["max_frames"], self.dims["feature_dim"]))

    def state_dict(self) -> dict:
        """Everything needed to continue: weights, EMA, optimiser, step, normaliser, resolved config."""
        normalizer = None if self.normalizer is None else {
            "mean": torch.from_numpy(self.normalizer.mean), "std": torch.from_numpy(self.normalizer.std)}
        return {
            "format": CHECKPOINT_FORMAT,
            "dims": dict(self.dims),
            "config": {"model": to_dict(self.model_config), "train": to_dict(self.train_config)},
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "normalizer": normalizer,
        }

    def load_state_dict(self, state: dict, source: str = "state dict") -> None:
        """Restore from `state_dict()` output; the architecture must match (error names the keys)."""
        check_compatible(state, to_dict(self.model_config), self.dims, source)
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"] if state["ema"] is not None else state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        if state["normalizer"] is not None:
            self.normalizer = normalizer_from_state(state)

    def save_checkpoint(self, path: str | os.PathLike, extra: dict | None = None) -> str | os.PathLike:
        """Write the state atomically to path, a local path or URI (call it on rank 0 only); returns path.
        extra: plain data or tensors."""
        return write_atomic({**self.state_dict(), "extra": extra}, path)

    def load_checkpoint(self, path: str | os.PathLike) -> dict | None:
        """Restore a checkpoint written by `save_checkpoint` (on any device); returns its extra."""
        state = read_checkpoint(path, map_location=self.device)
        self.load_state_dict(state, str(path))
        return state.get("extra")
