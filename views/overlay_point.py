"""Where an overlay's slices pass: a ``--point`` must lie in one of the images shown.

:func:`check_point` refuses a point outside both images (its orthogonal
slices would be blank), giving each image's extent in the frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from coframe.core.errors import CoframeError, DimensionError, MetadataError
from coframe.transforms.graph import SpaceGraph
from coframe.views.overlay import volume_box
from coframe.volumes.volume import Volume


class Image(Protocol):
    """An image shown in an overlay (a :class:`~coframe.views.overlay_views.Channel`)."""

    name: str
    volume: Volume
    space: str


def _span(lo: Sequence[float], hi: Sequence[float]) -> str:
    return ", ".join(f"{a:.4g}..{b:.4g}" for a, b in zip(lo, hi, strict=True))


def _extent_in(graph: SpaceGraph, ch: Image, space: str) -> str:
    """An image's box in ``space`` (its mapped corners' bounds), or in its own space."""
    lo, hi = volume_box(ch.volume)
    if ch.space == space:
        return f"{ch.name} spans {_span(lo, hi)}"
    corners = np.array(list(itertools.product(*zip(lo, hi, strict=True))), dtype=float)
    try:
        mapped = graph.transform(ch.space, space).apply(corners)
    except CoframeError:
        mapped = np.full_like(corners, np.nan)
    if mapped.shape[1] != 3 or not np.all(np.isfinite(mapped)):
        return f"{ch.name} spans {_span(lo, hi)} in its own space {ch.space}"
    return f"{ch.name} spans about {_span(mapped.min(axis=0), mapped.max(axis=0))}"


def check_point(
    graph: SpaceGraph,
    space: str,
    point: Sequence[float],
    channels: Sequence[Image],
    unit: str,
) -> None:
    """Refuse a ``--point`` (in ``space``) that lies in neither image: its slices would be blank.

    The point is mapped into each 3D image's space as the views' samples are
    (``space`` -> image) and tested against the image's extent.

    Raises
    ------
    MetadataError
        If the point lies outside every 3D image; the message gives each
        image's extent in ``space``.
    """
    p = np.asarray(point, dtype=float)
    if p.shape != (3,):
        raise DimensionError(f"--point {tuple(point)}: expected 3 coordinates (z, y, x)")
    volumes = [ch for ch in channels if ch.volume.ndim == 3]
    for ch in volumes:
        q = p if ch.space == space else graph.transform(space, ch.space).apply(p[None])[0]
        lo, hi = volume_box(ch.volume)
        if np.all(np.isfinite(q)) and np.all(q >= lo) and np.all(q <= hi):
            return
    text = ",".join(f"{v:g}" for v in p)
    spans = "; ".join(_extent_in(graph, ch, space) for ch in volumes)
    raise MetadataError(
        f"--point {text} lies outside both images, so its slices would be blank ({unit}, "
        f"z,y,x in space {space}): {spans}: give a point inside one of them, or leave --point "
        "out (the centre)"
    )
