"""Transforms, points and Zarr groups shared by the OME-NGFF tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from samples import rotation

from coframe.transforms.affine import Affine
from coframe.transforms.base import Transform
from coframe.transforms.field import DisplacementField
from coframe.transforms.formats.ngff import Axis, CoordinateSystem

RNG = np.random.default_rng(42)

AFFINE = Affine.from_linear(rotation(0, 0.3) @ np.diag([1.2, 0.9, 1.1]), [10.0, -20.0, 5.0])


def random_field(shape: tuple[int, ...] = (5, 6, 7), amplitude: float = 3.0) -> DisplacementField:
    """A random displacement field on a random anisotropic grid."""
    d = len(shape)
    vectors = amplitude * RNG.standard_normal((*shape, d))
    return DisplacementField(vectors, RNG.uniform(-5, 5, d), RNG.uniform(8, 12, d))


def random_points(dim: int = 3, n: int = 25, low: float = 0.0, high: float = 60.0) -> np.ndarray:
    """``n`` random points in a cube."""
    return RNG.uniform(low, high, (n, dim))


def assert_same_map(a: Transform, b: Transform, points: np.ndarray) -> None:
    """Assert that two transforms map ``points`` alike (relative tolerance 1e-6)."""
    expected = b.apply(points)
    np.testing.assert_allclose(
        a.apply(points), expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max()
    )


def xyz_system(name: str, unit: str = "nanometer") -> CoordinateSystem:
    """A 3D coordinate system with its axes in x, y, z order."""
    return CoordinateSystem(name, tuple(Axis(a, "space", unit) for a in "xyz"))


def ome_group(path: Path, attributes: dict[str, Any], zarr_format: int = 3) -> zarr.Group:
    """A Zarr group holding OME attributes (under ``ome`` in Zarr v3)."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.attrs.put({"ome": attributes} if zarr_format == 3 else attributes)
    return group
