"""Overlays of two workspace images: choose the views, sample both, render and write.

:func:`make_overlay` brings image A and image B into one frame (A's space or
B's) on orthogonal slices, maximum projections, or the plane of a located 2D
section, and :func:`write_overlay` writes the panel grid as PNG or the raw
two-channel samples as TIFF.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coframe.core.atomic import refuse_existing
from coframe.core.errors import DimensionError, MetadataError, WorkspaceError
from coframe.transforms.base import Transform
from coframe.transforms.graph import SpaceGraph
from coframe.views.overlay import (
    MAX_PROJECTION_STEPS,
    ORTHOGONAL_VIEWS,
    Plane,
    Sampled,
    default_pixel_size,
    flat_plane,
    orthogonal_plane,
    sample_plane,
    volume_box,
)
from coframe.views.overlay_point import check_point
from coframe.views.render import (
    MODES,
    Panel,
    draw_scale_bar,
    label_display,
    normalize,
    panel_grid,
    parse_limits,
    parse_tile,
    render_mode,
    robust_limits,
    save_channels_tiff,
    save_png,
    scale_bar,
    upscale,
    zoom_factor,
)
from coframe.volumes.open import parse_box, parse_floats
from coframe.volumes.volume import Volume

#: Views of a 3D frame: slices and maximum projections.
VIEWS_3D = ("z", "y", "x", "max-z", "max-y", "max-x")
#: Output suffixes written as TIFF.
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Channel:
    """An image shown in an overlay.

    Parameters
    ----------
    name
        Image name (caption).
    volume
        The opened image, in the workspace unit.
    space
        Space its physical coordinates live in.
    """

    name: str
    volume: Volume
    space: str


@dataclass(frozen=True)
class OverlayOptions:
    """What to show and how.

    Parameters
    ----------
    frame
        ``"A"`` or ``"B"``: whose space the views are placed in.
    views
        View names (``z``, ``y``, ``x``, ``max-z``...; ``plane`` for a 2D
        frame); default ``z, y, x`` or ``plane``.
    modes
        Rendering modes (columns of the grid).
    box
        Physical (lo, hi) corners in the frame (default: the frame image).
    point
        Point the slices pass through (default: the box centre).
    pixel_size
        Output pixel size (default: from ``level`` or ``size``).
    level
        Level of the frame image whose voxel size is the output pixel size.
    size
        Longest side of a view in pixels, when neither ``pixel_size`` nor
        ``level`` is given.
    tile
        Checkerboard tile: pixels (``"32"``) or a length (``"2um"``).
    alpha
        Weight of B in the blend.
    limits_a, limits_b
        Contrast limits (default: robust percentiles).
    plane
        A 2D space (a located section) whose plane is the only view.
    max_steps
        Cap on samples through a projection slab.
    """

    frame: str = "A"
    views: tuple[str, ...] | None = None
    modes: tuple[str, ...] = tuple(MODES)
    box: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    point: tuple[float, ...] | None = None
    pixel_size: float | None = None
    level: int | str | None = None
    size: int = 512
    tile: str = "32"
    alpha: float = 0.5
    limits_a: tuple[float, float] | None = None
    limits_b: tuple[float, float] | None = None
    plane: str | None = None
    max_steps: int = MAX_PROJECTION_STEPS


@dataclass(frozen=True)
class ViewPair:
    """Both images sampled on one view."""

    plane: Plane
    a: Sampled
    b: Sampled


@dataclass(frozen=True)
class Overlay:
    """The sampled views of an overlay and the contrast used to show them.

    Parameters
    ----------
    a, b
        The two channels.
    pairs
        One :class:`ViewPair` per view.
    limits_a, limits_b
        Contrast limits of each channel (``None`` for label images).
    unit
        Physical unit of the planes.
    options
        The options used.
    """

    a: Channel
    b: Channel
    pairs: tuple[ViewPair, ...]
    limits_a: tuple[float, float] | None
    limits_b: tuple[float, float] | None
    unit: str
    options: OverlayOptions = field(default_factory=OverlayOptions)

    def display(self, pair: ViewPair) -> tuple[np.ndarray, np.ndarray]:
        """Both channels of a view normalised to [0, 1] for display."""
        return (
            _display(pair.a, self.a.volume, self.limits_a),
            _display(pair.b, self.b.volume, self.limits_b),
        )

    def tile_pixels(self, pair: ViewPair) -> float:
        """Checkerboard tile size of a view, in its pixels."""
        size, physical = parse_tile(self.options.tile, self.unit)
        return size / pair.plane.pixel_size if physical else size

    def render(
        self, pair: ViewPair, mode: str, *, bar: bool = True, min_side: int = 0
    ) -> np.ndarray:
        """One view in one mode, as RGB, with a scale bar.

        Parameters
        ----------
        pair
            The view.
        mode
            One of :data:`~coframe.views.render.MODES`.
        bar
            Draw a scale bar.
        min_side
            Magnify small views (by an integer factor, nearest neighbour) until
            their longest side reaches this many pixels.
        """
        a, b = self.display(pair)
        rgb = render_mode(mode, a, b, tile=self.tile_pixels(pair), alpha=self.options.alpha)
        factor = zoom_factor(rgb.shape, min_side)
        rgb = upscale(rgb, factor)
        if bar:
            sb = scale_bar(rgb.shape[1], pair.plane.pixel_size / factor, self.unit)
            rgb = draw_scale_bar(rgb, sb)
        return rgb

    def grid(self, title: str | None = None, min_side: int = 192) -> np.ndarray:
        """All views (rows) in all modes (columns) as one RGB picture.

        Views smaller than ``min_side`` pixels are magnified (see :meth:`render`).
        """
        rows = [
            [
                Panel(self.render(p, m, min_side=min_side), f"{p.plane.name} · {m}")
                for m in self.options.modes
            ]
            for p in self.pairs
        ]
        if title is None:
            title = f"A = {self.a.name} (magenta)   B = {self.b.name} (green)"
        return panel_grid(rows, title)


def _display(s: Sampled, volume: Volume, limits: tuple[float, float] | None) -> np.ndarray:
    if volume.is_labels:
        return label_display(s.values)
    return normalize(s.values, limits or (0.0, 1.0))


def _plane_space(graph: SpaceGraph, a: Channel, b: Channel, name: str) -> str:
    for ch in (a, b):
        if name in (ch.name, ch.space):
            return ch.space
    space = name.split("->")[0].strip()
    if space not in graph.spaces:
        raise WorkspaceError(
            f"--plane {name!r}: expected a 2D space or image (a located section); known spaces "
            f"{', '.join(graph.spaces)}"
        )
    return space


def build_planes(
    graph: SpaceGraph,
    a: Channel,
    b: Channel,
    options: OverlayOptions,
    unit: str,
    plane_volume: Volume | None = None,
) -> list[Plane]:
    """The output views of an overlay.

    A 2D image among A and B (or ``options.plane``) makes its own plane the
    view; otherwise the frame image's space gets orthogonal slices and
    projections.

    Parameters
    ----------
    graph
        The space graph.
    a, b
        The channels.
    options
        What to show.
    unit
        Workspace unit (for names).
    plane_volume
        The image that lives in ``options.plane``'s space, if any (its extent
        is the default box).
    """
    if options.frame not in ("A", "B"):
        raise MetadataError(f"--frame {options.frame!r}: expected A or B")
    frame = a if options.frame == "A" else b
    other = b if frame is a else a
    if options.plane is not None:
        space = _plane_space(graph, a, b, options.plane)
        ref = {a.space: a.volume, b.space: b.volume}.get(space, plane_volume)
    elif frame.volume.ndim == 2:
        space, ref = frame.space, frame.volume
    elif other.volume.ndim == 2:
        space, ref = other.space, other.volume
    else:
        space, ref = frame.space, frame.volume
    dim = graph.spaces.get(space)
    ndim = len(dim) if dim else (ref.ndim if ref is not None else 3)
    if options.box is not None:
        lo, hi = options.box
        if len(lo) != ndim:
            raise DimensionError(
                f"--box has {len(lo)} coordinates per corner but space {space!r} has {ndim} axes"
            )
    elif ref is not None:
        lo, hi = volume_box(ref)
    else:
        raise MetadataError(f"no image lives in space {space!r}: give its extent with --box")
    if options.pixel_size is not None:
        if not options.pixel_size > 0:
            raise MetadataError(f"--pixel-size {options.pixel_size}: expected a positive length")
        ps = float(options.pixel_size)
    elif options.level is not None and ref is not None:
        ps = float(np.exp(np.mean(np.log(ref.level(options.level).voxel_size))))
    elif ref is not None:
        ps = default_pixel_size(lo, hi, ref, options.size)
    else:
        ps = max(h - l_ for l_, h in zip(lo, hi, strict=True)) / options.size
    if ndim == 2:
        views = options.views or ("plane",)
        if tuple(views) != ("plane",):
            raise MetadataError(
                f"--views {','.join(views)}: space {space!r} is 2D, its only view is 'plane'"
            )
        return [flat_plane(space, lo, hi, ps, space, unit)]
    views = options.views or ("z", "y", "x")
    if options.point is not None and any(not v.startswith("max-") for v in views):
        check_point(graph, space, options.point, (a, b), unit)
    planes = []
    for v in views:
        name = v[4:] if v.startswith("max-") else v
        if name not in ORTHOGONAL_VIEWS:
            raise MetadataError(f"--views {v!r}: expected some of {', '.join(VIEWS_3D)}")
        planes.append(
            orthogonal_plane(
                space,
                lo,
                hi,
                ps,
                name,
                options.point,
                project=v.startswith("max-"),
                max_steps=options.max_steps,
                unit=unit,
            )
        )
    return planes


def make_overlay(
    graph: SpaceGraph,
    a: Channel,
    b: Channel,
    options: OverlayOptions | None = None,
    *,
    unit: str = "nanometer",
    transform_a: Transform | None = None,
    transform_b: Transform | None = None,
    planes: Sequence[Plane] | None = None,
    plane_volume: Volume | None = None,
) -> Overlay:
    """Sample A and B on the views of ``options`` and choose their contrast.

    Parameters
    ----------
    graph
        The space graph (chains from the view's space into each image's).
    a, b
        The channels.
    options
        What to show (default :class:`OverlayOptions`).
    unit
        Workspace unit.
    transform_a, transform_b
        Maps from the views' space into each image's space, replacing the
        graph's chains (e.g. the *before* state of a registration).
    planes
        Views to use instead of those built from ``options``.
    plane_volume
        Image living in ``options.plane``'s space (its extent is the box).
    """
    options = options or OverlayOptions()
    for m in options.modes:
        if m not in MODES:
            raise MetadataError(f"--modes {m!r}: expected some of {', '.join(MODES)}")
    views = (
        list(planes)
        if planes is not None
        else build_planes(graph, a, b, options, unit, plane_volume)
    )
    pairs = []
    cache: dict[tuple[str, str], Transform] = {}
    for plane in views:
        samples = []
        for ch, override in ((a, transform_a), (b, transform_b)):
            if override is not None:
                t = override
            else:
                key = (plane.space, ch.space)
                if key not in cache:
                    cache[key] = graph.transform(plane.space, ch.space)
                t = cache[key]
            samples.append(sample_plane(ch.volume, plane, t))
        pairs.append(ViewPair(plane, samples[0], samples[1]))
    lim_a = _limits(a, [p.a for p in pairs], options.limits_a)
    lim_b = _limits(b, [p.b for p in pairs], options.limits_b)
    return Overlay(a, b, tuple(pairs), lim_a, lim_b, unit, options)


def _limits(
    ch: Channel, samples: Sequence[Sampled], given: tuple[float, float] | None
) -> tuple[float, float] | None:
    if ch.volume.is_labels:
        return None
    if given is not None:
        return given
    return robust_limits([s.values for s in samples], [s.valid for s in samples])


def _names(text: str | None, allowed: Sequence[str], flag: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [n for n in names if n not in allowed]
    if not names or bad:
        raise MetadataError(
            f"{flag} {text!r}: expected a comma-separated list of {', '.join(allowed)}"
        )
    return names


def parse_options(
    *,
    frame: str = "A",
    views: str | None = None,
    modes: str | None = None,
    box: str | None = None,
    point: str | None = None,
    pixel_size: float | None = None,
    level: str | None = None,
    size: int = 512,
    tile: str = "32",
    alpha: float = 0.5,
    limits_a: str | None = None,
    limits_b: str | None = None,
    plane: str | None = None,
) -> OverlayOptions:
    """:class:`OverlayOptions` from command-line text (comma-separated lists and numbers).

    Raises
    ------
    MetadataError
        If a value cannot be read (the message names the flag).
    """

    frame_u = frame.strip().upper()
    if frame_u not in ("A", "B"):
        raise MetadataError(f"--frame {frame!r}: expected A or B (whose space the views use)")
    if size < 1:
        raise MetadataError(f"--size {size}: expected a positive number of pixels")
    parse_tile(tile, "nanometer")
    pt = None if point is None else tuple(parse_floats(point, flag="--point"))
    lvl: int | str | None = level
    if level is not None and level.strip().isdigit():
        lvl = int(level)
    return OverlayOptions(
        frame=frame_u,
        views=_names(views, (*VIEWS_3D, "plane"), "--views"),
        modes=_names(modes, tuple(MODES), "--modes") or tuple(MODES),
        box=None if box is None else parse_box(box),
        point=pt,
        pixel_size=pixel_size,
        level=lvl,
        size=size,
        tile=tile,
        alpha=alpha,
        limits_a=parse_limits(limits_a, flag="--limits-a"),
        limits_b=parse_limits(limits_b, flag="--limits-b"),
        plane=plane,
    )


def check_output(out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Refuse an output of the wrong type, or an existing one without ``force``, before work.

    Raises
    ------
    MetadataError
        If the suffix is not ``.png``, ``.tif`` or ``.tiff``.
    OverwriteError
        If the file exists and ``force`` is false.
    """

    path = Path(out)
    if path.suffix.lower() not in (".png", *TIFF_SUFFIXES):
        raise MetadataError(f"output {path.name!r}: expected a .png or .tif(f) file (-o)")
    return refuse_existing(path, force)


def write_overlay(
    overlay: Overlay, out: str | os.PathLike[str], *, force: bool = False
) -> list[Path]:
    """Write an overlay: the panel grid as PNG, or the raw channels as TIFF.

    A ``.tif``/``.tiff`` output holds both sampled channels of a view as
    float32 ``(2, y, x)`` with its pixel size; with several views, one file
    per view is written beside it (``OUT-<view>.tif``).

    Returns
    -------
    The files written.
    """
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        written = []
        names = (overlay.a.name, overlay.b.name)
        for pair in overlay.pairs:
            target = path
            if len(overlay.pairs) > 1:
                tag = pair.plane.name.split(" =")[0].replace(" ", "-")
                target = path.with_name(f"{path.stem}-{tag}{path.suffix}")
            data = np.stack([pair.a.values, pair.b.values]).astype(np.float32)
            written.append(
                save_channels_tiff(
                    target, data, pair.plane.pixel_size, overlay.unit, names=names, overwrite=force
                )
            )
        return written
    if suffix != ".png":
        raise MetadataError(f"output {path.name!r}: expected a .png or .tif(f) file (-o)")
    return [save_png(path, overlay.grid(), overwrite=force)]


def overlay_summary(overlay: Overlay, files: Sequence[Path]) -> dict[str, Any]:
    """A JSON-ready summary: files, views, levels read and contrast limits."""
    return {
        "files": [str(f) for f in files],
        "a": overlay.a.name,
        "b": overlay.b.name,
        "unit": overlay.unit,
        "limits_a": overlay.limits_a,
        "limits_b": overlay.limits_b,
        "views": [
            {
                "name": p.plane.name,
                "space": p.plane.space,
                "shape": list(p.plane.shape),
                "pixel_size": p.plane.pixel_size,
                "level_a": overlay.a.volume.levels[p.a.level].path or p.a.level,
                "level_b": overlay.b.volume.levels[p.b.level].path or p.b.level,
                "coverage_a": float(p.a.valid.mean()),
                "coverage_b": float(p.b.valid.mean()),
            }
            for p in overlay.pairs
        ],
    }
