"""Ray Train: `scl-ray train`, a generation 0 trained from scratch on the configured real subset.

One `TorchTrainer.fit` whose workers train with DDP and report every `report_every` steps with the
model as checkpoint (a restarted worker group resumes from it); the final model is copied to
`<out>/model.pt`.
"""

from __future__ import annotations

import tempfile

import torch

import ray.train
import ray.train.torch
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from scl_ray import storage
from scl_ray.config import Config, config_from_dict
from scl_ray.distributed.collectives import gather_objects
from scl_ray.distributed.runtime import ResourcePlan, ray_environment, run_interruptibly
from scl_ray.distributed.train import quiet_report_lines, train_logging
from scl_ray.fields import to_dict
from scl_ray.loop.resources import LoopResources, prepare_experiment
from scl_ray.loop.state import MODEL


def generation_zero_worker(worker_config: dict) -> dict:
    """`scl-ray train`: train from scratch on the configured real subset, reporting as it goes."""
    from scl_ray.loop.motion import MotionLoopModel

    quiet_report_lines()
    config = config_from_dict(worker_config["config"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(worker_config["cpus"])))
    device = str(ray.train.torch.get_device()) if worker_config["use_gpu"] else "cpu"
    resources = LoopResources.load(config, worker_config["experiment"], evaluator=False)
    model = MotionLoopModel(config, resources.real.normalizer, resources.bank, device, rank, world_size,
                            gather_objects)
    items = resources.real.subset(config.loop.train_size, config.loop.seed)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            model.load(storage.join(folder, MODEL))
    chunk = max(1, worker_config["report_every"])
    while model.trainer.step < config.train.steps:
        steps = min(chunk, config.train.steps - model.trainer.step)
        stats = model.train(items, steps, seed=config.train.seed)
        if rank == 0:
            print(f"step {model.trainer.step}/{config.train.steps}: loss {stats['loss']:.4f}", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                model.save(storage.join(folder, MODEL))
            ray.train.report({"loss": stats["loss"], "step": model.trainer.step},
                             checkpoint=Checkpoint.from_directory(folder) if rank == 0 else None)
    return {"step": model.trainer.step}


def train_generation_zero(config: Config, out_dir: str, plan: ResourcePlan, report_every: int = 200) -> str:
    """Run `scl-ray train`; returns the location of the final checkpoint (out_dir/model.pt).

    out_dir: a local path or URI. The driver writes the data and caption embeddings into it first
    (`prepare_experiment`, no evaluator: training does not evaluate), and every worker reads them from there.
    """
    out = storage.absolute(out_dir)
    parent, name = storage.split(out)
    prepare_experiment(config, out, evaluator=False)
    trainer = TorchTrainer(
        generation_zero_worker,
        train_loop_config={"config": to_dict(config), "cpus": plan.worker_cpus, "use_gpu": plan.use_gpu,
                           "report_every": report_every, "experiment": str(out)},
        scaling_config=ScalingConfig(num_workers=plan.num_workers, use_gpu=plan.use_gpu,
                                     resources_per_worker={"CPU": plan.worker_cpus}),
        run_config=RunConfig(name=name, storage_path=parent, logging_config=train_logging(),
                             worker_runtime_env={"env_vars": ray_environment()}),
    )
    result = run_interruptibly(trainer.fit)
    if result.checkpoint is None:
        raise RuntimeError(f"training reported no checkpoint: {result.error}")
    final = storage.join(out, MODEL)
    with result.checkpoint.as_directory() as folder:
        storage.write_bytes(final, storage.read_bytes(storage.join(folder, MODEL)))
    return final

