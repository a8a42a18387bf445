"""Landmark pairs and the transforms they define: thin-plate splines and least-squares fits."""

from __future__ import annotations

import numpy as np
import pytest

from coframe.core.errors import DimensionError, TransformError
from coframe.transforms.affine import Affine, Rotation
from coframe.transforms.point_pairs import (
    Landmarks,
    fit_linear,
    landmarks_from_pairs,
    landmarks_transform,
)


def _rotation_3d(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _random_landmarks(dim: int, n: int = 12, seed: int = 0) -> Landmarks:
    rng = np.random.default_rng(seed)
    fixed = rng.uniform(0, 1000, (n, dim))
    moving = fixed + rng.normal(0, 20, (n, dim))
    return landmarks_from_pairs(fixed, moving)


def test_landmarks_validation() -> None:
    with pytest.raises(DimensionError, match="must both be"):
        Landmarks(np.zeros((3, 3)), np.zeros((2, 3)))
    with pytest.raises(DimensionError, match="2D or 3D"):
        Landmarks(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(DimensionError, match="names"):
        Landmarks(np.zeros((3, 2)), np.zeros((3, 2)), ("a",))
    lm = Landmarks(np.zeros((2, 2)), np.ones((2, 2)))
    assert lm.names == ("Pt-0", "Pt-1") and lm.active.all()
    with pytest.raises(ValueError, match="read-only"):
        lm.moving[0, 0] = 1.0


def test_tps_maps_fixed_to_moving() -> None:
    lm = _random_landmarks(3, n=10)
    t = landmarks_transform(lm, "tps")
    np.testing.assert_allclose(t.apply(lm.fixed), lm.moving, atol=1e-6)


def test_inactive_pairs_are_ignored() -> None:
    lm = _random_landmarks(2, n=8)
    moving = lm.moving.copy()
    moving[0] += 1e6  # an outlier, switched off
    active = np.ones(8, dtype=bool)
    active[0] = False
    lm2 = Landmarks(moving, lm.fixed, lm.names, active)
    t = landmarks_transform(lm2, "translation")
    expected = (lm.moving[1:] - lm.fixed[1:]).mean(axis=0)
    np.testing.assert_allclose(t.apply(np.zeros(2)), expected, atol=1e-9)


def test_linear_fits_recover_known_transforms() -> None:
    rng = np.random.default_rng(3)
    fixed = rng.uniform(-500, 500, (15, 3))
    truth = {
        "rigid": Affine.from_linear(_rotation_3d(0.3), [10.0, -5.0, 2.0]),
        "similarity": Affine.from_linear(1.7 * _rotation_3d(-0.6), [1.0, 2.0, 3.0]),
        "affine": Affine.from_linear(
            [[1.1, 0.2, 0.0], [0.0, 0.9, 0.1], [0.05, 0.0, 1.3]], [4.0, 5.0, 6.0]
        ),
    }
    for kind, t in truth.items():
        lm = landmarks_from_pairs(fixed, t.apply(fixed))
        fitted = landmarks_transform(lm, kind)
        probe = rng.uniform(-500, 500, (20, 3))
        np.testing.assert_allclose(fitted.apply(probe), t.apply(probe), rtol=1e-9, atol=1e-7)


def test_rigid_fit_is_proper_rotation_with_noise() -> None:
    rng = np.random.default_rng(5)
    fixed = rng.uniform(-100, 100, (30, 2))
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moving = fixed @ rot.T + [3.0, -7.0] + rng.normal(0, 0.01, fixed.shape)
    fitted = fit_linear(fixed, moving, "rigid")
    Rotation(fitted.linear)  # orthonormal, det +1
    np.testing.assert_allclose(fitted.linear, rot, atol=1e-3)


def test_fit_errors() -> None:
    with pytest.raises(TransformError, match="unknown landmark transform kind"):
        landmarks_transform(_random_landmarks(2), "spline")
    line = np.column_stack([np.arange(5.0), 2 * np.arange(5.0), np.zeros(5)])
    with pytest.raises(TransformError, match="affine fit is undetermined"):
        fit_linear(line, line + 1, "affine")
    with pytest.raises(TransformError, match="collinear"):
        fit_linear(line, line + 1, "rigid")
    with pytest.raises(TransformError, match="at least 4"):
        fit_linear(np.zeros((2, 3)), np.zeros((2, 3)), "affine")
    moving = np.array([[0.0, 0.0], [1.0, 1.0], [np.inf, np.inf]])
    lm = Landmarks(moving, np.zeros((3, 2)) + [[0, 0], [1, 0], [0, 1]])
    with pytest.raises(TransformError, match="'Pt-2' has no finite position"):
        landmarks_transform(lm, "affine")
