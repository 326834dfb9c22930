"""Unit quaternions in float64 numpy, (w, x, y, z) order, the convention of HumanML3D's code.

Every function broadcasts over leading axes, so a (T, 4) rotation can act on (T, 22, 3) vectors
through `q[:, None]`.
"""

from __future__ import annotations

import numpy as np

IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


def qmul(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Hamilton product q * r (apply r first, then q) of (..., 4) quaternions."""
    q = np.asarray(q, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    w1, x1, y1, z1 = np.moveaxis(q, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(r, -1, 0)
    return np.stack(
        (
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ),
        axis=-1,
    )


def qinv(q: np.ndarray) -> np.ndarray:
    """Inverse of (..., 4) unit quaternions (the conjugate)."""
    return np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate (..., 3) vectors v by (..., 4) unit quaternions q (shapes broadcast)."""
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    axis = q[..., 1:]
    uv = np.cross(axis, v)
    uuv = np.cross(axis, uv)
    return v + 2.0 * (q[..., :1] * uv + uuv)


def qbetween(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The shortest-arc unit quaternion (..., 4) turning direction u (..., 3) onto direction v.

    u and v need not be unit length. Opposite directions have no unique shortest arc: the result
    is then NaN, as in HumanML3D's `qbetween`.
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    w = np.sqrt((u * u).sum(-1) * (v * v).sum(-1)) + (u * v).sum(-1)
    q = np.concatenate([w[..., None], np.cross(u, v)], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices of (..., 4) quaternions (normalised on the way)."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q, -1, 0)
    two_s = 2.0 / (q * q).sum(-1)
    matrix = np.stack(
        (
            1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
            two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
            two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
        ),
        axis=-1,
    )
    return matrix.reshape(q.shape[:-1] + (3, 3))
