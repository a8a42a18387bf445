"""Unit tests of the nonlinear transforms: displacement fields, B-splines, thin plate splines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from coframe.core.errors import DimensionError, NotInvertibleError, TransformError
from coframe.transforms.affine import Affine, Translation
from coframe.transforms.base import NumericalInverse
from coframe.transforms.bspline import BSpline, cubic_bspline
from coframe.transforms.field import DisplacementField, InverseDisplacementField, sample_to_field
from coframe.transforms.sitk_bridge import to_sitk
from coframe.transforms.tps import ThinPlateSpline


def smooth_field(shape: tuple[int, ...], spacing: float, amplitude: float) -> np.ndarray:
    """A smooth (z, y, x)-vector field on a grid, sine waves along each axis."""
    grids = np.meshgrid(*[np.arange(n) * spacing for n in shape], indexing="ij")
    extent = [max(n - 1, 1) * spacing for n in shape]
    comps = [
        amplitude * np.sin(2 * np.pi * grids[(k + 1) % len(shape)] / extent[(k + 1) % len(shape)])
        for k in range(len(shape))
    ]
    return np.stack(comps, axis=-1)


def test_field_interpolates_linearly_and_clamps_outside() -> None:
    vectors = np.zeros((2, 3, 4, 3))
    vectors[1, :, :, 0] = 10.0  # z displacement grows linearly along z
    vectors[:, :, 3, 2] = 4.0  # x displacement on the last x node
    f = DisplacementField(vectors, origin=[100.0, 0.0, 0.0], spacing=[50.0, 10.0, 10.0])
    assert f.input_dim == f.output_dim == 3
    assert f.grid_shape == (2, 3, 4)
    assert np.allclose(f.apply([125.0, 5.0, 5.0]), [130.0, 5.0, 5.0])
    assert np.allclose(f.displacement([100.0, 0.0, 25.0]), [0.0, 0.0, 2.0])
    # Outside the grid: the nearest edge node's vector.
    assert np.allclose(f.displacement([1000.0, -50.0, 500.0]), [10.0, 0.0, 4.0])
    assert np.allclose(f.displacement([-1000.0, 0.0, -5.0]), [0.0, 0.0, 0.0])


def test_field_axis_order_is_numpy() -> None:
    # A field that is non-zero only at y index 2 must move points with y = 2 * spacing.
    vectors = np.zeros((3, 4, 5, 3))
    vectors[:, 2, :, :] = [1.0, 2.0, 3.0]
    f = DisplacementField(vectors, origin=[0.0, 0.0, 0.0], spacing=[1.0, 2.0, 3.0])
    assert np.allclose(f.displacement([1.0, 4.0, 6.0]), [1.0, 2.0, 3.0])
    assert np.allclose(f.displacement([1.0, 3.0, 6.0]), [0.5, 1.0, 1.5])


def test_field_validation() -> None:
    with pytest.raises(DimensionError, match="vector axis last"):
        DisplacementField(np.zeros((3, 4, 5, 2)), [0, 0, 0], [1, 1, 1])
    with pytest.raises(DimensionError, match="3 values"):
        DisplacementField(np.zeros((3, 4, 5, 3)), [0, 0], [1, 1, 1])
    with pytest.raises(TransformError, match="positive"):
        DisplacementField(np.zeros((3, 4, 5, 3)), [0, 0, 0], [1, 0, 1])


def test_field_is_a_read_only_copy() -> None:
    vectors = np.zeros((2, 2, 2, 3), dtype=np.float32)
    f = DisplacementField(vectors, [0, 0, 0], [1, 1, 1])
    vectors[...] = 5.0
    assert np.all(f.vectors == 0.0)
    assert not f.vectors.flags.writeable
    assert f.vectors.dtype == np.float32


def test_field_with_nan_points_returns_nan_rows() -> None:
    f = DisplacementField(np.ones((2, 2, 2)), [0, 0], [1, 1])
    out = f.apply([[0.5, 0.5], [np.nan, 0.0]])
    assert np.allclose(out[0], [1.5, 1.5])
    assert np.all(np.isnan(out[1]))


class CountingArray:
    """A lazy array wrapper that records the boxes read from it."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.boxes: list[tuple[slice, ...]] = []

    def __getitem__(self, box: tuple[slice, ...]) -> np.ndarray:
        self.boxes.append(box)
        return self.data[box]


def test_lazy_field_reads_only_the_covering_block() -> None:
    data = smooth_field((20, 30, 40), 1.0, 0.5)
    lazy = CountingArray(data)
    f_lazy = DisplacementField(lazy, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    f_eager = DisplacementField(data, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    p = np.array([[2.2, 3.5, 4.1], [3.9, 5.0, 6.7]])
    assert np.allclose(f_lazy.apply(p), f_eager.apply(p))
    (box,) = lazy.boxes
    assert box[:3] == (slice(2, 5), slice(3, 7), slice(4, 8))


def test_zarr_backed_field() -> None:
    data = smooth_field((6, 7, 8), 2.0, 0.4)
    arr = zarr.create_array(store={}, shape=data.shape, chunks=(3, 3, 3, 3), dtype="f8")
    arr[...] = data
    f = DisplacementField(arr, [1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert f.vectors is arr
    p = np.random.default_rng(0).uniform(0, 14, size=(50, 3))
    expected = DisplacementField(data, [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]).apply(p)
    assert np.allclose(f.apply(p), expected)


def test_field_inverse_reports_residual() -> None:
    f = DisplacementField(smooth_field((8, 9, 10), 10.0, 3.0), [0, 0, 0], [10, 10, 10])
    inv = f.inverse()
    assert isinstance(inv, InverseDisplacementField)
    assert inv.tol == pytest.approx(0.01)
    assert inv.inverse() is f
    q = np.random.default_rng(1).uniform(0, 90, size=(200, 3))
    x, residual = inv.apply_with_residual(q)
    assert residual.shape == (200,)
    assert residual.max() <= inv.tol
    assert np.allclose(f.apply(x), q, atol=inv.tol)
    one, one_residual = inv.apply_with_residual(q[0])
    assert one.shape == (3,) and float(one_residual) <= inv.tol


def test_field_inverse_raises_when_it_cannot_converge() -> None:
    # A strongly folding 1D field, given a single iteration: x + u(x) = 4 is not reached from
    # the nearest node's image (5, at x = 5), whose Newton step overshoots into the fold.
    vectors = np.array([[0.0], [100.0], [-100.0], [100.0], [-100.0], [0.0]])
    f = DisplacementField(vectors, [0.0], [1.0])
    _, residual = InverseDisplacementField(f, tol=1e-6, max_iter=50).apply_with_residual([4.0])
    assert residual <= 1e-6
    inv = InverseDisplacementField(f, tol=1e-6, max_iter=1)
    _, residual = inv.apply_with_residual(np.array([[4.0], [50.0]]))
    assert residual[0] > 1e-6
    assert residual[1] == 0.0
    with pytest.raises(TransformError, match=r"did not converge at point \[4.0\].*larger tol"):
        inv.apply([[4.0], [50.0]])


def test_field_inverse_far_from_identity_starts_from_the_nearest_node() -> None:
    # x -> 1000 x on [0, 2] (an NGFF coordinates field from indices to nanometres): the
    # fixed-point iteration diverges there; Newton steps from the nearest node's image solve it
    f = DisplacementField((999.0 * np.arange(3.0))[:, None], [0.0], [1.0])
    x, residual = InverseDisplacementField(f, tol=1e-6).apply_with_residual([[1500.0], [250.0]])
    np.testing.assert_allclose(x, [[1.5], [0.25]])
    assert residual.max() <= 1e-6


def test_sample_to_field_reproduces_nodes() -> None:
    a = Affine.from_linear([[1.01, 0.0, 0.0], [0.0, 0.99, 0.02], [0.0, 0.0, 1.0]], [1.0, -2.0, 3.0])
    f = sample_to_field(a, origin=[0.0, 10.0, 20.0], spacing=[5.0, 4.0, 3.0], shape=(4, 5, 6))
    assert f.grid_shape == (4, 5, 6)
    p = np.random.default_rng(2).uniform([0, 10, 20], [15, 26, 35], size=(100, 3))
    # Affine maps are reproduced exactly by linear interpolation.
    assert np.allclose(f.apply(p), a.apply(p))
    with pytest.raises(DimensionError, match="must agree"):
        sample_to_field(Affine(np.ones((3, 3))), [0, 0, 0], [1, 1, 1], (2, 2, 2))


def test_field_unit_scale() -> None:
    f = DisplacementField(smooth_field((4, 5, 6), 2.0, 0.3), [1, 2, 3], [2, 2, 2])
    g = f.with_unit_scale(1000.0)
    p = np.random.default_rng(3).uniform(0, 10, size=(20, 3))
    assert np.allclose(g.apply(p * 1000.0), f.apply(p) * 1000.0)


def test_cubic_bspline_kernel_partition_of_unity() -> None:
    t = np.linspace(0.0, 1.0, 11)
    total = sum(cubic_bspline(t - k) for k in range(-2, 3))
    assert np.allclose(total, 1.0)
    assert cubic_bspline(np.array([0.0]))[0] == pytest.approx(2.0 / 3.0)


def make_bspline(rng: np.random.Generator, amplitude: float = 0.5) -> BSpline:
    size = (6, 7, 8)
    return BSpline(
        grid_origin=[-10.0, -20.0, -5.0],
        grid_spacing=[10.0, 8.0, 6.0],
        grid_direction=np.eye(3),
        grid_size=size,
        coefficients=rng.normal(scale=amplitude, size=(*size, 3)),
    )


def test_bspline_constant_coefficients_translate_inside_valid_region() -> None:
    size = (5, 5, 5)
    b = BSpline([0, 0, 0], [1, 1, 1], np.eye(3), size, np.broadcast_to([1.0, 2.0, 3.0], (*size, 3)))
    assert np.allclose(b.apply([2.0, 2.5, 1.5]), [3.0, 4.5, 4.5])
    # Outside the valid region (continuous index < 1) the point does not move.
    assert np.allclose(b.apply([0.5, 2.0, 2.0]), [0.5, 2.0, 2.0])


def test_bspline_validation() -> None:
    with pytest.raises(DimensionError, match="do not match grid_size"):
        BSpline([0, 0, 0], [1, 1, 1], np.eye(3), (5, 5, 5), np.zeros((5, 5, 4, 3)))
    with pytest.raises(TransformError, match="too small"):
        BSpline([0, 0, 0], [1, 1, 1], np.eye(3), (3, 5, 5), np.zeros((3, 5, 5, 3)))
    with pytest.raises(TransformError, match="positive"):
        BSpline([0, 0, 0], [1, -1, 1], np.eye(3), (5, 5, 5), np.zeros((5, 5, 5, 3)))


def test_bspline_inverse_round_trip() -> None:
    b = make_bspline(np.random.default_rng(4))
    inv = b.inverse()
    assert isinstance(inv, NumericalInverse)
    # Well inside the valid region (continuous index in [1, size - 2]).
    p = np.random.default_rng(5).uniform([3, -9, 4], [27, 17, 28], size=(100, 3))
    assert np.allclose(inv.apply(b.apply(p)), p, atol=inv.tol)
    assert inv.inverse() is b


def test_bspline_unit_scale() -> None:
    b = make_bspline(np.random.default_rng(6))
    p = np.random.default_rng(7).uniform([2, -10, 2], [35, 20, 25], size=(30, 3))
    assert np.allclose(b.with_unit_scale(1e3).apply(p * 1e3), b.apply(p) * 1e3)


@pytest.mark.parametrize("seed", range(4))
def test_bspline_on_a_tensor_grid_equals_pointwise(seed: int) -> None:
    """Separable evaluation = displacement() at every grid point, in and out of the valid region."""
    rng = np.random.default_rng(seed)
    dim = 2 + seed % 2
    size = tuple(int(n) for n in rng.integers(4, 9, dim))
    flip = np.diag(rng.choice([-1.0, 1.0], dim))  # axis-aligned, possibly mirrored
    b = BSpline(
        rng.uniform(-20, 20, dim),
        rng.uniform(3, 9, dim),
        flip,
        size,
        rng.normal(scale=2.0, size=(*size, dim)),
    )
    ends = [b.grid_origin + np.diag(flip) * b.grid_spacing * k for k in (0, np.array(size) - 1)]
    lo, hi = np.minimum(*ends) - 10.0, np.maximum(*ends) + 10.0  # the grid and beyond it
    axes = [np.sort(rng.uniform(lo[a], hi[a], int(rng.integers(2, 30)))) for a in range(dim)]
    grid = b.displacement_on_grid(axes)
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    expected = b.displacement(mesh.reshape(-1, dim)).reshape(mesh.shape)
    assert np.allclose(grid, expected, rtol=0, atol=1e-10)
    assert 0 < np.count_nonzero(np.abs(expected).sum(-1)) < expected[..., 0].size
    out = np.empty((*mesh.shape[:-1], dim))
    reversed_ = b.displacement_on_grid(axes, components=range(dim - 1, -1, -1), out=out)
    assert reversed_ is out
    assert np.allclose(out, expected[..., ::-1], rtol=0, atol=1e-10)
    far = [np.array([1e6]), *axes[1:]]  # no point inside the valid region
    assert not np.any(b.displacement_on_grid(far))


def test_bspline_on_a_grid_needs_an_axis_aligned_control_grid() -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    rotated = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    b = BSpline([0, 0, 0], [1, 1, 1], rotated, (5, 5, 5), np.zeros((5, 5, 5, 3)))
    assert not b.axis_aligned
    with pytest.raises(TransformError, match="not separable"):
        b.displacement_on_grid([np.zeros(2)] * 3)
    with pytest.raises(DimensionError, match="2 coordinate axes"):
        make_bspline(np.random.default_rng(0)).displacement_on_grid([np.zeros(2)] * 2)


@pytest.mark.parametrize("dim", [2, 3])
def test_tps_exact_at_landmarks(dim: int) -> None:
    rng = np.random.default_rng(8)
    src = rng.uniform(0, 100, size=(12, dim))
    dst = src * 1.1 + rng.normal(scale=2.0, size=src.shape) + 5.0
    tps = ThinPlateSpline(src, dst)
    assert np.allclose(tps.apply(src), dst, atol=1e-8)
    assert (tps.input_dim, tps.output_dim) == (dim, dim)
    assert not tps.is_linear


def test_tps_reproduces_affine_landmarks() -> None:
    rng = np.random.default_rng(9)
    a = Affine.from_linear([[1.0, 0.1, 0.0], [0.0, 0.9, 0.0], [0.05, 0.0, 1.2]], [1.0, 2.0, 3.0])
    src = rng.uniform(0, 50, size=(10, 3))
    tps = ThinPlateSpline(src, a.apply(src))
    p = rng.uniform(-20, 70, size=(30, 3))
    assert np.allclose(tps.apply(p), a.apply(p), atol=1e-8)
    assert np.allclose(tps.affine_part.apply(p), a.apply(p), atol=1e-8)


def test_tps_validation() -> None:
    with pytest.raises(TransformError, match="at least 4"):
        ThinPlateSpline(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(DimensionError, match="same shape"):
        ThinPlateSpline(np.zeros((5, 3)), np.zeros((5, 2)))
    coplanar = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [0, 2, 3]], dtype=float)
    with pytest.raises(TransformError, match="subspace"):
        ThinPlateSpline(coplanar, coplanar)
    dup = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    with pytest.raises(TransformError, match="duplicated"):
        ThinPlateSpline(dup, dup)


def test_tps_inverse_and_equality() -> None:
    rng = np.random.default_rng(10)
    src = rng.uniform(0, 100, size=(8, 3))
    dst = src + rng.normal(scale=1.5, size=src.shape)
    tps = ThinPlateSpline(src, dst)
    inv = tps.inverse()
    assert np.allclose(inv.apply(dst), src, atol=1e-4)
    assert tps == ThinPlateSpline(src.copy(), dst.copy())
    assert tps != ThinPlateSpline(src, dst + 1.0)
    assert np.allclose(tps.with_unit_scale(1e3).apply(src * 1e3), dst * 1e3)


def test_numerical_inverse_rejects_dimension_change() -> None:
    pose = Affine(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    with pytest.raises(NotInvertibleError, match="dimensions differ"):
        NumericalInverse(pose, 1e-3)


def test_sequence_of_field_and_affine_inverts() -> None:
    f = DisplacementField(smooth_field((8, 8, 8), 10.0, 2.0), [0, 0, 0], [10, 10, 10])
    chain = Translation([5.0, 5.0, 5.0]).then(f)
    p = np.random.default_rng(11).uniform(0, 60, size=(40, 3))
    assert np.allclose(chain.inverse().apply(chain.apply(p)), p, atol=0.01)


def test_tps_r2logr_kernel_is_exact_and_differs_from_biharmonic_between_landmarks() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (12, 3))
    dst = src + rng.normal(0, 3, src.shape)
    bigwarp_like = ThinPlateSpline(src, dst, kernel="r2logr")
    biharmonic = ThinPlateSpline(src, dst)
    np.testing.assert_allclose(bigwarp_like.apply(src), dst, atol=1e-6)
    mid = (src[:6] + src[6:]) / 2
    assert np.abs(bigwarp_like.apply(mid) - biharmonic.apply(mid)).max() > 1e-3
    scaled = bigwarp_like.with_unit_scale(10.0)
    np.testing.assert_allclose(scaled.apply(mid * 10), bigwarp_like.apply(mid) * 10, rtol=1e-6)
    with pytest.raises(TransformError, match="kernel"):
        ThinPlateSpline(src, dst, kernel="gaussian")


@pytest.mark.parametrize("interpolation", ["nearest", "cubic"])
def test_field_interpolations_pass_through_nodes_and_read_blocks_as_the_whole(
    tmp_path: Path, interpolation: str
) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((6, 7, 8, 3))
    origin, spacing = np.array([1.0, -2.0, 0.5]), np.array([2.0, 1.5, 3.0])
    field = DisplacementField(vectors, origin, spacing, interpolation)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in (6, 7, 8)], indexing="ij"), axis=-1)
    nodes = origin + index.reshape(-1, 3) * spacing
    np.testing.assert_allclose(field.displacement(nodes), vectors.reshape(-1, 3), atol=1e-12)
    # a lazy (zarr) grid is read block by block: the values equal the in-memory field's
    lazy_array = zarr.open_array(str(tmp_path / "f.zarr"), mode="w", shape=vectors.shape,
                                 chunks=(2, 3, 3, 3), dtype="f8")  # fmt: skip
    lazy_array[...] = vectors
    lazy = DisplacementField(lazy_array, origin, spacing, interpolation)
    for low, high in [(origin, origin + 5 * spacing), (origin + 2 * spacing, origin + 3 * spacing)]:
        points = rng.uniform(low, high, (50, 3))
        np.testing.assert_allclose(lazy.displacement(points), field.displacement(points))


def test_cubic_field_reproduces_a_linear_displacement_inside_and_nearest_steps() -> None:
    origin, spacing = np.zeros(2), np.array([1.0, 2.0])
    index = np.stack(np.meshgrid(np.arange(6), np.arange(5), indexing="ij"), axis=-1)
    ramp = index * spacing @ np.array([[0.1, -0.2], [0.05, 0.3]])
    cubic = DisplacementField(ramp, origin, spacing, "cubic")
    inside = np.random.default_rng(4).uniform([1.0, 2.0], [4.0, 6.0], (40, 2))
    np.testing.assert_allclose(
        cubic.displacement(inside), inside @ np.array([[0.1, -0.2], [0.05, 0.3]]), atol=1e-12
    )
    nearest = DisplacementField(ramp, origin, spacing, "nearest")
    np.testing.assert_allclose(nearest.displacement([[2.4, 5.1]]), [ramp[2, 3]])
    np.testing.assert_allclose(nearest.displacement([[2.5, 4.9]]), [ramp[3, 2]])


def test_a_field_interpolated_otherwise_than_linearly_is_not_an_itk_transform() -> None:
    field = DisplacementField(np.zeros((3, 3, 3, 3)), np.zeros(3), np.ones(3), "cubic")
    with pytest.raises(TransformError, match="'cubic' interpolation has no ITK equivalent"):
        to_sitk(field)
