"""The Ray-backed commands through the real CLI entry point, on the shared local Ray."""

from __future__ import annotations

import numpy as np

from scl_ray.cli import main
from scl_ray.motion.features import joints_to_features
from scl_ray.motion.procedural import generate_motion
from scl_ray.motion.store import MotionSet, read_motion_set, write_motion_set


def test_correct_command_returns_every_motion_with_a_status(ray_local, tmp_path, capsys):
    features = [joints_to_features(generate_motion(family, np.random.default_rng(i)).joints)
                for i, family in enumerate(("walk", "squat", "wave"))]
    features.append(np.full_like(features[0], np.nan))
    count = len(features)
    motions = MotionSet(ids=[f"m{i}" for i in range(count)], captions=[("a caption",)] * count, features=features,
                        source=["synthetic"] * count, generation=[1] * count, status=[""] * count,
                        stats=[{} for _ in range(count)])
    write_motion_set(motions, str(tmp_path / "in.parquet"))
    assert main(["correct", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "out.parquet"),
                 "--set", "correct.sim_hz=100"]) == 0
    corrected = read_motion_set(str(tmp_path / "out.parquet"))
    assert corrected.ids == motions.ids
    assert corrected.status[3] == "nonfinite" and set(corrected.status[:3]) <= {"corrected", "failed"}
    assert "corrected 4 motions" in capsys.readouterr().out


def test_physics_mjcf_command_writes_a_loadable_model(tmp_path):
    import mujoco

    out = tmp_path / "humanoid.xml"
    assert main(["physics", "mjcf", "--out", str(out)]) == 0
    model = mujoco.MjModel.from_xml_path(str(out))
    assert model.njnt > 40 and 50 < sum(model.body_mass) < 90  # free root + hinges; about 70 kg
