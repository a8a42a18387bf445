"""A B-spline's inverse on a grid, interpolated from a lattice where a bound proves it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

import coframe.transforms.bspline_lattice as lattice
from coframe.transforms.bspline import BSpline
from coframe.transforms.bspline_lattice import lattice_axis, lattice_step, solve_inverse_grid
from coframe.transforms.bspline_solve import solve_inverse

TOL = 1e-6


def spline(seed: int, amplitude: float, scale: float = 3.0, rotated: bool = True) -> BSpline:
    """A smooth B-spline (coefficients up to ``amplitude``) on an anisotropic, rotated grid."""
    rng = np.random.default_rng(seed)
    size = (7, 8, 6)
    coefficients = ndimage.gaussian_filter(rng.normal(0, 1, (*size, 3)), (1, 1, 1, 0))
    coefficients *= amplitude / np.abs(coefficients).max()
    direction = Rotation.from_rotvec(rng.normal(0, 0.3, 3)).as_matrix() if rotated else np.eye(3)
    return BSpline(
        np.array([-12.0, -9.0, -15.0]) * scale,
        np.array([9.0, 7.0, 11.0]) * scale,
        direction,
        size,
        coefficients,
    )


def grid_targets(linear, translation, origin, voxel, shape) -> np.ndarray:
    axes = [o + np.arange(n) * v for o, v, n in zip(origin, voxel, shape, strict=True)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return points @ np.asarray(linear).T + translation


def deep_inside(b: BSpline, x: np.ndarray, margin: float) -> np.ndarray:
    index = (x - b.grid_origin) @ (np.linalg.inv(b.grid_direction) / b.grid_spacing[:, None]).T
    size = np.asarray(b.grid_size)
    return np.all((index >= 1 + margin) & (index <= size - 2 - margin), axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_lattice_inverse_is_within_its_bound_and_solves_few_points(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = spline(seed, 0.6)
    rng = np.random.default_rng(seed)
    linear = Rotation.from_rotvec(rng.normal(0, 0.1, 3)).as_matrix() * 1.03
    translation = rng.normal(0, 1.0, 3)
    # the grid straddles the valid region's lower corner (6 voxels out)
    corner = b.grid_origin + b.grid_direction @ b.grid_spacing
    origin, voxel, shape = tuple(corner - 6.0), (1.1, 0.9, 1.0), (40, 44, 46)
    solved = []
    real = lattice.solve_inverse
    monkeypatch.setattr(
        lattice,
        "solve_inverse",
        lambda s, t, st, tol, it: solved.append(len(t)) or real(s, t, st, tol, it),
    )
    max_error = 0.05
    x, residual, k = solve_inverse_grid(
        b, linear, translation, origin, voxel, shape, TOL, 50, max_error
    )
    assert k > 1 and x.shape == (*shape, 3) and residual.shape == shape
    assert sum(solved) < 0.5 * np.prod(shape)  # the lattice did most of the work
    targets = grid_targets(linear, translation, origin, voxel, shape)
    exact, exact_residual = solve_inverse(b, targets, targets, TOL, 50)
    found = x.reshape(-1, 3)
    # where the preimage is unique (well inside the valid region), within the bound
    deep = deep_inside(b, exact, 0.1) & (exact_residual <= TOL)
    assert deep.mean() > 0.2
    error = np.linalg.norm(found - exact, axis=1)[deep]
    assert error.max() <= max_error
    assert error.max() > 1e-9  # interpolated, not solved
    # everywhere: the map takes each solution back to its target within the reported residual
    back = np.linalg.norm(b.apply(found) - targets, axis=1)
    assert np.all(back <= residual.reshape(-1) + 1e-9)


def test_a_strongly_curved_map_is_solved_voxel_by_voxel() -> None:
    b = spline(4, 3.0, scale=1.0)
    shape, origin, voxel = (12, 14, 10), (-4.0, -3.0, -5.0), (1.0, 1.0, 1.0)
    assert lattice_step(1e3, np.ones(3), 1e-3) == 1
    x, residual, k = solve_inverse_grid(
        b, np.eye(3), np.zeros(3), origin, voxel, shape, TOL, 50, 1e-9
    )
    targets = grid_targets(np.eye(3), np.zeros(3), origin, voxel, shape)
    exact, exact_residual = solve_inverse(b, targets, targets, TOL, 50)
    assert k == 1
    np.testing.assert_array_equal(x.reshape(-1, 3), exact)
    np.testing.assert_array_equal(residual.reshape(-1), exact_residual)


@pytest.mark.parametrize("shape", [(1, 30, 33), (25, 1, 1), (9, 17, 1)])
def test_thin_grids_and_the_last_lattice_line(shape: tuple[int, ...]) -> None:
    for n in shape:
        axis = lattice_axis(n, 4)
        assert axis[0] == 0 and axis[-1] == n - 1 and np.all(np.diff(axis) <= 4)
    b = spline(5, 0.4, rotated=False)
    origin, voxel = (2.0, 3.0, 4.0), (1.0, 1.0, 1.0)
    x, residual, _ = solve_inverse_grid(
        b, np.eye(3), np.zeros(3), origin, voxel, shape, TOL, 50, 0.05
    )
    targets = grid_targets(np.eye(3), np.zeros(3), origin, voxel, shape)
    exact, _ = solve_inverse(b, targets, targets, TOL, 50)
    assert np.all(np.isfinite(residual))
    assert np.abs(x.reshape(-1, 3) - exact).max() <= 0.05
