"""SimpleITK given coframe's dense-field trick, for ``benchmarks/resample.py`` (numpy + SimpleITK).

SimpleITK's ``BSplineTransform`` evaluates 4^3 control points per output voxel.
coframe instead evaluates a B-spline's displacement on the output grid
separably (one weight matrix per axis). The fair peer gets the same trick,
written here with numpy only: per slab of output planes, the displacement is
contracted axis by axis from the control points, handed to SimpleITK as a
``DisplacementFieldTransform`` on that slab's grid (so it is interpolated
exactly at its nodes) and composed with the affine; SimpleITK resamples the
slab. For the inverse chain (FIB-SEM into X-ray through an inverse B-spline)
the forward field is sampled on a grid a quarter of the output's resolution
(or, for the peer of coframe's accuracy, at every output voxel), inverted by
SimpleITK's ``InvertDisplacementFieldImageFilter`` and composed likewise.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _kernel(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    return np.where(
        a < 1.0, (4.0 - 6.0 * a**2 + 3.0 * a**3) / 6.0, np.where(a < 2.0, (2.0 - a) ** 3 / 6.0, 0.0)
    )


def _weights(coords: np.ndarray, origin: float, spacing: float, size: int) -> np.ndarray:
    """Cubic B-spline weights (n, size) of coordinates along one axis (zero off the valid range)."""
    c = (np.asarray(coords, dtype=np.float64) - origin) / spacing
    w = _kernel(c[:, None] - np.arange(size)[None, :])
    valid = (c >= 1.0) & (c <= size - 2.0)
    w[~valid] = 0.0
    return w


def spline_field(spline: Any, axes: list[np.ndarray]) -> np.ndarray:
    """The B-spline's displacement (numpy order) on the tensor grid of ``axes``, separably.

    ``spline`` needs ``grid_origin``, ``grid_spacing``, ``grid_size`` and ``coefficients``
    (an axis-aligned grid); only those numbers are read.
    """
    assert np.allclose(spline.grid_direction, np.eye(3)), "an axis-aligned control grid"
    w = [
        _weights(a, float(o), float(h), int(n))
        for a, o, h, n in zip(
            axes, spline.grid_origin, spline.grid_spacing, spline.grid_size, strict=True
        )
    ]
    coef = np.asarray(spline.coefficients, dtype=np.float64)
    t = np.tensordot(w[0], coef, axes=(1, 0))  # (z, cy, cx, 3)
    t = np.einsum("yj,zjkc->zykc", w[1], t)
    return np.einsum("xk,zykc->zyxc", w[2], t)


def _field_transform(field: np.ndarray, origin: np.ndarray, spacing: np.ndarray) -> Any:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(field[..., ::-1]), isVector=True)
    image.SetOrigin(tuple(float(v) for v in origin[::-1]))
    image.SetSpacing(tuple(float(v) for v in spacing[::-1]))
    return sitk.DisplacementFieldTransform(sitk.Cast(image, sitk.sitkVectorFloat64))


def _reference(shape: tuple[int, ...], voxel: np.ndarray, origin: np.ndarray) -> Any:
    import SimpleITK as sitk

    ref = sitk.Image([int(n) for n in shape[::-1]], sitk.sitkUInt8)
    ref.SetSpacing(tuple(float(v) for v in voxel[::-1]))
    ref.SetOrigin(tuple(float(v) for v in origin[::-1]))
    return ref


def resample_dense(
    image: Any,
    spline: Any,
    affine: Any,
    shape: tuple[int, ...],
    voxel: np.ndarray,
    origin: np.ndarray,
    inverse: bool = False,
    slab: int = 16,
    inverse_every: int = 4,
) -> np.ndarray:
    """Resample ``image`` through ``spline`` then ``affine`` (or their inverse), slab by slab.

    ``affine`` is a SimpleITK transform (the output -> source affine part: the forward
    affine, or for ``inverse`` the inverse affine, applied first). The inverse field is
    sampled every ``inverse_every`` output voxels (4: a quarter of the output's
    resolution; 1: at every output voxel, as accurate as SimpleITK's inversion gets).
    """
    import SimpleITK as sitk

    voxel, origin = np.asarray(voxel, float), np.asarray(origin, float)
    out = np.empty(shape, dtype=np.uint8)
    axes = [o + np.arange(n) * v for n, v, o in zip(shape, voxel, origin, strict=True)]
    inverse_field = None
    if inverse:
        # the forward field on a coarse grid over the output box (the spline's fixed space is
        # the source's), inverted once by SimpleITK
        coarse = voxel * inverse_every
        cshape = tuple(int(np.ceil(n / inverse_every)) + 1 for n in shape)
        caxes = [o + np.arange(n) * v for n, v, o in zip(cshape, coarse, origin, strict=True)]
        forward = spline_field(spline, caxes)
        fimage = sitk.GetImageFromArray(np.ascontiguousarray(forward[..., ::-1]), isVector=True)
        fimage.SetOrigin(tuple(origin[::-1]))
        fimage.SetSpacing(tuple(coarse[::-1]))
        invert = sitk.InvertDisplacementFieldImageFilter()
        invert.SetMaximumNumberOfIterations(20)
        invert.SetMeanErrorToleranceThreshold(1e-3)
        invert.SetMaxErrorToleranceThreshold(0.05)
        inverse_field = sitk.DisplacementFieldTransform(
            sitk.Cast(
                invert.Execute(sitk.Cast(fimage, sitk.sitkVectorFloat64)), sitk.sitkVectorFloat64
            )
        )
    for z in range(0, shape[0], slab):
        n = min(slab, shape[0] - z)
        slab_origin = origin + np.array([z * voxel[0], 0.0, 0.0])
        if inverse:
            # output -> source: the inverse affine, then the inverse field
            tx = sitk.CompositeTransform([inverse_field, affine])
        else:
            field = spline_field(spline, [axes[0][z : z + n], axes[1], axes[2]])
            # output -> source: the field first, then the affine (ITK applies the last added first)
            tx = sitk.CompositeTransform([affine, _field_transform(field, slab_origin, voxel)])
        ref = _reference((n, *shape[1:]), voxel, slab_origin)
        piece = sitk.Resample(image, ref, tx, sitk.sitkLinear, 0.0, sitk.sitkUInt8)
        out[z : z + n] = sitk.GetArrayFromImage(piece)
    return out
