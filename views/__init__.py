"""Views: two images sampled in one frame, rendered as pictures, a viewer export, report HTML.

May import :mod:`coframe.resampling`, :mod:`coframe.transforms`,
:mod:`coframe.volumes` and :mod:`coframe.core`; not :mod:`coframe.registration`
(views show results, they do not estimate them) and nothing above. Views take
opened volumes and a :class:`~coframe.transforms.graph.SpaceGraph`; they do
not know the workspace.

- :mod:`coframe.views.overlay`: planes and sampling an image on them;
- :mod:`coframe.views.overlay_views`: overlay options, channels and the overlay
  of two images, written as PNG panels or a TIFF;
- :mod:`coframe.views.overlay_point`: a ``--point`` must lie in an image shown;
- :mod:`coframe.views.render`: contrast, colour modes, scale bars, panel grids;
- :mod:`coframe.views.points_marks`: points (matched nuclei) drawn as rings on a view;
- :mod:`coframe.views.viewer`: the two-channel OME-Zarr and neuroglancer pieces;
- :mod:`coframe.views.report_html`: the report page's HTML.
"""

from __future__ import annotations

from coframe.views.overlay import Plane, orthogonal_plane, sample_plane
from coframe.views.overlay_views import (
    Channel,
    Overlay,
    OverlayOptions,
    make_overlay,
    overlay_summary,
    parse_options,
    write_overlay,
)
from coframe.views.points_marks import mark_points
from coframe.views.render import (
    blend,
    checkerboard,
    composite,
    difference,
    normalize,
    panel_grid,
    robust_limits,
    save_png,
)
from coframe.views.viewer import export_grid, write_channels_zarr

__all__ = [
    "mark_points",
    "Channel",
    "Overlay",
    "OverlayOptions",
    "Plane",
    "blend",
    "checkerboard",
    "composite",
    "difference",
    "export_grid",
    "make_overlay",
    "normalize",
    "orthogonal_plane",
    "overlay_summary",
    "panel_grid",
    "parse_options",
    "robust_limits",
    "sample_plane",
    "save_png",
    "write_channels_zarr",
    "write_overlay",
]
