"""The compiled inverse of a B-spline map against numpy's Newton solver and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from coframe.transforms.base import newton_solve
from coframe.transforms.bspline import BSpline
from coframe.transforms.bspline_solve import _evaluate, _evaluate3, curvature_bound, solve_inverse


def spline(d: int, seed: int, amplitude: float = 0.6, rotated: bool = True) -> BSpline:
    """A smooth, invertible B-spline on an anisotropic control grid, rotated in 3D."""
    rng = np.random.default_rng(seed)
    size = (7, 8, 6)[:d]
    direction = np.eye(d)
    if rotated and d == 3:
        direction = Rotation.from_rotvec(rng.normal(0, 0.3, 3)).as_matrix()
    return BSpline(
        np.array([-12.0, -9.0, -15.0][:d]),
        np.array([9.0, 7.0, 11.0][:d]),
        direction,
        size,
        rng.normal(0.0, amplitude, (*size, d)),
    )


def scratch(b: BSpline) -> tuple:
    d = b.input_dim
    size = np.asarray(b.grid_size, dtype=np.int64)
    strides = np.array([int(np.prod(size[a + 1 :])) for a in range(d)], dtype=np.int64)
    to_index = np.linalg.inv(b.grid_direction) / b.grid_spacing[:, None]
    coefficients = np.ascontiguousarray(b.coefficients.reshape(-1, d))
    return b.grid_origin.copy(), to_index, size, strides, coefficients


def evaluate(b: BSpline, x: np.ndarray, generic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The compiled map and Jacobian at one point."""
    d = b.input_dim
    value, jac = np.empty(d), np.empty((d, d))
    w, dw, first = np.empty((d, 4)), np.empty((d, 4)), np.empty((d, 4), dtype=np.int64)
    fn = _evaluate if generic or d != 3 else _evaluate3
    fn(np.asarray(x, dtype=np.float64), *scratch(b), value, jac, w, dw, first)
    return value, jac


def inside_points(b: BSpline, n: int, seed: int) -> np.ndarray:
    """Points whose continuous index lies well inside the valid region."""
    rng = np.random.default_rng(seed)
    size = np.asarray(b.grid_size, dtype=np.float64)
    index = rng.uniform(1.2, size - 2.2, (n, b.input_dim))
    return b.grid_origin + (index * b.grid_spacing) @ b.grid_direction.T


@pytest.mark.parametrize(("d", "generic"), [(3, False), (3, True), (2, True)])
def test_map_and_jacobian_equal_numpy_and_finite_differences(d: int, generic: bool) -> None:
    b = spline(d, seed=d)
    h = 1e-5
    for x in inside_points(b, 20, seed=1):
        value, jac = evaluate(b, x, generic)
        assert np.allclose(value, b.apply(x), rtol=0, atol=1e-12)
        numeric = np.stack(
            [(b.apply(x + h * e) - b.apply(x - h * e)) / (2 * h) for e in np.eye(d)], axis=1
        )
        assert np.allclose(jac, numeric, rtol=0, atol=1e-7)


@pytest.mark.parametrize("d", [2, 3])
def test_the_curvature_bound_holds(d: int) -> None:
    """Taylor's remainder after the exact Jacobian stays within ``K |h|^2``, not far below it."""
    b = spline(d, seed=10 + d, amplitude=1.5)
    origin, to_index, *_ = scratch(b)
    k = curvature_bound(b, to_index)
    rng = np.random.default_rng(3)
    worst = 0.0
    for x in inside_points(b, 200, seed=4):
        value, jac = evaluate(b, x)
        step = rng.normal(size=d)
        step *= rng.uniform(0.01, 2.0) / np.linalg.norm(step)
        index = b.continuous_index((x + step)[None])[0]
        if np.any(index < 1) or np.any(index > np.asarray(b.grid_size) - 2):
            continue
        remainder = np.linalg.norm(b.apply(x + step) - value - jac @ step)
        ratio = remainder / (k * step @ step)
        assert ratio <= 1.0
        worst = max(worst, ratio)
    assert worst > 1e-3  # a bound, but not a vacuous one


@pytest.mark.parametrize("d", [2, 3])
def test_solutions_equal_numpys_newton(d: int) -> None:
    b = spline(d, seed=20 + d)
    rng = np.random.default_rng(7)
    inside = inside_points(b, 3000, seed=8)
    outside = b.grid_origin + rng.uniform(-80, -30, (300, d))  # beyond the control grid
    targets = b.apply(np.concatenate([inside, outside]))
    tol = 1e-3 * float(b.grid_spacing.min())
    expected, expected_residual = newton_solve(b._apply, targets, targets.copy(), tol, 50)
    solved, residual = solve_inverse(b, targets, targets.copy(), tol, 50)
    both = (expected_residual <= tol) & (residual <= tol)
    assert both.mean() > 0.98
    assert np.abs(solved - expected)[both].max() < 0.05 * tol
    # the residual reported is the true one, or a bound above it
    true = np.linalg.norm(b.apply(solved) - targets, axis=1)
    assert np.all(true <= residual + 1e-12)
    assert np.allclose(solved[3000:], targets[3000:])  # outside, the map is the identity
    assert np.all(residual[3000:] == 0)


def test_a_point_does_not_depend_on_the_point_before_it() -> None:
    """A start from the last point's solution is only a start: any order, the same answer."""
    b = spline(3, seed=31)
    # a scanned lattice of points, kept inside the valid region of the rotated control grid
    axis = np.linspace(-2.0, 40.0, 24)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    index = b.continuous_index(grid)
    grid = grid[np.all((index > 1.3) & (index < np.asarray(b.grid_size) - 2.3), axis=1)]
    assert len(grid) > 1000
    targets = b.apply(grid)
    tol = 1e-3 * float(b.grid_spacing.min())
    in_order, residual = solve_inverse(b, targets, targets.copy(), tol, 50)
    shuffle = np.random.default_rng(0).permutation(len(targets))
    shuffled, shuffled_residual = solve_inverse(
        b, targets[shuffle], targets[shuffle].copy(), tol, 50
    )
    assert np.all(residual <= tol) and np.all(shuffled_residual <= tol)
    assert np.abs(in_order[shuffle] - shuffled).max() < 0.05 * tol
    assert np.abs(in_order - grid).max() < 0.05 * tol


def test_numerical_inverse_of_a_bspline_uses_the_compiled_solver() -> None:
    b = spline(3, seed=41)
    inverse = b.inverse()
    points = inside_points(b, 500, seed=5)
    back, residual = inverse.apply_with_residual(b.apply(points))
    assert np.all(residual <= inverse.tol)
    assert np.abs(back - points).max() < inverse.tol
