"""Atomic writes and listing on local paths and file:// URIs."""

import json
import os
import socket
import subprocess
import time

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


# ---- faults: a full or read-only disk (a real tmpfs, mounted in a user namespace) and the lock -----

def in_small_tmpfs(script: str, options: str) -> subprocess.CompletedProcess:
    """Run a Python script with a fresh tmpfs mounted (with `options`) at the path in its argv[1]."""
    import shutil
    import sys
    import tempfile

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("needs `unshare -rm` (unprivileged user and mount namespaces) to mount a small tmpfs")
    mount_point = tempfile.mkdtemp(prefix="scl-ray-tmpfs-")
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o {options} tmpfs "$1" && shift && '
                               f'exec "$@"', "sh", mount_point, sys.executable, "-c", script, mount_point],
                              capture_output=True, text=True, timeout=120)
    finally:
        os.rmdir(mount_point)


def test_a_full_disk_is_a_clear_error_and_keeps_the_finished_file():
    result = in_small_tmpfs("""
import os, sys
from scl_ray import storage
target = os.path.join(sys.argv[1], "gen_001", "model.pt")
storage.write_bytes(target, b"finished")
try:
    storage.write_bytes(target, bytes(512 * 1024))
except storage.StorageError as error:
    print(error)
assert storage.read_bytes(target) == b"finished", "the finished file was damaged"
assert os.listdir(os.path.dirname(target)) == ["model.pt"], "a temporary file was left"
""", "size=256k")
    assert result.returncode == 0, result.stderr
    assert "cannot write" in result.stdout and "gen_001/model.pt: no space left on the device" in result.stdout


def test_unwritable_storage_is_one_clear_error_before_anything_starts():
    quickstart = os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.yaml")
    result = in_small_tmpfs(f"""
import sys
from scl_ray.cli import main
sys.exit(main(["sweep", {quickstart!r}, "--storage", sys.argv[1] + "/results"]))
""", "ro,size=64k")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""  # nothing started: no trial list, no Ray
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scl-ray: error: cannot write to the storage location ")
    assert lines[0].endswith("/results/quickstart: permission denied (make it writable or choose another storage "
                             "location)")


def test_a_held_lock_refuses_a_second_holder_until_it_is_released_or_abandoned(tmp_path):
    location = tmp_path / "SWEEP_RUNNING"
    with storage.Lock(location, "a sweep of X", heartbeat_s=0.05):
        with pytest.raises(storage.StorageError, match=r"a sweep of X is already running .* held by process "
                                                       rf"{os.getpid()}"):
            storage.Lock(location, "a sweep of X").acquire()
    assert not location.exists()  # released
    # A holder on this machine that no longer runs (a SIGKILLed driver) is taken over at once.
    dead = subprocess.Popen(["true"])
    dead.wait()
    location.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "id": "x"}))
    with storage.Lock(location, "a sweep of X"):
        assert json.loads(location.read_text())["pid"] == os.getpid()
    # A holder elsewhere is trusted while it refreshes the lock, and taken over once it stops.
    location.write_text(json.dumps({"pid": 1, "host": "another-node", "id": "y"}))
    with pytest.raises(storage.StorageError, match="another-node"):
        storage.Lock(location, "a sweep of X", stale_s=60).acquire()
    os.utime(location, (time.time() - 120, time.time() - 120))
    with storage.Lock(location, "a sweep of X", stale_s=60):
        assert json.loads(location.read_text())["pid"] == os.getpid()
