"""The `scl-ray` command line: help, exit codes, and errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from scl_ray.cli import main
from scl_ray.config import load_config
from scl_ray.motion.humanml3d import Caption, MotionRecord, write_motion, write_split
from scl_ray.text.tokens import tokenize


def tiny_dataset(root, num=3, frames=50):
    rng = np.random.default_rng(0)
    ids = [f"m{i}" for i in range(num)]
    for motion_id in ids:
        text = "a person walks forward"
        write_motion(root, MotionRecord(motion_id, rng.normal(size=(frames, 263)).astype(np.float32),
                                        (Caption(text, tokenize(text)),)))
    for split in ("train", "val", "test"):
        write_split(root, split, ids)
    np.save(root / "Mean.npy", np.zeros(263, np.float32))
    np.save(root / "Std.npy", np.ones(263, np.float32))
    return ids


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "scl_ray.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("data", "render"):
        assert command in result.stdout


def test_data_check_clean_and_broken(tmp_path, capsys):
    tiny_dataset(tmp_path)
    assert main(["data", "check", str(tmp_path)]) == 0
    (tmp_path / "texts" / "m1.txt").write_text("no hashes here\n")
    (tmp_path / "Std.npy").unlink()
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "m1.txt" in out and "Std.npy" in out


def test_data_check_missing_directory_is_a_report_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "scl_ray.cli", "data", "check", str(tmp_path / "nope")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout


def test_render_png_and_bad_suffix(tmp_path, capsys):
    data = tmp_path / "data"
    tiny_dataset(data)
    out = tmp_path / "m.png"
    assert main(["render", str(data), "--out", str(out), "--limit", "2"]) == 0
    assert out.stat().st_size > 1000
    assert main(["render", str(data), "--out", str(tmp_path / "m.jpg")]) == 2
    assert "must end in .png or .gif" in capsys.readouterr().err


def test_sample_writes_motions_and_a_gif(tmp_path):
    from scl_ray.config import load_config
    from scl_ray.diffusion.training import DiffusionTrainer
    from scl_ray.motion.features import Normalizer
    from scl_ray.motion.store import read_motion_set

    config = load_config(None, ["model.preset=tiny", "model.text_encoder=hashing"])
    normalizer = Normalizer(np.zeros(263, np.float32), np.ones(263, np.float32))
    trainer = DiffusionTrainer(config.model, config.train, normalizer=normalizer)
    checkpoint = trainer.save_checkpoint(tmp_path / "model.pt")
    out, gif = tmp_path / "s.parquet", tmp_path / "s.gif"
    assert main(["sample", str(checkpoint), "--prompt", "a person walks forward", "--prompt", "someone jumps",
                 "--num", "2", "--length", "45", "--steps", "3", "--out", str(out), "--render", str(gif)]) == 0
    samples = read_motion_set(str(out))
    assert len(samples) == 4 and all(f.shape == (45, 263) for f in samples.features)
    assert [c[0] for c in samples.captions] == ["a person walks forward"] * 2 + ["someone jumps"] * 2
    assert gif.stat().st_size > 1000
    assert main(["sample", str(checkpoint), "--prompt", "x", "--length", "500", "--out", str(out)]) == 2


def test_sample_reads_the_config_and_set_and_a_given_flag_wins(tmp_path, monkeypatch):
    import scl_ray.distributed.runtime as runtime
    import scl_ray.workflows as workflows
    from scl_ray.motion.store import MotionSet

    calls = []

    def fake_sample(checkpoint, prompts, num, length, settings, seed=0, device="cpu", progress=True):
        calls.append((settings, device))
        return MotionSet(ids=[], captions=[], features=[], source=[], generation=[], status=[], stats=[])

    monkeypatch.setattr(workflows, "sample_from_checkpoint", fake_sample)
    config = tmp_path / "sample.yaml"
    config.write_text("sample:\n  steps: 7\n  guidance: 1.5\n  sampler: ddpm\nresources:\n  device: cpu\n")
    base = ["sample", "model.pt", "--prompt", "x", "--out", str(tmp_path / "s.parquet"), "--config", str(config)]
    assert main(base) == 0
    assert calls[-1][0].steps == 7 and calls[-1][0].guidance == 1.5 and calls[-1][0].sampler == "ddpm"
    assert calls[-1][1] == "cpu"
    assert main([*base, "--set", "sample.steps=9", "--guidance", "3"]) == 0
    assert (calls[-1][0].steps, calls[-1][0].guidance) == (9, 3.0)
    assert main([*base, "--set", "sample.steps=9", "--steps", "4"]) == 0  # the flag wins over --set
    assert calls[-1][0].steps == 4
    monkeypatch.setattr(runtime, "local_gpus", lambda: 1)  # a GPU is there: resources.device auto picks it
    assert main(["sample", "model.pt", "--prompt", "x", "--out", str(tmp_path / "s.parquet")]) == 0
    assert calls[-1] == (load_config().sample, "cuda")
    monkeypatch.setattr(runtime, "local_gpus", lambda: 0)
    assert main(["sample", "model.pt", "--prompt", "x", "--out", str(tmp_path / "s.parquet"),
                 "--set", "resources.device=cuda"]) == 2  # asked for a GPU that is not there: one line


def test_data_export_then_evaluate_with_one_row_per_file_when_names_repeat(tmp_path, tiny_cache):
    import json

    from scl_ray.config import load_config
    from scl_ray.loop.data import RealData
    from scl_ray.motion.store import read_motion_set, write_motion_set
    from tests.conftest import TINY_OVERRIDES

    arguments = [f"--set={value}" for value in (*TINY_OVERRIDES, f"data.cache_dir={tiny_cache}")]
    exported = tmp_path / "train.parquet"
    assert main(["data", "export", "--split", "train", "--out", str(exported), *arguments]) == 0
    train = read_motion_set(str(exported))
    real = RealData.load(load_config(None, [value.removeprefix("--set=") for value in arguments]).data, progress=False)
    assert train.ids == real.train.ids and np.array_equal(train.features[3], real.train.features[3])
    paths = []
    for generation in (1, 2):  # two files of one name, as a loop's gen_*/synthetic.parquet
        paths.append(str(tmp_path / f"gen_{generation:03d}" / "synthetic.parquet"))
        write_motion_set(train.select(np.arange(32 * generation - 32, 32 * generation)), paths[-1])
    out = tmp_path / "metrics.json"
    assert main(["evaluate", *paths, "--out", str(out), *arguments]) == 0
    rows = json.loads(out.read_text())
    assert sorted(rows) == sorted(paths)
    assert rows[paths[0]]["fid"] != rows[paths[1]]["fid"]


def tiny_checkpoint(path):
    from scl_ray.config import load_config
    from scl_ray.diffusion.training import DiffusionTrainer
    from scl_ray.motion.features import Normalizer

    config = load_config(None, ["model.preset=tiny", "model.text_encoder=hashing"])
    normalizer = Normalizer(np.zeros(263, np.float32), np.ones(263, np.float32))
    return DiffusionTrainer(config.model, config.train, normalizer=normalizer).save_checkpoint(path)


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    return captured.err


def test_a_bad_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    content = tiny_checkpoint(tmp_path / "model.pt").read_bytes()
    bad = {"truncated.pt": content[: len(content) // 2], "empty.pt": b"", "text.pt": b"not a checkpoint\n"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        out = tmp_path / f"{name}.parquet"
        assert main(["sample", str(tmp_path / name), "--prompt", "x", "--out", str(out)]) == 2
        assert f"checkpoint {tmp_path / name} cannot be read" in one_line_error(capsys)
        assert not out.exists()


def test_sample_arguments_are_checked_before_anything_is_written(tmp_path, capsys):
    checkpoint = str(tiny_checkpoint(tmp_path / "model.pt"))
    out = tmp_path / "s.parquet"
    assert main(["sample", checkpoint, "--prompt", "x", "--out", str(out), "--render", str(tmp_path / "s.txt")]) == 2
    assert "--render" in one_line_error(capsys) and not out.exists()
    assert main(["sample", checkpoint, "--prompt", "x", "--out", str(tmp_path / "s.csv")]) == 2
    assert "must end in .parquet" in one_line_error(capsys)
    assert main(["sample", checkpoint, "--prompt", "x", "--length", "5", "--out", str(out)]) == 2
    assert "--length must be in 40.." in one_line_error(capsys) and not out.exists()
    for option in ("--num", "--steps"):
        with pytest.raises(SystemExit) as exit_info:
            main(["sample", checkpoint, "--prompt", "x", option, "0", "--out", str(out)])
        assert exit_info.value.code == 2 and f"argument {option}: must be > 0, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_data_and_physics_arguments_are_checked_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "procedural", "--out", str(tmp_path / "d"), "--num", "0"])
    assert exit_info.value.code == 2 and "argument --num: must be > 0" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["data", "procedural", "--out", str(a_file), "--num", "50"]) == 2
    assert f"--out {a_file}: a file is there; give a directory" in one_line_error(capsys)
    assert main(["data", "export", "--out", str(tmp_path / "x.csv")]) == 2
    assert f"--out {tmp_path / 'x.csv'}: the file name must end in .parquet" in one_line_error(capsys)
    for scale in ("0", "-1"):
        with pytest.raises(SystemExit):
            main(["physics", "mjcf", "--out", str(tmp_path / "h.xml"), "--scale", scale])
        assert "argument --scale: must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "h.xml").exists()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_evaluate_reads_its_input_before_building_anything(tmp_path, capsys):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet\n")
    cache = tmp_path / "cache"
    assert main(["evaluate", str(garbage), "--set", f"data.cache_dir={cache}"]) == 2
    assert f"{garbage}: not a Parquet motion set" in one_line_error(capsys)
    assert not cache.exists()  # no dataset generated, no evaluator trained


def test_correct_checks_its_input_before_starting_ray(tmp_path, capsys, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scl_ray.distributed import runtime

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(runtime, "init_ray", no_ray)
    out = str(tmp_path / "out.parquet")
    assert main(["correct", str(tmp_path / "missing.parquet"), "--out", out]) == 2
    assert "missing.parquet: no motion set file" in one_line_error(capsys)
    pq.write_table(pa.table({"id": ["a"], "frames": [1]}), tmp_path / "other.parquet")
    assert main(["correct", str(tmp_path / "other.parquet"), "--out", out]) == 2
    assert "missing column(s) ['captions', 'length', 'features'" in one_line_error(capsys)


@pytest.mark.parametrize("argv", [["-v", "report", "x"], ["report", "x", "-v"], ["report", "x", "--verbose"]])
def test_verbose_goes_before_or_after_the_command(argv):
    from scl_ray.cli import build_parser

    assert build_parser().parse_args(argv).verbose == 1
    assert build_parser().parse_args(["report", "x"]).verbose == 0


def test_verbose_holds_for_the_command_and_reaches_ray_workers_and_train(monkeypatch):
    from scl_ray.distributed.runtime import VERBOSE_ENV, ray_environment
    from scl_ray.distributed.train import train_logging

    seen = []

    def command(args):
        seen.append((os.environ.get(VERBOSE_ENV), ray_environment().get(VERBOSE_ENV), train_logging().log_level))
        return 0

    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    monkeypatch.setattr("scl_ray.cli.cmd_report", command)
    assert main(["report", "results", "-v"]) == 0
    assert main(["report", "results"]) == 0
    assert seen == [("1", "1", "INFO"), (None, None, "WARNING")]
    assert VERBOSE_ENV not in os.environ  # the next command in this process is quiet again


def test_a_bug_shows_its_traceback_and_exits_1(monkeypatch, capsys):
    def command(args):
        raise ValueError("an internal mistake")  # a library bug, not something the user gave

    monkeypatch.setattr("scl_ray.cli.cmd_report", command)
    assert main(["report", "results"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: an internal mistake" in err and "scl-ray: error:" not in err


@pytest.mark.parametrize("argv", [["--debug", "report", "results"], ["report", "results", "--debug"]])
def test_debug_adds_the_traceback_of_a_user_error(monkeypatch, capsys, argv):
    from scl_ray.errors import UserError

    def command(args):
        raise UserError("results: no such experiment")

    monkeypatch.setattr("scl_ray.cli.cmd_report", command)
    assert main(["report", "results"]) == 2
    assert one_line_error(capsys) == "scl-ray: error: results: no such experiment\n"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("scl-ray: error: results: no such experiment\n")
