"""The toy through the generic self-consuming loop reproduces the vectorised toy exactly."""

import numpy as np
import pytest

from scl_ray.config import ToyConfig
from scl_ray.toy.gaussian import run_toy
from scl_ray.toy.loop import run_toy_loop


@pytest.mark.parametrize("corrector", ["histogram", "mixture"])
@pytest.mark.parametrize("accumulate", [True, False])
def test_loop_matches_vectorised_toy(corrector, accumulate):
    config = ToyConfig(generations=40, accumulate=accumulate)
    for gamma in (0.0, 1.0):
        looped = run_toy_loop(gamma, corrector, seed=3, config=config)
        direct = run_toy(gamma, corrector, seed=3, config=config)
        assert len(looped["w2"]) == 41
        np.testing.assert_allclose(looped["w2"], direct["w2"], rtol=1e-7, atol=1e-9)
