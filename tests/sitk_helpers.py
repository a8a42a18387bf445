"""SimpleITK checks for tests: points and images read back through ITK's own (x, y, z) API.

coframe converts to and from SimpleITK in one module
(:mod:`coframe.transforms.sitk_bridge`); these helpers undo its work
independently, so that tests compare coframe with what ITK itself computes.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike


def sitk_points(points: ArrayLike) -> np.ndarray:
    """Reverse the coordinate order of points: numpy (z, y, x) to ITK (x, y, z)."""
    return np.asarray(points, dtype=np.float64)[..., ::-1].copy()


def numpy_points(points: ArrayLike) -> np.ndarray:
    """Reverse the coordinate order of points: ITK (x, y, z) to numpy (z, y, x)."""
    return np.asarray(points, dtype=np.float64)[..., ::-1].copy()


def apply_sitk(t: sitk.Transform, points: ArrayLike) -> np.ndarray:
    """Map numpy-order points ``(N, d)`` one by one through ``t.TransformPoint``."""
    array = np.atleast_2d(np.asarray(points, dtype=np.float64))
    assert array.ndim == 2 and array.shape[1] == t.GetDimension(), array.shape
    out = np.array([t.TransformPoint(tuple(float(v) for v in p[::-1])) for p in array])
    return out[:, ::-1].reshape(array.shape)


def image_to_array(image: sitk.Image) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """An identity-direction image as ``(array, voxel_size, origin)`` in numpy axis order.

    Vector components, if any, are last and in numpy order.
    """
    d = image.GetDimension()
    assert np.allclose(np.reshape(image.GetDirection(), (d, d)), np.eye(d), atol=1e-9)
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.ascontiguousarray(array[..., ::-1])
    voxel_size = tuple(float(v) for v in image.GetSpacing()[::-1])
    origin = tuple(float(v) for v in image.GetOrigin()[::-1])
    return array, voxel_size, origin
