"""`scl-ray sweep CONFIG --dry-run`: what a sweep will cost, for the device its config names.

The estimate adds up unit costs (seconds per training step, per motion and sampling step, per
corrected motion) over every generation of every trial, then schedules the trials longest first on
as many slots as run at once. docs/cluster.md ("Cost estimates") tables the unit costs and where
each comes from; `UNIT_COSTS` below is that table. Rough: +-50 %, more where a cost is scaled rather
than measured. A dry run starts nothing (torch is imported only to count this machine's GPUs).
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass

from scl_ray.config import Config, LoopConfig
from scl_ray.distributed.runtime import ResourceError, local_device, local_gpus, plan_resources, trial_plan
from scl_ray.loop.plan import trial_name


@dataclass(frozen=True)
class UnitCosts:
    """Seconds: `train` one optimisation step at batch 64; `sample` one motion for one sampling step
    with guidance (at batch 64); `correct` one 196-frame motion on one core. `source`: measured where,
    or how it was scaled."""

    train: float
    sample: float
    correct: float
    source: str


# The corrector's speed (motions per second per core, 196-frame motions) at the simulation rates
# benchmarks/results/corrector_throughput.json measured; other rates take the nearest.
CORRECT_MOTIONS_PER_S = {200: 3.26, 300: 3.43, 450: 2.85}
# Procedural and HumanML3D motions average about 120 of at most 196 frames (the benchmarks' mean_frames).
MEAN_FRAMES_SHARE = 120 / 196

UNIT_COSTS: dict[tuple[str, str], UnitCosts] = {
    ("cuda", "mdm"): UnitCosts(0.028, 0.44 / 64 / 50, 0.0,
                               "measured on one H100 (torch 2.11, fp32 eager): 28 ms a step, 0.44 s per 64 "
                               "motions of 50 DDIM steps"),
    ("cuda", "small"): UnitCosts(0.012, 0.2 / 64 / 50, 0.0, "estimate: the H100's mdm figures scaled down"),
    ("cuda", "tiny"): UnitCosts(0.010, 0.15 / 64 / 50, 0.0, "estimate: the H100's mdm figures scaled down"),
    ("cpu", "small"): UnitCosts(1 / 0.832, 22.8 / 64 / 50, 0.0,
                                "measured on 2 cores (benchmarks/results/train_throughput_cpu.json, "
                                "sample_throughput_cpu.json)"),
    ("cpu", "tiny"): UnitCosts(0.25, 0.002, 0.0, "estimate: the small model's CPU figures scaled down"),
    ("cpu", "mdm"): UnitCosts(1 / 0.832 * 12, 22.8 / 64 / 50 * 12, 0.0,
                              "estimate: the small model's CPU figures x 12 (17.9 M parameters against 0.4 M "
                              "at better CPU efficiency)"),
}


def unit_costs(device: str, preset: str, sim_hz: int) -> UnitCosts:
    """The unit costs of a model preset on a device ("custom" models are costed as "small")."""
    preset = preset if (device, preset) in UNIT_COSTS else "small"
    costs = UNIT_COSTS[(device, preset)]
    nearest = min(CORRECT_MOTIONS_PER_S, key=lambda hz: abs(hz - sim_hz))
    return UnitCosts(costs.train, costs.sample, 1 / CORRECT_MOTIONS_PER_S[nearest], costs.source)


def trial_seconds(config: Config, loop: LoopConfig, costs: UnitCosts) -> float:
    """One loop's estimated wall time: generation 0 and `loop.generations` more, each trained,
    sampled, corrected (by `resources.corrector_actors` at once), and evaluated where `evaluate.every`
    says."""
    batch = config.train.batch_size / 64
    steps = config.sample.steps if config.sample.sampler == "ddim" else config.model.diffusion_steps
    per_motion = costs.sample * steps
    evaluate = (config.evaluate.num_samples + config.evaluate.mm_prompts * config.evaluate.mm_samples) * per_motion
    synthetic = int(loop.synthetic_ratio * loop.train_size)
    correct = synthetic * costs.correct * MEAN_FRAMES_SHARE / config.resources.corrector_actors \
        if loop.strength > 0 else 0.0
    generation = loop.steps_per_generation * costs.train * batch + synthetic * per_motion + correct
    evaluated = sum(config.evaluate.evaluates(g, loop.generations) for g in range(loop.generations + 1))
    return config.train.steps * costs.train * batch + loop.generations * generation + evaluated * evaluate


def wall_seconds(durations: list[float], slots: int) -> float:
    """When the last trial ends if they start longest first on `slots` slots, each as soon as one is free."""
    ends = [0.0] * max(1, min(slots, len(durations)))
    for duration in sorted(durations, reverse=True):
        heapq.heapreplace(ends, ends[0] + duration)
    return max(ends)


def estimate_device(config: Config) -> tuple[str, str]:
    """The device the estimate is for, and why: the config's `resources.device`, or for `auto` this machine's."""
    device = config.resources.device
    if device != "auto":
        return device, f"resources.device={device}"
    machine = local_device("auto")
    return machine, (f"resources.device=auto, so this machine's {machine}; set resources.device in the config "
                     "for the machines it will run on")


def concurrency(config: Config, device: str, trials: int) -> tuple[int | None, str]:
    """How many trials run at once: sweep.max_concurrent_trials, else as many as fit this machine for a
    local Ray; None where the cluster's size is not known before it starts (`resources.ray_address`, or
    a cuda config on a machine without the GPUs)."""
    if config.sweep.max_concurrent_trials:
        return min(config.sweep.max_concurrent_trials, trials), "sweep.max_concurrent_trials"
    if config.resources.ray_address:
        return None, "the cluster's size is not known before it starts"
    gpus = float(local_gpus()) if device == "cuda" else 0.0
    try:
        fit = plan_resources(config.resources, float(os.cpu_count() or 1), gpus).max_concurrent_trials
    except ResourceError:
        return None, f"this machine cannot run a {device} trial, and a cluster's size is not known before it starts"
    return min(fit, trials), f"as many as fit this machine's resources ({os.cpu_count()} CPU, {gpus:g} GPU)"


def estimate_cost(config: Config, loops: list[LoopConfig]) -> str:
    """The dry run's cost lines: per trial, the total in GPU-hours (cuda) or CPU-hours (cpu), and the wall time."""
    device, why = estimate_device(config)
    preset = config.model.preset
    costs = unit_costs(device, preset, config.correct.sim_hz)
    durations = [trial_seconds(config, loop, costs) for loop in loops]
    plan = trial_plan(config.resources, gpus=device == "cuda")
    lines = [f"estimated cost on {device} ({why}), {preset} model; unit costs {costs.source}; rough (+-50 %):",
             *(f"  {trial_name(loop):<44} {seconds / 3600:8.2f} h" for loop, seconds in zip(loops, durations))]
    hours = sum(durations) / 3600
    if device == "cuda":
        held = f"{hours * plan.gpus_per_trial:.1f} GPU-hours ({plan.gpus_per_trial:g} GPU per trial)"
    else:
        held = f"{hours * plan.cpus_per_trial:.1f} CPU-hours ({plan.cpus_per_trial:g} CPU per trial)"
    lines.append(f"total {hours:.1f} trial-hours: {held}")
    slots, how = concurrency(config, device, len(loops))
    if slots is None:
        lines.append(f"wall time at least {max(durations) / 3600:.1f} h (every trial at once; {how}: set "
                     f"sweep.max_concurrent_trials to plan for fewer), {hours:.1f} h one at a time")
    else:
        lines.append(f"wall time about {wall_seconds(durations, slots) / 3600:.1f} h at {slots} trial(s) at once "
                     f"({how}), longest first")
    return "\n".join(lines)
