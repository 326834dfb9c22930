"""The numpy-only core loads without torch: a CPU corrector actor imports these and nothing heavier."""

from __future__ import annotations

import subprocess
import sys

# Everything a MuJoCo corrector actor imports, plus the numpy parts of motion, text and diffusion.
NUMPY_MODULES = (
    "scl_ray.motion", "scl_ray.motion.features", "scl_ray.motion.humanml3d", "scl_ray.motion.amass",
    "scl_ray.physics.corrector", "scl_ray.physics.tracker", "scl_ray.physics.metrics",
    "scl_ray.physics.reference", "scl_ray.physics.retarget", "scl_ray.physics.humanoid", "scl_ray.physics.body",
    "scl_ray.physics.controller",
    "scl_ray.text.tokens", "scl_ray.text.encoders", "scl_ray.diffusion.schedule",
)


def test_numpy_modules_do_not_import_torch():
    code = f"import sys; import {', '.join(NUMPY_MODULES)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False", "importing the numpy-only modules loaded torch"
