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

A ``source.transform`` matrix maps physical source coordinates into the frame:
neuroglancer places an OME-Zarr source's voxels by its multiscale metadata
itself (:func:`~coframe.views.viewer.layer_matrix`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from coframe.app.channels import resolve_plane, workspace_channels
from coframe.app.workspace import Workspace
from coframe.core.atomic import atomic_output, refuse_existing, write_text_atomic
from coframe.core.errors import CoframeError
from coframe.core.units import unit_factor
from coframe.views.overlay_views import Channel, OverlayOptions
from coframe.views.viewer import (
    EXPORT_SIZE,
    NG_COLOURS,
    STATE_NAME,
    ZARR_NAME,
    export_grid,
    layer_matrix,
    ng_dimensions,
    shader_code,
    write_channels_zarr,
)

_NG_SCHEMES = {"ome-zarr": "zarr://", "n5": "n5://"}


_URL_PREFIXES = ("s3://", "gs://", "http://", "https://")


def _url(location: str, serve_root: Path, url_base: str) -> str:
    if location.startswith(_URL_PREFIXES):
        return location
    rel = Path(location).resolve().relative_to(serve_root)
    return url_base.rstrip("/") + "/" + rel.as_posix()


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
    out_dims = ng_dimensions(spatial, [unit_m] * len(spatial))
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
                    "inputDimensions": ng_dimensions(names, vs_m[::-1] if reverse else vs_m),
                    "outputDimensions": out_dims,
                    "matrix": layer_matrix(ch.volume, affine, reverse),
                },
            }
            name, channel = ch.name, None
        else:
            # the resampled OME-Zarr is placed in the frame by its own metadata; neuroglancer
            # opens its channel axis as the local axis c' (chunked one channel at a time, it
            # cannot be a shader channel), set to this channel
            source = {"url": "zarr://" + _url(str(zarr_path), serve_root, url_base)}
            name, channel = f"{ch.name} (resampled: {why})", c
        layer = {
            "type": "image",
            "name": name,
            "source": source,
            "shader": shader_code(NG_COLOURS[c], limits, None),
            "blend": "additive",
            "opacity": 1.0,
        }
        if channel is not None:
            layer |= {"localDimensions": {"c'": [1, ""]}, "localPosition": [channel]}
        layers.append(layer)
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
