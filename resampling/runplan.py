"""The decisions of one resampling run: interpolation, method, task sizes, the map's digest.

:func:`check_interpolation` picks the interpolation (nearest for labels),
:func:`choose_method` the way pieces are computed (coframe's compiled
kernel, SimpleITK or numpy: see :mod:`coframe.resampling.block`), and
:func:`plan_run` lays the output pyramid out (:func:`output_levels`: large
Zarr v3 levels are sharded) and sizes blocks and pieces to the memory budget
(:class:`RunPlan`).
:func:`transform_fingerprint` identifies the map in a resumable run's record.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coframe.core.errors import DimensionError, MetadataError, TransformError
from coframe.resampling.chain import (
    SPLINE_FIELD_BYTES,
    chain_members,
    field_lead,
    inverse_lead,
    inverse_tolerance,
    map_points_checked,
    prepare_chain,
    spline_lead,
)
from coframe.resampling.kernel import KERNEL_DTYPES, kernel_takes
from coframe.resampling.plan import (
    INTERPOLATIONS,
    OutputGrid,
    boundary_points,
    grow_shape,
    source_voxels_per_output_voxel,
)
from coframe.transforms.base import Transform
from coframe.transforms.field import DisplacementField
from coframe.transforms.sitk_bridge import to_sitk
from coframe.volumes.write import LevelSpec, pyramid_specs

#: Target bytes of one shard (Zarr v3 outputs with many chunks).
SHARD_BYTES = 64 * 2**20
#: Chunks a level must have before it is sharded.
SHARD_MIN_CHUNKS = 64
#: Coarsest pyramid level: every axis within one chunk, at most this many levels.
MAX_LEVELS = 12

_SITK_DTYPES = {
    np.dtype(t)
    for t in (
        np.uint8,
        np.int8,
        np.uint16,
        np.int16,
        np.uint32,
        np.int32,
        np.uint64,
        np.int64,
        np.float32,
        np.float64,
    )
}


def default_levels(shape: Sequence[int], chunks: Sequence[int]) -> int:
    """Pyramid levels until every axis fits one chunk (at most :data:`MAX_LEVELS`)."""
    n = 1
    for size, c in zip(shape, chunks, strict=True):
        if size > c:
            n = max(n, 1 + math.ceil(math.log2(size / c)))
    return min(n, MAX_LEVELS)


def most_levels(shape: Sequence[int]) -> int:
    """Pyramid levels of a shape halved until every axis is 1 voxel (more would repeat it)."""
    n, longest = 1, max(int(v) for v in shape)
    while longest > 1:
        longest = math.ceil(longest / 2)
        n += 1
    return n


def output_levels(
    grid: OutputGrid, dtype: Any, zarr_version: int, n_levels: int | None = None
) -> tuple[tuple[LevelSpec, ...], tuple[tuple[int, ...] | None, ...]]:
    """The pyramid of an output grid and each level's shard shape (``None``: unsharded).

    ``n_levels`` (default :func:`default_levels`) may reach the level where
    every axis is 1 voxel (:func:`most_levels`), not beyond.

    A Zarr v3 level of more than :data:`SHARD_MIN_CHUNKS` chunks is stored in
    shards of about :data:`SHARD_BYTES`, so a huge output is not millions of
    files.
    """
    count = default_levels(grid.shape, grid.chunks) if n_levels is None else int(n_levels)
    most = most_levels(grid.shape)
    if count < 1:
        raise MetadataError(f"--pyramid-levels {n_levels}: expected at least 1 (s0 alone)")
    if count > most:
        shape = "x".join(map(str, grid.shape))
        raise MetadataError(
            f"--pyramid-levels {n_levels}: a {shape} output halves to "
            f"{'x'.join('1' * grid.ndim)} at level {most - 1}, so it has at most {most} levels: "
            f"pass at most {most}, or leave --pyramid-levels out (levels until one chunk holds "
            "a level)"
        )
    levels = pyramid_specs(grid.shape, grid.voxel_size, grid.origin, count, grid.chunks)
    item = np.dtype(dtype).itemsize
    shards: list[tuple[int, ...] | None] = []
    for spec in levels:
        n_chunks = math.prod(math.ceil(n / c) for n, c in zip(spec.shape, spec.chunks, strict=True))
        if zarr_version == 3 and n_chunks > SHARD_MIN_CHUNKS:
            shards.append(grow_shape(spec.chunks, spec.shape, SHARD_BYTES // item))
        else:
            shards.append(None)
    return levels, tuple(shards)


@dataclass(frozen=True)
class RunPlan:
    """How the output is laid out and cut into tasks.

    Parameters
    ----------
    levels
        Output pyramid geometry (:class:`~coframe.volumes.write.LevelSpec`), finest first.
    shards
        Shard shape per level, or ``None`` (unsharded).
    block_shape
        Level-0 block shape (a multiple of the chunks or shards).
    piece_shape
        Shape of the pieces a block is computed in.
    slab_points
        Points mapped at once by the ``numpy`` method.
    """

    levels: tuple[LevelSpec, ...]
    shards: tuple[tuple[int, ...] | None, ...]
    block_shape: tuple[int, ...]
    piece_shape: tuple[int, ...]
    slab_points: int

    def unit(self, level: int) -> tuple[int, ...]:
        """Shape no two tasks may share in a level: its shard, else its chunk."""
        shard = self.shards[level]
        return tuple(shard) if shard is not None else tuple(self.levels[level].chunks)


def check_interpolation(interpolation: str | None, labels: bool) -> str:
    """The interpolation to use: nearest for labels, linear by default.

    Raises
    ------
    MetadataError
        For an unknown name, or anything but nearest for labels.
    """
    if interpolation is None:
        return "nearest" if labels else "linear"
    name = str(interpolation).lower()
    if name not in INTERPOLATIONS:
        raise MetadataError(
            f"--interpolation {interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}"
        )
    if labels and name != "nearest":
        raise MetadataError(
            f"--interpolation {name} would average label ids: labels are resampled with "
            "--interpolation nearest (the default for labels)"
        )
    return name


def _fields_cover(t: Transform, points: np.ndarray) -> bool:
    """Whether every displacement field of the chain is queried only inside its grid.

    Inside its grid coframe's field (which clamps outside) and ITK's (zero
    beyond half a node outside) agree, so SimpleITK can resample the chain.
    """

    current = points
    for member in chain_members(t):
        if isinstance(member, DisplacementField):
            index = (current - member.origin) / member.spacing
            upper = np.asarray(member.grid_shape, dtype=np.float64) - 1.0
            if not (np.all(index >= 0.0) and np.all(index <= upper)):
                return False
        current = member.apply(current)
    return True


def choose_method(transform: Transform, grid: OutputGrid, dtype: Any, interpolation: str) -> str:
    """``kernel`` or ``sitk`` where they give SimpleITK's result, else ``numpy``.

    Linear resampling onto a 3D grid through an affine, or through a leading
    B-spline and at most one affine (a registration's deformable result), or
    through the inverse of such a chain, or through a displacement field
    between affines, goes through coframe's compiled
    kernel (:mod:`coframe.resampling.kernel`: SimpleITK's values, several
    times faster). SimpleITK resamples the other affine chains, and
    non-linear chains it can hold (fields, B-splines) whose fields cover
    every mapped point of the grid; thin plate splines, other numerical
    inverses, 2D -> 3D maps, data types ITK lacks and 64-bit labels (ITK
    interpolates in double) go through numpy.
    """

    dt = np.dtype(dtype)
    if transform.input_dim != transform.output_dim or grid.ndim not in (2, 3):
        return "numpy"
    if dt not in _SITK_DTYPES:
        return "numpy"
    if interpolation == "nearest" and dt.itemsize == 8 and np.issubdtype(dt, np.integer):
        return "numpy"
    affine = transform.as_affine() is not None
    if interpolation == "linear" and grid.ndim == 3 and dt in KERNEL_DTYPES:
        inverse = inverse_lead(transform)
        if inverse is not None and kernel_takes(inverse):
            return "kernel"
    if not affine:
        try:
            to_sitk(transform)
        except (TransformError, DimensionError):
            return "numpy"
        step = max(8, math.ceil(max(grid.shape) / 48))
        points = boundary_points(grid, (0,) * grid.ndim, grid.shape, interior=True, step=step)
        if not _fields_cover(transform, points):
            return "numpy"
    lead = affine or spline_lead(transform) or field_lead(transform)
    if interpolation == "linear" and grid.ndim == 3 and lead:
        if dt in KERNEL_DTYPES and kernel_takes(prepare_chain(transform, kernel=True)):
            return "kernel"
    return "sitk"


def transform_fingerprint(transform: Transform, grid: OutputGrid) -> str:
    """A digest of the map's values on a lattice over the grid (same map -> same digest)."""
    axes = [np.linspace(0, n - 1, 4) for n in grid.shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    points = grid.index_to_physical(np.stack([m.ravel() for m in mesh], axis=1))
    mapped = map_points_checked(transform, points, inverse_tolerance(grid.voxel_size))
    text = ",".join(f"{v:.9g}" for v in mapped.ravel())
    return hashlib.sha256(f"{type(transform).__name__}:{text}".encode()).hexdigest()[:24]


def plan_run(
    grid: OutputGrid,
    source_level: Any,
    transform: Transform,
    dtype: Any,
    budget: int,
    workers: int,
    *,
    method: str,
    interpolation: str,
    zarr_version: int = 2,
    n_levels: int | None = None,
) -> RunPlan:
    """Lay out the output pyramid and size blocks and pieces to the memory budget.

    A block's output fits the budget and there are at least four blocks per
    worker when the grid allows; a piece's working memory (source box,
    SimpleITK copies or coordinate slabs, result) fits the budget.
    """

    dt = np.dtype(dtype)
    out_bytes = dt.itemsize
    src_bytes = np.dtype(source_level.dtype).itemsize
    ratio = source_voxels_per_output_voxel(source_level, transform, grid)
    levels, shards = output_levels(grid, dt, zarr_version, n_levels)
    unit = shards[0] if shards[0] is not None else grid.chunks
    unit_voxels = math.prod(unit)
    spread = math.ceil(grid.n_voxels / (4 * max(1, workers)))
    block_voxels = max(unit_voxels, min(budget // out_bytes, spread))
    block_shape = grow_shape(unit, grid.shape, block_voxels)
    slab_points = int(max(4096, min(2**18, budget // 1024)))
    cubic = 8.0 * ratio if INTERPOLATIONS[interpolation] > 1 else 0.0
    if method in ("sitk", "kernel"):
        per_voxel = 2.0 * out_bytes + 2.0 * ratio * src_bytes + cubic
        fixed = 0
        dense = method == "kernel" and field_lead(transform) is not None
        if spline_lead(transform) is not None or dense:
            per_voxel += SPLINE_FIELD_BYTES * grid.ndim  # the piece's dense field
        elif inverse_lead(transform) is not None:
            # the piece's dense inverse field, with each voxel's residual and lattice flag
            per_voxel += SPLINE_FIELD_BYTES * (grid.ndim + 1) + 1
            fixed = slab_points * 256  # solved in slabs of points
    else:
        per_voxel = out_bytes + ratio * src_bytes + cubic
        fixed = slab_points * 256
    piece_voxels = max(1, int((budget - fixed) / per_voxel))
    piece_shape = grow_shape(grid.chunks, block_shape, piece_voxels)
    return RunPlan(levels, shards, block_shape, piece_shape, slab_points)
