"""Planning a chunked resampling: the output grid, its blocks, source boxes and levels.

Resampling SOURCE's image into TARGET's frame pulls back: every output voxel
centre ``p`` (TARGET physical coordinates) samples SOURCE at ``T(p)`` with
``T`` the TARGET -> SOURCE point map. This module decides *what* to compute:

- :class:`OutputGrid`: shape, voxel size, origin, axes and chunks of the
  output, from a level of the target image, a voxel size over the target's
  extent, optionally restricted to a physical box.
- :class:`Block`: one task's share of the grid, a box of whole output chunks
  (or shards) whose output fits the per-task memory budget; a block is
  computed in *pieces* whose working memory (source box, coordinates, output)
  fits the budget too, so blocks can stay large and tasks few.
- :func:`source_box`: the index box of a source level that a piece of the
  grid maps into, from a grid of points on the piece's faces (fields bend:
  corners alone are not enough) plus, for non-linear maps, a sparse interior
  lattice, widened by the interpolation margin.
- :func:`choose_source_level`: the source pyramid level nearest the output
  voxel size carried into the source space by the local scale of ``T``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coframe.core.errors import DimensionError, MetadataError
from coframe.resampling.chain import inverse_tolerance, map_points_checked
from coframe.resampling.sizes import parse_size
from coframe.transforms.base import Transform
from coframe.volumes.volume import Level, Volume
from coframe.volumes.write import DEFAULT_CHUNKS

#: Interpolation orders by name.
INTERPOLATIONS: dict[str, int] = {"nearest": 0, "linear": 1, "bspline": 3}
#: Source voxels added around a mapped box, by interpolation order.
INTERPOLATION_MARGIN: dict[int, int] = {0: 1, 1: 1, 3: 3}
#: Extra source voxels around the box of a non-linear map (bulges between face samples).
NONLINEAR_MARGIN = 2
#: Output voxels between face sample points.
FACE_STEP = 8
#: Interior lattice points per axis sampled for non-linear maps.
INTERIOR_POINTS = 5
#: Relative tolerance when a box is checked against an extent.
_EXTENT_TOL = 1e-6


@dataclass(frozen=True)
class OutputGrid:
    """The voxel grid an image is resampled onto.

    Parameters
    ----------
    shape
        Voxels along each axis (numpy order).
    voxel_size
        Physical voxel size along each axis.
    origin
        Physical position of the centre of voxel 0.
    axes
        Axis names, ``("z", "y", "x")`` or ``("y", "x")``.
    unit
        Length unit of voxel size and origin.
    chunks
        Chunk shape of the output arrays.
    """

    shape: tuple[int, ...]
    voxel_size: tuple[float, ...]
    origin: tuple[float, ...]
    axes: tuple[str, ...]
    unit: str
    chunks: tuple[int, ...]

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def n_voxels(self) -> int:
        """Total number of voxels."""
        return math.prod(int(n) for n in self.shape)  # Python ints: no int64 overflow

    @property
    def extent(self) -> tuple[tuple[float, float], ...]:
        """Physical (min, max) along each axis, voxel edge to voxel edge."""
        return tuple(
            (o - v / 2.0, o + (n - 0.5) * v)
            for o, v, n in zip(self.origin, self.voxel_size, self.shape, strict=True)
        )

    def points(self, start: Sequence[int], stop: Sequence[int]) -> np.ndarray:
        """Physical centres ``(N, ndim)`` of the voxels of an index box, C order."""
        axes = [
            o + v * np.arange(a, b, dtype=np.float64)
            for o, v, a, b in zip(self.origin, self.voxel_size, start, stop, strict=True)
        ]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def index_to_physical(self, index: np.ndarray) -> np.ndarray:
        """Physical coordinates of (fractional) voxel indices ``(N, ndim)``."""
        return np.asarray(index, dtype=np.float64) * np.asarray(self.voxel_size) + np.asarray(
            self.origin
        )


@dataclass(frozen=True)
class Block:
    """A box of whole output chunks computed by one task.

    Parameters
    ----------
    index
        Position of the block in the block grid.
    start, stop
        Index box of the block in the output level (stop exclusive, clipped).
    """

    index: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]

    @property
    def name(self) -> str:
        """Identifier used for the block's done marker (``"3.0.12"``)."""
        return ".".join(str(i) for i in self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        """Voxels along each axis."""
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))

    def n_chunks(self, chunks: Sequence[int]) -> int:
        """Number of output chunks the block covers (it starts on the chunk grid)."""
        return int(np.prod([math.ceil(n / c) for n, c in zip(self.shape, chunks, strict=True)]))


# --------------------------------------------------------------------------- parsing


def parse_memory(text: str | int) -> int:
    """Bytes of a per-task memory budget such as ``"256MB"`` (at least 1 MiB).

    Raises
    ------
    MetadataError
        If the text is not a size of at least 1 MiB (names ``--memory-per-task``).
    """
    value = parse_size(text, flag="--memory-per-task")
    if value < 2**20:
        raise MetadataError(f"--memory-per-task {text!r}: expected at least 1MiB per task")
    return value


# --------------------------------------------------------------------------- the output grid


def _default_chunks(ndim: int, chunks: Sequence[float] | None) -> tuple[int, ...]:
    if chunks is None:
        return DEFAULT_CHUNKS[ndim]
    text = ",".join(f"{c:g}" for c in chunks)
    if len(chunks) != ndim or any(c != int(c) or c < 1 for c in chunks):
        raise DimensionError(
            f"--chunks {text}: expected {ndim} whole positive numbers of voxels "
            f"({','.join('zyx'[-ndim:])}, e.g. {','.join(map(str, DEFAULT_CHUNKS[ndim]))})"
        )
    return tuple(int(c) for c in chunks)


def grid_from_level(
    level: Level, axes: Sequence[str], unit: str, chunks: Sequence[float] | None = None
) -> OutputGrid:
    """The grid of one pyramid level (chunks clipped to its shape)."""
    ch = _default_chunks(len(level.shape), chunks)
    return OutputGrid(
        shape=level.shape,
        voxel_size=tuple(float(v) for v in level.voxel_size),
        origin=tuple(float(o) for o in level.origin),
        axes=tuple(axes),
        unit=unit,
        chunks=tuple(min(c, n) for c, n in zip(ch, level.shape, strict=True)),
    )


def grid_over_extent(
    extent: Sequence[tuple[float, float]],
    voxel_size: Sequence[float],
    axes: Sequence[str],
    unit: str,
    chunks: Sequence[float] | None = None,
) -> OutputGrid:
    """A grid of ``voxel_size`` whose lower voxel edge sits on the extent's lower edge.

    With the voxel size of a CellMap pyramid level this reproduces that
    level's grid exactly (``ceil`` shape, half-voxel offset).
    """
    vs = tuple(float(v) for v in voxel_size)
    shape = tuple(
        max(1, math.ceil((hi - lo) / v - 1e-9)) for (lo, hi), v in zip(extent, vs, strict=True)
    )
    origin = tuple(lo + v / 2.0 for (lo, _), v in zip(extent, vs, strict=True))
    ch = _default_chunks(len(shape), chunks)
    return OutputGrid(
        shape=shape,
        voxel_size=vs,
        origin=origin,
        axes=tuple(axes),
        unit=unit,
        chunks=tuple(min(c, n) for c, n in zip(ch, shape, strict=True)),
    )


def restrict_to_box(
    grid: OutputGrid, lo: Sequence[float], hi: Sequence[float], what: str = "the target"
) -> OutputGrid:
    """The sub-grid of the voxels whose centres lie in the physical box ``[lo, hi]``.

    Raises
    ------
    MetadataError
        If the box is not inside the grid's extent or holds no voxel centre
        (names ``--box`` and the extent).
    """
    extent = grid.extent
    if len(lo) != grid.ndim or len(hi) != grid.ndim:
        raise MetadataError(
            f"--box corners {tuple(lo)}:{tuple(hi)} need {grid.ndim} numbers each (axes "
            f"{','.join(grid.axes)})"
        )
    span = [b - a for a, b in extent]
    inside = all(
        a >= e0 - _EXTENT_TOL * s and b <= e1 + _EXTENT_TOL * s
        for a, b, (e0, e1), s in zip(lo, hi, extent, span, strict=True)
    )
    text = ":".join(",".join(f"{v:g}" for v in c) for c in (lo, hi))
    ext = ":".join(",".join(f"{v:g}" for v in c) for c in zip(*extent, strict=True))
    if not inside:
        raise MetadataError(
            f"--box {text} lies outside {what}'s extent {ext} ({grid.unit}, z,y,x): give a box "
            "inside it"
        )
    start, stop = [], []
    for a, b, o, v, n in zip(lo, hi, grid.origin, grid.voxel_size, grid.shape, strict=True):
        i0 = max(0, math.ceil((a - o) / v - 1e-9))
        i1 = min(n, math.floor((b - o) / v + 1e-9) + 1)
        start.append(i0)
        stop.append(i1)
    if any(b <= a for a, b in zip(start, stop, strict=True)):
        raise MetadataError(
            f"--box {text} holds no voxel centre of the output grid (voxel size "
            f"{','.join(f'{v:g}' for v in grid.voxel_size)} {grid.unit}): give a larger box"
        )
    shape = tuple(b - a for a, b in zip(start, stop, strict=True))
    origin = tuple(o + v * a for o, v, a in zip(grid.origin, grid.voxel_size, start, strict=True))
    chunks = tuple(min(c, n) for c, n in zip(grid.chunks, shape, strict=True))
    return OutputGrid(shape, grid.voxel_size, origin, grid.axes, grid.unit, chunks)


def grid_for_target(
    target: Volume,
    *,
    level: int | str | None = None,
    voxel_size: float | Sequence[float] | None = None,
    box: tuple[Sequence[float], Sequence[float]] | None = None,
    chunks: Sequence[float] | None = None,
) -> OutputGrid:
    """The output grid in the target image's frame.

    Parameters
    ----------
    target
        The image whose frame the output takes.
    level
        Use this level's grid (``--level``); default level 0 unless
        ``voxel_size`` is given.
    voxel_size
        Output voxel size (one number or one per axis, ``--voxel-size``): a
        grid over the target's extent whose lower voxel edge sits on the
        extent's lower edge (a level's own grid when the size is a level's).
    box
        Physical ``(lo, hi)`` corners restricting the grid (``--box``).
    chunks
        Output chunk shape (default 64x128x128, or 512x512 in 2D).

    Raises
    ------
    LevelError
        If the level does not exist.
    MetadataError
        If both ``level`` and ``voxel_size`` are given, the voxel size is not
        positive, or the box lies outside the target's extent.
    """
    if level is not None and voxel_size is not None:
        raise MetadataError(
            f"--level {level} and --voxel-size {voxel_size} both give the output voxel size: "
            "pass only one"
        )
    if voxel_size is None:
        grid = grid_from_level(
            target.level(0 if level is None else level), target.axes, target.unit, chunks
        )
    else:
        vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (target.ndim,))
        if vs.size != target.ndim or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
            raise MetadataError(
                f"--voxel-size {voxel_size}: expected one positive number or one per axis "
                f"({','.join(target.axes)}) in {target.unit}"
            )
        grid = grid_over_extent(target.levels[0].extent, vs, target.axes, target.unit, chunks)
    if box is not None:
        grid = restrict_to_box(grid, box[0], box[1], what=f"target {target.source}")
    return grid


# --------------------------------------------------------------------------- blocks


def grow_shape(unit: Sequence[int], limit_shape: Sequence[int], max_voxels: int) -> tuple[int, ...]:
    """A multiple of ``unit`` grown by doubling while it fits ``max_voxels``.

    The axis with the fewest voxels doubles first (the last axis on ties), so
    blocks stay compact; no axis grows past ``limit_shape`` rounded up to the
    unit.
    """
    cap = [max(u, math.ceil(n / u) * u) for u, n in zip(unit, limit_shape, strict=True)]
    shape = [min(int(u), c) for u, c in zip(unit, cap, strict=True)]
    while True:
        order = sorted(range(len(shape)), key=lambda a: (shape[a], -a))
        for axis in order:
            if shape[axis] >= cap[axis]:
                continue
            trial = list(shape)
            trial[axis] = min(shape[axis] * 2, cap[axis])
            if math.prod(trial) <= max_voxels:
                shape = trial
                break
        else:
            return tuple(shape)


def plan_blocks(shape: Sequence[int], block_shape: Sequence[int]) -> list[Block]:
    """Tile an index grid of ``shape`` with blocks of ``block_shape`` (edge blocks clipped)."""
    counts = [math.ceil(n / b) for n, b in zip(shape, block_shape, strict=True)]
    blocks = []
    for index in np.ndindex(*counts):
        start = tuple(int(i * b) for i, b in zip(index, block_shape, strict=True))
        stop = tuple(int(min(s + b, n)) for s, b, n in zip(start, block_shape, shape, strict=True))
        blocks.append(Block(tuple(int(i) for i in index), start, stop))
    return blocks


def pieces(
    start: Sequence[int], stop: Sequence[int], piece_shape: Sequence[int]
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Tile the index box ``[start, stop)`` with pieces of ``piece_shape`` (clipped)."""
    ranges = [range(a, b, p) for a, b, p in zip(start, stop, piece_shape, strict=True)]
    out = []
    for corner in np.ndindex(*[len(r) for r in ranges]):
        lo = tuple(int(r[i]) for r, i in zip(ranges, corner, strict=True))
        hi = tuple(int(min(a + p, b)) for a, p, b in zip(lo, piece_shape, stop, strict=True))
        out.append((lo, hi))
    return out


# --------------------------------------------------------------------------- source boxes


def boundary_points(
    grid: OutputGrid,
    start: Sequence[int],
    stop: Sequence[int],
    *,
    interior: bool = False,
    step: int = FACE_STEP,
) -> np.ndarray:
    """Physical points on the faces of an index box (a grid on each face, not only corners).

    Parameters
    ----------
    grid
        The output grid.
    start, stop
        Index box (stop exclusive); faces pass through the outer voxel centres.
    interior
        Also add a sparse interior lattice (for non-linear maps).
    step
        Largest distance, in voxels, between neighbouring face samples.
    """
    last = [b - 1 for b in stop]
    lines = [
        np.unique(np.linspace(a, z, max(2, math.ceil((z - a) / step) + 1)))
        for a, z in zip(start, last, strict=True)
    ]
    faces = []
    for axis in range(grid.ndim):
        for value in {start[axis], last[axis]}:
            axes = [lines[k] if k != axis else np.array([float(value)]) for k in range(grid.ndim)]
            mesh = np.meshgrid(*axes, indexing="ij")
            faces.append(np.stack([m.ravel() for m in mesh], axis=1))
    if interior:
        axes = [np.linspace(a, z, INTERIOR_POINTS) for a, z in zip(start, last, strict=True)]
        mesh = np.meshgrid(*axes, indexing="ij")
        faces.append(np.stack([m.ravel() for m in mesh], axis=1))
    index = np.unique(np.concatenate(faces), axis=0)
    return grid.index_to_physical(index)


def source_box(
    transform: Transform,
    grid: OutputGrid,
    start: Sequence[int],
    stop: Sequence[int],
    level: Level,
    margin: int,
) -> tuple[slice, ...] | None:
    """Index box of a source level that the output box ``[start, stop)`` maps into.

    Linear maps need only the box corners; non-linear maps are sampled on a
    grid of every face and a sparse interior lattice, and get
    :data:`NONLINEAR_MARGIN` extra voxels. Returns ``None`` when the box maps
    entirely outside the source.

    Parameters
    ----------
    transform
        The output -> source point map.
    grid
        The output grid.
    start, stop
        Index box of output voxels.
    level
        The source level read.
    margin
        Source voxels added on every side (interpolation support).
    """
    linear = transform.as_affine() is not None
    if linear:
        axes = [
            np.array(sorted({a, b - 1}), dtype=np.float64) for a, b in zip(start, stop, strict=True)
        ]
        mesh = np.meshgrid(*axes, indexing="ij")
        points = grid.index_to_physical(np.stack([m.ravel() for m in mesh], axis=1))
    else:
        points = boundary_points(grid, start, stop, interior=True)
        margin += NONLINEAR_MARGIN
    mapped = map_points_checked(transform, points, inverse_tolerance(grid.voxel_size))
    index = level.physical_to_index(mapped)
    finite = np.all(np.isfinite(index), axis=1)
    if not finite.any():
        return None
    index = index[finite]
    lo = np.floor(index.min(axis=0)).astype(np.int64) - margin
    hi = np.ceil(index.max(axis=0)).astype(np.int64) + margin + 1
    shape = np.asarray(level.shape)
    lo = np.clip(lo, 0, shape)
    hi = np.clip(hi, 0, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


# --------------------------------------------------------------------------- source level


def local_scale(transform: Transform, grid: OutputGrid) -> np.ndarray:
    """Length in source space of one output voxel step along each output axis.

    Measured by central differences at the grid centre (for a linear map,
    anywhere): ``|J[:, k]| * voxel_size[k]``; where the map has no inverse
    there, at the centre of an octant of the grid; the voxel size itself if
    it has none anywhere tried.
    """
    steps = np.diag(np.asarray(grid.voxel_size, dtype=np.float64))
    tolerance = inverse_tolerance(grid.voxel_size)
    # the centre, else the centres of the grid's octants (a map without an inverse at one point)
    for fraction in [0.5, *itertools.product((0.25, 0.75), repeat=grid.ndim)]:
        index = (np.asarray(grid.shape) - 1) * np.asarray(fraction)
        centre = grid.index_to_physical(index[None])[0]
        plus = map_points_checked(transform, centre + 0.5 * steps, tolerance)
        minus = map_points_checked(transform, centre - 0.5 * steps, tolerance)
        scale = np.linalg.norm(plus - minus, axis=1)
        if np.all(np.isfinite(scale)):
            return scale
    return np.asarray(grid.voxel_size, dtype=np.float64)


def choose_source_level(
    source: Volume, transform: Transform, grid: OutputGrid, level: int | str | None = None
) -> int:
    """Index of the source level to read.

    The level nearest (log scale) the output voxel size carried into source
    space by the local scale of ``transform``; or the given level.

    Raises
    ------
    LevelError
        If the given level does not exist.
    """
    if level is not None:
        chosen = source.level(level)
        return source.levels.index(chosen)
    lengths = local_scale(transform, grid)
    lengths = lengths[lengths > 0]
    if lengths.size == 0:
        return 0
    size = float(np.exp(np.mean(np.log(lengths))))
    return source.nearest_level(size)


def source_voxels_per_output_voxel(
    source_level: Level, transform: Transform, grid: OutputGrid
) -> float:
    """How many source voxels one output voxel covers (at least 1), for memory planning."""
    lengths = local_scale(transform, grid)
    vs = np.asarray(source_level.voxel_size, dtype=np.float64)
    n_out = len(lengths)
    ratio = float(np.prod(lengths)) / float(np.prod(np.sort(vs)[:n_out]))
    return max(1.0, ratio)
