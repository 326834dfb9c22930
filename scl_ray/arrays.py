"""The one check of a numeric array handed to a metric: its shape, its length and that it is finite."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def finite_array(values, name: str, expected: str, shape_ok: Callable[[tuple], bool], min_rows: int = 1,
                 rows: str = "rows") -> np.ndarray:
    """values as a float64 array, or a ValueError naming `name` and what is wrong: a shape that fails
    `shape_ok` (`expected` says what it should be), fewer than `min_rows` along the first axis (counted
    in `rows`), or any NaN or inf."""
    array = np.asarray(values, dtype=np.float64)
    if not shape_ok(array.shape):
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    if array.shape[0] < min_rows:
        raise ValueError(f"{name} has {array.shape[0]} {rows}; at least {min_rows} are needed")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(array)).sum())} non-finite values (NaN or inf)")
    return array
