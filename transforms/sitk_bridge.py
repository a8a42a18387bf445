"""Conversion between coframe transforms/arrays and SimpleITK.

This is the only module that converts between numpy axis order (z, y, x) and
SimpleITK's (x, y, z). Everything it returns to the rest of coframe is in
numpy order; everything it hands to SimpleITK is in ITK order.

With the axis reversal ``P``, a numpy-order affine ``q = L p + t`` becomes the
ITK affine ``L[::-1, ::-1]`` with translation ``t[::-1]``; vector images
reverse their component order; sizes, spacings and origins are reversed.

ITK's ``CompositeTransform`` applies its transforms in reverse order of
addition (the last added first); :func:`to_sitk` and :func:`from_sitk` map it
to and from a :class:`~coframe.transforms.base.Chain` accordingly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike

from coframe.core.errors import DimensionError, TransformError
from coframe.transforms.affine import Affine, Identity, Rotation, Scale, Translation
from coframe.transforms.base import Chain, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.bspline import ORDER, BSpline
from coframe.transforms.field import DisplacementField

#: Dimensions SimpleITK transforms support.
SITK_DIMS = (2, 3)
#: Deepest nesting of composite transforms read.
_MAX_DEPTH = 16

_RIGID = {
    sitk.sitkEuler,
    sitk.sitkVersor,
    sitk.sitkVersorRigid,
    sitk.sitkQuaternionRigid,
}


def _check_dim(dim: int, what: str) -> None:
    if dim not in SITK_DIMS:
        raise DimensionError(f"{what} is {dim}D: SimpleITK holds only 2D and 3D transforms")


def _affine_to_sitk(linear: np.ndarray, translation: np.ndarray) -> sitk.AffineTransform:
    d = linear.shape[0]
    out = sitk.AffineTransform(d)
    out.SetMatrix(tuple(float(v) for v in linear[::-1, ::-1].ravel()))
    out.SetTranslation(tuple(float(v) for v in translation[::-1]))
    return out


def _field_image(vectors: np.ndarray, origin: np.ndarray, spacing: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(
        np.ascontiguousarray(vectors[..., ::-1], dtype=np.float64), isVector=True
    )
    image.SetOrigin(tuple(float(v) for v in origin[::-1]))
    image.SetSpacing(tuple(float(v) for v in spacing[::-1]))
    return image


def bspline_grid_transform(
    spline: BSpline,
    axes: list[np.ndarray],
    origin: ArrayLike,
    spacing: ArrayLike,
    shifts: list[np.ndarray | None] | None = None,
) -> sitk.DisplacementFieldTransform:
    """A B-spline sampled densely, as an ITK displacement field on a regular grid.

    Node ``i`` of the field (at ``origin + i * spacing``) holds the B-spline's
    displacement at the tensor-grid point ``(axes[0][i0], axes[1][i1], ...)``
    plus ``shifts[a][ia]`` along each axis ``a``. With ``axes`` the grid's own
    node positions (and no shifts), ITK reading the field at its nodes moves
    those points as the B-spline does.

    Parameters
    ----------
    spline
        An axis-aligned B-spline.
    axes
        Per-axis physical coordinates where the B-spline is evaluated, numpy order.
    origin, spacing
        The field's grid, numpy order.
    shifts
        Per-axis additions to the displacement (``None`` entries for none).
    """
    shape = [int(np.size(x)) for x in axes]
    image, vectors = empty_image(shape, np.float64, spacing, origin, components=len(axes))
    bspline_grid_vectors(spline, axes, shifts, out=vectors)
    del vectors  # the transform takes the image's voxels over
    return sitk.DisplacementFieldTransform(image)


def bspline_grid_vectors(
    spline: BSpline,
    axes: list[np.ndarray],
    shifts: list[np.ndarray | None] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The vectors of :func:`bspline_grid_transform`'s field: ``(*lengths, d)``, x, y, z order.

    ``out``: a C-contiguous float64 array of that shape to fill.
    """
    d = len(axes)
    vectors = spline.displacement_on_grid(axes, components=range(d - 1, -1, -1), out=out)
    for a, shift in enumerate(shifts or ()):
        if shift is not None:
            along = [1] * d
            along[a] = -1
            vectors[..., d - 1 - a] += np.asarray(shift, dtype=np.float64).reshape(along)
    return vectors


def _field_to_sitk(field: DisplacementField) -> sitk.DisplacementFieldTransform:
    if field.interpolation != "linear":
        raise TransformError(
            f"a displacement field read with {field.interpolation!r} interpolation has no ITK "
            "equivalent (ITK fields interpolate linearly): keep it in OME-NGFF, or sample it "
            "onto a finer grid (coframe.transforms.field.sample_to_field)"
        )
    image = _field_image(np.asarray(field.vectors), field.origin, field.spacing)
    return sitk.DisplacementFieldTransform(image)


def _bspline_to_sitk(b: BSpline) -> sitk.BSplineTransform:
    d = b.input_dim
    out = sitk.BSplineTransform(d, ORDER)
    fixed = [
        *[float(n) for n in b.grid_size[::-1]],
        *[float(v) for v in b.grid_origin[::-1]],
        *[float(v) for v in b.grid_spacing[::-1]],
        *[float(v) for v in b.grid_direction[::-1, ::-1].ravel()],
    ]
    out.SetFixedParameters(fixed)
    params = np.concatenate([b.coefficients[..., d - 1 - c].ravel() for c in range(d)])
    out.SetParameters(tuple(float(v) for v in params))
    return out


def to_sitk(t: Transform) -> sitk.Transform:
    """Convert a coframe transform into the equivalent SimpleITK transform.

    Identity, Translation, Scale, Rotation and square Affine map to their ITK
    counterparts (Rotation and Affine to ``AffineTransform`` with centre 0);
    Chain to ``CompositeTransform`` (added in reverse so the first listed is
    applied first); DisplacementField to ``DisplacementFieldTransform`` (a lazy
    field is read whole; beyond half a node outside its grid ITK applies no
    displacement where coframe clamps); BSpline to ``BSplineTransform``;
    Bijection to its forward map.

    Parameters
    ----------
    t
        The transform, numpy axis order.

    Raises
    ------
    TransformError
        For maps ITK cannot hold: thin plate splines and numerical inverses
        (sample them with ``coframe.transforms.field.sample_to_field``), and affines
        that change dimension.
    DimensionError
        For dimensions other than 2 and 3.
    """
    if isinstance(t, Bijection):
        return to_sitk(t.forward)
    if t.input_dim != t.output_dim:
        raise TransformError(
            f"a {t.input_dim}D -> {t.output_dim}D {type(t).__name__} cannot be stored as an ITK "
            "transform: ITK transforms keep the dimension"
        )
    _check_dim(t.input_dim, type(t).__name__)
    d = t.input_dim
    if isinstance(t, Identity):
        return sitk.Transform(d, sitk.sitkIdentity)
    if isinstance(t, Translation):
        return sitk.TranslationTransform(d, tuple(float(v) for v in t.offset[::-1]))
    if isinstance(t, Scale):
        return sitk.ScaleTransform(d, tuple(float(v) for v in t.factors[::-1]))
    if isinstance(t, Rotation):
        return _affine_to_sitk(t.matrix, np.zeros(d))
    if isinstance(t, Affine):
        return _affine_to_sitk(t.linear, t.translation)
    if isinstance(t, Chain):
        composite = sitk.CompositeTransform(d)
        for member in reversed(t.transforms):
            composite.AddTransform(to_sitk(member))
        return composite
    if isinstance(t, DisplacementField):
        return _field_to_sitk(t)
    if isinstance(t, BSpline):
        return _bspline_to_sitk(t)
    raise TransformError(
        f"a {type(t).__name__} cannot be stored as an ITK transform: sample it into a "
        "displacement field first (coframe.transforms.field.sample_to_field)"
    )


#: Kinds of centred SimpleITK transforms :func:`to_sitk_centered` builds.
CENTERED_KINDS = ("rigid", "similarity", "affine")


def to_sitk_centered(affine: Affine, center: ArrayLike, kind: str = "affine") -> sitk.Transform:
    """A square affine as an optimisable SimpleITK transform turning about ``center``.

    Optimisers rotate and scale a transform about its centre; a centre inside
    the image being registered keeps rotations and translations apart.

    Parameters
    ----------
    affine
        A 2D or 3D affine, numpy axis order; a (scaled) rotation for ``rigid``
        and ``similarity``.
    center
        The centre, numpy axis order.
    kind
        ``rigid`` (VersorRigid3D / Euler2D), ``similarity`` (Similarity3D /
        Similarity2D) or ``affine``.

    Raises
    ------
    TransformError
        If ``kind`` is unknown or the linear part does not fit it.
    """
    if affine.input_dim != affine.output_dim:
        raise TransformError(
            f"a {affine.input_dim}D -> {affine.output_dim}D affine cannot be a centred SimpleITK "
            "transform: expected a square affine"
        )
    d = affine.input_dim
    _check_dim(d, "affine")
    makers = {
        "rigid": sitk.VersorRigid3DTransform if d == 3 else sitk.Euler2DTransform,
        "similarity": sitk.Similarity3DTransform if d == 3 else sitk.Similarity2DTransform,
        "affine": lambda: sitk.AffineTransform(d),
    }
    if kind not in makers:
        raise TransformError(f"centred transform kind {kind!r}: expected one of {CENTERED_KINDS}")
    c = np.asarray(center, dtype=np.float64).reshape(d)
    out = makers[kind]()
    out.SetCenter(tuple(float(v) for v in c[::-1]))
    try:
        out.SetMatrix(tuple(float(v) for v in affine.linear[::-1, ::-1].ravel()))
    except RuntimeError as e:
        raise TransformError(
            f"linear part {affine.linear.tolist()} is not a {kind} matrix: use kind 'affine'"
        ) from e
    out.SetTranslation(tuple(float(v) for v in (affine.apply(c) - c)[::-1]))
    return out


def _field_from_image(image: sitk.Image, what: str) -> DisplacementField:
    d = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() != d:
        raise TransformError(
            f"{what} image has {image.GetNumberOfComponentsPerPixel()} components per pixel: "
            f"expected {d}"
        )
    vectors = sitk.GetArrayFromImage(image).astype(np.float64)[..., ::-1]
    origin = np.array(image.GetOrigin(), dtype=np.float64)[::-1]
    spacing = np.array(image.GetSpacing(), dtype=np.float64)[::-1]
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(d, d)[::-1, ::-1]
    signs = np.diag(direction)
    if not np.allclose(direction, np.diag(signs), atol=1e-9) or not np.allclose(
        np.abs(signs), 1.0, atol=1e-9
    ):
        raise TransformError(
            f"{what} grid direction {direction.tolist()} is not axis-aligned: resample the field "
            "onto an axis-aligned grid before loading it"
        )
    for axis in np.flatnonzero(signs < 0):
        vectors = np.flip(vectors, axis=int(axis))
        origin[axis] -= (vectors.shape[axis] - 1) * spacing[axis]
    return DisplacementField(vectors, origin, spacing)


def _bspline_from_sitk(t: sitk.BSplineTransform) -> BSpline:
    d = t.GetDimension()
    if t.GetOrder() != ORDER:
        raise TransformError(
            f"B-spline transform of order {t.GetOrder()} is not supported: expected order {ORDER}"
        )
    fixed = np.array(t.GetFixedParameters(), dtype=np.float64)
    size = tuple(int(round(v)) for v in fixed[:d][::-1])
    origin = fixed[d : 2 * d][::-1]
    spacing = fixed[2 * d : 3 * d][::-1]
    direction = fixed[3 * d : 3 * d + d * d].reshape(d, d)[::-1, ::-1]
    params = np.array(t.GetParameters(), dtype=np.float64)
    n = int(np.prod(size))
    if params.size != d * n:
        raise TransformError(
            f"B-spline transform has {params.size} parameters: expected {d * n} for grid {size}"
        )
    coefficients = np.stack(
        [params[(d - 1 - k) * n : (d - k) * n].reshape(size) for k in range(d)], axis=-1
    )
    return BSpline(origin, spacing, direction, size, coefficients)


def _matrix_offset_from_sitk(t: Any, kind: int) -> Transform:
    d = t.GetDimension()
    linear = np.array(t.GetMatrix(), dtype=np.float64).reshape(d, d)[::-1, ::-1]
    offset = np.array(t.TransformPoint(tuple([0.0] * d)), dtype=np.float64)[::-1]
    if kind in _RIGID and not np.any(offset):
        try:
            return Rotation(linear)
        except TransformError:
            pass
    return Affine.from_linear(linear, offset)


def from_sitk(t: sitk.Transform) -> Transform:
    """Convert a SimpleITK transform into the equivalent coframe transform.

    Identity -> Identity; Translation -> Translation; Scale without centre ->
    Scale; Euler, Versor, VersorRigid and QuaternionRigid without offset ->
    Rotation; every other matrix transform (Affine, Similarity, ScaleSkew...,
    centred Scale, rigid with offset) -> Affine; CompositeTransform ->
    Chain (its last added transform first); DisplacementFieldTransform ->
    DisplacementField, or a Bijection of two fields when an inverse field is
    attached; BSplineTransform (order 3) -> BSpline.

    Parameters
    ----------
    t
        The SimpleITK transform (ITK axis order).

    Raises
    ------
    TransformError
        For transform kinds coframe does not model, or fields on a rotated grid.
    """
    return _from_sitk(t, 0)


def _from_sitk(t: sitk.Transform, depth: int) -> Transform:
    """:func:`from_sitk` of a transform ``depth`` composites deep."""
    _check_dim(t.GetDimension(), f"SimpleITK {t.GetName()}")
    kind = t.GetTransformEnum()
    d = t.GetDimension()
    if depth > _MAX_DEPTH:
        # SimpleITK wraps an ITK kind it does not know in a composite holding itself.
        raise TransformError(
            f"SimpleITK transform {t.GetName()} nests more than {_MAX_DEPTH} composites deep: "
            "the file holds an ITK transform kind coframe does not model; expected an identity, "
            "translation, scale, rigid, similarity, affine, displacement field or B-spline"
        )
    if kind == sitk.sitkIdentity:
        return Identity(d)
    concrete = t.Downcast()
    if kind == sitk.sitkComposite:
        count = concrete.GetNumberOfTransforms()
        if count == 0:
            return Identity(d)
        members = [_from_sitk(concrete.GetNthTransform(i), depth + 1) for i in range(count)]
        return members[0] if count == 1 else Chain(tuple(reversed(members)))
    if kind == sitk.sitkTranslation:
        return Translation(np.array(concrete.GetOffset(), dtype=np.float64)[::-1])
    if kind == sitk.sitkDisplacementField:
        forward = _field_from_image(concrete.GetDisplacementField(), "displacement field")
        inverse_image = concrete.GetInverseDisplacementField()
        if inverse_image.GetNumberOfPixels() > 0 and all(inverse_image.GetSize()):
            return Bijection(
                forward, _field_from_image(inverse_image, "inverse displacement field")
            )
        return forward
    if kind == sitk.sitkBSplineTransform:
        return _bspline_from_sitk(concrete)
    if kind == sitk.sitkScale and not any(concrete.GetCenter()):
        return Scale(np.array(concrete.GetScale(), dtype=np.float64)[::-1])
    if hasattr(concrete, "GetMatrix"):
        return _matrix_offset_from_sitk(concrete, kind)
    raise TransformError(
        f"SimpleITK transform {t.GetName()} is not supported: expected an identity, translation, "
        "scale, rigid, similarity, affine, composite, displacement field or B-spline transform"
    )


def array_to_image(
    array: ArrayLike,
    voxel_size: ArrayLike,
    origin: ArrayLike | None = None,
    *,
    is_vector: bool = False,
) -> sitk.Image:
    """Make a SimpleITK image from a numpy-order array and its physical placement.

    Parameters
    ----------
    array
        Voxels, axes (z, y, x) or (y, x) (plus a last component axis when
        ``is_vector``; components are then reversed into ITK order).
    voxel_size
        Physical voxel size per axis, numpy order.
    origin
        Physical position of the centre of voxel 0, numpy order (default 0).
    is_vector
        Whether the last axis holds vector components.

    Raises
    ------
    DimensionError
        If voxel size or origin do not have one value per spatial axis.
    """
    data = np.asarray(array)
    spatial = data.ndim - 1 if is_vector else data.ndim
    if is_vector:
        data = data[..., ::-1]
    size = np.asarray(voxel_size, dtype=np.float64)
    offset = np.zeros(spatial) if origin is None else np.asarray(origin, dtype=np.float64)
    if size.shape != (spatial,) or offset.shape != (spatial,):
        raise DimensionError(
            f"voxel size {size.tolist()} and origin {offset.tolist()} must have {spatial} values "
            f"each for an image of shape {np.shape(array)}"
        )
    image = sitk.GetImageFromArray(np.ascontiguousarray(data), isVector=is_vector)
    image.SetSpacing(tuple(float(v) for v in size[::-1]))
    image.SetOrigin(tuple(float(v) for v in offset[::-1]))
    return image


#: SimpleITK pixel types of the scalar numpy data types.
_PIXEL_IDS: dict[str, int] = {
    "uint8": sitk.sitkUInt8,
    "int8": sitk.sitkInt8,
    "uint16": sitk.sitkUInt16,
    "int16": sitk.sitkInt16,
    "uint32": sitk.sitkUInt32,
    "int32": sitk.sitkInt32,
    "uint64": sitk.sitkUInt64,
    "int64": sitk.sitkInt64,
    "float32": sitk.sitkFloat32,
    "float64": sitk.sitkFloat64,
}
#: SimpleITK vector pixel types (displacement fields).
_VECTOR_PIXEL_IDS: dict[str, int] = {
    "float32": sitk.sitkVectorFloat32,
    "float64": sitk.sitkVectorFloat64,
}


def empty_image(
    shape: ArrayLike,
    dtype: Any,
    voxel_size: ArrayLike,
    origin: ArrayLike,
    components: int | None = None,
) -> tuple[sitk.Image, np.ndarray]:
    """A new image and a writable numpy view of its voxels, to be filled in place.

    Filling the view (e.g. by a reader decoding straight into it) saves the
    copy :func:`array_to_image` makes. The view is valid while the image is
    alive and unchanged; keep both until the image has been used.

    Parameters
    ----------
    shape
        Image shape, numpy axis order.
    dtype
        Scalar numpy data type.
    voxel_size, origin
        Physical voxel size and position of voxel 0's centre, numpy order.
    components
        For a vector image (float32 or float64): components per voxel, on a
        last axis of the view in ITK's order (x first).

    Raises
    ------
    DimensionError
        If voxel size or origin do not have one value per axis, or the data
        type has no SimpleITK pixel type.
    """
    dims = [int(n) for n in np.asarray(shape)]
    name = np.dtype(dtype).name
    ids = _PIXEL_IDS if components is None else _VECTOR_PIXEL_IDS
    if name not in ids:
        raise DimensionError(
            f"data type {name} has no SimpleITK pixel type: use one of {', '.join(ids)}"
        )
    size = np.asarray(voxel_size, dtype=np.float64)
    offset = np.asarray(origin, dtype=np.float64)
    if size.shape != (len(dims),) or offset.shape != (len(dims),):
        raise DimensionError(
            f"voxel size {size.tolist()} and origin {offset.tolist()} must have {len(dims)} "
            f"values each for an image of shape {dims}"
        )
    if components is None:
        image = sitk.Image(dims[::-1], ids[name])
    else:
        image = sitk.Image(dims[::-1], ids[name], int(components))
    image.SetSpacing(tuple(float(v) for v in size[::-1]))
    image.SetOrigin(tuple(float(v) for v in offset[::-1]))
    return image, np.asarray(_ImageBuffer(image, writable=True))


#: SimpleITK interpolators by coframe interpolation name.
SITK_INTERPOLATORS: dict[str, int] = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
}


def resample_image(
    image: sitk.Image,
    transform: sitk.Transform,
    shape: ArrayLike,
    voxel_size: ArrayLike,
    origin: ArrayLike,
    *,
    interpolation: str = "linear",
    threads: int | None = None,
    copy: bool = True,
) -> np.ndarray:
    """Resample a SimpleITK image onto a numpy-order grid (pull-back through ``transform``).

    Every output voxel centre ``p`` takes the image's value at
    ``transform(p)``; points outside the image get 0. Integer outputs keep
    the image's pixel type (ITK casts by truncation after clamping).

    Parameters
    ----------
    image
        The source image (e.g. from :func:`array_to_image`).
    transform
        SimpleITK transform mapping output points into the image's space.
    shape, voxel_size, origin
        Output grid in numpy axis order (origin: centre of voxel 0).
    interpolation
        ``nearest``, ``linear`` or ``bspline`` (cubic).
    threads
        Threads SimpleITK may use (default: its global setting).
    copy
        Return a copy (default) or a read-only view of the result image's
        voxels (one copy fewer; the view keeps the image alive).

    Returns
    -------
    numpy.ndarray
        The resampled voxels, numpy axis order.
    """
    size = [int(n) for n in np.asarray(shape)[::-1]]
    d = len(size)
    f = sitk.ResampleImageFilter()
    f.SetSize(size)
    f.SetOutputSpacing(tuple(float(v) for v in np.asarray(voxel_size, dtype=np.float64)[::-1]))
    f.SetOutputOrigin(tuple(float(v) for v in np.asarray(origin, dtype=np.float64)[::-1]))
    f.SetOutputDirection(tuple(float(v) for v in np.eye(d).ravel()))
    f.SetTransform(transform)
    f.SetInterpolator(SITK_INTERPOLATORS[interpolation])
    f.SetDefaultPixelValue(0.0)
    f.SetOutputPixelType(image.GetPixelID())
    if threads is not None:
        f.SetNumberOfThreads(int(threads))
    result = f.Execute(image)
    return sitk.GetArrayFromImage(result) if copy else _array_view(result)


class _ImageBuffer:
    """Exposes a SimpleITK image's voxels to numpy and keeps the image alive meanwhile.

    ``writable`` only for an image no other SimpleITK image shares voxels
    with (a new one): SimpleITK copies on write, so a shared buffer would
    change every image sharing it.
    """

    def __init__(self, image: sitk.Image, writable: bool = False) -> None:
        self.image = image
        interface = dict(sitk.GetArrayViewFromImage(image).__array_interface__)
        if writable:
            interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface


def _array_view(image: sitk.Image) -> np.ndarray:
    """A read-only numpy view of an image's voxels that holds a reference to the image."""
    return np.asarray(_ImageBuffer(image))
