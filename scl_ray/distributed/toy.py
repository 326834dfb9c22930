"""`scl-ray toy gaussian`: the Gaussian toy grid (corrector x gamma x seed), in-process or on Ray Tune.

Each run goes through the generic self-consuming loop (`scl_ray.toy.loop.run_toy_loop`) and writes
its W2 curve as `<experiment>/<corrector>_gamma<g>_seed<s>/toy_w2.json`
(`{"gamma", "corrector", "seed", "accumulate", "w2": [...]}`), which `scl-ray report` plots.
"""

from __future__ import annotations


from scl_ray import storage
from scl_ray.config import Config, ToyConfig, config_from_dict, config_to_yaml
from scl_ray.fields import to_dict
from scl_ray.toy.loop import run_toy_loop

TOY_FILE = "toy_w2.json"


def toy_runs(toy: ToyConfig) -> list[dict]:
    return [{"corrector": corrector, "gamma": gamma, "seed": seed}
            for corrector in toy.corrector for gamma in toy.gammas for seed in toy.seeds]


def run_name(run: dict) -> str:
    return f"{run['corrector']}_gamma{run['gamma']:g}_seed{run['seed']}"


def run_one(run: dict, toy: ToyConfig, experiment: str) -> dict:
    record = run_toy_loop(run["gamma"], run["corrector"], run["seed"], toy)
    storage.write_json(storage.join(experiment, run_name(run), TOY_FILE), record)
    return record


def _tune_trial(tune_config: dict) -> None:
    from ray import tune

    toy = config_from_dict({"toy": tune_config["toy"]}).toy
    record = run_one(tune_config["run"], toy, tune_config["experiment"])
    tune.report({"w2_final": record["w2"][-1], "w2_generation0": record["w2"][0]})


def run_toy_sweep(config: Config, storage_override: str | None = None, use_tune: bool = False) -> str:
    """Run every (corrector, gamma, seed) of config.toy; returns the experiment directory."""
    from scl_ray.distributed.sweep import experiment_dir

    experiment = experiment_dir(config, storage_override)
    storage.make_dirs(experiment)
    storage.write_text(storage.join(experiment, "config.yaml"), config_to_yaml(config))
    runs = toy_runs(config.toy)
    if not use_tune:
        from tqdm import tqdm

        for run in tqdm(runs, desc="toy runs", unit="run"):
            run_one(run, config.toy, experiment)
        return experiment
    from ray import tune

    from scl_ray.distributed.runtime import init_ray

    init_ray(config.resources)
    tuner = tune.Tuner(
        tune.with_resources(_tune_trial, {"CPU": 1}),
        param_space={"toy": to_dict(config.toy), "experiment": experiment, "run": tune.grid_search(runs)},
        run_config=tune.RunConfig(name="_tune", storage_path=experiment),
    )
    results = tuner.fit()
    errors = [result.error for result in results if result.error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} toy trial(s) failed; first: {errors[0]}")
    return experiment
