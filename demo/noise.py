"""Deterministic noise and geometry helpers of the synthetic tissue (:mod:`coframe.demo.tissue`).

Random numbers are hashes of integer coordinates (splitmix64), so any block
of a field is rendered alone and matches its neighbours exactly; smooth noise
is a cubic B-spline over a hashed lattice, evaluated on grids or at points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

_BSPLINE_STD = math.sqrt(151.0 / 315.0 / 3.0)  # std of cubic-B-spline-smoothed U(-1, 1) noise

_M1, _M2, _GOLD = (
    np.uint64(0xBF58476D1CE4E5B9),
    np.uint64(0x94D049BB133111EB),
    np.uint64(0x9E3779B97F4A7C15),
)


def mix(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of 64-bit integers."""
    z = z + _GOLD
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash01(key: int, *ints: np.ndarray | int) -> np.ndarray:
    """Uniform [0, 1) numbers, a deterministic function of ``key`` and integer coordinates."""
    arrays = np.broadcast_arrays(*[np.asarray(i, dtype=np.int64) for i in ints])
    h = np.full(arrays[0].shape, np.uint64(key & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for a in arrays:
            h = mix(h ^ a.astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def noise_key(seed: int, name: str) -> int:
    """A 64-bit key for one random quantity of one tissue."""
    h = np.uint64(seed & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        for ch in name.encode():
            h = mix(h ^ np.uint64(ch))
    return int(h)


def axis_weights(x: np.ndarray, spacing: float) -> tuple[int, np.ndarray]:
    """First lattice node and the (len(x), nodes) cubic B-spline interpolation matrix."""
    t = np.asarray(x, dtype=np.float64) / spacing
    base = np.floor(t).astype(np.int64) - 1
    f, first = t - np.floor(t), int(base.min())
    g = 1.0 - f
    w = np.zeros((t.size, int(base.max()) - first + 4), dtype=np.float32)
    for m, wm in enumerate(
        [g**3 / 6, (3 * f**3 - 6 * f**2 + 4) / 6, (3 * g**3 - 6 * g**2 + 4) / 6, f**3 / 6]
    ):
        w[np.arange(t.size), base - first + m] = wm
    return first, w


def lattice(key: int, first: Sequence[int], counts: Sequence[int]) -> np.ndarray:
    """Lattice values of unit variance after B-spline smoothing, on a block of nodes."""
    idx = [np.arange(f, f + n, dtype=np.int64) for f, n in zip(first, counts, strict=True)]
    u = hash01(key, idx[0][:, None, None], idx[1][None, :, None], idx[2][None, None, :])
    return ((2.0 * u - 1.0) / _BSPLINE_STD).astype(np.float32)


def noise_separable(key: int, axes: Sequence[np.ndarray], spacing: float) -> np.ndarray:
    """Smooth noise on the axis-aligned grid ``axes`` (1-D physical coordinates per axis)."""
    firsts, mats = zip(*(axis_weights(a, spacing) for a in axes), strict=True)
    t = np.tensordot(lattice(key, firsts, [m.shape[1] for m in mats]), mats[2], axes=([2], [1]))
    t = np.tensordot(np.tensordot(t, mats[1], axes=([1], [1])), mats[0], axes=([0], [1]))
    return np.ascontiguousarray(t.transpose(2, 1, 0))


def noise_points(key: int, pts: np.ndarray, spacing: float) -> np.ndarray:
    """Smooth noise at arbitrary points (N, 3): the same field as :func:`noise_separable`."""
    t = pts.T / spacing
    first = np.floor(t.min(axis=1)).astype(np.int64) - 1
    vals = lattice(key, first, np.floor(t.max(axis=1)).astype(np.int64) + 3 - first)
    return ndimage.map_coordinates(
        vals, t - first[:, None], order=3, prefilter=False, mode="nearest"
    )


def coverage(s: np.ndarray, a: float | np.ndarray, b: float | np.ndarray, w: float) -> np.ndarray:
    """Fraction of the window [s - w/2, s + w/2] inside the slab [a, b] (partial volume)."""
    h = 0.5 * w
    return np.clip((np.minimum(s + h, b) - np.maximum(s - h, a)) / w, 0.0, 1.0)


def ellipsoid_sd(u0: np.ndarray, u1: np.ndarray, u2: np.ndarray, a: Sequence) -> np.ndarray:
    """Approximate signed distance to an ellipsoid with semi-axes ``a`` (negative inside)."""
    q0, q1, q2 = u0 / a[0], u1 / a[1], u2 / a[2]
    k0 = np.sqrt(q0 * q0 + q1 * q1 + q2 * q2)
    k1 = np.sqrt((q0 / a[0]) ** 2 + (q1 / a[1]) ** 2 + (q2 / a[2]) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def random_rotations(u: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) from uniform numbers (N, 3) (Shoemake's quaternions)."""
    r1, r2, r3 = np.sqrt(1 - u[:, 0]), np.sqrt(u[:, 0]), 2 * np.pi * u[:, 1:]
    w, x = r1 * np.sin(r3[:, 0]), r1 * np.cos(r3[:, 0])
    y, z = r2 * np.sin(r3[:, 1]), r2 * np.cos(r3[:, 1])
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, -1) for r in rows], axis=1)
