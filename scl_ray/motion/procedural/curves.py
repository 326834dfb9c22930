"""Smooth one-dimensional building blocks of procedural motions.

Times are seconds, every function is vectorised over a time array and returns float64. Eases and
keyframes use the minimum-jerk polynomial, so a channel built from them starts and stops with zero
velocity and acceleration: segments join without snaps.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from scl_ray.motion.constants import FPS

GRAVITY = 9.81  # m/s^2


def frame_times(frames: int) -> np.ndarray:
    """(frames,) seconds of each frame at 20 fps."""
    return np.arange(frames, dtype=np.float64) / FPS


def ease(u: np.ndarray) -> np.ndarray:
    """Minimum-jerk step from 0 (u <= 0) to 1 (u >= 1); zero velocity and acceleration at both ends."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


def bump(u: np.ndarray) -> np.ndarray:
    """0 outside (0, 1), 1 at u = 0.5, zero slope at both ends: 16 u^2 (1 - u)^2."""
    u = np.clip(u, 0.0, 1.0)
    return 16.0 * u * u * (1.0 - u) * (1.0 - u)


def softplus(x: np.ndarray, sharpness: float) -> np.ndarray:
    """A smooth max(x, 0) that is never below it; `sharpness` is the width of the bend (same unit as x)."""
    return sharpness * np.logaddexp(0.0, np.asarray(x, dtype=np.float64) / sharpness)


def plateau(t: np.ndarray, start: float, stop: float, rise: float) -> np.ndarray:
    """0 before `start`, eases up to 1 over `rise` seconds, holds, eases back to 0 by `stop`."""
    return ease((t - start) / rise) * ease((stop - t) / rise)


def plateau_integral(t: np.ndarray, start: float, stop: float, rise: float) -> np.ndarray:
    """Integral of `plateau` from -inf to t (seconds); needs stop - start >= 2 * rise."""

    def ramp_area(u: np.ndarray) -> np.ndarray:  # integral of ease from 0 to u, in seconds
        u = np.clip(u, 0.0, 1.0)
        return rise * u ** 4 * (2.5 + u * (-3.0 + u))

    middle = np.clip(t, start + rise, stop - rise) - (start + rise)
    return ramp_area((t - start) / rise) + middle + 0.5 * rise - ramp_area((stop - t) / rise)


def keyframes(t: np.ndarray, times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Minimum-jerk interpolation through keyframes, holding the end values outside them.

    times: (K,) increasing seconds; values: (K, ...). Returns (len(t), ...).
    Every key is passed with zero velocity, so a channel moves from pose to pose.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if times.ndim != 1 or len(times) < 2 or np.any(np.diff(times) <= 0):
        raise ValueError(f"keyframe times must be 2 or more increasing seconds, got {times}")
    index = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    weight = ease((t - times[index]) / (times[index + 1] - times[index]))
    weight = weight.reshape(weight.shape + (1,) * (values.ndim - 1))
    return values[index] + (values[index + 1] - values[index]) * weight


def hermite(t: np.ndarray, t0: float, t1: float, p0: float, v0: float, p1: float, v1: float) -> np.ndarray:
    """Cubic through (t0, p0) with slope v0 and (t1, p1) with slope v1; t clipped to [t0, t1]."""
    span = t1 - t0
    u = np.clip((t - t0) / span, 0.0, 1.0)
    u2, u3 = u * u, u * u * u
    return ((2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * span * v0
            + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * span * v1)


def ballistic(t: np.ndarray, t0: float, p0: float, v0: float) -> np.ndarray:
    """Height (m) of a free flight launched at t0 from p0 with vertical speed v0 under gravity."""
    tau = t - t0
    return p0 + v0 * tau - 0.5 * GRAVITY * tau * tau


def smooth_cover(deficit: np.ndarray, radius: int) -> np.ndarray:
    """A smooth curve never below `deficit` (T,), equal to 0 wherever deficit is 0 nearby.

    A running maximum over 4 * radius + 1 frames, then two running means over 2 * radius + 1
    frames: each mean only averages values that already dominate every frame they can reach.
    """
    peak = maximum_filter1d(np.maximum(deficit, 0.0), 4 * radius + 1, mode="nearest")
    once = uniform_filter1d(peak, 2 * radius + 1, mode="nearest")
    return uniform_filter1d(once, 2 * radius + 1, mode="nearest")
