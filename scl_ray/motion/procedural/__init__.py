"""The embedded default dataset: procedural, captioned, physically consistent human motions.

Fifteen families (walk, run, walk backward, side-step, turn, jumps, squat, wave, kick, punch, sit
down, march, high knees, crouch-walk) with sampled parameters (speed, path curvature, side, size,
repetitions) that the captions name, and two-segment combinations of them ("walks forward slowly,
then turns around to the left"). Motions are built on `Skeleton.adult()` by forward kinematics, so
bone lengths are exact; legs are placed by analytic IK on planned footholds, so planted feet do
not slide and stay on the floor (y = 0); jump flights are parabolas under g = 9.81 m/s^2.
Everything is deterministic from the seed.

    body.py      control channels (`Track`) -> joints: two-bone IK, aim rotations, FK
    curves.py    eases, keyframes, Hermite and ballistic arcs
    gait.py      footstep planning and locomotion
    jumps.py     two-footed jumps
    actions.py   squat, sit down, wave, punch, kick
    families.py  parameters and builders per family
    captions.py  phrasings per family
    dataset.py   ProceduralMotion, generation, the HumanML3D-layout writer
"""

from scl_ray.motion.procedural.dataset import (
    ProceduralMotion, generate_motion, generate_motions, split_ids, write_procedural_dataset,
)
from scl_ray.motion.procedural.families import FAMILIES

__all__ = ["FAMILIES", "ProceduralMotion", "generate_motion", "generate_motions", "split_ids",
           "write_procedural_dataset"]
