"""The compiled trilinear kernel gives SimpleITK's values, voxel for voxel."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coframe.resampling.kernel import KERNEL_DTYPES, linear_affine_of, resample_linear_affine
from coframe.transforms.sitk_bridge import array_to_image, empty_image, resample_image

DTYPES = sorted(KERNEL_DTYPES, key=str)


def _source(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -30000), min(info.max, 60000)
        return rng.integers(lo, hi, shape, endpoint=True).astype(dtype)
    return (rng.normal(0.0, 1000.0, shape)).astype(dtype)


def _both(
    data: np.ndarray,
    spacing: tuple[float, ...],
    origin: tuple[float, ...],
    transform: sitk.Transform,
    shape: tuple[int, ...],
    voxel_size: tuple[float, ...],
    out_origin: tuple[float, ...],
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    image = array_to_image(data, spacing, origin)
    expected = resample_image(image, transform, shape, voxel_size, out_origin, threads=threads)
    matrix, offset = linear_affine_of(transform)
    got = resample_linear_affine(
        data, origin, spacing, matrix, offset, shape, voxel_size, out_origin, threads=threads
    )
    return expected, got


def _affine(matrix: np.ndarray, translation: np.ndarray, center=(0.0, 0.0, 0.0)) -> sitk.Transform:
    t = sitk.AffineTransform(3)
    t.SetMatrix(tuple(float(v) for v in matrix.ravel()))
    t.SetTranslation(tuple(float(v) for v in translation))
    t.SetCenter(tuple(float(v) for v in center))
    return t


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(DTYPES),
    threads=st.sampled_from([1, 2]),
)
@pytest.mark.slow
def test_random_affines_equal_sitk(seed: int, dtype: np.dtype, threads: int) -> None:
    """Rotations, scales, shears and shifts; grids partly outside the source; any data type."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 24, 3))
    data = _source(rng, shape, dtype)
    spacing = tuple(float(v) for v in rng.uniform(0.3, 9.0, 3))
    origin = tuple(float(v) for v in rng.uniform(-50.0, 50.0, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    matrix = q * rng.uniform(0.5, 2.0, 3) + rng.normal(0.0, 0.1, (3, 3))
    centre = np.array(origin[::-1]) + np.array(spacing[::-1]) * np.array(shape[::-1]) / 2
    translation = centre - matrix @ centre + rng.normal(0.0, 5.0, 3)
    transform = _affine(matrix, translation, rng.normal(0.0, 10.0, 3))
    out_shape = tuple(int(n) for n in rng.integers(1, 20, 3))
    voxel = tuple(float(v) for v in rng.uniform(0.3, 9.0, 3))
    out_origin = tuple(float(v) for v in np.array(origin) + rng.uniform(-20.0, 20.0, 3))
    expected, got = _both(data, spacing, origin, transform, out_shape, voxel, out_origin, threads)
    assert got.dtype == expected.dtype == data.dtype
    assert np.array_equal(got, expected, equal_nan=True)


@pytest.mark.parametrize(
    "transform",
    [
        sitk.Transform(3, sitk.sitkIdentity),
        sitk.TranslationTransform(3, (0.5, -1.0, 2.0)),
        sitk.ScaleTransform(3, (1.5, 0.75, 1.0)),
    ],
    ids=["identity", "translation", "scale"],
)
def test_other_linear_transforms(transform: sitk.Transform) -> None:
    rng = np.random.default_rng(1)
    data = _source(rng, (9, 10, 11), np.dtype(np.uint8))
    expected, got = _both(
        data,
        (1.0, 2.0, 0.5),
        (0.0, 1.0, -1.0),
        transform,
        (12, 11, 10),
        (1.0, 1.5, 0.75),
        (-1.0, 0.0, -2.0),
    )
    assert np.array_equal(got, expected)
    assert 0 < np.count_nonzero(got) < got.size


def test_voxel_centres_and_half_voxel_edges() -> None:
    """On the source's own lattice (distances exactly 0) and at exactly -0.5 and n - 0.5."""
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    expected, got = _both(data, (1.0,) * 3, (0.0,) * 3, identity, (4, 5, 6), (1.0,) * 3, (0.0,) * 3)
    assert np.array_equal(got, data) and np.array_equal(expected, data)
    # half-voxel steps from -0.5: the first sample is inside, n - 0.5 is outside
    expected, got = _both(
        data, (1.0,) * 3, (0.0,) * 3, identity, (10, 12, 14), (0.5,) * 3, (-0.5,) * 3
    )
    assert np.array_equal(got, expected)
    assert got[0, 0, 0] == data[0, 0, 0]
    assert np.all(got[-1] == 0) and np.all(got[:, -1] == 0) and np.all(got[..., -1] == 0)


def test_integer_results_are_truncated_like_itk() -> None:
    """Integer results are truncated, not rounded; a one-voxel-thick source is read flat."""
    data = np.array([[[0, 255, 7]]], dtype=np.uint8)  # shape (1, 1, 3)
    shift = sitk.TranslationTransform(3, (0.3, 0.0, 0.0))
    expected, got = _both(data, (1.0,) * 3, (0.0,) * 3, shift, (1, 1, 3), (1.0,) * 3, (0.0,) * 3)
    assert np.array_equal(got, expected)
    assert got.tolist() == [[[76, 180, 7]]]  # 0.7*0 + 0.3*255 = 76.5 -> 76; the last is flat


def test_only_affine_like_3d_transforms_are_taken() -> None:
    field = sitk.DisplacementFieldTransform(3)
    assert linear_affine_of(field) is None
    assert linear_affine_of(sitk.AffineTransform(2)) is None
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(sitk.TranslationTransform(3, (1.0, 0.0, 0.0)))
    assert linear_affine_of(composite) is None
    centred = sitk.ScaleTransform(3, (2.0, 2.0, 2.0))
    centred.SetCenter((1.0, 0.0, 0.0))
    assert linear_affine_of(centred) is None


def test_rejects_other_arrays() -> None:
    eye = np.eye(3)
    with pytest.raises(ValueError, match="3D"):
        resample_linear_affine(
            np.zeros((4, 4)), (0, 0), (1, 1), eye, np.zeros(3), (2, 2), (1, 1), (0, 0)
        )
    with pytest.raises(ValueError, match="3D"):
        resample_linear_affine(
            np.zeros((2, 2, 2), np.int64),
            (0,) * 3,
            (1,) * 3,
            eye,
            np.zeros(3),
            (2,) * 3,
            (1,) * 3,
            (0,) * 3,
        )


def test_compiles_where_no_cache_directory_is_writable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only install with no writable home: the kernel compiles per process instead."""
    from numba.core import caching

    from coframe.core.jit import cached_jit

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])

    def twice(x: float) -> float:
        return 2.0 * x

    with pytest.raises(RuntimeError, match="no locator"):
        numba.njit(cache=True)(twice)
    assert cached_jit(nogil=True)(twice)(3.0) == 6.0


@pytest.mark.parametrize("with_affine", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_displacement_then_affine_equals_sitk(seed: int, with_affine: bool) -> None:
    """A field on the output grid (a dense B-spline), then an affine or nothing: ITK's values."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype([np.uint8, np.float32, np.float64][seed])
    shape = tuple(int(n) for n in rng.integers(6, 24, 3))
    data = _source(rng, shape, dtype)
    spacing = tuple(float(v) for v in rng.uniform(0.3, 9.0, 3))
    origin = tuple(float(v) for v in rng.uniform(-50.0, 50.0, 3))
    out_shape = tuple(int(n) for n in rng.integers(2, 20, 3))
    voxel = tuple(float(v) for v in np.array(spacing) * rng.uniform(0.5, 1.2, 3))
    out_origin = tuple(float(v) for v in np.array(origin) + rng.uniform(-3.0, 3.0, 3))
    vectors = rng.normal(0.0, 3.0, (*out_shape, 3))
    field_image, view = empty_image(out_shape, np.float64, voxel, out_origin, components=3)
    view[...] = vectors
    del view
    transform = sitk.CompositeTransform(3)
    matrix, offset = np.eye(3), np.zeros(3)
    if with_affine:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        linear = q * rng.uniform(0.7, 1.4, 3)
        centre = np.array(out_origin[::-1]) + np.array(voxel[::-1]) * np.array(out_shape[::-1]) / 2
        affine = _affine(linear, centre - linear @ centre + rng.normal(0.0, 2.0, 3))
        transform.AddTransform(affine)
        matrix, offset = linear_affine_of(affine)
    transform.AddTransform(sitk.DisplacementFieldTransform(field_image))  # applied first
    image = array_to_image(data, spacing, origin)
    expected = resample_image(image, transform, out_shape, voxel, out_origin)
    grids = (data, origin, spacing, matrix, offset, out_shape, voxel, out_origin)
    got = resample_linear_affine(*grids, displacement=vectors, threads=2)
    assert np.array_equal(got, expected)
    assert 0 < np.count_nonzero(got)
    with pytest.raises(ValueError, match="displacement of shape"):
        resample_linear_affine(*grids, displacement=vectors[:-1])
