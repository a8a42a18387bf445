"""Viewer hand-off: both images resampled into one OME-Zarr, and a neuroglancer state.

:func:`export_viewer` writes, into one directory:

- ``overlay.ome.zarr``: OME-Zarr 0.4 (Zarr v2) with axes ``(c, z, y, x)`` (or
  ``(c, y, x)`` for a section's plane), channel 0 = A in magenta and
  channel 1 = B in green, with ``omero`` windows from the robust contrast
  limits. napari (``napari-ome-zarr``) and neuroglancer open it as it is.
- ``neuroglancer.json``: a viewer state whose layers are the *original*
  images (``zarr://`` or ``n5://`` sources) placed in the frame by a
  ``source.transform`` matrix wherever the chain from the image into the
  frame is affine. An image whose chain is not affine, or whose format
  neuroglancer cannot read (TIFF, MRC), is layered from the resampled
  OME-Zarr instead, and its layer name says so.

Local paths become URLs under ``url_base``, which must serve the directory
reported as ``serve`` (with CORS), e.g. ``npx http-server --cors -p 8000``.

Neuroglancer places voxel ``i`` of a source over ``[i, i + 1)``, its centre
at ``i + 0.5``; OME-Zarr and coframe place the centre at ``origin + i * voxel``.
The matrices below include that half-voxel shift.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from coframe.core.atomic import atomic_output, refuse_existing, write_text_atomic
from coframe.core.errors import CoframeError
from coframe.core.units import unit_factor
from coframe.transforms.affine import Affine
from coframe.views.overlay import Plane, flat_plane, orthogonal_plane, sample_plane
from coframe.views.overlay_views import (
    Channel,
    OverlayOptions,
    build_planes,
    resolve_plane,
    workspace_channels,
)
from coframe.views.render import robust_limits
from coframe.volumes.volume import Volume

if TYPE_CHECKING:
    from coframe.app.workspace import Workspace
    from coframe.transforms.graph import SpaceGraph

#: Channel colours (hex RGB) of A and B.
COLOURS = ("FF00FF", "00FF00")
#: Neuroglancer shader colours of A and B.
NG_COLOURS = ("#ff00ff", "#00ff00")
#: Default longest side of the resampled export, in voxels.
EXPORT_SIZE = 256
#: File names inside the export directory.
ZARR_NAME = "overlay.ome.zarr"
STATE_NAME = "neuroglancer.json"
_NG_SCHEMES = {"ome-zarr": "zarr://", "n5": "n5://"}
_URL_PREFIXES = ("s3://", "gs://", "http://", "https://")


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
        plane = flat_plane(first.space, lo, hi, ps, first.space)
        return [plane], (ps, ps), tuple(float(v) for v in lo + ps / 2.0)
    box = options.box
    if box is None:
        frame = a if options.frame == "A" else b
        ext = frame.volume.levels[0].extent
        box = (tuple(e[0] for e in ext), tuple(e[1] for e in ext))
    lo, hi = np.asarray(box[0], float), np.asarray(box[1], float)
    nz = max(1, math.ceil((hi[0] - lo[0]) / ps - 1e-9))
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
    chunks = (
        1,
        *(min(n, c) for n, c in zip(spatial, (32, 256, 256)[-len(spatial) :], strict=True)),
    )
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    import numcodecs

    arr = root.create_array(
        name="0",
        shape=(2, *spatial),
        chunks=chunks,
        dtype=dtype,
        fill_value=0,
        compressors=numcodecs.Zstd(level=5),
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )
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
            arr[:, :, :] = buffer[:, 0]
        elif k % zc == zc - 1 or k == len(planes) - 1:
            start = k - k % zc
            arr[:, start : k + 1] = buffer[:, : k + 1 - start]
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
        "name": f"{a.name} + {b.name}",
        "channels": channels,
        "rdefs": {"model": "color", "defaultZ": len(planes) // 2, "defaultT": 0},
    }
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": n, "type": "space", "unit": unit} for n in ("z", "y", "x")[-len(spatial) :]
    ]
    root.attrs.update(
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "name": omero["name"],
                    "axes": axes,
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1.0, *voxel_size]},
                                {"type": "translation", "translation": [0.0, *origin]},
                            ],
                        }
                    ],
                }
            ],
            "omero": omero,
        }
    )
    return omero


# --------------------------------------------------------------------------- neuroglancer


def _dims(names: Sequence[str], sizes_m: Sequence[float]) -> dict[str, list[Any]]:
    return {n: [float(s), "m"] for n, s in zip(names, sizes_m, strict=True)}


def layer_matrix(volume: Volume, to_frame: Affine, reverse_axes: bool = False) -> list[list[float]]:
    """Neuroglancer ``source.transform.matrix`` of an image placed in the frame.

    Maps the source's voxel coordinates (voxel ``i`` centred at ``i + 0.5``,
    in the file's axis order) to physical frame coordinates (z, y, x) in the
    workspace unit.

    Parameters
    ----------
    volume
        The image (level 0 gives voxel size and origin).
    to_frame
        Affine map from the image's physical space into the frame.
    reverse_axes
        True when the source lists its axes x, y, z (N5).
    """
    lvl = volume.levels[0]
    vs = np.asarray(lvl.voxel_size, float)
    origin = np.asarray(lvl.origin, float)
    linear = to_frame.linear @ np.diag(vs)
    offset = to_frame.linear @ (origin - 0.5 * vs) + to_frame.translation
    if reverse_axes:
        linear = linear[:, ::-1]
    return np.column_stack([linear, offset]).tolist()


def _url(location: str, serve_root: Path, url_base: str) -> str:
    if location.startswith(_URL_PREFIXES):
        return location
    rel = Path(location).resolve().relative_to(serve_root)
    return url_base.rstrip("/") + "/" + rel.as_posix()


def _shader(colour: str, limits: tuple[float, float], channel: int | None) -> str:
    chan = "" if channel is None else f", channel=[{channel}]"
    return (
        f'#uicontrol vec3 color color(default="{colour}")\n'
        f"#uicontrol invlerp normalized(range=[{limits[0]:g}, {limits[1]:g}]{chan})\n"
        "void main() { emitRGB(color * normalized()); }\n"
    )


def neuroglancer_state(
    ws: Workspace,
    channels: Sequence[Channel],
    frame_space: str,
    zarr_path: Path,
    omero: dict[str, Any],
    voxel_size: tuple[float, ...],
    origin: tuple[float, ...],
    serve_root: Path,
    url_base: str,
) -> dict[str, Any]:
    """The neuroglancer state JSON: original images where the chain is affine, else resampled."""
    unit_m = unit_factor(ws.unit, "meter")
    graph = ws.graph()
    spatial = ("z", "y", "x")[-len(voxel_size) :]
    out_dims = _dims(spatial, [unit_m] * len(spatial))
    layers = []
    for c, ch in enumerate(channels):
        window = omero["channels"][c]["window"]
        limits = (window["start"], window["end"])
        if omero["channels"][c]["inverted"]:
            limits = limits[::-1]
        location = ws.resolve(ws.images[ch.name].path)
        scheme = _NG_SCHEMES.get(ch.volume.format)
        why = ""
        affine = None
        if scheme is None:
            why = f"{ch.volume.format} is not a neuroglancer source"
        elif ch.volume.ndim != len(spatial):
            why = f"a {ch.volume.ndim}D image in a {len(spatial)}D frame"
        else:
            try:
                affine = graph.transform(ch.space, frame_space).as_affine()
            except CoframeError as e:
                why = f"no direct chain into the frame ({e})"
            if affine is None and not why:
                why = "the chain into the frame is not affine"
        if affine is not None and scheme is not None and not why:
            reverse = ch.volume.format == "n5"
            names = spatial[::-1] if reverse else spatial
            vs_m = [v * unit_m for v in ch.volume.levels[0].voxel_size]
            source = {
                "url": scheme + _url(location, serve_root, url_base),
                "transform": {
                    "inputDimensions": _dims(names, vs_m[::-1] if reverse else vs_m),
                    "outputDimensions": out_dims,
                    "matrix": layer_matrix(ch.volume, affine, reverse),
                },
            }
            name, channel = ch.name, None
        else:
            resampled_origin = np.asarray(origin) - 0.5 * np.asarray(voxel_size)
            rows = [[1.0] + [0.0] * len(spatial) + [0.0]]
            for i, v in enumerate(voxel_size):
                row = [0.0] * (len(spatial) + 2)
                row[1 + i] = float(v)
                row[-1] = float(resampled_origin[i])
                rows.append(row)
            source = {
                "url": "zarr://" + _url(str(zarr_path), serve_root, url_base),
                "transform": {
                    "inputDimensions": {
                        "c": [1.0, ""],
                        **_dims(spatial, [v * unit_m for v in voxel_size]),
                    },
                    "outputDimensions": {"c^": [1.0, ""], **out_dims},
                    "matrix": rows,
                },
            }
            name, channel = f"{ch.name} (resampled: {why})", c
        layers.append(
            {
                "type": "image",
                "name": name,
                "source": source,
                "shader": _shader(NG_COLOURS[c], limits, channel),
                "blend": "additive",
                "opacity": 1.0,
            }
        )
    rows_cols = np.asarray(voxel_size)
    centre = np.asarray(origin) + 0.5 * (np.asarray(_shape_of(zarr_path)) - 1) * rows_cols
    return {
        "dimensions": out_dims,
        "position": [float(v) for v in centre],
        "crossSectionScale": float(max(voxel_size)),
        "projectionScale": float(max(voxel_size)) * 256,
        "layers": layers,
        "layout": "4panel" if len(spatial) == 3 else "xy",
    }


def _shape_of(zarr_path: Path) -> tuple[int, ...]:
    arr = zarr.open_array(str(zarr_path / "0"), mode="r")
    return tuple(int(n) for n in arr.shape[1:])


def export_viewer(
    ws: Workspace,
    a: str,
    b: str,
    out_dir: str | os.PathLike[str],
    options: OverlayOptions | None = None,
    *,
    size: int = EXPORT_SIZE,
    url_base: str = "http://127.0.0.1:8000",
    serve_root: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the resampled two-channel OME-Zarr and the neuroglancer state of A and B.

    Parameters
    ----------
    ws
        The workspace.
    a, b
        Image names (A magenta, B green).
    out_dir
        Output directory (created).
    options
        Frame, box, pixel size and limits (views and modes are ignored).
    size
        Longest side of the export in voxels, when no pixel size or level is set.
    url_base
        URL under which ``serve_root`` is served.
    serve_root
        Directory served at ``url_base`` (default: the deepest directory
        holding the workspace, the export and every local image).
    force
        Replace existing outputs.

    Returns
    -------
    A JSON-ready summary: files, shape, voxel size, layers and what to serve.

    Raises
    ------
    OverwriteError
        If an output exists and ``force`` is false.
    """
    options = options or OverlayOptions()
    if options.pixel_size is None and options.level is None:
        options = replace(options, size=size)
    out = Path(out_dir)
    zarr_path, state_path = out / ZARR_NAME, out / STATE_NAME
    for p in (zarr_path, state_path):
        refuse_existing(p, force)
    ca, cb = workspace_channels(ws, a, b)
    options, plane_volume = resolve_plane(ws, options)
    graph = ws.graph()
    planes, voxel_size, origin = export_grid(graph, ca, cb, options, ws.unit, plane_volume)
    with atomic_output(zarr_path, force=force) as tmp:
        omero = write_channels_zarr(
            tmp,
            graph,
            ca,
            cb,
            planes,
            voxel_size,
            origin,
            ws.unit,
            (options.limits_a, options.limits_b),
        )
    if serve_root is None:
        local = [ws.root.resolve(), out.resolve()] + [
            Path(ws.resolve(ws.images[n].path)).resolve()
            for n in (a, b)
            if not ws.images[n].path.startswith(_URL_PREFIXES)
        ]
        root = Path(os.path.commonpath([str(p) for p in local]))
    else:
        root = Path(serve_root).resolve()
    state = neuroglancer_state(
        ws,
        (ca, cb),
        planes[0].space,
        zarr_path.resolve(),
        omero,
        voxel_size,
        origin,
        root,
        url_base,
    )

    write_text_atomic(state_path, json.dumps(state, indent=2) + "\n", force=force)
    return {
        "files": [str(zarr_path), str(state_path)],
        "shape": [2, *_shape_of(zarr_path)],
        "voxel_size": list(voxel_size),
        "layers": [layer["name"] for layer in state["layers"]],
        "serve": {"directory": str(root), "url": url_base},
    }
