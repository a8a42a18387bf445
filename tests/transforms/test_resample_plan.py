"""Planning a chunked resampling: grids, boxes, blocks, source boxes and levels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coframe.core.errors import LevelError, MetadataError
from coframe.resampling.plan import (
    OutputGrid,
    choose_source_level,
    grid_for_target,
    grow_shape,
    parse_memory,
    plan_blocks,
    source_box,
)
from coframe.resampling.runplan import plan_run
from coframe.transforms.affine import Affine, Identity, Scale, Translation
from coframe.transforms.field import DisplacementField
from coframe.volumes.open import parse_box
from coframe.volumes.volume import Level, Volume


class _Shape:
    """An array source that only has a shape (planning never reads)."""

    def __init__(self, shape: tuple[int, ...], dtype: str = "uint8") -> None:
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(min(64, n) for n in shape)

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        raise AssertionError("planning must not read voxels")


def _volume(shape0: tuple[int, ...], vs0: float, n_levels: int, dtype: str = "uint8") -> Volume:
    levels = []
    for i in range(n_levels):
        f = 2**i
        shape = tuple(math.ceil(n / f) for n in shape0)
        origin = tuple(vs0 * (f - 1) / 2.0 for _ in shape0)
        levels.append(Level(f"s{i}", _Shape(shape, dtype), (vs0 * f,) * len(shape0), origin))
    return Volume("mem://test", "test", ("z", "y", "x"), "nanometer", tuple(levels))


def test_parse_memory_and_box() -> None:
    assert parse_memory("256MB") == 256 * 10**6
    assert parse_memory("1.5GiB") == int(1.5 * 2**30)
    assert parse_memory(2**24) == 2**24
    with pytest.raises(MetadataError, match="--memory-per-task"):
        parse_memory("lots")
    assert parse_box("0,1,2:10,11,12") == ((0.0, 1.0, 2.0), (10.0, 11.0, 12.0))
    assert parse_box("0,1,2..10,11,12")[1] == (10.0, 11.0, 12.0)
    with pytest.raises(MetadataError, match="--box"):
        parse_box("0,1:10,11,12")
    with pytest.raises(MetadataError, match="below"):
        parse_box("5,5,5:1,10,10")


def test_voxel_size_of_a_level_gives_that_levels_grid() -> None:
    target = _volume((100, 90, 80), 8.0, 4)
    by_level = grid_for_target(target, level=2)
    by_size = grid_for_target(target, voxel_size=32.0)
    assert by_size.shape == by_level.shape == (25, 23, 20)
    np.testing.assert_allclose(by_size.origin, by_level.origin)
    np.testing.assert_allclose(by_size.voxel_size, (32.0,) * 3)


def test_box_restricts_the_grid_and_outside_box_is_refused() -> None:
    target = _volume((100, 90, 80), 8.0, 1)
    grid = grid_for_target(target, box=((80.0, 80.0, 80.0), (160.0, 240.0, 400.0)))
    assert grid.shape == (11, 21, 41)
    np.testing.assert_allclose(grid.origin, (80.0, 80.0, 80.0))
    with pytest.raises(MetadataError, match="outside target .* extent"):
        grid_for_target(target, box=((0.0, 0.0, 0.0), (900.0, 10.0, 10.0)))
    with pytest.raises(LevelError, match="--level"):
        grid_for_target(target, level=5)
    with pytest.raises(MetadataError, match="only one"):
        grid_for_target(target, level=0, voxel_size=16.0)


def test_blocks_tile_the_grid_on_the_chunk_grid() -> None:
    shape = (100, 130, 70)
    block_shape = grow_shape((16, 32, 32), shape, 16 * 32 * 32 * 8)
    assert all(b % c == 0 for b, c in zip(block_shape, (16, 32, 32), strict=True))
    assert math.prod(block_shape) <= 16 * 32 * 32 * 8
    blocks = plan_blocks(shape, block_shape)
    covered = np.zeros(shape, dtype=np.int32)
    for b in blocks:
        covered[tuple(slice(a, z) for a, z in zip(b.start, b.stop, strict=True))] += 1
        assert all(a % c == 0 for a, c in zip(b.start, (16, 32, 32), strict=True))
    assert np.all(covered == 1)


def test_full_resolution_fibsem_grid_is_tens_of_thousands_of_tasks() -> None:
    n = 20_000
    grid = OutputGrid(
        (n, n, n), (8.0,) * 3, (0.0,) * 3, ("z", "y", "x"), "nanometer", (64, 128, 128)
    )
    level = Level("s0", _Shape((n, n, n)), (8.0,) * 3, (0.0,) * 3)
    plan = plan_run(
        grid,
        level,
        Identity(3),
        np.uint8,
        parse_memory("256MB"),
        100,
        method="sitk",
        interpolation="linear",
    )
    n_blocks = math.prod(
        math.ceil(s / b) for s, b in zip(grid.shape, plan.block_shape, strict=True)
    )
    assert 10_000 <= n_blocks < 100_000
    piece_bytes = math.prod(plan.piece_shape) * (2 + 2)
    assert piece_bytes <= parse_memory("256MB")
    assert len(plan.levels) == 10


def test_source_box_of_a_bent_map_covers_every_voxel() -> None:
    grid = OutputGrid((20, 24, 28), (1.0,) * 3, (0.0,) * 3, ("z", "y", "x"), "nanometer", (8, 8, 8))
    level = Level("s0", _Shape((60, 60, 60)), (1.0,) * 3, (-10.0,) * 3)
    rng = np.random.default_rng(1)
    field = DisplacementField(rng.normal(0, 2.0, (6, 6, 6, 3)), (-5.0,) * 3, (8.0,) * 3)
    t = Translation((3.0, -2.0, 1.0)).then(field)
    box = source_box(t, grid, (4, 0, 8), (12, 24, 20), level, margin=1)
    assert box is not None
    index = level.physical_to_index(t.apply(grid.points((4, 0, 8), (12, 24, 20))))
    assert np.all(index >= [s.start for s in box])
    assert np.all(index <= [s.stop - 1 for s in box])


def test_source_box_outside_the_source_is_none() -> None:
    grid = OutputGrid((4, 4, 4), (1.0,) * 3, (0.0,) * 3, ("z", "y", "x"), "nanometer", (4, 4, 4))
    level = Level("s0", _Shape((10, 10, 10)), (1.0,) * 3, (0.0,) * 3)
    assert source_box(Translation((100.0, 0.0, 0.0)), grid, (0, 0, 0), (4, 4, 4), level, 1) is None


def test_source_level_follows_the_output_voxel_size_and_local_scale() -> None:
    source = _volume((512, 512, 512), 8.0, 6)
    grid = OutputGrid(
        (10, 10, 10), (64.0,) * 3, (0.0,) * 3, ("z", "y", "x"), "nanometer", (8, 8, 8)
    )
    assert choose_source_level(source, Identity(3), grid) == 3
    assert choose_source_level(source, Scale((0.5, 0.5, 0.5)), grid) == 2
    assert choose_source_level(source, Affine(np.eye(4)), grid, level="s1") == 1
    with pytest.raises(LevelError):
        choose_source_level(source, Identity(3), grid, level=9)
