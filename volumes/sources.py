"""Lazy array backends that satisfy :class:`coframe.volumes.volume.ArraySource`.

Every backend reads only the chunks under the index box it is asked for:
zarr arrays (OME-Zarr, TIFF through ``tifffile``'s zarr view) fetch the chunk
keys the box covers, tensorstore arrays (N5) fetch the blocks it covers, and
memory maps (MRC) page in only the bytes under the box. :class:`AxisView`
turns a file's own axis layout (channels, time, x-fastest N5 order) into the
spatial (z, y, x) view the rest of coframe works in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coframe.core.errors import CoframeError, DimensionError, FormatError, RemoteError
from coframe.volumes.retry import RETRY_HINT
from coframe.volumes.volume import ArraySource

#: Errors a storage library raises when chunk bytes cannot be decoded or fetched.
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError, KeyError)


def _check_box(box: tuple[slice, ...], shape: tuple[int, ...], where: str) -> None:
    """Raise :class:`DimensionError` unless ``box`` is one in-bounds, unit-step slice per axis."""
    if len(box) != len(shape):
        raise DimensionError(f"box has {len(box)} axes but {where} has {len(shape)} ({shape})")
    for s, n in zip(box, shape, strict=True):
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise DimensionError(f"box {box} of {where}: expected one slice with step 1 per axis")
        start = 0 if s.start is None else s.start
        stop = n if s.stop is None else s.stop
        if not 0 <= start <= stop <= n:
            raise DimensionError(f"box {box} lies outside {where} of shape {shape}")


class ZarrSource:
    """A zarr-python 3 array (local, fsspec or a tifffile zarr view) read box by box.

    Parameters
    ----------
    array
        An opened ``zarr.Array``.
    where
        Human-readable location used in error messages.
    keepalive
        Objects that must stay open while the array is read (a ``TiffFile``).
    """

    def __init__(self, array: Any, where: str, keepalive: Sequence[Any] = ()) -> None:
        self._array = array
        self._where = where
        self._keepalive = tuple(keepalive)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of elements along each file axis."""
        return tuple(int(n) for n in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        """Element data type."""
        return np.dtype(self._array.dtype)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Chunk shape (the inner chunk shape for sharded arrays)."""
        return tuple(int(c) for c in self._array.chunks)

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        """Read an index box, fetching only the chunks it covers."""
        _check_box(box, self.shape, self._where)
        try:
            return np.asarray(self._array[box])
        except _READ_ERRORS as e:
            raise FormatError(f"cannot read box {_box_text(box)} of {self._where}: {e}") from e


class TensorStoreSource:
    """A tensorstore array (used for N5) read box by box in the file's own axis order.

    Parameters
    ----------
    store
        An opened ``tensorstore.TensorStore`` with a zero-origin domain.
    where
        Human-readable location used in error messages.
    """

    def __init__(self, store: Any, where: str) -> None:
        self._store = store
        self._where = where

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of elements along each file axis."""
        return tuple(int(n) for n in self._store.shape)

    @property
    def dtype(self) -> np.dtype:
        """Element data type."""
        return np.dtype(self._store.dtype.numpy_dtype)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Block shape of the stored array."""
        return tuple(int(c) for c in self._store.chunk_layout.read_chunk.shape)

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        """Read an index box, fetching only the blocks it covers."""
        _check_box(box, self.shape, self._where)
        try:
            return np.asarray(self._store[box].read().result())
        except _READ_ERRORS as e:
            raise _tensorstore_error(box, self._where, e) from e


#: tensorstore's status codes for a store it could not reach (after its own retries).
_UNREACHABLE = ("ABORTED", "UNAVAILABLE", "DEADLINE_EXCEEDED")


def _tensorstore_error(box: tuple[slice, ...], where: str, error: BaseException) -> CoframeError:
    """A tensorstore read failure in one line; :class:`RemoteError` if the store was unreachable."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    text = lines[0].split(" [", 1)[0]  # drop tensorstore's bracketed response body and source
    message = f"cannot read box {_box_text(box)} of {where}: {text}"
    if text.startswith(_UNREACHABLE):
        return RemoteError(f"{message}: {RETRY_HINT}")
    return FormatError(message)


class MemmapSource:
    """A raw C-ordered array inside a file, memory-mapped on first read.

    Parameters
    ----------
    path
        The file holding the array.
    dtype
        Element type, including byte order.
    offset
        Byte offset of the first element.
    shape
        Array shape, slowest axis first.
    chunks
        Nominal chunk shape reported to callers (e.g. one section).
    """

    def __init__(
        self,
        path: Path,
        dtype: np.dtype,
        offset: int,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
    ) -> None:
        self._path = Path(path)
        self._dtype = np.dtype(dtype)
        self._offset = int(offset)
        self._shape = tuple(int(n) for n in shape)
        self._chunks = tuple(int(c) for c in chunks)
        self._map: np.memmap | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of elements along each axis."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """Element data type (native byte order after reading)."""
        return self._dtype.newbyteorder("=")

    @property
    def chunks(self) -> tuple[int, ...]:
        """Nominal chunk shape."""
        return self._chunks

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        """Copy an index box out of the memory map (only its pages are touched)."""
        _check_box(box, self._shape, str(self._path))
        if self._map is None:
            try:
                self._map = np.memmap(
                    self._path, dtype=self._dtype, mode="r", offset=self._offset, shape=self._shape
                )
            except (OSError, ValueError) as e:
                raise FormatError(f"cannot map the data of {self._path}: {e}") from e
        return np.array(self._map[box], dtype=self.dtype)


class AxisView:
    """A spatial view of a backend array: fixed indices on some axes, others reordered.

    Parameters
    ----------
    base
        The array in its file axis order.
    keep
        Base axes kept, in the order of the view (e.g. ``(2, 1, 0)`` turns an
        x, y, z file into z, y, x).
    fixed
        Index chosen on each dropped base axis (channel, time, singleton).
    """

    def __init__(self, base: ArraySource, keep: Sequence[int], fixed: Mapping[int, int]) -> None:
        ndim = len(base.shape)
        if sorted([*keep, *fixed]) != list(range(ndim)):
            raise DimensionError(
                f"axis view keeps {tuple(keep)} and fixes {dict(fixed)} "
                f"but the array has {ndim} axes"
            )
        self._base = base
        self._keep = tuple(int(k) for k in keep)
        self._fixed = {int(k): int(v) for k, v in fixed.items()}
        kept_in_base_order = sorted(self._keep)
        self._perm = tuple(kept_in_base_order.index(k) for k in self._keep)

    @property
    def base(self) -> ArraySource:
        """The wrapped array in file order."""
        return self._base

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape in view order."""
        return tuple(int(self._base.shape[k]) for k in self._keep)

    @property
    def dtype(self) -> np.dtype:
        """Element data type."""
        return np.dtype(self._base.dtype)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Chunk shape in view order."""
        return tuple(int(self._base.chunks[k]) for k in self._keep)

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        """Read a box given in view order from the base array."""
        _check_box(box, self.shape, "axis view")
        base_box: list[slice] = []
        for axis in range(len(self._base.shape)):
            if axis in self._fixed:
                i = self._fixed[axis]
                base_box.append(slice(i, i + 1))
            else:
                base_box.append(box[self._keep.index(axis)])
        data = self._base.read(tuple(base_box))
        squeeze = tuple(0 if axis in self._fixed else slice(None) for axis in range(data.ndim))
        data = data[squeeze]
        if self._perm != tuple(range(len(self._perm))):
            data = np.transpose(data, self._perm)
        return np.ascontiguousarray(data)


def _box_text(box: tuple[slice, ...]) -> str:
    """``[a:b, c:d]`` text of an index box."""
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in box) + "]"
