"""Opening and reading a resampling source, once per process (what a worker reads).

A worker receives a picklable, hashable source spec (:class:`ImageSource`,
or any object with ``open()`` and ``describe()``: :class:`SourceSpec`) and
opens the image itself; :func:`open_source` keeps the opened volume per
process, so the driver and the local tasks of a run open it once
(:func:`source_for_run`).
:func:`read_source` reads an index box of a level, straight through
tensorstore for a plain local OME-Zarr level (its chunk cache decodes a
chunk shared by neighbouring source boxes once); a box that fails is read
again chunk by chunk, so a corrupt chunk is named (:class:`BadChunkError`)
or, if the run says so, read as zeros and counted.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from coframe.core.errors import FormatError
from coframe.volumes.open import open_volume
from coframe.volumes.sources import ZarrSource
from coframe.volumes.volume import Level, Volume

#: What a run does at a source chunk that cannot be read or decoded: stop, or read it as zeros.
BAD_CHUNK_POLICIES = ("error", "fill")
#: Decoded source chunks a process keeps, so neighbouring pieces whose source
#: boxes overlap (rotations, margins) decode each shared chunk once.
SOURCE_CACHE_BYTES = 256 * 2**20

_LOCK = threading.Lock()
_VOLUMES: dict[Any, Volume] = {}
_ARRAYS: dict[tuple[Any, str, str], Any] = {}


class SourceSpec(Protocol):
    """What a worker needs to open a source image itself: picklable and hashable."""

    def open(self) -> Volume:
        """Open the image (lazily: no voxel is read)."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity of the source, stored with the run."""
        ...


@dataclass(frozen=True)
class ImageSource:
    """An image opened from a path or URL with :func:`coframe.volumes.open.open_volume`.

    Parameters
    ----------
    path
        Local path (made absolute) or URL.
    unit
        Workspace unit.
    voxel_size
        Level-0 voxel size override (numpy order) in ``input_unit``.
    input_unit
        Unit of ``voxel_size`` and of unit-less metadata.
    modality
        ``xray``, ``fibsem``, ``tem``, ``labels`` or ``None``.
    """

    path: str
    unit: str = "nanometer"
    voxel_size: tuple[float, ...] | None = None
    input_unit: str | None = None
    modality: str | None = None

    def __post_init__(self) -> None:
        # a local path is made absolute where the spec is made: a dask.distributed worker
        # would resolve a relative one in its own working directory
        if "://" not in self.path:
            object.__setattr__(self, "path", str(Path(self.path).expanduser().absolute()))

    def open(self) -> Volume:
        """Open the image."""

        return open_volume(
            self.path,
            unit=self.unit,
            voxel_size=self.voxel_size,
            input_unit=self.input_unit,
            modality=self.modality,
        )

    def describe(self) -> dict[str, Any]:
        """Path, unit and overrides."""
        return {
            "path": self.path,
            "unit": self.unit,
            "voxel_size": None if self.voxel_size is None else list(self.voxel_size),
            "input_unit": self.input_unit,
            "modality": self.modality,
        }


class BadChunkError(FormatError):
    """A chunk of a resampling source cannot be read or decoded (the message names it)."""


def open_source(spec: SourceSpec) -> Volume:
    """The opened volume of a source spec, cached per process."""
    with _LOCK:
        volume = _VOLUMES.get(spec)
    if volume is None:
        volume = spec.open()
        with _LOCK:
            _VOLUMES[spec] = volume
    return volume


def forget_source(spec: SourceSpec) -> None:
    """Drop this process's opened volume and read handles of a source spec."""
    with _LOCK:
        _VOLUMES.pop(spec, None)
        for key in [k for k in _ARRAYS if k[0] == spec]:
            del _ARRAYS[key]


@contextmanager
def source_for_run(spec: SourceSpec) -> Iterator[Volume]:
    """The source of one run: opened once (:func:`open_source`), forgotten when the run ends.

    The driver and the local tasks of the run share the opened volume; the
    next run opens the file afresh, so it sees a source rewritten in between.
    """
    try:
        yield open_source(spec)
    finally:
        forget_source(spec)


def _direct_array(spec: Any, level: Level) -> Any:
    """A tensorstore handle on a local OME-Zarr source level, or ``None``.

    Reading through tensorstore decodes chunks in C++ threads without the
    GIL, and its chunk cache (:data:`SOURCE_CACHE_BYTES` per process)
    decodes a chunk shared by neighbouring source boxes once. Used only when
    the level is the plain array at ``<path>/<level.path>`` with the level's
    own shape and data type; anything else (remote URLs, TIFF, N5, channel
    axes) is read through the level's own reader.
    """
    if not isinstance(spec, ImageSource) or "://" in spec.path or not level.path:
        return None
    if not isinstance(level.array, ZarrSource):
        return None  # the file's axes are reordered or selected: read through the reader's view
    path = Path(spec.path) / level.path
    key = (spec, level.path, f"{level.shape}{level.dtype}")
    with _LOCK:
        if key in _ARRAYS:
            return _ARRAYS[key]
    array = None
    driver = "zarr3" if (path / "zarr.json").is_file() else None
    driver = "zarr" if (path / ".zarray").is_file() else driver
    if driver is not None:
        # imported here: tensorstore adds ~0.6 s to every command's start-up (measured), and
        # only resampling reads through it
        import tensorstore as ts

        try:
            opened = ts.open(
                {"driver": driver, "kvstore": {"driver": "file", "path": str(path)}},
                open=True,
                read=True,
                context=ts.Context({"cache_pool": {"total_bytes_limit": SOURCE_CACHE_BYTES}}),
            ).result()
        except ValueError:
            opened = None
        if (
            opened is not None
            and tuple(int(n) for n in opened.shape) == level.shape
            and np.dtype(opened.dtype.numpy_dtype) == level.dtype
        ):
            array = opened
    with _LOCK:
        _ARRAYS[key] = array
    return array


def _read_box(spec: Any, level: Level, box: tuple[slice, ...], out: np.ndarray | None) -> Any:
    direct = _direct_array(spec, level)
    if out is None:
        return level.read(box) if direct is None else np.asarray(direct[box].read().result())
    if direct is None:
        out[...] = level.read(box)
    else:
        import tensorstore as ts  # see _direct_array

        ts.array(out, copy=False, write=True).write(direct[box]).result()
    return out


def read_source(
    spec: Any,
    level: Level,
    box: tuple[slice, ...],
    out: np.ndarray | None = None,
    *,
    on_bad_chunk: str = "error",
    bad: set[tuple[str, tuple[int, ...]]] | None = None,
) -> np.ndarray:
    """Read an index box of a source level (directly through tensorstore when possible).

    With ``out`` (an array of the box's shape) the voxels are stored there,
    decoded straight into it when read through tensorstore, and ``out`` is
    returned. A box that cannot be read is read again chunk by chunk, to
    find the chunks that cannot (:func:`read_by_chunk`).

    Parameters
    ----------
    spec
        The source spec.
    level
        The level read.
    box
        Index box of the level.
    out
        Array of the box's shape to read into (default: a new one).
    on_bad_chunk
        ``error`` (raise :class:`BadChunkError` at a chunk that cannot be
        read or decoded) or ``fill`` (read it as zeros).
    bad
        Collects ``(level path, chunk index)`` of the chunks read as zeros.

    Raises
    ------
    BadChunkError
        If a chunk cannot be read and ``on_bad_chunk`` is ``error``.
    """
    try:
        return _read_box(spec, level, box, out)
    except (FormatError, ValueError) as e:  # the readers' and tensorstore's decode errors
        return read_by_chunk(spec, level, box, out, e, on_bad_chunk=on_bad_chunk, bad=bad)


def _reason(error: BaseException) -> str:
    """The first line of a read error, without tensorstore's bracketed spec."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else type(error).__name__
    return re.split(r" \[[a-z_ ]+=", first)[0]


def read_by_chunk(
    spec: Any,
    level: Level,
    box: tuple[slice, ...],
    out: np.ndarray | None,
    error: BaseException,
    *,
    on_bad_chunk: str = "error",
    bad: set[tuple[str, tuple[int, ...]]] | None = None,
) -> np.ndarray:
    """Read a box that failed to read (``error``) chunk by chunk, naming the chunks that fail.

    A chunk that fails alone is corrupt (or unreadable): it raises
    :class:`BadChunkError`, or with ``on_bad_chunk="fill"`` it is read as
    zeros and recorded in ``bad``. If every chunk reads, the box is returned
    (the first failure passed); see :func:`read_source`.
    """
    result = np.empty(tuple(s.stop - s.start for s in box), level.dtype) if out is None else out
    chunks = level.chunks
    ranges = [range(s.start // c, -(-s.stop // c)) for s, c in zip(box, chunks, strict=True)]
    where = spec.describe().get("path", spec) if hasattr(spec, "describe") else spec
    for index in itertools.product(*ranges):
        sub = tuple(
            slice(max(s.start, i * c), min(s.stop, (i + 1) * c))
            for s, i, c in zip(box, index, chunks, strict=True)
        )
        local = tuple(
            slice(a.start - s.start, a.stop - s.start) for a, s in zip(sub, box, strict=True)
        )
        try:
            result[local] = _read_box(spec, level, sub, None)
        except (FormatError, ValueError) as e:
            if on_bad_chunk != "fill":
                voxels = ", ".join(
                    f"{i * c}:{min((i + 1) * c, n)}"
                    for i, c, n in zip(index, chunks, level.shape, strict=True)
                )
                raise BadChunkError(
                    f"chunk {','.join(map(str, index))} (voxels [{voxels}]) of level "
                    f"{level.path or '0'} of source {where} cannot be read: {_reason(e)}"
                ) from e
            result[local] = 0
            if bad is not None:
                bad.add((level.path or "0", tuple(int(i) for i in index)))
    return result
