"""OME-Zarr read back through ome-zarr-py (``ome_zarr``), a reader independent of coframe.

:func:`read_levels` returns what ome-zarr-py's ``Reader`` finds in a
multiscale image group: the axes and units, each level's shape, and each
level's scale and translation (its ``coordinateTransformations``, composed
with the multiscale-wide ones when present). Tests compare these numbers with
what coframe says it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Reader


@dataclass(frozen=True)
class Level:
    """One pyramid level as ome-zarr-py reads it (axis order as in the file)."""

    dims: tuple[str, ...]
    units: tuple[str | None, ...]
    shape: tuple[int, ...]
    scale: np.ndarray
    translation: np.ndarray


def _scale_translation(transforms: list[dict], ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scale, translation = np.ones(ndim), np.zeros(ndim)
    for t in transforms:
        if t["type"] == "scale":
            scale, translation = scale * t["scale"], translation * t["scale"]
        elif t["type"] == "translation":
            translation = translation + t["translation"]
        else:
            assert t["type"] == "identity", t
    return scale, translation


def read_levels(path: str | Path) -> list[Level]:
    """Every level of the multiscale image at ``path`` (its own node, not a parent image)."""
    location = parse_url(str(path))
    assert location is not None, f"ome-zarr-py finds no Zarr group at {path}"
    nodes = [
        n
        for n in Reader(location)()
        if Path(n.zarr.path).resolve() == Path(path).resolve()
        and any(isinstance(s, Multiscales) for s in n.specs)
    ]
    assert len(nodes) == 1, [str(n) for n in Reader(location)()]
    node = nodes[0]
    axes = node.metadata["axes"]
    dims = tuple(a["name"] for a in axes)
    units = tuple(a.get("unit") for a in axes)
    attrs = node.zarr.root_attrs
    outer = attrs.get("ome", attrs)["multiscales"][0].get("coordinateTransformations", [])
    levels = []
    for data, transforms in zip(node.data, node.metadata["coordinateTransformations"], strict=True):
        scale, translation = _scale_translation([*transforms, *outer], len(dims))
        levels.append(Level(dims, units, tuple(data.shape), scale, translation))
    return levels
