"""Re-expressing transforms after a change of axis order and unit (NGFF <-> coframe).

A point written in an NGFF coordinate system becomes a coframe point through a
:class:`~coframe.transforms.formats.ngff_axes.Monomial` map (axis permutation and a
unit factor per axis). :func:`change_frames` rewrites a transform ``t`` as
``post ∘ t ∘ pre`` for such maps, keeping its kind where it can: affines stay
affines, displacement fields stay fields (their grid axes and vector
components are permuted and scaled, lazily for stored arrays), sequences,
bijections, inverses and by-dimension transforms are rewritten part by part.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coframe.core.errors import DimensionError, TransformError
from coframe.transforms.affine import Affine, Identity, Rotation, Scale, Translation
from coframe.transforms.base import Chain, NumericalInverse, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.field import DisplacementField, InverseDisplacementField
from coframe.transforms.formats.ngff_axes import Monomial
from coframe.transforms.formats.ngff_bydimension import ByDimension

#: Absolute tolerance when recognising identity, diagonal or orthonormal matrices.
MATRIX_TOLERANCE = 1e-12


class FieldView:
    """A lazy ``(*grid, d)`` vector-last view of a stored vector field.

    Reading a block reads only the matching block of ``source``, reorders its
    axes, selects and scales the vector components and, for coordinate
    fields, subtracts the grid node positions (turning coordinates into
    displacements).

    Parameters
    ----------
    source
        Any array-like supporting basic slicing (numpy, zarr, another view).
    vector_axis
        The source axis holding the vector components.
    grid_axes
        For each view grid axis, the source axis it reads.
    components
        For each view component, the source component it takes.
    scale
        For each view component, a factor.
    subtract
        Optional ``(origin, spacing)`` of the view grid: the physical node
        position is subtracted from the vectors (component ``j`` along grid
        axis ``j``).
    """

    def __init__(
        self,
        source: Any,
        vector_axis: int,
        grid_axes: tuple[int, ...],
        components: tuple[int, ...],
        scale: tuple[float, ...],
        subtract: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        ndim = len(source.shape)
        if sorted((*grid_axes, vector_axis)) != list(range(ndim)):
            raise DimensionError(
                f"vector field view axes {grid_axes} + vector axis {vector_axis} do not match "
                f"a {ndim}D array"
            )
        n_components = int(source.shape[vector_axis])
        if any(c < 0 or c >= n_components for c in components) or len(scale) != len(components):
            raise DimensionError(
                f"vector components {components} do not fit a vector axis of length {n_components}"
            )
        if subtract is not None and len(components) != len(grid_axes):
            raise DimensionError("coordinate fields need as many components as grid axes")
        self.source = source
        self.vector_axis = int(vector_axis)
        self.grid_axes = tuple(int(a) for a in grid_axes)
        self.components = tuple(int(c) for c in components)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.subtract = subtract
        self.shape = tuple(int(source.shape[a]) for a in self.grid_axes) + (len(self.components),)
        self.dtype = np.dtype(np.float64)

    @property
    def ndim(self) -> int:
        """Number of axes (grid axes plus the vector axis)."""
        return len(self.shape)

    def _normalise(self, key: Any) -> list[Any]:
        items = list(key) if isinstance(key, tuple) else [key]
        if any(k is Ellipsis for k in items):
            at = items.index(Ellipsis)
            items[at : at + 1] = [slice(None)] * (self.ndim - len(items) + 1)
        items += [slice(None)] * (self.ndim - len(items))
        if len(items) != self.ndim or not all(
            isinstance(k, (slice, int, np.integer)) for k in items
        ):
            raise IndexError(f"vector field views take basic slices, got {key!r}")
        return items

    def __getitem__(self, key: Any) -> np.ndarray:
        items = self._normalise(key)
        source_key: list[Any] = [slice(None)] * len(self.source.shape)
        ranges = []
        squeeze = []
        for j, (item, axis) in enumerate(zip(items[:-1], self.grid_axes, strict=True)):
            if isinstance(item, slice):
                start, stop, step = item.indices(self.shape[j])
            else:
                index = int(item) + (self.shape[j] if int(item) < 0 else 0)
                if not 0 <= index < self.shape[j]:
                    raise IndexError(f"index {item} is out of range for axis {j} of {self.shape}")
                start, stop, step = index, index + 1, 1
                squeeze.append(j)
            source_key[axis] = slice(start, stop, step)
            ranges.append(np.arange(start, stop, step, dtype=np.float64))
        block = np.asarray(self.source[tuple(source_key)], dtype=np.float64)
        block = block.transpose((*self.grid_axes, self.vector_axis))
        block = block[..., list(self.components)] * self.scale
        if self.subtract is not None:
            origin, spacing = self.subtract
            for j, steps in enumerate(ranges):
                shape = [1] * len(ranges)
                shape[j] = steps.size
                block[..., j] -= (origin[j] + spacing[j] * steps).reshape(shape)
        block = block[..., items[-1]]
        return block.squeeze(axis=tuple(squeeze)) if squeeze else block

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return (
            f"FieldView(shape={self.shape}, source={type(self.source).__name__}"
            f"{tuple(self.source.shape)}, vector_axis={self.vector_axis})"
        )


def raw_field_view(source: Any, vector_axis: int) -> Any:
    """A vector-last view of ``source`` keeping its axis order (``source`` itself if already so)."""
    ndim = len(source.shape)
    grid = tuple(a for a in range(ndim) if a != vector_axis)
    if vector_axis == ndim - 1:
        return source
    n = int(source.shape[vector_axis])
    return FieldView(source, vector_axis, grid, tuple(range(n)), (1.0,) * n)


def _view(
    vectors: Any,
    grid_order: tuple[int, ...],
    components: tuple[int, ...],
    scale: tuple[float, ...],
    subtract: tuple[np.ndarray, np.ndarray] | None,
) -> Any:
    """``vectors`` with grid axes reordered, components selected and scaled, maybe shifted."""
    g = len(grid_order)
    trivial = (
        grid_order == tuple(range(g))
        and components == tuple(range(int(vectors.shape[-1])))
        and all(s == 1.0 for s in scale)
        and subtract is None
    )
    if trivial:
        return vectors
    if isinstance(vectors, FieldView) and vectors.subtract is None:
        return FieldView(
            vectors.source,
            vectors.vector_axis,
            tuple(vectors.grid_axes[i] for i in grid_order),
            tuple(vectors.components[c] for c in components),
            tuple(float(vectors.scale[c]) * s for c, s in zip(components, scale, strict=True)),
            subtract,
        )
    view = FieldView(vectors, g, grid_order, components, scale, subtract)
    return np.asarray(view) if isinstance(vectors, np.ndarray) else view


def field_in_frames(
    vectors: Any,
    origin: np.ndarray,
    spacing: np.ndarray,
    pre: Monomial,
    post: Monomial,
    *,
    coordinates: bool = False,
    interpolation: str = "linear",
) -> Transform:
    """The vector field transform ``post ∘ F ∘ pre`` for a field ``F`` on a regular grid.

    Parameters
    ----------
    vectors
        ``(*grid, m)`` vectors, vector axis last (numpy, zarr or a view).
    origin
        ``(n,)`` position of grid node 0 in ``F``'s input coordinates.
    spacing
        ``(n,)`` node spacing.
    pre
        Map from the new input coordinates to ``F``'s input coordinates.
    post
        Map from ``F``'s output coordinates to the new output coordinates.
    coordinates
        Whether the vectors are positions (an NGFF ``coordinates`` field)
        rather than displacements.
    interpolation
        How the field is read between nodes (see
        :class:`~coframe.transforms.field.DisplacementField`).

    Returns
    -------
    Transform
        A :class:`DisplacementField`, preceded by an axis map when ``post ∘
        pre`` is not the identity.

    Raises
    ------
    TransformError
        If the field changes dimension.
    """
    n = len(origin)
    m = int(vectors.shape[-1])
    if m != n or pre.dim != n or post.dim != m:
        raise TransformError(
            f"a {n}D -> {m}D vector field is not supported: input and output dimensions must agree"
        )
    around = pre.then(post)
    if not coordinates and not _is_identity(around):
        inner = field_in_frames(
            vectors, origin, spacing, post.inverse(), post, interpolation=interpolation
        )
        return Chain((_monomial_affine(around), inner))
    inv = tuple(int(i) for i in np.argsort(pre.perm))
    factors = np.asarray(pre.factors)
    new_origin = np.array([origin[inv[k]] / factors[inv[k]] for k in range(n)])
    new_spacing = np.array([spacing[inv[k]] / factors[inv[k]] for k in range(n)])
    subtract = (new_origin, new_spacing) if coordinates else None
    view = _view(vectors, inv, post.perm, post.factors, subtract)
    return DisplacementField(view, new_origin, new_spacing, interpolation)


def _is_identity(m: Monomial) -> bool:
    return m.perm == tuple(range(m.dim)) and np.allclose(m.factors, 1.0, rtol=0, atol=1e-14)


def _monomial_affine(m: Monomial) -> Transform:
    if m.perm == tuple(range(m.dim)):
        return Scale(np.asarray(m.factors))
    return Affine.from_linear(m.matrix)


def linear_like(affine: Affine, like: Transform) -> Transform:
    """``affine`` as the simplest transform of ``like``'s kind that represents it."""
    lin, shift = affine.linear, affine.translation
    square = lin.shape[0] == lin.shape[1]
    eye = np.eye(lin.shape[0]) if square else None
    no_shift = bool(np.all(np.abs(shift) <= MATRIX_TOLERANCE * max(1.0, np.abs(lin).max())))
    if square and eye is not None:
        is_eye = np.allclose(lin, eye, rtol=0, atol=MATRIX_TOLERANCE)
        if isinstance(like, Identity) and is_eye and no_shift:
            return Identity(lin.shape[0])
        if isinstance(like, (Identity, Translation)) and is_eye:
            return Translation(shift)
        off_diagonal = lin - np.diag(np.diag(lin))
        if (
            isinstance(like, Scale)
            and no_shift
            and np.all(np.abs(off_diagonal) <= MATRIX_TOLERANCE)
        ):
            return Scale(np.diag(lin).copy())
        if isinstance(like, Rotation) and no_shift:
            orthonormal = np.allclose(lin @ lin.T, eye, rtol=0, atol=1e-9)
            if orthonormal and np.linalg.det(lin) > 0:
                return Rotation(lin)
    return affine


def _intermediate(dim: int, pre: Monomial, post: Monomial) -> Monomial:
    """Frame change for a space inside a sequence: the output's if it fits, else the input's."""
    if dim == post.dim:
        return post
    if dim == pre.dim:
        return pre.inverse()
    return Monomial.identity(dim)


def change_frames(t: Transform, pre: Monomial, post: Monomial) -> Transform:
    """The transform ``post ∘ t ∘ pre``, kept of the same kind where possible.

    Parameters
    ----------
    t
        The transform.
    pre
        Map from the new input coordinates to ``t``'s input coordinates.
    post
        Map from ``t``'s output coordinates to the new output coordinates.

    Raises
    ------
    DimensionError
        If the maps do not fit the transform's dimensions.
    """
    if pre.dim != t.input_dim or post.dim != t.output_dim:
        raise DimensionError(
            f"a {t.input_dim}D -> {t.output_dim}D {type(t).__name__} does not fit {pre.dim}D "
            f"input and {post.dim}D output coordinate systems"
        )
    if pre.is_identity and post.is_identity:
        return t
    if isinstance(t, Chain):
        steps = []
        before = pre
        for k, step in enumerate(t.transforms):
            last = k == len(t.transforms) - 1
            after = post if last else _intermediate(step.output_dim, pre, post)
            steps.append(change_frames(step, before, after))
            before = after.inverse()
        return Chain(tuple(steps))
    if isinstance(t, Bijection):
        return Bijection(
            change_frames(t.forward, pre, post),
            change_frames(t.inverse_transform, post.inverse(), pre.inverse()),
        )
    if isinstance(t, InverseDisplacementField):
        inner = change_frames(t.field, post.inverse(), pre.inverse())
        factor = pre.inverse().uniform_factor
        if isinstance(inner, DisplacementField):
            tol = None if factor is None else float(t.tol) * factor
            return InverseDisplacementField(inner, tol, t.max_iter)
        return inner.inverse()
    if isinstance(t, NumericalInverse):
        factor = pre.inverse().uniform_factor
        initial = None if t.initial is None else change_frames(t.initial, pre, post)
        forward = change_frames(t.forward, post.inverse(), pre.inverse())
        tol = t.tol * (1.0 if factor is None else factor)
        return NumericalInverse(forward, tol, t.max_iter, initial)
    if isinstance(t, ByDimension):
        return _by_dimension_in_frames(t, pre, post)
    if isinstance(t, DisplacementField):
        return field_in_frames(
            t.vectors, t.origin, t.spacing, pre, post, interpolation=t.interpolation
        )
    affine = t.as_affine()
    if affine is not None:
        matrix = post.homogeneous @ affine.homogeneous @ pre.homogeneous
        return linear_like(Affine(matrix[:-1]), t)
    return _generic_in_frames(t, pre, post)


def _by_dimension_in_frames(t: ByDimension, pre: Monomial, post: Monomial) -> Transform:
    post_inv = np.argsort(post.perm)
    parts, ins, outs = [], [], []
    for part, i_axes, o_axes in zip(t.parts, t.input_axes, t.output_axes, strict=True):
        # Old input axis i reads new axis pre.perm[i] times pre.factors[i].
        new_in = tuple(pre.perm[i] for i in i_axes)
        part_pre = Monomial(tuple(range(len(i_axes))), tuple(pre.factors[i] for i in i_axes))
        # Old output axis o lands in new axis j with post.perm[j] == o.
        new_out = tuple(int(post_inv[o]) for o in o_axes)
        part_post = Monomial(tuple(range(len(o_axes))), tuple(post.factors[j] for j in new_out))
        parts.append(change_frames(part, part_pre, part_post))
        ins.append(new_in)
        outs.append(new_out)
    return ByDimension(tuple(parts), tuple(ins), tuple(outs), t.dim_in, t.dim_out)


def _generic_in_frames(t: Transform, pre: Monomial, post: Monomial) -> Transform:
    a, b = pre.uniform_factor, post.uniform_factor
    if a is not None and b is not None and np.isclose(a * b, 1.0, rtol=1e-12, atol=0):
        core = t.with_unit_scale(b)
        steps = [_monomial_affine(pre.permutation), core, _monomial_affine(post.permutation)]
        kept = [
            s
            for k, s in enumerate(steps)
            if k == 1 or not (pre if k == 0 else post).permutation.is_identity
        ]
        return kept[0] if len(kept) == 1 else Chain(tuple(kept))
    return Chain((_monomial_affine(pre), t, _monomial_affine(post)))
