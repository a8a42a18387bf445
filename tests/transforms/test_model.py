"""Unit tests of the transform model: identity, sequences, affines, bijections."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from coframe.core.errors import (
    CoframeWarning,
    DimensionError,
    NotInvertibleError,
    TransformError,
)
from coframe.transforms.affine import Affine, Identity, Rotation, Scale, Translation
from coframe.transforms.base import Chain, Transform
from coframe.transforms.bijection import Bijection


def rotation_z(angle: float) -> np.ndarray:
    """Rotation about the z axis (first numpy axis) acting on (z, y, x)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


AFFINE_3D = np.array(
    [[1.2, 0.1, 0.0, 5.0], [0.05, 0.9, 0.2, -3.0], [0.0, -0.1, 1.1, 7.0]], dtype=np.float64
)


def test_identity_maps_points_to_themselves() -> None:
    p = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    ident = Identity(3)
    assert np.array_equal(ident.apply(p), p)
    assert ident.inverse() == ident
    assert np.array_equal(ident.as_affine().homogeneous, np.eye(4))
    assert ident.is_linear


def test_identity_rejects_bad_dimension() -> None:
    with pytest.raises(DimensionError, match="positive integer"):
        Identity(0)


def test_apply_single_point_returns_vector() -> None:
    t = Translation([1.0, 2.0, 3.0])
    out = t.apply([0.0, 0.0, 0.0])
    assert out.shape == (3,)
    assert out.dtype == np.float64
    assert np.array_equal(out, [1.0, 2.0, 3.0])


def test_apply_empty_point_set() -> None:
    assert Affine(AFFINE_3D).apply(np.zeros((0, 3))).shape == (0, 3)


@pytest.mark.parametrize("bad", [np.zeros((4, 2)), np.zeros(2), np.zeros((2, 3, 1))])
def test_apply_wrong_shape_raises_dimension_error(bad: np.ndarray) -> None:
    with pytest.raises(DimensionError, match=r"input dimension 3"):
        Translation([1.0, 2.0, 3.0]).apply(bad)


def test_affine_accepts_homogeneous_and_short_forms() -> None:
    short = Affine(AFFINE_3D)
    homogeneous = Affine(np.vstack([AFFINE_3D, [0.0, 0.0, 0.0, 1.0]]))
    assert short == homogeneous
    assert short.matrix.shape == (3, 4)
    assert np.array_equal(short.linear, AFFINE_3D[:, :3])
    assert np.array_equal(short.translation, AFFINE_3D[:, 3])
    assert np.array_equal(short.homogeneous[:3], AFFINE_3D)


def test_affine_from_linear_matches_matrix() -> None:
    a = Affine.from_linear(AFFINE_3D[:, :3], AFFINE_3D[:, 3])
    assert a == Affine(AFFINE_3D)
    with pytest.raises(TransformError, match="translation"):
        Affine.from_linear(np.eye(3), [1.0, 2.0])


def test_affine_apply_uses_numpy_axis_order() -> None:
    # Shift along x (last numpy axis) only.
    a = Affine.from_linear(np.eye(3), [0.0, 0.0, 10.0])
    assert np.array_equal(a.apply([1.0, 2.0, 3.0]), [1.0, 2.0, 13.0])


def test_affine_is_immutable() -> None:
    m = AFFINE_3D.copy()
    a = Affine(m)
    m[0, 0] = 99.0
    assert a.matrix[0, 0] == 1.2
    with pytest.raises(ValueError):
        a.matrix[0, 0] = 5.0
    with pytest.raises(AttributeError):
        a.matrix = np.eye(4)  # type: ignore[misc]


def test_affine_inverse_is_exact() -> None:
    a = Affine(AFFINE_3D)
    p = np.random.default_rng(0).normal(size=(20, 3)) * 100
    assert np.allclose(a.inverse().apply(a.apply(p)), p, atol=1e-10)
    assert np.allclose(a.then(a.inverse()).as_affine().homogeneous, np.eye(4), atol=1e-12)


def test_singular_affine_is_not_invertible() -> None:
    singular = Affine.from_linear([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 1.0]], [0, 0, 0])
    with pytest.raises(NotInvertibleError, match="singular"):
        singular.inverse()


def test_2d_to_3d_affine_pose() -> None:
    # A section (y, x) placed at z = 40, rotated in plane and shifted.
    pose = Affine(np.array([[0.0, 0.0, 40.0], [0.0, -1.0, 5.0], [1.0, 0.0, 2.0]], dtype=np.float64))
    assert (pose.input_dim, pose.output_dim) == (2, 3)
    assert np.array_equal(pose.apply([3.0, 4.0]), [40.0, 1.0, 5.0])
    assert pose.homogeneous.shape == (4, 3)
    with pytest.raises(NotInvertibleError, match="2D -> 3D"):
        pose.inverse()
    back = pose.plane_inverse()
    assert (back.input_dim, back.output_dim) == (3, 2)
    p2 = np.array([[3.0, 4.0], [-1.0, 7.5]])
    assert np.allclose(back.apply(pose.apply(p2)), p2)
    # A point off the plane projects onto it.
    assert np.allclose(back.apply([41.0, 1.0, 5.0]), [3.0, 4.0])


def test_2d_to_3d_composes_with_3d_affine() -> None:
    pose = Affine(np.array([[0.0, 0.0, 40.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    shift = Translation([1.0, 2.0, 3.0])
    chain = pose.then(shift)
    assert (chain.input_dim, chain.output_dim) == (2, 3)
    assert chain.as_affine() is not None
    assert np.allclose(chain.as_affine().apply([5.0, 6.0]), [41.0, 7.0, 9.0])
    with pytest.raises(NotInvertibleError):
        chain.inverse()
    with pytest.raises(DimensionError, match="dimensions must agree"):
        shift.then(pose)


def test_translation_scale_rotation() -> None:
    p = np.array([[1.0, 2.0, 3.0]])
    assert np.array_equal(Translation([1, 1, 1]).apply(p), [[2.0, 3.0, 4.0]])
    assert np.array_equal(Scale([2, 3, 4]).apply(p), [[2.0, 6.0, 12.0]])
    r = Rotation(rotation_z(np.pi / 2))
    assert np.allclose(r.apply(p), [[1.0, -3.0, 2.0]])
    assert np.allclose(r.inverse().apply(r.apply(p)), p)
    assert np.allclose(Scale([2, 3, 4]).inverse().apply([2.0, 6.0, 12.0]), [1.0, 2.0, 3.0])
    for t in (Translation([1, 2, 3]), Scale([2, 3, 4]), r):
        assert t.is_linear
        assert np.allclose(t.as_affine().apply(p), t.apply(p))


def test_scale_with_zero_is_not_invertible() -> None:
    with pytest.raises(NotInvertibleError, match="zero"):
        Scale([1.0, 0.0, 2.0]).inverse()


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.diag([1.0, 1.0, 2.0]), "not orthonormal"),
        (np.diag([1.0, 1.0, -1.0]), "reflection"),
        (np.eye(3)[:2], "square"),
    ],
)
def test_rotation_validation(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        Rotation(matrix)


def test_rounded_rotation_becomes_the_nearest_rotation_with_a_warning() -> None:
    a, b = 0.17, 0.985  # a 2D rotation written to three decimals
    with pytest.warns(CoframeWarning, match=r"R2: .*\|R R\^T - I\| = 0\.000875") as caught:
        r = Rotation.from_rounded([[a, -b], [b, a]], source="R2")
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    # The nearest rotation to [[a, -b], [b, a]] is the same matrix over sqrt(a^2 + b^2).
    n = np.hypot(a, b)
    np.testing.assert_allclose(r.matrix, [[a / n, -b / n], [b / n, a / n]], atol=1e-15)


def test_every_three_decimal_rounding_of_a_rotation_is_accepted() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        exact, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        exact *= np.sign(np.linalg.det(exact))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CoframeWarning)
            r = Rotation.from_rounded(np.round(exact, 3))
        np.testing.assert_allclose(r.matrix @ r.matrix.T, np.eye(3), atol=1e-12)
        assert np.abs(r.matrix - exact).max() < 1e-3


def test_exact_rotation_needs_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = Rotation.from_rounded(rotation_z(0.3))
    np.testing.assert_array_equal(r.matrix, rotation_z(0.3))


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.diag([1.0, 1.0, 1.01]), r"R3: .*not a rotation \(\|R R\^T - I\| = 0\.0201.*'affine'"),
        ([[0.17, -0.99], [0.98, 0.17]], r"not a rotation .*above the 0\.002"),
        (np.diag([1.0, -1.0]), "reflection"),
        (np.ones((2, 3)), "square"),
    ],
)
def test_rotation_far_from_orthonormal_is_refused(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(TransformError, match=message) as info:
        Rotation.from_rounded(matrix, source="R3")
    assert "\n" not in str(info.value) and str(info.value).startswith("R3: ")


def test_then_builds_flat_sequence_in_application_order() -> None:
    a, b, c = Translation([1, 0, 0]), Scale([2, 2, 2]), Translation([0, 0, 5])
    seq = a.then(b).then(c)
    assert isinstance(seq, Chain)
    assert seq.transforms == (a, b, c)
    assert np.array_equal(seq.apply([0.0, 0.0, 0.0]), [2.0, 0.0, 5.0])
    nested = Chain((a, Chain((b, c))))
    assert nested.transforms == (a, b, c)


def test_sequence_inverse_reverses_order() -> None:
    seq = Chain((Translation([1, 2, 3]), Rotation(rotation_z(0.3)), Scale([2, 1, 0.5])))
    p = np.random.default_rng(1).normal(size=(10, 3))
    assert np.allclose(seq.inverse().apply(seq.apply(p)), p)
    assert np.allclose(seq.as_affine().apply(p), seq.apply(p))


def test_sequence_dimension_mismatch() -> None:
    with pytest.raises(DimensionError, match="output dimension 3.*input dimension 2"):
        Translation([1, 2, 3]).then(Translation([1, 2]))
    with pytest.raises(DimensionError, match="at least one"):
        Chain(())


def test_sequence_with_nonlinear_member_is_not_linear() -> None:
    class Square(Transform):
        @property
        def input_dim(self) -> int:
            return 1

        @property
        def output_dim(self) -> int:
            return 1

        def _apply(self, points: np.ndarray) -> np.ndarray:
            return points**2

    seq = Translation([1.0]).then(Square())
    assert seq.as_affine() is None
    assert not seq.is_linear
    assert np.array_equal(seq.apply([[2.0]]), [[9.0]])
    with pytest.raises(NotInvertibleError, match="Square has no inverse"):
        seq.inverse()


def test_equality_compares_values() -> None:
    assert Translation([1, 2, 3]) == Translation(np.array([1.0, 2.0, 3.0]))
    assert Translation([1, 2, 3]) != Translation([1, 2, 4])
    assert Translation([1, 2, 3]) != Scale([1, 2, 3])
    assert Translation([1, 2]).then(Scale([1, 2])) == Translation([1, 2]).then(Scale([1, 2]))


def test_bijection_swaps_on_inverse() -> None:
    forward = Affine(AFFINE_3D)
    inverse = forward.inverse()
    bij = Bijection(forward, inverse)
    p = np.random.default_rng(2).normal(size=(5, 3))
    assert np.allclose(bij.apply(p), forward.apply(p))
    inv = bij.inverse()
    assert isinstance(inv, Bijection)
    assert inv.forward == inverse
    assert np.allclose(inv.apply(bij.apply(p)), p)
    assert bij.as_affine() == forward
    assert Bijection(forward=forward, inverse=inverse) == bij


def test_bijection_dimension_check() -> None:
    with pytest.raises(DimensionError, match="does not mirror"):
        Bijection(Translation([1, 2, 3]), Translation([1, 2]))


def test_unit_scale_of_linear_transforms() -> None:
    p = np.random.default_rng(3).normal(size=(6, 3))
    for t in (
        Identity(3),
        Affine(AFFINE_3D),
        Translation([1, 2, 3]),
        Scale([2, 3, 4]),
        Rotation(rotation_z(0.4)),
        Translation([1, 2, 3]).then(Scale([2, 1, 1])),
    ):
        scaled = t.with_unit_scale(1000.0)
        assert np.allclose(scaled.apply(p * 1000.0), t.apply(p) * 1000.0)
    with pytest.raises(TransformError, match="positive"):
        Translation([1, 2, 3]).with_unit_scale(0.0)
