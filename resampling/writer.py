"""The one output writer: every OME-Zarr and TIFF image coframe writes goes through here.

An OME-Zarr output's life: :func:`create_ome_zarr` (a fresh group) or
:func:`open_ome_zarr` (a group declared in place, as a resumed run needs)
declares the level arrays of a CellMap-style pyramid with their chunks,
shards and compressor (:func:`declare_arrays`) without writing data, so
unwritten chunks read as the fill value. Chunks are written by
:meth:`MultiscaleWriter.write` (zarr-python) or, for resampled pieces, by
:func:`write_piece` through a tensorstore handle each worker process opens
once per run (:func:`output_array`); :meth:`MultiscaleWriter.downsample_level`
fills a coarser level from the finer one (labels by the mode, never
averaged); :meth:`MultiscaleWriter.write_metadata` puts the multiscales
(OME-Zarr 0.4 for Zarr v2, 0.5 for v3) down last, so a partial output is never
taken for a finished one. Resume markers and run records are
:mod:`coframe.resampling.resume`'s.

A TIFF output is one file: :func:`check_tiff_output` refuses it before any
work, :func:`write_tiff_output` writes it atomically. A full disk is one error
saying how to resume, a read-only or forbidden place one naming the output
(:func:`write_error`).
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zarr

from coframe.core.atomic import refuse_existing, write_refused
from coframe.core.errors import (
    AxisError,
    CoframeError,
    DimensionError,
    FormatError,
    OutputError,
)
from coframe.core.units import canonical_unit
from coframe.resampling.plan import OutputGrid
from coframe.volumes.volume import SPATIAL_AXES_3D
from coframe.volumes.write import (
    DEFAULT_CHUNKS,
    LevelSpec,
    axes_entries,
    compressors,
    downsample,
    multiscales_attributes,
    pyramid_specs,
    write_tiff,
)

#: Default chunk compressor of resampled outputs: Blosc LZ4 writes and reads several
#: times faster than zstd (resampling is CPU-bound); ``--compressor zstd`` gives
#: smaller files.
DEFAULT_COMPRESSOR = "lz4"
#: Largest output written as TIFF (bytes).
TIFF_LIMIT = 2**30
#: Name of a leading channel axis.
CHANNEL_AXIS = "c"

_LOCK = threading.Lock()
_HANDLES: dict[tuple[str, str, str], Any] = {}


# --------------------------------------------------------------------------- declaration


def declare_arrays(
    group: zarr.Group,
    levels: Sequence[LevelSpec],
    dtype: Any,
    *,
    compressor: str | None,
    compression_level: int | None = None,
    shards: Sequence[tuple[int, ...] | None] | None = None,
    channels: int | None = None,
    fill_value: Any = 0,
    axes: Sequence[str] | None = None,
) -> None:
    """Declare the level arrays of a multiscale group; arrays already declared are kept.

    Zarr v2 arrays get ``/`` chunk keys (as CellMap's). With ``channels`` the
    arrays have a leading channel axis of that size, one channel per chunk.
    Zarr v3 arrays get ``dimension_names``: the spatial ``axes`` (default
    ``z, y, x`` or ``y, x``) after ``c`` for a channel axis, the names of the
    multiscales axes, as OME-Zarr 0.5 requires.
    """
    zarr_version = int(group.metadata.zarr_format)
    codec = compressors(compressor, compression_level, zarr_version)
    lead = () if channels is None else (int(channels),)
    for i, spec in enumerate(levels):
        if spec.path in group:
            continue
        kwargs: dict[str, Any] = dict(
            name=spec.path,
            shape=lead + tuple(spec.shape),
            chunks=(1,) * len(lead) + tuple(spec.chunks),
            dtype=np.dtype(dtype),
            fill_value=fill_value,
            **codec,
        )
        if zarr_version == 2:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        else:
            spatial = tuple(axes) if axes is not None else SPATIAL_AXES_3D[-len(spec.shape) :]
            kwargs["dimension_names"] = (CHANNEL_AXIS,) * len(lead) + spatial
        if shards is not None and shards[i] is not None:
            kwargs["shards"] = (1,) * len(lead) + tuple(shards[i])
        group.create_array(**kwargs)


class MultiscaleWriter:
    """A declared multiscale pyramid, written level by level and box by box.

    Create one with :func:`create_ome_zarr` or :func:`open_ome_zarr`. Writes go
    through :meth:`write` (an index box of one level); :meth:`downsample_level`
    fills a coarser level from the finer one, chunk by chunk, so memory stays
    bounded; :meth:`write_metadata` puts the multiscales down.
    """

    def __init__(
        self,
        path: Path,
        group: zarr.Group,
        levels: tuple[LevelSpec, ...],
        *,
        axes: tuple[str, ...],
        unit: str,
        name: str | None,
        labels: bool,
        extra: Mapping[str, Any] | None = None,
        channels: int | None = None,
    ) -> None:
        self.path = path
        self.group = group
        self.levels = levels
        self.axes = axes
        self.unit = unit
        self.name = name
        self.labels = labels
        self.extra = dict(extra or {})
        self.channels = channels
        self.arrays: tuple[zarr.Array, ...] = tuple(group[lvl.path] for lvl in levels)

    def __len__(self) -> int:
        return len(self.levels)

    @property
    def zarr_version(self) -> int:
        """2 or 3."""
        return int(self.group.metadata.zarr_format)

    def array(self, level: int) -> zarr.Array:
        """The Zarr array of a level."""
        return self.arrays[self._check_level(level)]

    def _check_level(self, level: int) -> int:
        if not 0 <= level < len(self.levels):
            raise DimensionError(
                f"level {level}: this pyramid has levels 0..{len(self.levels) - 1}"
            )
        return level

    def write(self, level: int, start: Sequence[int], data: np.ndarray) -> None:
        """Write ``data`` into ``level`` with its first voxel at index ``start``.

        ``start`` and ``data`` include the channel axis when the pyramid has one.
        """
        spec = self.levels[self._check_level(level)]
        shape = tuple(self.arrays[level].shape)
        data = np.asarray(data)
        if data.ndim != len(shape) or len(start) != len(shape):
            raise DimensionError(
                f"block of shape {data.shape} at {tuple(start)} does not fit the "
                f"{len(shape)}-D level {spec.path}"
            )
        stop = tuple(int(s) + n for s, n in zip(start, data.shape, strict=True))
        if any(int(s) < 0 for s in start) or any(e > n for e, n in zip(stop, shape, strict=True)):
            raise DimensionError(
                f"block {tuple(start)}..{stop} lies outside level {spec.path} of shape {shape}"
            )
        box = tuple(slice(int(s), e) for s, e in zip(start, stop, strict=True))
        self.arrays[level][box] = data.astype(self.arrays[level].dtype, copy=False)

    def write_metadata(self, extra: Mapping[str, Any] | None = None) -> None:
        """Write (or rewrite) the group's multiscale metadata, with ``extra`` keys beside it."""
        self.extra.update(extra or {})
        self.group.attrs.update(
            multiscales_attributes(
                self.levels,
                zarr_version=self.zarr_version,
                axes=self.axes,
                unit=self.unit,
                name=self.name,
                channel=None if self.channels is None else CHANNEL_AXIS,
                extra=self.extra,
            )
        )

    def write_attribute(self, key: str, value: Any) -> None:
        """Store a JSON-ready group attribute beside the multiscales (a run's provenance)."""
        self.group.attrs[key] = value

    def downsample_level(
        self,
        source: int,
        *,
        box: Sequence[tuple[int, int]] | None = None,
        method: str | None = None,
        block_chunks: int = 1,
    ) -> tuple[tuple[int, int], ...]:
        """Fill level ``source + 1`` from level ``source`` over an index box.

        Parameters
        ----------
        source
            The finer level to read.
        box
            ``(start, stop)`` per spatial axis in ``source`` indices (default:
            the whole level). Starts must be even (a multiple of 2) so the
            coarse box is exact; stops are clipped to the level.
        method
            ``mean`` (default for intensities), ``mode`` (default for labels)
            or ``nearest``.
        block_chunks
            Destination chunks per axis processed at once (memory bound).

        Returns
        -------
        The destination box, ``(start, stop)`` per spatial axis in level ``source + 1``.
        """
        self._check_level(source)
        if source + 1 >= len(self.levels):
            raise DimensionError(f"level {source} is the coarsest of this pyramid: nothing to fill")
        fine = self.levels[source]
        coarse = self.levels[source + 1]
        if box is None:
            box = tuple((0, n) for n in fine.shape)
        if len(box) != len(fine.shape):
            raise DimensionError(f"box {tuple(box)} needs {len(fine.shape)} (start, stop) pairs")
        if any(int(a) % 2 for a, _ in box):
            raise DimensionError(
                f"box starts {tuple(a for a, _ in box)} must be even to downsample by 2"
            )
        dst = tuple(
            (int(a) // 2, min(math.ceil(min(int(b), n) / 2), m))
            for (a, b), n, m in zip(box, fine.shape, coarse.shape, strict=True)
        )
        step = tuple(c * block_chunks for c in coarse.chunks)
        # align block starts to the destination chunk grid so writes cover whole chunks
        ranges = [
            list(range((a // s) * s, b, s)) if b > a else []
            for (a, b), s in zip(dst, step, strict=True)
        ]
        src_arr = self.arrays[source]
        meth = method or ("mode" if self.labels else "mean")
        lead = 0 if self.channels is None else 1  # a channel axis is read whole, never halved
        factor = (1,) * lead + (2,) * len(fine.shape)
        for starts in np.ndindex(*[len(r) for r in ranges]):
            lo = [max(ranges[d][starts[d]], dst[d][0]) for d in range(len(dst))]
            hi = [min(ranges[d][starts[d]] + step[d], dst[d][1]) for d in range(len(dst))]
            if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
                continue
            src_box = (slice(None),) * lead + tuple(
                slice(2 * a, min(2 * b, n)) for a, b, n in zip(lo, hi, fine.shape, strict=True)
            )
            block = np.asarray(src_arr[src_box])
            out = downsample(block, factor if lead else 2, method=meth)
            keep = (slice(None),) * lead + tuple(
                slice(0, h - a) for a, h in zip(lo, hi, strict=True)
            )
            self.write(source + 1, [0] * lead + lo, out[keep])
        return dst


def _split_store_path(path: Path) -> tuple[Path, str]:
    """Split a path into its ``.zarr`` store root and the group path inside it."""
    parts = path.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].endswith(".zarr"):
            return Path(*parts[: i + 1]), "/".join(parts[i + 1 :])
    return path, ""


def create_ome_zarr(
    path: str | Path,
    *,
    shape0: Sequence[int],
    voxel_size0: Sequence[float],
    origin0: Sequence[float] | None = None,
    dtype: Any,
    unit: str = "nanometer",
    axes: Sequence[str] | None = None,
    chunks: Sequence[int] | None = None,
    n_levels: int = 1,
    zarr_version: int = 2,
    compressor: str | None = "zstd",
    compression_level: int | None = None,
    name: str | None = None,
    fill_value: Any = 0,
    labels: bool = False,
    channels: int | None = None,
    level_prefix: str = "s",
    extra_attributes: Mapping[str, Any] | None = None,
    write_metadata: bool = True,
    overwrite: bool = False,
) -> MultiscaleWriter:
    """Declare an OME-Zarr multiscale pyramid (CellMap layout) without writing data.

    Parameters
    ----------
    path
        Directory of the multiscale group. If a parent directory ends in
        ``.zarr`` it is the store root and the rest is the group path inside
        it (``out/fibsem.zarr/recon-1/em/fibsem-uint8``); intermediate groups
        are created.
    shape0, voxel_size0, origin0
        Finest level geometry (spatial axes); ``origin0`` (default zeros) is
        the centre of voxel 0.
    dtype
        Voxel data type.
    unit
        Length unit of voxel sizes and origins (stored on every axis).
    axes
        ``("z", "y", "x")`` (default for 3-D) or ``("y", "x")``.
    chunks
        Chunk shape (default 64x128x128 for 3-D).
    n_levels
        Number of pyramid levels ``s0..s{n-1}``.
    zarr_version
        2 (OME-Zarr 0.4, ``/`` chunk keys) or 3 (OME-Zarr 0.5).
    compressor, compression_level
        ``zstd`` (default, level 6), ``lz4``, ``gzip`` or ``None``
        (see :func:`~coframe.volumes.write.compressors`).
    name
        Multiscale name (CellMap uses the group path).
    fill_value
        Value of never-written chunks.
    labels
        Integer label image: :meth:`MultiscaleWriter.downsample_level` then
        defaults to the mode, never to averaging.
    channels
        Number of channels of a leading channel axis ``c`` (default: none).
    level_prefix
        Level arrays are named ``level_prefix + str(i)``.
    extra_attributes
        Additional group attributes beside ``multiscales``.
    write_metadata
        Write the multiscale metadata now; pass ``False`` to write it last with
        :meth:`MultiscaleWriter.write_metadata`.
    overwrite
        Replace an existing group at ``path``.

    Raises
    ------
    OverwriteError
        If the group exists and ``overwrite`` is false.
    """
    target = Path(path)
    shape0 = tuple(int(n) for n in shape0)
    ndim = len(shape0)
    axes_t = tuple(axes) if axes is not None else SPATIAL_AXES_3D[-ndim:]
    if len(axes_t) != ndim:
        raise AxisError(f"axes {axes_t} do not match the {ndim}-D shape {shape0}")
    axes_entries(axes_t, unit)
    unit = canonical_unit(unit, key="unit")
    if zarr_version not in (2, 3):
        raise FormatError(f"zarr_version={zarr_version}: expected 2 or 3 (--zarr-version)")
    origin = tuple(float(o) for o in origin0) if origin0 is not None else (0.0,) * ndim
    chunk_shape = tuple(chunks) if chunks is not None else DEFAULT_CHUNKS.get(ndim, (64,) * ndim)
    levels = pyramid_specs(shape0, voxel_size0, origin, n_levels, chunk_shape, prefix=level_prefix)
    compressors(compressor, compression_level, zarr_version)  # an unknown name fails here

    root_path, group_path = _split_store_path(target)
    if refuse_existing(target, overwrite).exists():
        shutil.rmtree(target)
    if root_path.exists():
        try:
            root = zarr.open_group(str(root_path), mode="r+")
        except (
            zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError,
            ValueError,
        ) as e:
            raise FormatError(
                f"{root_path} exists but is not a Zarr group: choose another output path"
            ) from e
        if root.metadata.zarr_format != zarr_version:
            raise FormatError(
                f"{root_path} is Zarr v{root.metadata.zarr_format} but zarr_version="
                f"{zarr_version} was asked: use the store's version or another output path"
            )
    else:
        root = zarr.open_group(str(root_path), mode="w", zarr_format=zarr_version)
    group = root.require_group(group_path) if group_path else root
    declare_arrays(
        group,
        levels,
        dtype,
        compressor=compressor,
        compression_level=compression_level,
        channels=channels,
        fill_value=fill_value,
        axes=axes_t,
    )
    writer = MultiscaleWriter(
        target,
        group,
        levels,
        axes=axes_t,
        unit=unit,
        name=name,
        labels=labels,
        extra=extra_attributes,
        channels=channels,
    )
    if write_metadata:
        writer.write_metadata()
    return writer


def open_ome_zarr(
    path: str | Path,
    levels: tuple[LevelSpec, ...],
    *,
    axes: tuple[str, ...],
    unit: str,
    labels: bool,
    name: str | None = None,
    dtype: Any = None,
    zarr_version: int = 2,
    compressor: str | None = None,
    compression_level: int | None = None,
    shards: Sequence[tuple[int, ...] | None] | None = None,
) -> MultiscaleWriter:
    """The writer of a multiscale group directory, declared in place or already declared.

    With a ``dtype`` the group is created if missing and its missing level
    arrays are declared (:func:`declare_arrays`: a fresh or a resumed run);
    without one the group and its arrays must exist (a worker filling a level).
    """
    if dtype is None:
        group = zarr.open_group(str(path), mode="r+")
    else:
        group = zarr.open_group(str(path), mode="a", zarr_format=zarr_version)
        declare_arrays(
            group,
            levels,
            dtype,
            compressor=compressor,
            compression_level=compression_level,
            shards=shards,
            axes=axes,
        )
    return MultiscaleWriter(
        Path(path), group, levels, axes=axes, unit=unit, name=name, labels=labels
    )


# --------------------------------------------------------------------------- resampled pieces


class PieceTarget(Protocol):
    """Where a resampled piece goes (a :class:`~coframe.resampling.block.BlockJob`)."""

    output: str | None
    level_path: str
    token: str


def output_array(output: str, level_path: str, token: str = "") -> Any:
    """The output array of a level as a tensorstore handle, opened once per process and run.

    Pieces are written through tensorstore, whose encoding and file writes
    run in C++ threads without the GIL, so they overlap with the next
    piece's resampling in another task.
    """
    # imported here: tensorstore adds ~0.6 s to every command's start-up (measured), and
    # only resampling workers write through it
    import tensorstore as ts

    key = (output, level_path, token)
    with _LOCK:
        array = _HANDLES.get(key)
    if array is None:
        path = Path(output) / level_path
        driver = "zarr3" if (path / "zarr.json").is_file() else "zarr"
        spec = {"driver": driver, "kvstore": {"driver": "file", "path": str(path)}}
        # no fsync per chunk (as zarr-python; the cost of a disk flush per chunk, on shared
        # file systems most of all): an interrupted process loses nothing it wrote, and a
        # rerun recomputes any block without its done marker
        context = ts.Context({"file_io_sync": False})
        array = ts.open(spec, open=True, context=context).result()
        with _LOCK:
            _HANDLES[key] = array
    return array


def forget_outputs(output: str) -> None:
    """Drop this process's cached handles of an output's arrays (after it is recreated)."""
    with _LOCK:
        for key in [k for k in _HANDLES if k[0] == output]:
            del _HANDLES[key]


def write_piece(job: PieceTarget, start: tuple[int, ...], data: np.ndarray) -> None:
    """Write a computed piece into the output level with its first voxel at ``start``.

    Raises
    ------
    OSError
        If the system refuses the write (tensorstore's error, with its errno).
    """
    array = output_array(str(job.output), job.level_path, job.token)
    box = tuple(slice(a, a + n) for a, n in zip(start, data.shape, strict=True))
    try:
        array[box].write(data).result()
    except ValueError as e:
        text = str(e)
        code = re.search(r"os_error_code='(\d+)'|OS error: (\d+)", text)
        number = errno.ENOSPC if "No space left" in text else None
        if code is not None:
            number = int(code.group(1) or code.group(2))
        if number is None:
            raise
        raise OSError(number, os.strerror(number)) from e


#: What to do about an output the system refuses to write.
WRITE_FIX = "choose a writable output location (-o) or fix its permissions"


def write_error(e: OSError, output: str | os.PathLike[str] | None) -> CoframeError:
    """The one-line error of an output write the system refused (``OSError`` ``e``).

    A full disk (or quota) says how to resume; anything else (read-only file
    system, permissions) names the output and how to choose another.
    """
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full_error(e, None if output is None else str(output))
    return write_refused(output or "the output", e, WRITE_FIX)


def disk_full_error(e: OSError, output: str | None) -> CoframeError:
    """The one-line error of a full disk while writing ``output``."""
    where = output or "the output"
    return OutputError(
        f"no space left on the device while writing {where}: free space and run the same "
        "command again to resume"
    )


# --------------------------------------------------------------------------- TIFF


def check_tiff_output(out: Path, grid: OutputGrid, dtype: Any, *, force: bool) -> None:
    """Refuse a TIFF output before any work: above :data:`TIFF_LIMIT`, or existing.

    Raises
    ------
    OutputError
        If the image would be larger than :data:`TIFF_LIMIT`.
    OverwriteError
        If ``out`` exists and ``force`` is false.
    """
    size = grid.n_voxels * np.dtype(dtype).itemsize
    if size > TIFF_LIMIT:
        raise OutputError(
            f"the output is {size / 2**30:.1f} GiB, above the TIFF limit of "
            f"{TIFF_LIMIT / 2**30:.0f} GiB: write OME-Zarr instead (--format ome-zarr with an "
            "output directory)"
        )
    refuse_existing(out, force)


def write_tiff_output(out: Path, image: np.ndarray, grid: OutputGrid, *, force: bool) -> None:
    """Write a grid's image as one TIFF with its voxel size and origin, atomically."""
    try:
        write_tiff(
            out, image, grid.voxel_size, grid.unit, grid.axes, origin=grid.origin, overwrite=force
        )
    except OSError as e:
        raise write_error(e, out) from e
