"""Reading a large 2D level binned, band by band, in bounded memory.

A TEM montage of 20k x 20k pixels is 400 MB as uint8 and 1.6 GB as float32:
it is never read whole. :func:`read_binned` reads bands of whole rows (a
multiple of the bin factor high, and at least one storage chunk high, so a
chunk is decoded at most twice), averages each band's ``factor x factor``
blocks and keeps only the binned rows, so the peak memory is one band plus
the binned image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coframe.core.errors import DimensionError
from coframe.volumes.volume import Level

#: Largest float32 band (bytes) read at once.
BAND_BYTES = 64 * 1024 * 1024


def binned_placement(
    level: Level, factor: Sequence[int]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Voxel size and origin (centre of pixel 0) of ``level`` binned by ``factor`` per axis."""
    f = np.asarray(factor, dtype=float)
    size = np.asarray(level.voxel_size, dtype=float) * f
    origin = np.asarray(level.origin, dtype=float) + (f - 1.0) / 2.0 * np.asarray(level.voxel_size)
    return tuple(float(v) for v in size), tuple(float(v) for v in origin)


def read_binned(
    level: Level,
    factor: int | Sequence[int],
    *,
    binary: bool = False,
    band_bytes: int = BAND_BYTES,
) -> np.ndarray:
    """The mean of every ``factor`` block of a 2D level, as float32, read band by band.

    The remainder rows and columns (fewer than ``factor``) are dropped, as in
    a block mean.

    Parameters
    ----------
    level
        A 2D level (y, x).
    factor
        Bin factor (one for both axes, or one per axis), at least 1.
    binary
        Average ``value != 0`` instead of the values (a mask: the result is
        the fraction of nonzero pixels per block).
    band_bytes
        Largest float32 band held at once.

    Raises
    ------
    DimensionError
        If the level is not 2D or a factor is below 1.
    """
    if len(level.shape) != 2:
        raise DimensionError(f"level {level.path or 0} has shape {level.shape}: expected 2D (y, x)")
    fy, fx = (int(v) for v in np.broadcast_to(np.asarray(factor), (2,)))
    if fy < 1 or fx < 1:
        raise DimensionError(f"bin factor {(fy, fx)}: expected integers >= 1")
    h, w = level.shape
    ny, nx = h // fy, w // fx
    out = np.empty((ny, nx), dtype=np.float32)
    if ny == 0 or nx == 0:
        return out
    rows = max(1, band_bytes // (4 * max(w, 1) * fy))  # binned rows per band
    chunk = int(level.chunks[0]) if level.chunks else 0
    # a band at least one storage chunk high decodes each chunk at most twice
    if chunk * w * 4 <= 4 * band_bytes:  # (not for a file stored as one huge strip)
        rows = max(rows, -(-chunk // fy))
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        band = level.read((slice(r0 * fy, r1 * fy), slice(0, nx * fx)))
        band = (band != 0).astype(np.float32) if binary else band.astype(np.float32, copy=False)
        out[r0:r1] = band.reshape(r1 - r0, fy, nx, fx).mean(axis=(1, 3), dtype=np.float32)
    return out
