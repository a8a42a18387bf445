"""Tests of the SimpleITK bridge: axis flips, composite order, every transform kind."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from samples import rotation
from sitk_helpers import apply_sitk, image_to_array, numpy_points, sitk_points

from coframe.core.errors import DimensionError, TransformError
from coframe.transforms.affine import Affine, Identity, Rotation, Scale, Translation
from coframe.transforms.base import Chain, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.bspline import BSpline
from coframe.transforms.field import DisplacementField
from coframe.transforms.sitk_bridge import array_to_image, empty_image, from_sitk, to_sitk
from coframe.transforms.tps import ThinPlateSpline

RNG = np.random.default_rng(1234)


ANISO_AFFINE = Affine.from_linear(
    np.diag([1.3, 0.8, 1.05]) @ rotation(0, 0.2) @ rotation(1, -0.1)
    + 0.02 * np.arange(9).reshape(3, 3),
    [12.0, -7.0, 3.5],
)


def field_3d() -> DisplacementField:
    """A non-symmetric field on an anisotropic, non-cubic grid."""
    shape = (5, 7, 9)
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    vectors = np.stack(
        [0.5 * np.sin(yy), 1.5 * np.cos(xx / 2.0) + 0.1 * zz, -0.7 * yy / 6.0], axis=-1
    )
    return DisplacementField(vectors, origin=[10.0, -4.0, 2.0], spacing=[4.0, 2.5, 1.5])


def bspline_3d() -> BSpline:
    size = (6, 7, 8)
    return BSpline(
        grid_origin=[-12.0, -20.0, -6.0],
        grid_spacing=[10.0, 8.0, 6.0],
        grid_direction=rotation(2, 0.15),
        grid_size=size,
        coefficients=RNG.normal(scale=1.0, size=(*size, 3)),
    )


def inner_points(t: Transform, n: int = 60) -> np.ndarray:
    """Points well inside the support of ``t`` (away from grid edges)."""
    if isinstance(t, DisplacementField):
        low = t.origin + 0.5 * t.spacing
        high = t.origin + (np.array(t.grid_shape) - 1.5) * t.spacing
        return RNG.uniform(low, high, size=(n, t.input_dim))
    if isinstance(t, BSpline):
        index = RNG.uniform(1.2, np.array(t.grid_size) - 2.2, size=(n, 3))
        return t.grid_origin + (index * t.grid_spacing) @ t.grid_direction.T
    return RNG.uniform(-50.0, 50.0, size=(n, t.input_dim))


def sequence_points(t: Transform) -> np.ndarray:
    """Points inside the support of ``t``; for a sequence, of its last member after the shift."""
    if not isinstance(t, Chain):
        return inner_points(t)
    first = t.transforms[0].apply(np.zeros(t.input_dim))
    return inner_points(t.transforms[-1]) - first


CASES: list[Transform] = [
    Identity(3),
    Identity(2),
    Translation([1.0, -2.0, 30.0]),
    Translation([5.0, 7.0]),
    Scale([2.0, 0.5, 1.5]),
    Scale([3.0, 1.0]),
    Rotation(rotation(1, 0.4)),
    ANISO_AFFINE,
    Affine.from_linear([[1.1, 0.3], [-0.2, 0.9]], [4.0, -1.0]),
    Chain((Translation([1.0, 2.0, 3.0]), Scale([2.0, 1.0, 0.5]), ANISO_AFFINE)),
    field_3d(),
    bspline_3d(),
    Chain((Translation([2.0, 0.0, 1.0]), field_3d())),
]


@pytest.mark.parametrize("t", CASES, ids=lambda t: type(t).__name__ + str(t.input_dim))
def test_to_sitk_maps_points_like_coframe(t: Transform) -> None:
    p = sequence_points(t)
    assert np.allclose(apply_sitk(to_sitk(t), p), t.apply(p), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("t", CASES, ids=lambda t: type(t).__name__ + str(t.input_dim))
def test_round_trip_gives_equal_transform(t: Transform) -> None:
    back = from_sitk(to_sitk(t))
    p = sequence_points(t)
    assert np.allclose(back.apply(p), t.apply(p), rtol=1e-12, atol=1e-9)
    # A rotation travels as an ITK AffineTransform and comes back as an Affine.
    assert type(back) is (Affine if isinstance(t, Rotation) else type(t))


def test_axis_flip_of_a_translation() -> None:
    st = to_sitk(Translation([1.0, 2.0, 3.0]))  # z, y, x
    assert st.TransformPoint((0.0, 0.0, 0.0)) == (3.0, 2.0, 1.0)  # x, y, z
    assert np.array_equal(sitk_points([[1, 2, 3]]), [[3.0, 2.0, 1.0]])
    assert np.array_equal(numpy_points([[3, 2, 1]]), [[1.0, 2.0, 3.0]])


def test_composite_applies_last_added_first() -> None:
    shift = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))
    double = sitk.ScaleTransform(3, (2.0, 2.0, 2.0))
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(shift)
    composite.AddTransform(double)
    # ITK: the scale (added last) applies first.
    assert composite.TransformPoint((1.0, 1.0, 1.0)) == (3.0, 2.0, 2.0)
    seq = from_sitk(composite)
    assert isinstance(seq, Chain)
    assert seq.transforms == (Scale([2.0, 2.0, 2.0]), Translation([0.0, 0.0, 1.0]))
    assert np.array_equal(seq.apply([1.0, 1.0, 1.0]), [2.0, 2.0, 3.0])
    # And back: the sequence's first transform is added last.
    again = to_sitk(seq)
    assert again.TransformPoint((1.0, 1.0, 1.0)) == (3.0, 2.0, 2.0)


@pytest.mark.parametrize(
    ("make", "expected_type"),
    [
        (lambda: sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, -0.2, 0.3, (4.0, 5.0, 6.0)), Affine),
        (lambda: sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.1, -0.2, 0.3), Rotation),
        (lambda: sitk.VersorTransform((0.0, 0.0, 1.0), 0.5), Rotation),
        (lambda: sitk.VersorRigid3DTransform((0.0, 1.0, 0.0), 0.3, (1.0, 2.0, 3.0)), Affine),
        (lambda: sitk.Similarity3DTransform(1.5, (1.0, 0.0, 0.0), 0.2, (3.0, 2.0, 1.0)), Affine),
        (lambda: sitk.Similarity2DTransform(0.7, 0.4, (1.0, -2.0), (5.0, 5.0)), Affine),
        (lambda: sitk.Euler2DTransform((1.0, 2.0), 0.3, (4.0, -4.0)), Affine),
        (lambda: sitk.ScaleTransform(3, (2.0, 3.0, 4.0)), Scale),
        (lambda: _centred_scale(), Affine),
        (lambda: sitk.ScaleSkewVersor3DTransform(), Affine),
    ],
)
def test_from_sitk_matrix_transforms(make: object, expected_type: type) -> None:
    st = make()  # type: ignore[operator]
    t = from_sitk(st)
    assert type(t) is expected_type
    p = RNG.uniform(-30, 30, size=(20, st.GetDimension()))
    assert np.allclose(t.apply(p), apply_sitk(st, p), atol=1e-10)


def _centred_scale() -> sitk.ScaleTransform:
    s = sitk.ScaleTransform(3, (2.0, 3.0, 4.0))
    s.SetCenter((1.0, 2.0, 3.0))
    return s


def test_read_transform_generic_object_is_downcast() -> None:
    st = sitk.AffineTransform(to_sitk(ANISO_AFFINE))
    generic = sitk.Transform(st)
    assert type(generic) is sitk.Transform
    assert np.allclose(from_sitk(generic).apply([1.0, 2.0, 3.0]), ANISO_AFFINE.apply([1, 2, 3]))


def test_field_with_flipped_direction() -> None:
    f = field_3d()
    image = sitk.GetImageFromArray(np.asarray(f.vectors)[::-1, :, ::-1][..., ::-1], isVector=True)
    # Flip x and z: voxel index i lies at origin - i * spacing along those axes.
    high = f.origin + (np.array(f.grid_shape) - 1) * f.spacing
    image.SetOrigin((high[2], f.origin[1], high[0]))
    image.SetSpacing(tuple(f.spacing[::-1]))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    st = sitk.DisplacementFieldTransform(image)
    back = from_sitk(st)
    p = inner_points(f)
    assert np.allclose(back.apply(p), apply_sitk(st, p), atol=1e-9)
    assert np.allclose(back.apply(p), f.apply(p), atol=1e-9)


def test_field_on_rotated_grid_is_refused() -> None:
    image = sitk.GetImageFromArray(np.zeros((3, 3, 3, 3)), isVector=True)
    image.SetDirection(tuple(rotation(0, 0.3).ravel()))
    with pytest.raises(TransformError, match="not axis-aligned"):
        from_sitk(sitk.DisplacementFieldTransform(image))


def test_field_with_inverse_becomes_bijection() -> None:
    f = field_3d()
    inverse = DisplacementField(-np.asarray(f.vectors), f.origin, f.spacing)
    st = to_sitk(f)
    st.SetInverseDisplacementField(
        array_to_image(np.asarray(inverse.vectors), f.spacing, f.origin, is_vector=True)
    )
    back = from_sitk(st)
    assert isinstance(back, Bijection)
    p = inner_points(f)
    assert np.allclose(back.apply(p), f.apply(p))
    assert np.allclose(back.inverse().apply(p), inverse.apply(p))
    # A Bijection goes to ITK as its forward map.
    assert np.allclose(apply_sitk(to_sitk(Bijection(f, inverse)), p), f.apply(p))


def test_bspline_parameters_round_trip_exactly() -> None:
    b = bspline_3d()
    back = from_sitk(to_sitk(b))
    assert back.grid_size == b.grid_size
    assert np.allclose(back.grid_direction, b.grid_direction)
    assert np.array_equal(back.coefficients, b.coefficients)
    assert np.array_equal(back.grid_origin, b.grid_origin)


@pytest.mark.parametrize(
    "t",
    [
        ThinPlateSpline(RNG.uniform(0, 10, (6, 3)), RNG.uniform(0, 10, (6, 3))),
        field_3d().inverse(),
        bspline_3d().inverse(),
    ],
    ids=["tps", "inverse-field", "inverse-bspline"],
)
def test_maps_itk_cannot_hold_are_refused(t: Transform) -> None:
    with pytest.raises(TransformError, match=rf"{type(t).__name__}.*sample_to_field"):
        to_sitk(t)
    with pytest.raises(TransformError, match="sample_to_field"):
        to_sitk(Translation([1.0, 2.0, 3.0]).then(t))


def test_dimension_changes_and_1d_are_refused() -> None:
    pose = Affine(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    with pytest.raises(TransformError, match="2D -> 3D Affine"):
        to_sitk(pose)
    with pytest.raises(DimensionError, match="only 2D and 3D"):
        to_sitk(Translation([1.0]))


def test_image_round_trip_keeps_numpy_order() -> None:
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    image = array_to_image(array, voxel_size=(40.0, 8.0, 4.0), origin=(100.0, 10.0, 1.0))
    assert image.GetSize() == (4, 3, 2)
    assert image.GetSpacing() == (4.0, 8.0, 40.0)
    assert image.GetOrigin() == (1.0, 10.0, 100.0)
    # Voxel (z=1, y=2, x=3) sits at physical (z, y, x) = (140, 26, 13).
    assert image.TransformPhysicalPointToIndex((13.0, 26.0, 140.0)) == (3, 2, 1)
    assert image.GetPixel(3, 2, 1) == array[1, 2, 3]
    back, voxel_size, origin = image_to_array(image)
    assert np.array_equal(back, array)
    assert voxel_size == (40.0, 8.0, 4.0)
    assert origin == (100.0, 10.0, 1.0)


def test_vector_image_round_trip_reverses_components() -> None:
    vectors = RNG.normal(size=(2, 3, 4, 3))
    image = array_to_image(vectors, (1.0, 1.0, 1.0), is_vector=True)
    assert image.GetPixel(0, 0, 0) == tuple(vectors[0, 0, 0, ::-1])
    back, _, _ = image_to_array(image)
    assert np.array_equal(back, vectors)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint64, np.float32, np.float64])
def test_empty_image_is_filled_through_its_view(dtype: type) -> None:
    array = (np.arange(2 * 3 * 4) % 100).astype(dtype).reshape(2, 3, 4)
    image, voxels = empty_image(array.shape, dtype, (40.0, 8.0, 4.0), (100.0, 10.0, 1.0))
    voxels[...] = array
    expected = array_to_image(array, (40.0, 8.0, 4.0), (100.0, 10.0, 1.0))
    assert image.GetPixelID() == expected.GetPixelID()
    assert image.GetSpacing() == expected.GetSpacing()
    assert image.GetOrigin() == expected.GetOrigin()
    assert np.array_equal(sitk.GetArrayViewFromImage(image), array)
    del image  # the view keeps the image's voxels alive
    assert np.array_equal(voxels, array)


def test_image_helpers_validate() -> None:
    with pytest.raises(DimensionError, match="no SimpleITK pixel type"):
        empty_image((2, 3), np.complex64, (1.0, 1.0), (0.0, 0.0))
    with pytest.raises(DimensionError, match="2 values"):
        empty_image((2, 3), np.uint8, (1.0, 1.0, 1.0), (0.0, 0.0))
    with pytest.raises(DimensionError, match="3 values"):
        array_to_image(np.zeros((2, 3, 4)), voxel_size=(1.0, 1.0))
