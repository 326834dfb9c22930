"""How well the humanoid takes a motion's poses, by the skeleton it is built on: retargeting followed by
forward kinematics, no simulation, mean per-joint error (mm) against the motion.

Skeletons compared, each with the ankle height inferred from the motion:
  adult        HumanML3D's bone lengths on the textbook rest directions (the humanoid before stop 12)
  first_frame  measured on the motion's first frame (`Skeleton.from_motion(joints[:1])`)
  per_motion   measured robustly over the whole motion (`Humanoid.for_motion`, the corrector's choice)
Motions: the real HumanML3D files of tests/physics/data (see its README), every procedural family
transplanted onto a real motion's rigid shapes (HumanML3D-shaped, `tests/physics/clips.py`), and
every procedural family as generated.

Prints one JSON object (and saves it to benchmarks/results/retarget_geometry.json): per group of
motions and per skeleton the smallest, mean and largest of the motions' mean errors.

Usage: python benchmarks/retarget_geometry.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from procedural_speed import cpu_model, save_and_print  # noqa: E402
from scl_ray.motion.procedural.families import FAMILIES  # noqa: E402
from scl_ray.motion.skeleton import Skeleton  # noqa: E402
from scl_ray.physics.body import infer_ankle_height  # noqa: E402
from scl_ray.physics.humanoid import Humanoid, HumanoidSettings  # noqa: E402
from scl_ray.physics.retarget import joints_to_qpos, qpos_to_joints  # noqa: E402
from tests.physics.clips import humanml3d_shaped, procedural, real_motions  # noqa: E402

RESULT = Path(__file__).parent / "results" / "retarget_geometry.json"


def round_trip_mm(humanoid: Humanoid, joints: np.ndarray) -> float:
    return float(np.linalg.norm(qpos_to_joints(humanoid, joints_to_qpos(humanoid, joints)) - joints, axis=-1).mean() * 1000)


def errors(joints: np.ndarray) -> dict[str, float]:
    settings = HumanoidSettings(ankle_height=infer_ankle_height(joints))
    return {"adult": round_trip_mm(Humanoid.build(Skeleton.adult(), settings=settings), joints),
            "first_frame": round_trip_mm(Humanoid.build(Skeleton.from_motion(joints[:1]), settings=settings), joints),
            "per_motion": round_trip_mm(Humanoid.for_motion(joints), joints)}


def main() -> None:
    real = real_motions()
    keys = sorted(real)
    groups = {
        "real": list(real.values()),
        "humanml3d_shaped": [humanml3d_shaped(procedural(family), real[keys[i % len(keys)]])
                             for i, family in enumerate(FAMILIES)],
        "procedural": [procedural(family) for family in FAMILIES],
    }
    result = {}
    for group, motions in groups.items():
        rows = [errors(joints) for joints in motions]
        result[group] = {"motions": len(rows), **{
            skeleton: {"min": min(r[skeleton] for r in rows), "mean": float(np.mean([r[skeleton] for r in rows])),
                       "max": max(r[skeleton] for r in rows)} for skeleton in rows[0]}}
    result["machine"] = cpu_model()
    save_and_print(result, RESULT)


if __name__ == "__main__":
    main()
