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

    u and v need not be unit length. Exactly opposite directions have no unique shortest arc
    (HumanML3D's `qbetween` returns NaN there, e.g. for a body whose frame 0 faces exactly -z): we
    return the half turn about the axis closest to +y that is perpendicular to u, which is the yaw
    half turn for horizontal directions. Every other input gives upstream's result.
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    w = np.sqrt((u * u).sum(-1) * (v * v).sum(-1)) + (u * v).sum(-1)
    q = np.concatenate([w[..., None], np.cross(u, v)], axis=-1)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    opposite = norm[..., 0] <= 1e-12 * np.maximum((u * u).sum(-1), 1e-300)
    if np.any(opposite):
        q = np.array(q, copy=True)
        q[opposite] = _half_turn_perpendicular(np.broadcast_to(u, q.shape[:-1] + (3,))[opposite])
        norm = np.linalg.norm(q, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return q / norm


def _half_turn_perpendicular(u: np.ndarray) -> np.ndarray:
    """(N, 4) half-turn quaternions about an axis perpendicular to each u (N, 3), nearest to +y."""
    unit = u / np.linalg.norm(u, axis=-1, keepdims=True)
    axis = np.array([0.0, 1.0, 0.0]) - unit[:, 1:2] * unit
    fallback = np.linalg.norm(axis, axis=-1) < 1e-6
    axis[fallback] = np.cross(unit[fallback], [1.0, 0.0, 0.0])
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return np.concatenate([np.zeros((len(u), 1)), axis], axis=-1)


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
