"""Points drawn over a view: matched landmarks (e.g. nuclei) as rings on an overlay panel."""

from __future__ import annotations

import numpy as np

from coframe.views.overlay import Plane

#: Colour of the rings (yellow: neither overlay channel).
RING = (255, 220, 0)


def points_on_plane(
    plane: Plane, points: np.ndarray, half_depth: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, column) of the points near a view, and which ones are near it.

    A point is near a slice when it lies within ``half_depth`` of its plane,
    and near a projection when it lies within the projected slab.
    """
    affine = plane.to_space.as_affine()
    assert affine is not None
    linear, origin = affine.linear, affine.translation
    rc, *_ = np.linalg.lstsq(linear, (np.asarray(points, float) - origin).T, rcond=None)
    rc = rc.T
    off = np.linalg.norm(points - origin - rc @ linear.T, axis=1)
    depth = half_depth
    if plane.steps > 1 and plane.normal is not None:
        depth = max(depth, plane.steps * float(np.linalg.norm(plane.normal)) / 2.0)
    rows, cols = plane.shape
    inside = (off <= depth) & (rc[:, 0] >= -0.5) & (rc[:, 0] <= rows - 0.5) & (rc[:, 1] >= -0.5)
    inside &= rc[:, 1] <= cols - 0.5
    return rc, inside


def draw_rings(rgb: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """A copy of ``rgb`` with a one-pixel ring of ``radius`` pixels around each centre."""
    out = rgb.copy()
    h, w = out.shape[:2]
    angles = np.linspace(0, 2 * np.pi, max(16, int(2 * np.pi * radius)), endpoint=False)
    for r0, c0 in centres:
        rr = np.rint(r0 + radius * np.sin(angles)).astype(int)
        cc = np.rint(c0 + radius * np.cos(angles)).astype(int)
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        out[rr[ok], cc[ok]] = RING
    return out


def mark_points(
    rgb: np.ndarray, plane: Plane, points: np.ndarray, radius: float, half_depth: float
) -> tuple[np.ndarray, int]:
    """Rings of physical ``radius`` around the points near the view; also their number.

    ``rgb`` is the view's picture, possibly magnified by an integer factor.
    """
    factor = rgb.shape[0] / plane.shape[0]
    rc, near = points_on_plane(plane, points, half_depth)
    centres = (rc[near] + 0.5) * factor - 0.5
    ring = max(3.0, radius / plane.pixel_size * factor)
    return draw_rings(rgb, centres, ring), int(near.sum())
