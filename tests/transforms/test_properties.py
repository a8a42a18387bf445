"""Property tests of the transform model (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from coframe.core.errors import DimensionError, NotInvertibleError
from coframe.transforms.affine import Affine, Rotation, Scale, Translation
from coframe.transforms.base import Chain, Transform
from coframe.transforms.field import DisplacementField
from coframe.transforms.tps import ThinPlateSpline

SETTINGS = settings(max_examples=40, deadline=None)

dims = st.sampled_from([2, 3])
unit = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


def point_sets(dim: int, low: float = -100.0, high: float = 100.0) -> st.SearchStrategy:
    """Between 1 and 20 points of dimension ``dim`` inside a box."""
    return arrays(
        np.float64,
        st.tuples(st.integers(1, 20), st.just(dim)),
        elements=st.floats(low, high, allow_nan=False, allow_infinity=False),
    )


@st.composite
def affines(draw: st.DrawFn, dim: int) -> Affine:
    """Well-conditioned affines: I + small perturbation, scaled, plus a translation."""
    perturbation = draw(arrays(np.float64, (dim, dim), elements=st.floats(-0.2, 0.2)))
    scales = draw(arrays(np.float64, (dim,), elements=st.floats(0.5, 2.0)))
    translation = draw(arrays(np.float64, (dim,), elements=st.floats(-50.0, 50.0)))
    return Affine.from_linear(np.diag(scales) @ (np.eye(dim) + perturbation), translation)


@st.composite
def rotations(draw: st.DrawFn, dim: int) -> Rotation:
    """Proper rotations from the QR decomposition of a random matrix."""
    m = draw(arrays(np.float64, (dim, dim), elements=st.floats(-1.0, 1.0)))
    q, r = np.linalg.qr(m + 3.0 * np.eye(dim))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return Rotation(q)


@st.composite
def fields(draw: st.DrawFn, dim: int) -> DisplacementField:
    """Small smooth fields: |u| <= 0.1 spacing, so the map stays invertible."""
    shape = tuple(draw(st.lists(st.integers(3, 6), min_size=dim, max_size=dim)))
    spacing = draw(arrays(np.float64, (dim,), elements=st.floats(5.0, 20.0)))
    origin = draw(arrays(np.float64, (dim,), elements=st.floats(-50.0, 0.0)))
    unit_vectors = draw(arrays(np.float64, (*shape, dim), elements=unit))
    return DisplacementField(0.1 * spacing.min() * unit_vectors, origin, spacing)


@st.composite
def splines(draw: st.DrawFn, dim: int) -> ThinPlateSpline:
    """Thin plate splines through spread landmarks with small displacements."""
    n = draw(st.integers(dim + 2, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Landmarks on a jittered grid-free random set at least 10 units apart.
    src = rng.uniform(-100.0, 100.0, size=(n, dim))
    while np.min(np.linalg.norm(src[:, None] - src[None], axis=-1) + 1e9 * np.eye(n)) < 10.0:
        src = rng.uniform(-100.0, 100.0, size=(n, dim))
    shift = draw(arrays(np.float64, (n, dim), elements=st.floats(-1.0, 1.0)))
    return ThinPlateSpline(src, src + shift)


def linear_transforms(dim: int) -> st.SearchStrategy[Transform]:
    """Any invertible linear transform of dimension ``dim``."""
    return st.one_of(
        affines(dim),
        rotations(dim),
        arrays(np.float64, (dim,), elements=st.floats(-100.0, 100.0)).map(Translation),
        arrays(np.float64, (dim,), elements=st.floats(0.25, 4.0)).map(Scale),
    )


@SETTINGS
@given(data=st.data(), dim=dims)
def test_linear_then_inverse_is_identity(data: st.DataObject, dim: int) -> None:
    t = data.draw(linear_transforms(dim))
    p = data.draw(point_sets(dim))
    assert np.allclose(t.then(t.inverse()).apply(p), p, atol=1e-8)
    assert np.allclose(t.inverse().then(t).apply(p), p, atol=1e-8)
    assert np.allclose(t.as_affine().apply(p), t.apply(p), atol=1e-9)


@SETTINGS
@given(data=st.data(), dim=dims)
def test_field_then_inverse_is_identity(data: st.DataObject, dim: int) -> None:
    f = data.draw(fields(dim))
    p = data.draw(point_sets(dim, -60.0, 120.0))
    inv = f.inverse()
    assert np.allclose(f.then(inv).apply(p), p, atol=inv.tol)
    x, residual = inv.apply_with_residual(p)
    assert residual.shape == (p.shape[0],)
    assert np.all(residual <= inv.tol)
    assert np.allclose(np.linalg.norm(f.apply(x) - p, axis=1), residual, atol=1e-12)


@SETTINGS
@given(data=st.data(), dim=dims)
def test_tps_then_inverse_is_identity(data: st.DataObject, dim: int) -> None:
    tps = data.draw(splines(dim))
    p = data.draw(point_sets(dim))
    inv = tps.inverse()
    assert np.allclose(tps.then(inv).apply(p), p, atol=1e-5)
    assert np.allclose(tps.apply(tps.source_points), tps.target_points, atol=1e-7)


@SETTINGS
@given(data=st.data(), dim=dims)
def test_composition_is_associative_on_points(data: st.DataObject, dim: int) -> None:
    a = data.draw(linear_transforms(dim))
    b = data.draw(st.one_of(fields(dim), linear_transforms(dim)))
    c = data.draw(st.one_of(splines(dim), linear_transforms(dim)))
    p = data.draw(point_sets(dim))
    left = a.then(b).then(c)
    right = a.then(b.then(c))
    expected = c.apply(b.apply(a.apply(p)))
    assert np.allclose(left.apply(p), expected, atol=1e-9)
    assert np.allclose(right.apply(p), expected, atol=1e-9)
    assert isinstance(left, Chain) and len(left.transforms) == 3


@SETTINGS
@given(data=st.data())
def test_section_pose_dimensions(data: st.DataObject) -> None:
    linear = data.draw(arrays(np.float64, (3, 2), elements=st.floats(-2.0, 2.0)))
    translation = data.draw(arrays(np.float64, (3,), elements=st.floats(-100.0, 100.0)))
    pose = Affine.from_linear(linear, translation)
    after = data.draw(linear_transforms(3))
    p = data.draw(point_sets(2))
    assert (pose.input_dim, pose.output_dim) == (2, 3)
    out = pose.then(after).apply(p)
    assert out.shape == (p.shape[0], 3)
    assert np.allclose(out, after.apply(p @ linear.T + translation), atol=1e-8)
    with pytest.raises(NotInvertibleError):
        pose.inverse()
    with pytest.raises(DimensionError):
        after.then(pose)


@SETTINGS
@given(
    u=arrays(np.float64, (3,), elements=unit),
    v=arrays(np.float64, (3,), elements=unit),
    t=arrays(np.float64, (3,), elements=unit),
)
def test_rank_deficient_affine_is_not_invertible(
    u: np.ndarray, v: np.ndarray, t: np.ndarray
) -> None:
    with pytest.raises(NotInvertibleError):
        Affine.from_linear(np.outer(u, v), t).inverse()


@SETTINGS
@given(data=st.data(), dim_a=dims, dim_b=dims)
def test_then_checks_dimensions(data: st.DataObject, dim_a: int, dim_b: int) -> None:
    a = data.draw(linear_transforms(dim_a))
    b = data.draw(linear_transforms(dim_b))
    if dim_a == dim_b:
        assert a.then(b).input_dim == dim_a
    else:
        with pytest.raises(DimensionError):
            a.then(b)


def test_a_section_pose_whose_last_row_looks_homogeneous_stays_2d_to_3d() -> None:
    pose = Affine.from_linear(np.zeros((3, 2)), np.array([0.0, 0.0, 1.0]))
    assert (pose.input_dim, pose.output_dim) == (2, 3)
    assert np.allclose(pose.apply(np.array([[5.0, 7.0]])), [[0.0, 0.0, 1.0]])
