"""Sampling two images on one output plane: the geometry of overlays.

An output view is a :class:`Plane`: a grid of pixels whose centres are
physical points of one space (the *frame*). For every image shown, the chain
of transforms from the frame into the image's space maps those centres into
the image, the pyramid level nearest the output pixel size is chosen, and
only the index box around the mapped points is read (tile by tile, so an
oblique plane through a huge volume reads only the chunks near the plane).
Values are interpolated linearly, or by nearest neighbour for label images,
whose integer ids must never be blended.

A plane may carry a depth (``steps`` samples along ``normal``): the view is
then the maximum projection through that slab.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from coframe.core.errors import DimensionError, MetadataError
from coframe.core.units import unit_factor
from coframe.resampling.chain import inverse_tolerance, map_points_checked
from coframe.transforms.affine import Affine
from coframe.transforms.base import Transform
from coframe.volumes.volume import Level, Volume

#: Views through a 3D frame: (display name, normal axis, row axis, column axis).
ORTHOGONAL_VIEWS: dict[str, tuple[int, int, int]] = {"z": (0, 1, 2), "y": (1, 0, 2), "x": (2, 0, 1)}
#: Largest number of output pixels mapped at once (bounds memory per tile).
TILE_POINTS = 1 << 18
#: Largest index box (in voxels) read for one tile before the tile is split.
MAX_BOX_VOXELS = 1 << 25
#: Default cap on the number of samples through a projection slab.
MAX_PROJECTION_STEPS = 256
#: Most pixels of one view (8192 x 8192): a QC picture, not a copy of a volume (a slip such
#: as ``--pixel-size 1e-6`` would otherwise ask for 10^16 pixels and never return).
MAX_VIEW_PIXELS = 8192 * 8192


def check_view_size(shape: Sequence[int], pixel_size: float, unit: str) -> None:
    """Refuse a view of more than :data:`MAX_VIEW_PIXELS` pixels.

    Raises
    ------
    MetadataError
        Naming the view's shape and the flags that make it smaller.
    """
    pixels = math.prod(int(n) for n in shape)
    if pixels > MAX_VIEW_PIXELS:
        raise MetadataError(
            f"a view of {' x '.join(map(str, shape))} pixels of {pixel_size:g} {unit} is above "
            f"the {MAX_VIEW_PIXELS:,} pixels a view may have: give a larger --pixel-size (or "
            "--level, --size) or a smaller --box"
        )


@dataclass(frozen=True)
class Plane:
    """An output grid of pixels placed in a physical space.

    Parameters
    ----------
    space
        Space in which the pixel centres are physical points (the frame).
    to_space
        Affine map from (row, column) pixel indices to physical points of
        ``space`` (2D -> the space's dimension).
    shape
        (rows, columns) of the output.
    pixel_size
        Physical size of one output pixel, in the workspace unit.
    name
        Short display name (``"z = 1.2 µm"``, ``"max z"``, ``"tem-1"``).
    axes
        Names of the row and column directions, for labels.
    normal
        For a projection: the physical step between successive samples
        through the slab (a vector of the space), else ``None``.
    steps
        Number of samples through the slab (1 for a plain slice).
    """

    space: str
    to_space: Affine
    shape: tuple[int, int]
    pixel_size: float
    name: str
    axes: tuple[str, str] = ("y", "x")
    normal: tuple[float, ...] | None = None
    steps: int = 1

    def __post_init__(self) -> None:
        if self.to_space.input_dim != 2:
            raise DimensionError(
                f"plane {self.name!r} maps {self.to_space.input_dim}D pixel indices: expected 2D"
            )
        if self.shape[0] < 1 or self.shape[1] < 1:
            raise DimensionError(f"plane {self.name!r} has shape {self.shape}: expected >= 1 pixel")
        if self.steps < 1 or (self.steps > 1 and self.normal is None):
            raise DimensionError(f"plane {self.name!r}: a projection needs a normal and steps >= 1")

    @property
    def dim(self) -> int:
        """Number of coordinates of the points of :attr:`space`."""
        return self.to_space.output_dim

    def points(self, rows: slice, cols: slice) -> np.ndarray:
        """Physical points of a block of pixels, shape ``(steps, nrows, ncols, dim)``.

        Parameters
        ----------
        rows, cols
            The block of output pixels (unit steps, within :attr:`shape`).
        """
        r = np.arange(rows.start, rows.stop, dtype=float)
        c = np.arange(cols.start, cols.stop, dtype=float)
        rr, cc = np.meshgrid(r, c, indexing="ij")
        flat = self.to_space.apply(np.column_stack([rr.ravel(), cc.ravel()]))
        flat = flat.reshape(len(r), len(c), self.dim)
        if self.steps == 1:
            return flat[None]
        normal = np.asarray(self.normal, dtype=float)
        offsets = (np.arange(self.steps) - (self.steps - 1) / 2.0)[:, None, None, None] * normal
        return flat[None] + offsets


@dataclass(frozen=True)
class Sampled:
    """One image sampled on a plane.

    Parameters
    ----------
    values
        ``(rows, cols)`` sampled values (float64; label ids stay exact).
    valid
        ``(rows, cols)`` True where the pixel maps inside the image.
    level
        Index of the pyramid level that was read.
    voxel_size
        Voxel size of that level.
    dtype
        Data type of the image.
    """

    values: np.ndarray
    valid: np.ndarray
    level: int
    voxel_size: tuple[float, ...]
    dtype: np.dtype


def pixel_size_in(transform: Transform, plane: Plane) -> float:
    """Length of one output pixel once mapped into another space.

    The centre pixel and its neighbours along rows and columns are mapped;
    the result is the geometric mean of the two mapped steps (for a
    non-linear chain, the local size at the plane's centre).
    """
    r0, c0 = (plane.shape[0] - 1) / 2.0, (plane.shape[1] - 1) / 2.0
    pix = np.array([[r0, c0], [r0 + 1.0, c0], [r0, c0 + 1.0]])
    mapped = map_points_checked(
        transform, plane.to_space.apply(pix), inverse_tolerance([plane.pixel_size])
    )
    d_row = float(np.linalg.norm(mapped[1] - mapped[0]))
    d_col = float(np.linalg.norm(mapped[2] - mapped[0]))
    size = math.sqrt(d_row * d_col) if d_row > 0 and d_col > 0 else max(d_row, d_col)
    if not np.isfinite(size) or size <= 0:
        raise DimensionError(
            f"plane {plane.name!r} maps to a degenerate grid (step {size}): check the transform"
        )
    return size


def sample_plane(
    volume: Volume,
    plane: Plane,
    transform: Transform,
    *,
    level: int | str | None = None,
    order: int | None = None,
) -> Sampled:
    """Sample an image on a plane, reading only the boxes the plane maps into.

    Parameters
    ----------
    volume
        The image.
    plane
        The output grid.
    transform
        Map from points of ``plane.space`` into the image's physical space.
    level
        Pyramid level to read (default: the one whose voxel size is nearest
        the output pixel size mapped into the image; where that level holds
        only its fill value over the plane, e.g. a pyramid whose fine levels
        cover a crop, the next coarser level with data is used).
    order
        Interpolation order: 1 (linear) by default, 0 for label images.

    Returns
    -------
    The sampled values (a projection's maximum over its slab) and their mask.

    Raises
    ------
    DimensionError
        If the transform's dimensions do not fit the plane and the image.
    """
    if transform.input_dim != plane.dim or transform.output_dim != volume.ndim:
        raise DimensionError(
            f"transform maps {transform.input_dim}D to {transform.output_dim}D points but plane "
            f"{plane.name!r} is {plane.dim}D and {volume.source} has axes {list(volume.axes)}"
        )
    if order is None:
        order = 0 if volume.is_labels else 1
    if level is not None:
        return _sample_level(
            volume, volume.levels.index(volume.level(level)), plane, transform, order
        )
    index = volume.nearest_level(pixel_size_in(transform, plane))
    while True:
        sampled = _sample_level(volume, index, plane, transform, order)
        if index + 1 >= len(volume.levels) or np.any(sampled.values[sampled.valid] != 0):
            return sampled
        index += 1  # nothing written at this level here (fill value only): try a coarser one


def _sample_level(
    volume: Volume, index: int, plane: Plane, transform: Transform, order: int
) -> Sampled:
    lvl = volume.levels[index]
    values = np.zeros(plane.shape, dtype=np.float64)
    valid = np.zeros(plane.shape, dtype=bool)
    rows_per_tile = max(1, TILE_POINTS // (plane.shape[1] * plane.steps))
    cols_per_tile = plane.shape[1] if rows_per_tile > 1 else max(1, TILE_POINTS // plane.steps)
    for r0 in range(0, plane.shape[0], rows_per_tile):
        for c0 in range(0, plane.shape[1], cols_per_tile):
            rows = slice(r0, min(r0 + rows_per_tile, plane.shape[0]))
            cols = slice(c0, min(c0 + cols_per_tile, plane.shape[1]))
            _sample_tile(lvl, plane, transform, rows, cols, order, values, valid)
    return Sampled(values, valid, index, lvl.voxel_size, volume.dtype)


def _sample_tile(
    lvl: Level,
    plane: Plane,
    transform: Transform,
    rows: slice,
    cols: slice,
    order: int,
    values: np.ndarray,
    valid: np.ndarray,
) -> None:
    """Fill one block of output pixels; split the block if its index box is too large."""
    pts = plane.points(rows, cols)
    steps, nr, nc, dim = pts.shape
    # a point a numerical inverse cannot place within half a pixel stays empty (NaN: not inside)
    mapped = map_points_checked(
        transform, pts.reshape(-1, dim), inverse_tolerance([plane.pixel_size])
    )
    idx = lvl.physical_to_index(mapped)
    shape = np.asarray(lvl.shape, dtype=float)
    inside = np.all(np.isfinite(idx), axis=1) & np.all((idx >= -0.5) & (idx <= shape - 0.5), axis=1)
    if not inside.any():
        return
    lo = np.floor(idx[inside].min(axis=0)).astype(int)
    hi = np.floor(idx[inside].max(axis=0)).astype(int) + 2
    lo = np.clip(lo, 0, shape.astype(int))
    hi = np.clip(hi, 0, shape.astype(int))
    box_voxels = float(np.prod(hi - lo))
    if box_voxels > MAX_BOX_VOXELS and (nr > 8 or nc > 8):
        halves_r = [rows] if nr <= 8 else _halve(rows)
        halves_c = [cols] if nc <= 8 else _halve(cols)
        for hr in halves_r:
            for hc in halves_c:
                _sample_tile(lvl, plane, transform, hr, hc, order, values, valid)
        return
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    data = lvl.read(box)
    local = np.clip(idx[inside] - lo, 0.0, np.asarray(data.shape, dtype=float) - 1.0)
    if order == 0:
        picked = data[tuple(np.rint(local).astype(int).T)].astype(np.float64)
    else:
        picked = ndimage.map_coordinates(
            data.astype(np.float32, copy=False), local.T, order=order, mode="nearest"
        ).astype(np.float64)
    flat = np.zeros(steps * nr * nc, dtype=np.float64)
    flat[inside] = picked
    hit = inside.reshape(steps, nr, nc).any(axis=0)
    if steps == 1:
        block = flat.reshape(nr, nc)
    else:
        stacked = np.where(inside, flat, -np.inf).reshape(steps, nr, nc)
        block = np.where(hit, stacked.max(axis=0), 0.0)
    values[rows, cols] = block
    valid[rows, cols] = hit


def _halve(s: slice) -> list[slice]:
    mid = (s.start + s.stop) // 2
    return [slice(s.start, mid), slice(mid, s.stop)]


# --------------------------------------------------------------------------- view geometry


def default_pixel_size(
    lo: Sequence[float], hi: Sequence[float], volume: Volume, size: int = 512
) -> float:
    """Output pixel size so that the longest side of the box spans ``size`` pixels.

    It is never finer than the finest voxel of ``volume`` (the frame image):
    sampling below it only magnifies interpolation.
    """
    if size < 1:
        raise DimensionError(f"output size {size}: expected at least 1 pixel (--size)")
    longest = max(float(b) - float(a) for a, b in zip(lo, hi, strict=True))
    finest = min(volume.levels[0].voxel_size)
    return max(longest / size, finest)


def volume_box(volume: Volume) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Physical (lo, hi) corners of an image's finest level, edge to edge."""
    ext = volume.levels[0].extent
    return tuple(a for a, _ in ext), tuple(b for _, b in ext)


def orthogonal_plane(
    space: str,
    lo: Sequence[float],
    hi: Sequence[float],
    pixel_size: float,
    view: str,
    point: Sequence[float] | None = None,
    *,
    project: bool = False,
    max_steps: int = MAX_PROJECTION_STEPS,
    unit: str = "nanometer",
) -> Plane:
    """An axis-aligned view of a 3D box: a slice through ``point`` or a max projection.

    Parameters
    ----------
    space
        The frame space.
    lo, hi
        Physical box corners (z, y, x).
    pixel_size
        Output pixel size.
    view
        ``z``, ``y`` or ``x``: the axis normal to the plane.
    point
        A point the slice passes through (default: the box centre).
    project
        Maximum projection through the whole box depth instead of a slice.
    max_steps
        Cap on the number of samples through the slab of a projection.
    unit
        Unit of the coordinates, for the view's name.
    """
    if view not in ORTHOGONAL_VIEWS:
        raise DimensionError(f"view {view!r}: expected one of z, y, x (--views)")
    if len(lo) != 3 or len(hi) != 3:
        raise DimensionError(f"view {view!r} needs a 3D box; got corners {tuple(lo)} {tuple(hi)}")
    n_ax, r_ax, c_ax = ORTHOGONAL_VIEWS[view]
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    centre = (lo_a + hi_a) / 2.0 if point is None else np.asarray(point, float)
    if centre.shape != (3,):
        raise DimensionError(f"point {tuple(centre)} needs 3 coordinates (z, y, x) (--point)")
    rows = max(1, math.ceil((hi_a[r_ax] - lo_a[r_ax]) / pixel_size - 1e-9))
    cols = max(1, math.ceil((hi_a[c_ax] - lo_a[c_ax]) / pixel_size - 1e-9))
    check_view_size((rows, cols), pixel_size, unit)
    linear = np.zeros((3, 2))
    linear[r_ax, 0] = pixel_size
    linear[c_ax, 1] = pixel_size
    origin = np.zeros(3)
    origin[r_ax] = lo_a[r_ax] + pixel_size / 2.0
    origin[c_ax] = lo_a[c_ax] + pixel_size / 2.0
    axis_names = ("z", "y", "x")
    if not project:
        origin[n_ax] = centre[n_ax]
        name = f"{view} = {format_length(float(centre[n_ax]), unit)}"
        return Plane(
            space,
            Affine.from_linear(linear, origin),
            (rows, cols),
            pixel_size,
            name,
            (axis_names[r_ax], axis_names[c_ax]),
        )
    depth = float(hi_a[n_ax] - lo_a[n_ax])
    steps = max(1, min(max_steps, math.ceil(depth / pixel_size - 1e-9)))
    origin[n_ax] = (lo_a[n_ax] + hi_a[n_ax]) / 2.0
    normal = np.zeros(3)
    normal[n_ax] = depth / steps
    return Plane(
        space,
        Affine.from_linear(linear, origin),
        (rows, cols),
        pixel_size,
        f"max {view}",
        (axis_names[r_ax], axis_names[c_ax]),
        normal=tuple(float(v) for v in normal),
        steps=steps,
    )


def flat_plane(
    space: str,
    lo: Sequence[float],
    hi: Sequence[float],
    pixel_size: float,
    name: str,
    unit: str = "nanometer",
) -> Plane:
    """The whole of a 2D box (a section's own plane) as an output grid.

    Raises
    ------
    MetadataError
        If the grid has more than :data:`MAX_VIEW_PIXELS` pixels.
    """
    if len(lo) != 2 or len(hi) != 2:
        raise DimensionError(f"plane {name!r} needs a 2D box; got {tuple(lo)} {tuple(hi)}")
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    shape = tuple(
        max(1, math.ceil((b - a) / pixel_size - 1e-9)) for a, b in zip(lo_a, hi_a, strict=True)
    )
    check_view_size(shape, pixel_size, unit)
    affine = Affine.from_linear(np.eye(2) * pixel_size, lo_a + pixel_size / 2.0)
    return Plane(space, affine, (int(shape[0]), int(shape[1])), pixel_size, name, ("y", "x"))


def format_length(value: float, unit: str) -> str:
    """A length in the most readable of nm, µm and mm (``"1.5 µm"``)."""

    nm = value * unit_factor(unit, "nanometer")
    for name, factor in (("mm", 1e6), ("µm", 1e3)):
        if abs(nm) >= factor:
            return f"{nm / factor:.4g} {name}"
    return f"{nm:.4g} nm"
