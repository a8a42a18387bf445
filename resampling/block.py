"""Computing and writing one block of a chunked resampling (what a worker runs).

A worker receives a picklable :class:`BlockJob` and a
:class:`~coframe.resampling.plan.Block`. It opens the source itself from its
spec (:func:`~coframe.resampling.source.open_source`, once per process),
computes the block piece by piece (each piece reads only the source box it
maps into), writes the pieces straight into the output level
(:func:`~coframe.resampling.writer.write_piece`), then drops a done marker
(:mod:`coframe.resampling.resume`) so an interrupted run skips the block
when it is run again. A source chunk that cannot be read stops the block
(:class:`~coframe.resampling.source.BadChunkError`), or with
``on_bad_chunk="fill"`` is read as zeros and listed in the block's marker.
:func:`run_pyramid_block` fills a block of a coarser output level from the
finer one the same way.

Three resampling methods give the same result:

- ``kernel``: linear interpolation onto a 3D grid through an affine, or a
  leading B-spline (made a dense field per piece) and at most one affine,
  or a B-spline's inverse between affines (solved per voxel into a dense
  field per piece), by coframe's compiled kernel
  (:mod:`coframe.resampling.kernel`), which computes SimpleITK's values
  voxel for voxel, several times faster.
- ``sitk``: SimpleITK's ``ResampleImageFilter`` on the piece, with the map
  converted once per process (:mod:`coframe.resampling.chain`: affine
  chains, non-linear chains whose fields cover every point, a leading
  B-spline made a dense field per piece).
- ``numpy``: the source coordinates of every voxel from ``transform.apply``
  in bounded slabs, then :func:`scipy.ndimage.map_coordinates` (gathering
  the nearest voxel for order 0, so 64-bit labels stay exact). Integer
  results are cast as ITK casts: clamped to the type's range, then truncated.

Outside the source (beyond half a voxel past its edge voxels) the value is 0.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from coframe.resampling.chain import (
    FieldLead,
    InverseLead,
    SplineLead,
    inverse_tolerance,
    map_points_checked,
    piece_displacement,
    piece_field_displacement,
    piece_inverse_displacement,
    piece_transform,
    prepare_chain,
)
from coframe.resampling.kernel import linear_affine_of, resample_linear_affine
from coframe.resampling.plan import (
    INTERPOLATION_MARGIN,
    INTERPOLATIONS,
    Block,
    OutputGrid,
    pieces,
    source_box,
)
from coframe.resampling.resume import mark_done
from coframe.resampling.source import open_source, read_source
from coframe.resampling.writer import open_ome_zarr, write_error, write_piece
from coframe.transforms.base import Transform
from coframe.transforms.sitk_bridge import empty_image, resample_image
from coframe.volumes.volume import Level
from coframe.volumes.write import LevelSpec

#: Reads an index box of the source level into an array (or a new one), as the job says.
_Read = Callable[[tuple[slice, ...], np.ndarray | None], np.ndarray]

_LOCK = threading.Lock()
_SITK_TRANSFORMS: dict[str, Any] = {}


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to compute blocks of one output level.

    Parameters
    ----------
    source
        How to open the source image.
    source_level
        Index of the source level read.
    transform
        Output -> source point map.
    grid
        The output grid.
    interpolation
        ``nearest``, ``linear`` or ``bspline``.
    method
        ``kernel``, ``sitk`` or ``numpy``.
    dtype
        Output data type (the source's).
    piece_shape
        Shape of the pieces a block is computed in (a multiple of the chunks).
    slab_points
        Points whose source coordinates are computed at once (``numpy``).
    threads
        Threads SimpleITK or the kernel may use per piece.
    token
        Fingerprint of the run; keys the per-process transform cache.
    output
        Output group directory, or ``None`` to return the blocks' arrays.
    level_path
        Output array written (``s0``).
    on_bad_chunk
        At a source chunk that cannot be read: ``error`` (stop) or ``fill``
        (read it as zeros and report it).
    """

    source: Any
    source_level: int
    transform: Transform
    grid: OutputGrid
    interpolation: str
    method: str
    dtype: str
    piece_shape: tuple[int, ...]
    slab_points: int
    threads: int
    token: str
    output: str | None = None
    level_path: str = "s0"
    on_bad_chunk: str = "error"

    @property
    def order(self) -> int:
        """Interpolation order (0, 1 or 3)."""
        return INTERPOLATIONS[self.interpolation]


# --------------------------------------------------------------------------- casting


def cast_like_itk(values: np.ndarray, dtype: Any) -> np.ndarray:
    """Cast interpolated values as ITK does: integers clamped to the type, then truncated."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return np.trunc(np.clip(values, info.min, info.max)).astype(dt)
    return values.astype(dt, copy=False)


# --------------------------------------------------------------------------- the two methods


def _sitk_transform(job: BlockJob, kernel: bool = False) -> Any:
    """The job's chain prepared for SimpleITK or the kernel (:func:`~.chain.prepare_chain`)."""

    key = (job.token, kernel)
    with _LOCK:
        cached = _SITK_TRANSFORMS.get(key)
    if cached is None:
        cached = prepare_chain(job.transform, kernel=kernel)
        with _LOCK:
            if len(_SITK_TRANSFORMS) > 2:
                _SITK_TRANSFORMS.clear()
            _SITK_TRANSFORMS[key] = cached
    return cached


def _box_start(box: tuple[slice, ...]) -> np.ndarray:
    return np.array([s.start for s in box], dtype=np.int64)


def _sitk_piece(
    job: BlockJob,
    level: Level,
    read: _Read,
    box: tuple[slice, ...],
    start: np.ndarray,
    shape: tuple[int, ...],
) -> np.ndarray:

    origin = level.index_to_physical(_box_start(box)[None].astype(np.float64))[0]
    box_shape = tuple(s.stop - s.start for s in box)
    image, voxels = empty_image(box_shape, level.dtype, level.voxel_size, origin)
    read(box, voxels)
    del voxels
    out_origin = job.grid.index_to_physical(start[None].astype(np.float64))[0]
    transform = piece_transform(_sitk_transform(job), out_origin, job.grid.voxel_size, shape)
    return resample_image(
        image,
        transform,
        shape,
        job.grid.voxel_size,
        out_origin,
        interpolation=job.interpolation,
        threads=job.threads,
        copy=False,
    )


def _kernel_piece(
    job: BlockJob,
    level: Level,
    read: _Read,
    box: tuple[slice, ...],
    start: np.ndarray,
    shape: tuple[int, ...],
) -> np.ndarray:

    source = np.empty(tuple(s.stop - s.start for s in box), dtype=level.dtype)
    read(box, source)
    out_origin = job.grid.index_to_physical(start[None].astype(np.float64))[0]
    prepared = _sitk_transform(job, kernel=True)
    displacement, affine = None, prepared
    if isinstance(prepared, FieldLead):
        displacement = piece_field_displacement(prepared, out_origin, job.grid.voxel_size, shape)
        affine = prepared.rest
    elif isinstance(prepared, SplineLead):
        displacement = piece_displacement(prepared, out_origin, job.grid.voxel_size, shape)
        affine = prepared.rest
    elif isinstance(prepared, InverseLead):
        displacement = piece_inverse_displacement(
            prepared, out_origin, job.grid.voxel_size, shape, job.slab_points
        )
        affine = prepared.rest
    matrix, offset = (np.eye(3), np.zeros(3)) if affine is None else linear_affine_of(affine)
    return resample_linear_affine(
        source,
        level.index_to_physical(_box_start(box)[None].astype(np.float64))[0],
        level.voxel_size,
        matrix,
        offset,
        shape,
        job.grid.voxel_size,
        out_origin,
        displacement=displacement,
        threads=job.threads,
    )


class _SourceBox:
    """A box of source voxels, read and (for cubic interpolation) prefiltered, grown on demand."""

    def __init__(
        self, read: _Read, level: Level, box: tuple[slice, ...], order: int, margin: int
    ) -> None:
        self.read = read
        self.order = order
        self.margin = margin
        self.shape = np.asarray(level.shape)
        self._load(box)

    def _load(self, box: tuple[slice, ...]) -> None:
        self.box = box
        self.lo = _box_start(box)
        self.hi = np.array([s.stop for s in box], dtype=np.int64)
        data = self.read(box, None)
        if self.order > 1:
            data = ndimage.spline_filter(data.astype(np.float64), order=self.order, mode="mirror")
        self.data = data

    def cover(self, index: np.ndarray) -> None:
        """Make sure every (source-level) index lies inside the box, re-reading if not."""
        if index.shape[0] == 0:
            return
        need_lo = np.floor(index.min(axis=0)).astype(np.int64) - self.margin
        need_hi = np.ceil(index.max(axis=0)).astype(np.int64) + self.margin + 1
        need_lo = np.clip(need_lo, 0, self.shape)
        need_hi = np.clip(need_hi, 0, self.shape)
        if np.all(need_lo >= self.lo) and np.all(need_hi <= self.hi):
            return
        lo = np.minimum(need_lo, self.lo)
        hi = np.maximum(need_hi, self.hi)
        self._load(tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)))

    def sample(self, index: np.ndarray) -> np.ndarray:
        """Values at source-level indices ``(N, d)`` (all inside the source's half-voxel border)."""
        local = index - self.lo
        if self.order == 0:
            nearest = np.floor(local + 0.5).astype(np.int64)
            np.clip(nearest, 0, np.asarray(self.data.shape) - 1, out=nearest)
            return self.data[tuple(nearest.T)]
        mode = "nearest" if self.order == 1 else "mirror"
        return ndimage.map_coordinates(
            self.data, local.T, order=self.order, mode=mode, prefilter=False, output=np.float64
        )


def _numpy_piece(
    job: BlockJob,
    level: Level,
    read: _Read,
    box: tuple[slice, ...],
    start: np.ndarray,
    shape: tuple[int, ...],
) -> np.ndarray:
    source = _SourceBox(read, level, box, job.order, INTERPOLATION_MARGIN[job.order])
    out = np.zeros(shape, dtype=np.dtype(job.dtype))
    flat = out.reshape(shape[0], -1)
    per_row = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    rows = max(1, job.slab_points // per_row)
    stop = start + np.asarray(shape)
    limit = np.asarray(level.shape, dtype=np.float64) - 0.5
    tolerance = inverse_tolerance(job.grid.voxel_size)
    for r0 in range(0, shape[0], rows):
        r1 = min(shape[0], r0 + rows)
        lo = start.copy()
        hi = stop.copy()
        lo[0], hi[0] = start[0] + r0, start[0] + r1
        points = job.grid.points(lo, hi)
        index = level.physical_to_index(map_points_checked(job.transform, points, tolerance))
        inside = np.all((index >= -0.5) & (index <= limit), axis=1)  # NaN: no inverse, outside
        if not inside.any():
            continue
        index = index[inside]
        source.cover(index)
        values = source.sample(index)
        if job.order > 0:
            values = cast_like_itk(values, job.dtype)
        slab = np.zeros(points.shape[0], dtype=out.dtype)
        slab[inside] = values
        flat[r0:r1] = slab.reshape(r1 - r0, -1)
    return out


def compute_piece(
    job: BlockJob,
    level: Level,
    start: tuple[int, ...],
    stop: tuple[int, ...],
    bad: set[tuple[str, tuple[int, ...]]] | None = None,
) -> np.ndarray | None:
    """Resample the output index box ``[start, stop)``; ``None`` if it maps outside the source.

    Parameters
    ----------
    job
        The run's job description.
    level
        The source level read.
    start, stop
        Index box of output voxels.
    bad
        Collects the source chunks read as zeros (``job.on_bad_chunk`` ``fill``).

    Raises
    ------
    BadChunkError
        If a source chunk cannot be read and ``job.on_bad_chunk`` is ``error``.
    """
    box = source_box(job.transform, job.grid, start, stop, level, INTERPOLATION_MARGIN[job.order])
    if box is None:
        return None
    shape = tuple(b - a for a, b in zip(start, stop, strict=True))
    origin = np.asarray(start, dtype=np.int64)
    read = partial(read_source, job.source, level, on_bad_chunk=job.on_bad_chunk, bad=bad)
    piece = {"kernel": _kernel_piece, "sitk": _sitk_piece}.get(job.method, _numpy_piece)
    return piece(job, level, read, box, origin, shape)


# --------------------------------------------------------------------------- running


def _limit_itk_threads(threads: int) -> None:
    """Lower this process's ITK thread count to ``threads`` (never raise it).

    SimpleITK's default (platform) threader ignores a filter's own thread
    count and uses the process-wide default, so a worker process running one
    one-thread task per core would otherwise start a full set of ITK threads
    per task and oversubscribe its cores.
    """
    if threads < sitk.ProcessObject.GetGlobalDefaultNumberOfThreads():
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(threads)))


@contextmanager
def _writing(output: str | None) -> Iterator[None]:
    """Turn a write the system refuses into one error naming the output (:func:`write_error`)."""
    try:
        yield
    except OSError as e:
        raise write_error(e, output) from e


def run_block(
    job: BlockJob, block: Block
) -> tuple[int, np.ndarray | None, tuple[tuple[str, tuple[int, ...]], ...]]:
    """Compute one block piece by piece, write it and mark it done.

    Parameters
    ----------
    job
        The run's job description.
    block
        The block.

    Returns
    -------
    tuple
        The number of output chunks the block covers; when the job has no
        output directory, the block's voxels (else ``None``); and the source
        chunks read as zeros (``(level path, chunk index)``, with
        ``job.on_bad_chunk`` ``fill``), also kept in the block's done marker.

    Raises
    ------
    OutputError
        If the disk is full or the output cannot be written.
    BadChunkError
        If a source chunk cannot be read and ``job.on_bad_chunk`` is ``error``.
    """
    if job.method == "sitk":
        _limit_itk_threads(job.threads)
    volume = open_source(job.source)
    level = volume.levels[job.source_level]
    keep = None if job.output is not None else np.zeros(block.shape, dtype=np.dtype(job.dtype))
    bad: set[tuple[str, tuple[int, ...]]] = set()
    for lo, hi in pieces(block.start, block.stop, job.piece_shape):
        data = compute_piece(job, level, lo, hi, bad)
        if data is None:
            continue
        if keep is not None:
            local = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, block.start, strict=True))
            keep[local] = data
        else:
            with _writing(job.output):
                write_piece(job, lo, data)
    filled = tuple(sorted(bad))
    if job.output is not None:
        with _writing(job.output):
            mark_done(job.output, job.level_path, block, filled)
    return block.n_chunks(job.grid.chunks), keep, filled


@dataclass(frozen=True)
class PyramidJob:
    """What a worker needs to fill one coarser output level from the finer one.

    Parameters
    ----------
    output
        Output group directory.
    levels
        Geometry of every level (:class:`~coframe.volumes.write.LevelSpec`).
    axes, unit
        Axis names and unit of the pyramid.
    labels
        Label image: downsample by mode, never by averaging.
    source
        Index of the finer level read.
    """

    output: str
    levels: tuple[LevelSpec, ...]
    axes: tuple[str, ...]
    unit: str
    labels: bool
    source: int

    @property
    def level_path(self) -> str:
        """Path of the level written."""
        return str(self.levels[self.source + 1].path)


def run_pyramid_block(job: PyramidJob, block: Block) -> tuple[int, None]:
    """Fill one block of level ``job.source + 1`` from level ``job.source`` and mark it done.

    Raises
    ------
    OutputError
        If the disk is full or the output cannot be written.
    """
    with _writing(job.output):
        pyramid = open_ome_zarr(
            job.output, tuple(job.levels), axes=job.axes, unit=job.unit, labels=job.labels
        )
        box = tuple((2 * a, 2 * b) for a, b in zip(block.start, block.stop, strict=True))
        pyramid.downsample_level(
            job.source, box=box, method="mode" if job.labels else "mean", block_chunks=1
        )
        mark_done(job.output, job.level_path, block)
    chunks = job.levels[job.source + 1].chunks
    return block.n_chunks(chunks), None
