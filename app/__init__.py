"""The application layer: the workspace (``coframe.yaml``) and the commands that read and write it.

May import :mod:`coframe.views`, :mod:`coframe.registration`,
:mod:`coframe.resampling`, :mod:`coframe.transforms`, :mod:`coframe.volumes`,
:mod:`coframe.core` and :mod:`coframe.configs`; never :mod:`coframe.demo` or
:mod:`coframe.cli`.

- :mod:`coframe.app.workspace`, :mod:`coframe.app.workspace_file`: the
  workspace value, finding, creating and loading it; its file's entries,
  validation and YAML; :mod:`coframe.app.workspace_sync`: the lock and the
  merge that let commands change one workspace at once;
- :mod:`coframe.app.images`: adding an image once it opens;
- :mod:`coframe.app.edges`: linking transform files, OME-NGFF scenes in and out;
- :mod:`coframe.app.points`: point lists mapped between spaces;
- :mod:`coframe.app.register`, :mod:`coframe.app.locate`: the drivers of
  ``coframe register`` and ``coframe locate`` (QC gate, stored edge, provenance);
- :mod:`coframe.app.overlay`, :mod:`coframe.app.viewer`, :mod:`coframe.app.report`:
  overlays, the viewer export and the QC report of workspace images;
- :mod:`coframe.app.napari_reader`: the napari reader (npe2 plugin ``coframe``,
  manifest ``napari.yaml``): every image of a workspace as a lazy multiscale
  layer placed in one space;
- :mod:`coframe.app.provenance`: how a stored transform was made.
"""

from __future__ import annotations

from coframe.app.edges import export_scene, import_scene, link_transform
from coframe.app.images import add_image
from coframe.app.locate import render_locate, run_locate, store_located
from coframe.app.napari_reader import workspace_layers
from coframe.app.overlay import overlay_in_workspace, write_workspace_overlay
from coframe.app.points import map_workspace_points, read_points
from coframe.app.provenance import make_provenance
from coframe.app.register import (
    RegisterOutcome,
    RegisterRequest,
    format_report,
    read_truth,
    run_register,
)
from coframe.app.report import build_report, write_report
from coframe.app.viewer import export_viewer
from coframe.app.workspace import (
    Workspace,
    find_workspace,
    init_workspace,
    load_workspace,
    workspace_from_dict,
)
from coframe.app.workspace_file import EdgeEntry, ImageEntry, SpaceEntry

__all__ = [
    "EdgeEntry",
    "ImageEntry",
    "RegisterOutcome",
    "RegisterRequest",
    "SpaceEntry",
    "Workspace",
    "add_image",
    "build_report",
    "export_scene",
    "export_viewer",
    "find_workspace",
    "format_report",
    "import_scene",
    "init_workspace",
    "link_transform",
    "load_workspace",
    "make_provenance",
    "map_workspace_points",
    "overlay_in_workspace",
    "read_points",
    "read_truth",
    "render_locate",
    "run_locate",
    "run_register",
    "store_located",
    "workspace_from_dict",
    "workspace_layers",
    "write_report",
    "write_workspace_overlay",
]
