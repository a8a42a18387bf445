"""A displacement field behind an affine, evaluated on a grid by compiled code, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from coframe.transforms.field import DisplacementField
from coframe.transforms.field_grid import field_displacement_on_grid


class CountingArray:
    """A lazy array that records the boxes read from it."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.boxes: list[tuple[slice, ...]] = []

    def __getitem__(self, box: tuple[slice, ...]) -> np.ndarray:
        self.boxes.append(box)
        return self.data[box]


def _centres(origin, voxel, shape) -> np.ndarray:
    axes = [o + np.arange(n) * v for o, v, n in zip(origin, voxel, shape, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_grid_equals_the_field_applied_point_by_point(seed: int) -> None:
    rng = np.random.default_rng(seed)
    field = DisplacementField(
        rng.normal(0, 1.5, (12, 14, 10, 3)), rng.uniform(-6, 0, 3), rng.uniform(2, 4, 3)
    )
    linear = Rotation.from_rotvec(rng.normal(0, 0.2, 3)).as_matrix() * rng.uniform(0.9, 1.1)
    translation = rng.normal(0, 2, 3)
    # the grid reaches past the field on some sides: the index is clamped there
    origin, voxel, shape = tuple(rng.uniform(-10, 0, 3)), (0.9, 1.1, 1.3), (30, 28, 33)
    got = field_displacement_on_grid(field, linear, translation, origin, voxel, shape)
    points = _centres(origin, voxel, shape)
    expected = field.apply(points @ linear.T + translation) - points
    assert got.shape == (*shape, 3)
    np.testing.assert_allclose(got.reshape(-1, 3), expected[:, ::-1], atol=1e-12)


def test_a_lazy_field_is_read_over_the_block_the_grid_reaches() -> None:
    data = np.random.default_rng(3).normal(0, 1, (40, 40, 40, 3))
    lazy = CountingArray(data)
    field = DisplacementField(lazy, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    got = field_displacement_on_grid(
        field, np.eye(3), np.zeros(3), (10, 12, 14), (1, 1, 1), (5, 6, 7)
    )
    (box,) = lazy.boxes
    assert box[:3] == (slice(10, 16), slice(12, 19), slice(14, 22))
    points = _centres((10, 12, 14), (1, 1, 1), (5, 6, 7))
    expected = DisplacementField(data, [0.0] * 3, [1.0] * 3).apply(points) - points
    np.testing.assert_allclose(got.reshape(-1, 3), expected[:, ::-1], atol=1e-12)
