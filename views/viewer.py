"""Viewer hand-off pieces: a two-channel OME-Zarr of two images in one frame, and the
neuroglancer layer matrices and shaders that place and colour them.

Neuroglancer places an OME-Zarr source by its multiscale metadata, as coframe
does, and an N5 source's voxel ``i`` over ``[i, i + 1)`` voxels;
:func:`layer_matrix` adds the N5 source's origin and half-voxel shift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from coframe.core.errors import MetadataError
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine
from coframe.transforms.graph import SpaceGraph
from coframe.views.overlay import Plane, flat_plane, orthogonal_plane, sample_plane
from coframe.views.overlay_views import (
    Channel,
    OverlayOptions,
    build_planes,
)
from coframe.views.render import robust_limits
from coframe.volumes.volume import Volume

#: Channel colours (hex RGB) of A and B.
COLOURS = ("FF00FF", "00FF00")
#: Neuroglancer shader colours of A and B.
NG_COLOURS = ("#ff00ff", "#00ff00")
#: Default longest side of the resampled export, in voxels.
EXPORT_SIZE = 256
#: Most voxels per channel of an export (2^31, e.g. 1290^3): a viewer's look at a region,
#: not a copy of a volume (``coframe resample`` writes those).
MAX_EXPORT_VOXELS = 2**31
#: File names inside the export directory.
ZARR_NAME = "overlay.ome.zarr"
STATE_NAME = "neuroglancer.json"


def export_grid(
    graph: SpaceGraph,
    a: Channel,
    b: Channel,
    options: OverlayOptions,
    unit: str,
    plane_volume: Volume | None = None,
) -> tuple[list[Plane], tuple[float, ...], tuple[float, ...]]:
    """The planes of the export grid (one per z for a 3D frame), its voxel size and origin."""
    flat = build_planes(graph, a, b, replace(options, views=None), unit, plane_volume)
    first = flat[0]
    ps = first.pixel_size
    if first.dim == 2:
        lo = first.to_space.translation - ps / 2.0
        hi = lo + np.asarray(first.shape) * ps
        plane = flat_plane(first.space, lo, hi, ps, first.space, unit)
        return [plane], (ps, ps), tuple(float(v) for v in lo + ps / 2.0)
    box = options.box
    if box is None:
        frame = a if options.frame == "A" else b
        ext = frame.volume.levels[0].extent
        box = (tuple(e[0] for e in ext), tuple(e[1] for e in ext))
    lo, hi = np.asarray(box[0], float), np.asarray(box[1], float)
    nz = max(1, math.ceil((hi[0] - lo[0]) / ps - 1e-9))
    if nz * math.prod(first.shape) > MAX_EXPORT_VOXELS:
        shape = " x ".join(map(str, (nz, *first.shape)))
        raise MetadataError(
            f"the export would be {shape} voxels of {ps:g} {unit}, above the "
            f"{MAX_EXPORT_VOXELS:,} an export may have: give a larger --pixel-size (or --level, "
            "--size) or a smaller --box"
        )
    planes = []
    for k in range(nz):
        z = lo[0] + (k + 0.5) * ps
        planes.append(orthogonal_plane(first.space, lo, hi, ps, "z", (z, 0.0, 0.0), unit=unit))
    origin = (float(lo[0] + ps / 2), float(lo[1] + ps / 2), float(lo[2] + ps / 2))
    return planes, (ps, ps, ps), origin


def _common_dtype(a: Volume, b: Volume) -> np.dtype:
    if a.dtype == b.dtype:
        return np.dtype(a.dtype)
    if a.is_labels or b.is_labels:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def write_channels_zarr(
    path: Path,
    graph: SpaceGraph,
    a: Channel,
    b: Channel,
    planes: Sequence[Plane],
    voxel_size: tuple[float, ...],
    origin: tuple[float, ...],
    unit: str,
    limits: tuple[tuple[float, float] | None, tuple[float, float] | None] = (None, None),
) -> dict[str, Any]:
    """Resample A and B plane by plane into a ``(c, [z,] y, x)`` OME-Zarr with ``omero`` channels.

    Returns
    -------
    The ``omero`` metadata written (windows hold the contrast limits used).
    """
    rows, cols = planes[0].shape
    spatial = (len(planes), rows, cols) if len(voxel_size) == 3 else (rows, cols)
    dtype = _common_dtype(a.volume, b.volume)
    writer = create_ome_zarr(
        path,
        shape0=spatial,
        voxel_size0=voxel_size,
        origin0=origin,
        dtype=dtype,
        unit=unit,
        chunks=(32, 256, 256)[-len(spatial) :],
        compressor="zstd",
        compression_level=5,
        name=f"{a.name} + {b.name}",
        channels=2,
        level_prefix="",
        write_metadata=False,
        overwrite=True,
    )
    chunks = writer.array(0).chunks
    transforms = {ch.name: graph.transform(planes[0].space, ch.space) for ch in (a, b)}
    samples: list[list[np.ndarray]] = [[], []]
    masks: list[list[np.ndarray]] = [[], []]
    zc = chunks[1] if len(spatial) == 3 else 1
    buffer = np.zeros((2, zc, rows, cols), dtype=dtype)
    for k, plane in enumerate(planes):
        for c, ch in enumerate((a, b)):
            s = sample_plane(ch.volume, plane, transforms[ch.name])
            buffer[c, k % zc] = _cast(s.values, dtype)
            samples[c].append(s.values[::4, ::4])
            masks[c].append(s.valid[::4, ::4])
        if len(spatial) == 2:
            writer.write(0, (0, 0, 0), buffer[:, 0])
        elif k % zc == zc - 1 or k == len(planes) - 1:
            start = k - k % zc
            writer.write(0, (0, start, 0, 0), buffer[:, : k + 1 - start])
    channels = []
    for c, ch in enumerate((a, b)):
        lim = limits[c] or robust_limits(samples[c], masks[c])
        if ch.volume.is_labels:
            lim = (0.0, float(max((m.max() for m in samples[c]), default=1.0)) or 1.0)
        inverted = lim[0] > lim[1]
        lo, hi = min(lim), max(lim)
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
        channels.append(
            {
                "label": ch.name,
                "color": COLOURS[c],
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": inverted,
                "window": {
                    "start": lo,
                    "end": hi,
                    "min": float(info.min) if info else lo,
                    "max": float(info.max) if info else hi,
                },
            }
        )
    omero = {
        "version": "0.4",
        "name": writer.name,
        "channels": channels,
        "rdefs": {"model": "color", "defaultZ": len(planes) // 2, "defaultT": 0},
    }
    writer.write_metadata(extra={"omero": omero})
    return omero


# --------------------------------------------------------------------------- neuroglancer


def ng_dimensions(names: Sequence[str], sizes_m: Sequence[float]) -> dict[str, list[Any]]:
    return {n: [float(s), "m"] for n, s in zip(names, sizes_m, strict=True)}


def layer_matrix(volume: Volume, to_frame: Affine, reverse_axes: bool = False) -> list[list[float]]:
    """Neuroglancer ``source.transform.matrix`` of an image placed in the frame.

    Neuroglancer's matrix maps physical source coordinates to physical frame
    coordinates (it converts between the input and output dimensions' units
    itself), its last column in the frame's unit. For an OME-Zarr source
    neuroglancer already places voxel ``i`` where the multiscale metadata
    does (centre at ``origin + i * voxel``), so the matrix is the chain into
    the frame. An N5 source (``reverse_axes``: axes x, y, z) is placed with
    voxel ``i`` over ``[i, i + 1)`` voxels and no origin: the matrix adds the
    origin less half a voxel.

    Parameters
    ----------
    volume
        The image (level 0 gives voxel size and origin).
    to_frame
        Affine map from the image's physical space into the frame.
    reverse_axes
        True when the source lists its axes x, y, z (N5).
    """
    linear, offset = to_frame.linear, to_frame.translation
    if reverse_axes:
        lvl = volume.levels[0]
        vs = np.asarray(lvl.voxel_size, float)
        offset = linear @ (np.asarray(lvl.origin, float) - 0.5 * vs) + offset
        linear = linear[:, ::-1]
    return np.column_stack([linear, offset]).tolist()


def shader_code(colour: str, limits: tuple[float, float], channel: int | None) -> str:
    chan = "" if channel is None else f", channel=[{channel}]"
    return (
        f'#uicontrol vec3 color color(default="{colour}")\n'
        f"#uicontrol invlerp normalized(range=[{limits[0]:g}, {limits[1]:g}]{chan})\n"
        "void main() { emitRGB(color * normalized()); }\n"
    )
