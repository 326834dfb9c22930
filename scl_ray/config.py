"""The experiment configuration: one frozen dataclass per section, loaded from YAML.

Sections mirror the packages (README, "The code"): data, model, train, sample, correct, evaluate, loop, sweep,
resources, plus toy for the Gaussian theory check and testing for the test suite's hooks. Every key has a typed default; `load_config` rejects
unknown keys, wrong types and out-of-range values with the key path before anything runs, applies
`--set section.key=value` overrides, and `save_config` writes the resolved config back so that loading
it again gives an equal object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from scl_ray import storage
from scl_ray.fields import ConfigError, from_dict, setting, to_dict, validate
from scl_ray.motion.constants import MAX_FRAMES, MIN_FRAMES

Switch = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class DataConfig:
    """Where the real motions come from."""

    source: Literal["procedural", "humanml3d"] = setting("procedural", help="embedded generator or a HumanML3D directory")
    path: str | None = setting(None, help="HumanML3D directory (source humanml3d); procedural data is cached under cache_dir")
    procedural_num: int = setting(2000, low=50, help="motions the procedural generator writes")
    procedural_seed: int = setting(0, low=0, help="seed of the procedural dataset")
    cache_dir: str = setting("~/.cache/scl-ray", help="procedural datasets, text embeddings and evaluators are cached here")
    min_frames: int = setting(MIN_FRAMES, low=1, high=MAX_FRAMES, help="shortest motion used, frames at 20 fps")
    max_frames: int = setting(MAX_FRAMES, low=MIN_FRAMES, high=MAX_FRAMES, help="longest motion used (and padding length)")

    def __post_init__(self) -> None:
        validate(self)
        if self.source == "humanml3d" and not self.path:
            raise ConfigError("path", "data.source is humanml3d: set data.path to the HumanML3D directory")
        if self.min_frames > self.max_frames:
            raise ConfigError("min_frames", f"must be <= max_frames ({self.max_frames}), got {self.min_frames}")


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's MDM: 8 layers, width 512, 4 heads, FF 1024 (about 17.9 M parameters).
    "mdm": {"layers": 8, "width": 512, "heads": 4, "ff_size": 1024, "dropout": 0.1},
    # CPU quickstarts: about 0.17 s per step at batch 16 on one core of a 2-core AMD EPYC.
    "small": {"layers": 2, "width": 128, "heads": 4, "ff_size": 256, "dropout": 0.1},
    # Tests only.
    "tiny": {"layers": 2, "width": 64, "heads": 4, "ff_size": 128, "dropout": 0.0},
}


@dataclass(frozen=True)
class ModelConfig:
    """The denoiser and its diffusion process. `preset` fills the size keys; explicit keys win."""

    preset: Literal["mdm", "small", "tiny", "custom"] = setting("small", help="named size (mdm = the paper's)")
    layers: int = setting(2, low=1, high=48)
    width: int = setting(128, low=8)
    heads: int = setting(4, low=1)
    ff_size: int = setting(256, low=8)
    dropout: float = setting(0.1, low=0.0, high=0.9)
    text_encoder: str = setting("minilm", help="minilm (all-MiniLM-L6-v2) or hashing (tests, no package)")
    text_max_tokens: int = setting(32, low=4, high=256, help="caption tokens the denoiser attends to")
    cond_mask_prob: float = setting(0.1, low=0.0, high=1.0, help="text dropped in training, for guidance")
    diffusion_steps: int = setting(1000, low=2, high=4000, help="T of the training process")
    noise_schedule: Literal["cosine", "linear"] = setting("cosine")

    def __post_init__(self) -> None:
        validate(self)
        if self.width % self.heads:
            raise ConfigError("width", f"must be divisible by heads ({self.heads}), got {self.width}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of the denoiser (generation 0 runs `steps`; later ones loop.steps_per_generation)."""

    steps: int = setting(2000, low=1, help="optimisation steps of a from-scratch run (generation 0)")
    batch_size: int = setting(64, low=1, help="global batch, split across Train workers")
    lr: float = setting(1e-4, low=0.0, low_open=True)
    weight_decay: float = setting(0.0, low=0.0)
    grad_clip: float = setting(1.0, low=0.0, help="max gradient norm; 0 disables clipping")
    ema_decay: float = setting(0.0, low=0.0, high=1.0, help="0 disables EMA weights")
    geometric_losses: bool = setting(False, help="MDM's joint position/velocity/foot losses")
    bf16: Switch = setting("auto", help="bf16 autocast; auto = on for CUDA")
    compile: Switch = setting("auto", help="torch.compile; auto = on for CUDA")
    seed: int = setting(0, low=0, help="initial weights and training noise outside a loop (scl-ray train); "
                                       "a loop's generations are seeded by loop.seed")
    log_every: int = setting(50, low=1)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class SampleConfig:
    """How synthetic and evaluation motions are drawn from the model."""

    sampler: Literal["ddim", "ddpm"] = setting("ddim")
    steps: int = setting(50, low=1, help="sampling steps (ddpm uses every training step)")
    eta: float = setting(0.0, low=0.0, high=1.0, help="DDIM stochasticity")
    guidance: float = setting(2.5, low=0.0, help="classifier-free guidance scale (1 = conditional)")
    batch_size: int = setting(64, low=1)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class CorrectConfig:
    """The MuJoCo physics corrector (a humanoid tracking each synthetic motion)."""

    sim_hz: int = setting(300, low=100, high=1000, help="simulation rate")
    control_hz: int = setting(60, low=10, high=1000,
                              help="rate of the feed-forward, the contact forces and the PD targets")
    residual_force_limit: float = setting(0.3, low=0.0, help="residual root force without help, in body weights")
    ankle_height: float | None = setting(None, low=0.0, high=0.2,
                                         help="ankle joints above the soles, metres; None infers it per motion")
    fall_distance: float = setting(0.15, low=0.0, low_open=True,
                                   help="metres of root deviation from the reference that roll back with more help")
    fall_angle: float = setting(0.5, low=0.0, low_open=True,
                                help="root tilt (radians) from the reference that rolls back with more help")
    help_levels: int = setting(4, low=0, help="rungs of the help ladder (each triples the root servo's force)")
    kp_scale: float = setting(1.0, low=0.0, low_open=True, help="multiplies every joint's position gain")
    on_failure: Literal["drop", "raw"] = setting(
        "drop", help="motions that cannot be simulated: left out of training, or trained on as sampled")
    batch_size: int = setting(8, low=1, help="motions per actor call (a Ray Data batch)")
    pool: Literal["resident", "data"] = setting(
        "resident", help="a loop's corrector actors: kept for all generations, or a Ray Data pipeline per generation")

    def __post_init__(self) -> None:
        validate(self)
        if self.control_hz > self.sim_hz:
            raise ConfigError("control_hz", f"must be <= sim_hz ({self.sim_hz}), got {self.control_hz}")


@dataclass(frozen=True)
class EvaluatorConfig:
    """The contrastive text/motion evaluator (T2M-style) trained on the real train split."""

    width: int = setting(256, low=8)
    embed_dim: int = setting(512, low=8, help="shared embedding size (T2M uses 512)")
    epochs: int = setting(30, low=1)
    batch_size: int = setting(64, low=2)
    lr: float = setting(1e-3, low=0.0, low_open=True)
    seed: int = setting(0, low=0)
    threads: int = setting(1, low=1, help="torch threads while training: the weights depend on it, so it is "
                           "part of the evaluator, not of the machine")
    t2m_checkpoint: str | None = setting(None, help="original T2M evaluator dir (literature-comparable mode)")
    glove_dir: str | None = setting(None, help="word vectors for the T2M text encoder")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class EvaluateConfig:
    """Per-generation evaluation (the standard HumanML3D protocol's constants)."""

    num_samples: int = setting(1024, low=32, help="evaluation prompts sampled per generation (Diversity wants > 300)")
    r_precision_batch: int = setting(32, low=2, help="R-precision pool size (32 in the protocol)")
    diversity_pairs: int = setting(300, low=1, help="random pairs for Diversity (300 in the protocol)")
    mm_prompts: int = setting(16, low=0, help="prompts for MultiModality (0 disables it)")
    mm_samples: int = setting(30, low=2, help="samples per MultiModality prompt (30 in the protocol)")
    seed: int = setting(0, low=0)
    bootstrap: int = setting(200, low=0, help="resamples of the evaluation samples for each metric's 95% "
                                              "confidence interval (0: no intervals)")
    every: int = setting(1, low=1, help="evaluate generation 0, every k-th generation and the last; the "
                                        "others record no evaluation metrics (1: every generation)")
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)

    def __post_init__(self) -> None:
        validate(self)

    def evaluates(self, generation: int, last: int) -> bool:
        """Whether a loop of `last` generations evaluates `generation` (0, every `every`-th, and the last)."""
        return generation % self.every == 0 or generation == last


@dataclass(frozen=True)
class LoopConfig:
    """One self-consuming loop: the arm is given by synthetic_ratio and strength."""

    generations: int = setting(50, low=0, help="generations after generation 0")
    train_size: int = setting(64, low=1, help="n: real motions in the training subset")
    synthetic_ratio: float = setting(0.5, low=0.0, high=10.0, help="lambda: synthetic motions = floor(lambda * n)")
    strength: float = setting(1.0, low=0.0, high=1.0, help="probability a synthetic motion is replaced by its correction")
    steps_per_generation: int = setting(1000, low=1)
    accumulate: bool = setting(False, help="keep earlier generations' synthetic sets (the paper does not)")
    keep_all: bool = setting(False, help="keep every generation's model.pt, synthetic.parquet and corrected.parquet "
                                         "(default: only the newest generation's; metrics.json, eval_samples.parquet "
                                         "and TensorBoard's events are always kept)")
    seed: int = setting(0, low=0, help="the real subset, and each generation's initial weights, data order, "
                                       "diffusion noise, dropout, prompts and sampling noise")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class SweepConfig:
    """The Ray Tune grid: every combination of the lists is one trial (one loop)."""

    name: str = setting("scl", help="experiment name: the run directory under storage")
    storage: str = setting("~/scl-ray-results", help="local path or pyarrow URI such as s3://bucket/prefix")
    synthetic_ratio: tuple[float, ...] = setting((0.0, 0.5, 1.0), low=0.0, high=10.0)
    strength: tuple[float, ...] = setting((0.0, 1.0), low=0.0, high=1.0)
    train_size: tuple[int, ...] = setting((64,), low=1)
    seeds: tuple[int, ...] = setting((0,), low=0)
    max_concurrent_trials: int | None = setting(None, low=1, help="default: as many as resources allow")
    max_failures: int = setting(2, low=0, help="retries of a failed trial from its last finished generation")
    reuse_generation_zero: bool = setting(True, help="reuse a generation 0 that an earlier run with the same settings "
                                          "cached under data.cache_dir/generation_zero, and cache this sweep's")

    def __post_init__(self) -> None:
        validate(self)
        for axis in ("synthetic_ratio", "strength", "train_size", "seeds"):
            if not getattr(self, axis):
                raise ConfigError(axis, "must list at least one value")


@dataclass(frozen=True)
class ResourcesConfig:
    """What one trial uses (the arithmetic lives in distributed/runtime.py)."""

    ray_address: str | None = setting(None, help="None starts a local Ray of its own; else an address, or 'auto' to join a running one")
    device: Literal["auto", "cpu", "cuda"] = setting("auto")
    num_workers: int = setting(1, low=1, help="Ray Train workers per trial")
    cpus_per_worker: float = setting(1.0, low=0.0, low_open=True)
    gpus_per_worker: float = setting(1.0, low=0.0, help="used when device is cuda")
    corrector_actors: int = setting(1, low=1, help="MuJoCo corrector actors per trial")
    cpus_per_actor: float = setting(1.0, low=0.0, low_open=True)
    data_cpus: float = setting(1.0, low=1.0, help="CPUs kept free for Ray Data's read/write tasks")
    trial_cpus: float = setting(0.01, low=0.0, low_open=True, help="the trial driver's own CPU fraction")
    autoscale_timeout_s: float = setting(1800.0, low=0.0, help="wait this long for an autoscaling cluster's nodes")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class ToyConfig:
    """The paper's Gaussian theory check (docs/method.md, "The theory, and the toy that checks it")."""

    dims: int = setting(2, low=1)
    real_points: int = setting(50, low=2)
    synthetic_ratio: float = setting(0.5, low=0.0, high=10.0)
    generations: int = setting(500, low=1)
    gammas: tuple[float, ...] = setting((0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 5.0), low=0.0)
    corrector: tuple[Literal["histogram", "mixture"], ...] = setting(("histogram",))
    accumulate: bool = setting(True)
    histogram_bins: int = setting(10, low=2)
    seeds: tuple[int, ...] = setting((0, 1, 2), low=0)

    def __post_init__(self) -> None:
        validate(self)


FAULT_KINDS = ("raise", "nonfinite")


@dataclass(frozen=True)
class TestingConfig:
    """Test-only hooks, never set by a real run: the failure-recovery tests inject a fault here, and it
    reaches every Ray worker with the config they already receive (`distributed/train.py`)."""

    __test__ = False  # not a pytest test class

    fault: str | None = setting(
        None, help="'<trial>:<generation>:raise:<marker file>' makes that trial's evaluation of that generation "
                   "raise once (the marker file records that it did); '<trial>:<generation>:nonfinite' makes every "
                   "synthetic sample of that generation NaN, every time")

    def __post_init__(self) -> None:
        validate(self)
        self.parsed_fault()

    def parsed_fault(self) -> tuple[str, int, str, str | None] | None:
        """`fault` as (trial, generation, kind, marker file or None); None when no fault is set."""
        if not self.fault:
            return None
        trial, generation, kind, marker = (self.fault.split(":", 3) + [""] * 3)[:4]  # missing parts: ""
        if not generation.isdigit() or kind not in FAULT_KINDS or (kind == "raise") != bool(marker):
            raise ConfigError("fault", "must look like <trial>:<generation>:raise:<marker file> or "
                                       f"<trial>:<generation>:nonfinite, got {self.fault!r}")
        return trial, int(generation), kind, marker or None


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    correct: CorrectConfig = field(default_factory=CorrectConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    toy: ToyConfig = field(default_factory=ToyConfig)
    testing: TestingConfig = field(default_factory=TestingConfig)

    def __post_init__(self) -> None:
        validate(self)


def _expand_model_preset(data: dict) -> dict:
    """A `model.preset` fills the size keys it names; keys given explicitly win."""
    model = data.get("model")
    if isinstance(model, dict) and model.get("preset") in MODEL_PRESETS:
        data = dict(data)
        data["model"] = {**MODEL_PRESETS[model["preset"]], **model}
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(keys):
        raise ConfigError("", f"override {text!r} must look like section.key=value")
    try:
        return keys, yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(key.strip(), f"override {text!r}: the value is not valid YAML") from None


def config_from_dict(data: dict | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Validate plain data (e.g. parsed YAML) plus `--set` overrides into a Config."""
    data = dict(data or {})
    for override in overrides:
        keys, value = parse_override(override)
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, dict) else {}
            node = node[key]
        node[keys[-1]] = value
    return from_dict(Config, _expand_model_preset(data))


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config file (None = all defaults) and apply overrides; errors name file and key."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ConfigError("", f"config {path} is a directory; give a YAML file (see configs/)")
        if not path.is_file():
            raise ConfigError("", f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError("", f"{path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError("", f"{path} must hold a mapping of sections, got {type(data).__name__}")
    set_keys = {".".join(parse_override(override)[0]): override for override in overrides}
    try:
        return config_from_dict(data, overrides)
    except ConfigError as error:
        # The value came from the command line when an override set that key or a section holding it.
        override = next((text for key, text in set_keys.items()
                         if error.path == key or error.path.startswith(f"{key}.")), None)
        if override is not None:
            where = f" (from --set {override})"
        else:
            where = f" in {path}" if path is not None else ""
        raise ConfigError(error.path, f"{error.message}{where}") from None


def config_to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Any, path: str | os.PathLike) -> str | os.PathLike:
    """Write the resolved config as YAML atomically (local path or URI); returns `path`."""
    storage.write_text(path, config_to_yaml(config))
    return path
