"""NGFF building blocks: axis frames, field views, frame changes, byDimension."""

from __future__ import annotations

import numpy as np
import pytest

from coframe.core.errors import DimensionError, NotInvertibleError
from coframe.transforms.affine import Affine, Scale
from coframe.transforms.base import Chain, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.field import DisplacementField, InverseDisplacementField
from coframe.transforms.formats.ngff import Axis, ByDimension, CoordinateSystem, FieldView
from coframe.transforms.formats.ngff_axes import Monomial, canonical_order, coordinate_frame
from coframe.transforms.formats.ngff_frames import change_frames

RNG = np.random.default_rng(7)

AFFINE = Affine.from_linear(
    [[1.1, 0.2, 0.0], [-0.1, 0.9, 0.05], [0.0, 0.1, 1.2]], [10.0, -20.0, 5.0]
)


def _field(shape: tuple[int, ...] = (5, 6, 7), amplitude: float = 3.0) -> DisplacementField:
    d = len(shape)
    vectors = amplitude * RNG.standard_normal((*shape, d))
    return DisplacementField(vectors, RNG.uniform(-5, 5, d), RNG.uniform(8, 12, d))


def _points(dim: int = 3, n: int = 25, low: float = 0.0, high: float = 60.0) -> np.ndarray:
    return RNG.uniform(low, high, (n, dim))


def test_canonical_order_and_frames() -> None:
    cs = CoordinateSystem(
        "c", (Axis("c", "channel"), Axis("x", "space", "um"), Axis("y", "space", "nm"))
    )
    assert canonical_order(cs) == (0, 2, 1)
    frame = coordinate_frame(cs, unit="nanometer")
    np.testing.assert_allclose(
        frame.to_coframe.apply(np.array([7.0, 1.0, 2.0])), [7.0, 2.0, 1000.0]
    )
    array_cs = CoordinateSystem("arr", tuple(Axis(f"dim_{i}", "array") for i in range(3)))
    assert coordinate_frame(array_cs).to_coframe.is_identity


def test_by_dimension_validation() -> None:
    with pytest.raises(DimensionError, match="written exactly once"):
        ByDimension((Scale([1.0]),), ((0,),), ((0,),), 2, 2)
    with pytest.raises(DimensionError, match="does not fit"):
        ByDimension((Scale([1.0, 2.0]),), ((0,),), ((0, 1),), 2, 2)
    dropped = ByDimension((Scale([1.0, 2.0]),), ((1, 2),), ((0, 1),), 3, 2)
    with pytest.raises(NotInvertibleError, match="exactly once"):
        dropped.inverse()


def test_field_view_matches_eager_slicing() -> None:
    source = RNG.standard_normal((3, 4, 5, 6))  # vector axis 0
    view = FieldView(source, 0, (3, 1, 2), (2, 0), (10.0, -1.0))
    eager = np.moveaxis(source, 0, -1).transpose(2, 0, 1, 3)[..., [2, 0]] * [10.0, -1.0]
    assert view.shape == eager.shape
    np.testing.assert_allclose(np.asarray(view), eager)
    np.testing.assert_allclose(view[1:4, 2, ::2], eager[1:4, 2, ::2])
    np.testing.assert_allclose(view[..., 1], eager[..., 1])
    with pytest.raises(IndexError):
        view[[0, 1]]


@pytest.mark.parametrize("kind", ["affine", "field", "sequence", "bijection", "inverse", "bydim"])
def test_change_frames_is_conjugation(kind: str) -> None:
    perm, factors = (2, 0, 1), (1000.0, 1000.0, 1000.0)
    pre = Monomial(perm, factors)
    post = pre.inverse()
    plane = _field(shape=(5, 6))
    t: Transform = {
        "affine": AFFINE,
        "field": _field(),
        "sequence": Chain((AFFINE, _field())),
        "bijection": Bijection(_field(amplitude=0.5), _field(amplitude=0.5)),
        "inverse": InverseDisplacementField(_field(amplitude=0.5)),
        "bydim": ByDimension((Scale([3.0]), plane), ((0,), (1, 2)), ((2,), (0, 1)), 3, 3),
    }[kind]
    changed = change_frames(t, pre, post)
    q = _points(low=0.0, high=0.05)
    expected = post.apply(t.apply(pre.apply(q)))
    np.testing.assert_allclose(changed.apply(q), expected, rtol=1e-6, atol=1e-9)
    non_uniform = Monomial((1, 0, 2), (2.0, 3.0, 5.0))
    mixed = change_frames(t, non_uniform, Monomial((0, 1, 2), (1.0, 1.0, 1.0)))
    q = _points(high=20.0)
    atol = 1e-3 if kind == "inverse" else 1e-6  # two numerical inverses, each within its tol
    np.testing.assert_allclose(mixed.apply(q), t.apply(non_uniform.apply(q)), rtol=1e-6, atol=atol)


def test_monomial_algebra() -> None:
    a = Monomial((2, 0, 1), (1.0, 2.0, 3.0))
    b = Monomial((1, 2, 0), (5.0, 7.0, 11.0))
    p = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(a.then(b).apply(p), b.apply(a.apply(p)))
    np.testing.assert_allclose(a.inverse().apply(a.apply(p)), p)
    np.testing.assert_allclose(a.matrix @ p, a.apply(p))
    assert Monomial.identity(3).is_identity and not a.is_identity
    assert Monomial((0, 1), (2.0, 2.0)).uniform_factor == 2.0 and a.uniform_factor is None
