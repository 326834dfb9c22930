"""Atomic writes and listing on local paths and file:// URIs."""

import os

import pytest

from scl_ray import storage


@pytest.mark.parametrize("as_uri", [False, True])
def test_round_trip_and_listing(tmp_path, as_uri):
    root = f"file://{tmp_path}" if as_uri else str(tmp_path)
    target = storage.join(root, "a", "b.json")
    storage.write_json(target, {"x": 1})
    assert storage.read_json(target) == {"x": 1}
    assert storage.exists(target) and not storage.exists(storage.join(root, "nothing"))
    assert storage.list_dir(storage.join(root, "a")) == ["b.json"]
    assert storage.list_dir(storage.join(root, "missing")) == []


def test_atomic_write_leaves_no_temporary_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    storage.write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        storage.write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        storage.read_json(tmp_path / "nope.json")


# ---- every artefact of a run, on a local path, a file:// URI and a real S3 endpoint ------------------

@pytest.fixture(params=["local", "file", "s3"])
def run_root(request, tmp_path):
    """The root of a run directory on each kind of storage scl-ray supports."""
    if request.param == "s3":
        return request.getfixturevalue("s3_prefix")
    return f"file://{tmp_path}" if request.param == "file" else str(tmp_path)


def test_checkpoint_round_trip(run_root):
    import torch

    from scl_ray.config import ModelConfig, TrainConfig
    from scl_ray.diffusion.checkpoint import load_denoiser, read_checkpoint
    from scl_ray.diffusion.training import DiffusionTrainer

    model = ModelConfig(preset="tiny", layers=1, width=32, heads=2, ff_size=64, diffusion_steps=10)
    trainer = DiffusionTrainer(model, TrainConfig(batch_size=2), "cpu", 16, 263, 8)
    location = storage.join(run_root, "trial", "gen_000", "model.pt")
    assert trainer.save_checkpoint(location, extra={"generation": 0}) == location  # the location, as given
    state = read_checkpoint(location)
    assert state["extra"] == {"generation": 0}
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(state["model"][name], value), name
    restored = DiffusionTrainer(model, TrainConfig(batch_size=2), "cpu", 16, 263, 8)
    assert restored.load_checkpoint(location) == {"generation": 0}
    assert load_denoiser(location)[2]["step"] == 0
    assert storage.list_dir(storage.join(run_root, "trial", "gen_000")) == ["model.pt"]  # no temporary left


def test_metrics_done_markers_and_claims_round_trip(run_root):
    from scl_ray.loop.state import TrialDirectory

    trial = TrialDirectory(storage.join(run_root, "n16_lambda0.5_strength1_seed0"))
    for generation in (0, 1):
        trial.write_metrics(generation, {"generation": float(generation), "fid": 1.5 - generation})
        trial.mark_done(generation)
    trial.write_metrics(2, {"generation": 2.0})  # unfinished: no DONE
    assert trial.done_generations() == [0, 1] and trial.latest_done() == 1
    assert [m["fid"] for m in trial.metrics_history()] == [1.5, 0.5]
    claim = storage.join(run_root, "_shared", "gen0_abc", "CLAIMED")
    assert storage.create_exclusive(claim, "holder 1\n")
    assert not storage.create_exclusive(claim, "holder 2\n")
    assert storage.read_text(claim).startswith("holder 1")
    assert 0 <= storage.age_s(claim) < 120 and storage.age_s(storage.join(run_root, "nothing")) == float("inf")


def test_motion_set_round_trip(run_root):
    import numpy as np

    from scl_ray.motion.store import MotionSet, check_motion_set_file, read_motion_set, write_motion_set

    rng = np.random.default_rng(0)
    motions = MotionSet(ids=["a", "b"], captions=[("walks",), ("runs", "jogs")],
                        features=[rng.standard_normal((n, 263)).astype(np.float32) for n in (5, 9)],
                        source=["synthetic"] * 2, generation=[1, 1], status=["", "corrected"], stats=[{}, {"x": 1}])
    location = storage.join(run_root, "trial", "gen_001", "corrected.parquet")
    write_motion_set(motions, location)
    check_motion_set_file(location)
    back = read_motion_set(location)
    assert back.ids == motions.ids and back.captions == motions.captions and back.stats == motions.stats
    for a, b in zip(back.features, motions.features):
        np.testing.assert_array_equal(a, b)


def test_sweep_config_round_trip(run_root):
    import yaml

    from scl_ray.config import Config, config_from_dict, save_config

    config = Config()
    location = storage.join(run_root, "scl", "config.yaml")
    assert save_config(config, location) == location
    assert config_from_dict(yaml.safe_load(storage.read_text(location))) == config  # as run_trial reads it


def test_tensorboard_events_are_mirrored_to_the_storage(run_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from scl_ray.config import LoopConfig
    from scl_ray.loop.tensorboard import TrialLogger, trial_hparams

    trial_dir = storage.join(run_root, "trial")
    logger = TrialLogger(trial_dir, trial_hparams(LoopConfig(), "0123456789abcdef"))
    logger.log_generation(0, {"generation": 0.0, "fid": 2.0})
    logger.log_generation(1, {"generation": 1.0, "fid": 1.0})
    logger.close()
    events = [name for name in storage.list_dir(trial_dir) if name.startswith("events.out.tfevents")]
    assert len(events) == 1
    copy = tmp_path / "downloaded"
    copy.mkdir()
    (copy / events[0]).write_bytes(storage.read_bytes(storage.join(trial_dir, events[0])))
    accumulator = EventAccumulator(str(copy), size_guidance={"scalars": 0}).Reload()
    assert [(s.step, s.value) for s in accumulator.Scalars("eval/fid")] == [(0, 2.0), (1, 1.0)]
