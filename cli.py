"""The ``coframe`` command line: parse, call, report. No numerics here."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from typer.core import TyperGroup

from coframe.app.edges import export_scene, import_scene, link_transform
from coframe.app.images import add_image, describe_added
from coframe.app.overlay import write_workspace_overlay
from coframe.app.points import map_workspace_points
from coframe.app.report import write_report
from coframe.app.resample import (
    describe_result,
    interrupted_message,
    resample_options,
    resample_workspace,
)
from coframe.app.viewer import export_viewer
from coframe.app.workspace import init_workspace
from coframe.commands import locate_cmd, nuclei_cmd, register_cmd
from coframe.commands.common import WorkspaceOption as _WorkspaceOption
from coframe.commands.common import arg as _arg
from coframe.commands.common import command_line as _command_line
from coframe.commands.common import from_flags as _from_flags
from coframe.commands.common import load_ws as _load_ws
from coframe.commands.common import opt as _opt
from coframe.core.errors import CoframeError, one_line_warnings
from coframe.demo.pipeline import run_demo
from coframe.resampling.sizes import DEFAULT_MAX_OUTPUT
from coframe.transforms.graph import describe_graph, render_graph
from coframe.views.overlay_views import check_output, parse_options
from coframe.volumes.info import describe, render_text
from coframe.volumes.open import open_volume, parse_floats, parse_select

T = TypeVar("T")


class _Group(TyperGroup):
    """Typer group: a CoframeWarning is one line on stderr, a CoframeError one line and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with one_line_warnings(lambda text: typer.echo(text, err=True)):
                return super().invoke(ctx)
        except CoframeError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e


app = typer.Typer(
    cls=_Group,
    name="coframe",
    help="Bring X-ray microCT, TEM and FIB-SEM images of one sample into one physical frame.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"coframe {metadata.version('coframe')}")
        except metadata.PackageNotFoundError:
            typer.echo("coframe (not installed)")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Bring X-ray microCT, TEM and FIB-SEM images of one sample into one physical frame."""


# ---------------------------------------------------------------------- image inspection


@app.command("info")
def info_cmd(
    path: Annotated[str, _arg("Image path or URL (OME-Zarr, N5, TIFF, MRC).")],
    as_json: Annotated[bool, _opt("Print JSON.", "--json")] = False,
    unit: Annotated[str, _opt("Unit of reported lengths.")] = "nanometer",
    voxel_size: Annotated[str | None, _opt("Level-0 voxel size: one value or z,y,x.")] = None,
    origin: Annotated[str | None, _opt("Centre of voxel 0 of level 0: z,y,x.")] = None,
    input_unit: Annotated[
        str | None, _opt("Unit of --voxel-size and --origin (default: --unit).")
    ] = None,
    select: Annotated[
        list[str] | None, _opt("AXIS=INDEX for a channel or time axis (repeatable).")
    ] = None,
    modality: Annotated[str | None, _opt("xray, fibsem, tem or labels.")] = None,
    level: Annotated[str | None, _opt("Show only this level (number or path).")] = None,
) -> None:
    """Show an image's axes, unit, levels, voxel sizes, origins, extents and chunks."""
    volume = open_volume(
        path,
        unit=unit,
        voxel_size=None if voxel_size is None else parse_floats(voxel_size, flag="--voxel-size"),
        origin=None if origin is None else parse_floats(origin, flag="--origin"),
        input_unit=input_unit,
        modality=modality,
        axis_select=parse_select(select),
    )
    description = describe(volume, level=level)
    typer.echo(json.dumps(description, indent=2) if as_json else render_text(description))


# ---------------------------------------------------------------------- workspace commands


@app.command("init")
def init_cmd(
    directory: Annotated[Path, _arg("Workspace directory (created).")] = Path("."),
    unit: Annotated[str, _opt("Workspace length unit.")] = "nanometer",
    force: Annotated[bool, _opt("Overwrite coframe.yaml.", "--force")] = False,
) -> None:
    """Create a workspace (coframe.yaml) in DIRECTORY."""
    ws = init_workspace(directory, unit=unit, force=force)
    typer.echo(f"workspace {ws.file} (unit {ws.unit})")


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    name: Annotated[str, _arg("Image name.")],
    path: Annotated[str, _arg("Image path or URL (OME-Zarr, N5, TIFF, MRC).")],
    modality: Annotated[str | None, _opt("xray, fibsem, tem or labels.")] = None,
    voxel_size: Annotated[str | None, _opt("One value or z,y,x.")] = None,
    input_unit: Annotated[str | None, _opt("Unit of --voxel-size.")] = None,
    space: Annotated[str | None, _opt("Space name (default: NAME).")] = None,
    force: Annotated[bool, _opt("Replace an image.", "--force")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Add an image to the workspace (it is opened to validate it)."""
    vs = None if voxel_size is None else parse_floats(voxel_size, flag="--voxel-size")
    ws, volume = _from_flags(ctx, add_image, ws=_load_ws(workspace), voxel_size=vs)
    typer.echo(describe_added(ws.save(), name, volume))


@app.command("link")
def link_cmd(
    ctx: typer.Context,
    from_space: Annotated[str, _arg("Space whose points the transform maps.")],
    to_space: Annotated[str, _arg("Space the points are mapped into.")],
    file: Annotated[Path, _arg("Transform file: ITK, OME-NGFF or BigWarp.")],
    unit: Annotated[str | None, _opt("Unit of an ITK/BigWarp file or unitless NGFF axes.")] = None,
    force: Annotated[bool, _opt("Replace an edge.", "--force")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Add a transform file as the edge FROM_SPACE -> TO_SPACE.

    A BigWarp landmark file maps FIXED -> MOVING: link it as FIXED MOVING.
    """
    ws, command = _load_ws(workspace), _command_line(ctx)
    spaces = (from_space, to_space)
    ws, t = link_transform(ws, *spaces, file, file_unit=unit, command=command, force=force)
    ws.save()
    pair = (ws.space_of(from_space), ws.space_of(to_space))
    edge = next(e for e in ws.edges if (e.source, e.target) == pair)
    typer.echo(
        f"linked {edge.source} -> {edge.target}: {edge.kind} ({t.input_dim}D -> {t.output_dim}D), "
        f"{edge.file} ({edge.format}, {edge.unit})"
    )


@app.command("graph")
def graph_cmd(
    as_json: Annotated[bool, _opt("Print JSON.", "--json")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Show the spaces, their images and the transform edges of the workspace."""
    description = describe_graph(_load_ws(workspace))
    typer.echo(json.dumps(description, indent=2) if as_json else render_graph(description))


@app.command("points")
def points_cmd(
    ctx: typer.Context,
    source: Annotated[str, _arg("Source space (or image name).")],
    target: Annotated[str, _arg("Target space (or image name).")],
    coords: Annotated[str, _arg("JSON list of (z, y, x) points, or a CSV file.")],
    scene: Annotated[Path | None, _opt("Read the graph from an NGFF scene.")] = None,
    via: Annotated[list[str] | None, _opt("Pass through this space.")] = None,
    csv_out: Annotated[Path | None, _opt("Also write the points as CSV.")] = None,
    force: Annotated[bool, _opt("Overwrite --csv-out.", "--force")] = False,
    unit: Annotated[
        str | None, _opt("Unit of COORDS (default: workspace unit, nm for --scene).")
    ] = None,
    workspace: _WorkspaceOption = None,
) -> None:
    """Map physical (z, y, x) points from SOURCE to TARGET and print them as JSON."""
    try:
        mapped = _from_flags(ctx, map_workspace_points, via=via or ())
    except CoframeError as e:
        typer.echo(json.dumps({"message": str(e)}))
        raise
    typer.echo(json.dumps({"coordinates": mapped.tolist()}))


# ---------------------------------------------------------------------- overlays and QC report


@app.command("overlay")
def overlay_cmd(
    ctx: typer.Context,
    a: Annotated[str, _arg("Image A (magenta).")],
    b: Annotated[str, _arg("Image B (green).")],
    out: Annotated[Path, _opt("Output .png (panel grid) or .tif.", "--out", "-o")],
    frame: Annotated[str, _opt("Views in the space of A or B.")] = "A",
    views: Annotated[str | None, _opt("z,y,x,max-z,max-y,max-x (3D) or plane (2D).")] = None,
    modes: Annotated[
        str | None, _opt("composite,checkerboard,difference,blend (default all).")
    ] = None,
    box: Annotated[str | None, _opt("Physical box z0,y0,x0:z1,y1,x1 in the frame.")] = None,
    point: Annotated[str | None, _opt("Slices pass through z,y,x.")] = None,
    pixel_size: Annotated[float | None, _opt("Output pixel size.")] = None,
    level: Annotated[str | None, _opt("Frame image level giving the pixel size.")] = None,
    size: Annotated[int, _opt("Longest view side in pixels.")] = 512,
    tile: Annotated[str, _opt("Checkerboard tile: pixels (32) or length (2um).")] = "32",
    alpha: Annotated[float, _opt("Weight of B in the blend.")] = 0.5,
    limits_a: Annotated[str | None, _opt("Contrast of A: lo,hi.")] = None,
    limits_b: Annotated[str | None, _opt("Contrast of B: lo,hi.")] = None,
    plane: Annotated[
        str | None, _opt("Show the plane of a located 2D section (its space).")
    ] = None,
    viewer_out: Annotated[
        Path | None, _opt("Also write an OME-Zarr + neuroglancer state here.")
    ] = None,
    force: Annotated[bool, _opt("Overwrite outputs.", "--force")] = False,
    as_json: Annotated[bool, _opt("Print a JSON summary.", "--json")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Show images A and B in one frame: composite, checkerboard, difference, blend."""
    check_output(out, force=force)
    options = _from_flags(ctx, parse_options)  # --frame, --views, --modes, --box, ...
    summary = write_workspace_overlay(
        _load_ws(workspace), a, b, out, options, viewer_out=viewer_out, force=force
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for f in summary["files"] + (summary["viewer"]["files"] if viewer_out is not None else []):
        typer.echo(f"wrote {f}")


@app.command("export-viewer")
def export_viewer_cmd(
    ctx: typer.Context,
    a: Annotated[str, _arg("Image A (magenta, channel 0).")],
    b: Annotated[str, _arg("Image B (green, channel 1).")],
    out: Annotated[Path, _opt("Output directory.", "--out", "-o")],
    frame: Annotated[str, _opt("Resample into the space of A or B.")] = "A",
    box: Annotated[str | None, _opt("Physical box z0,y0,x0:z1,y1,x1 in the frame.")] = None,
    pixel_size: Annotated[float | None, _opt("Output voxel size.")] = None,
    level: Annotated[str | None, _opt("Frame image level giving the voxel size.")] = None,
    size: Annotated[int, _opt("Longest side of the export in voxels.")] = 256,
    limits_a: Annotated[str | None, _opt("Window of A: lo,hi.")] = None,
    limits_b: Annotated[str | None, _opt("Window of B: lo,hi.")] = None,
    plane: Annotated[
        str | None, _opt("Export the plane of a located 2D section (its space).")
    ] = None,
    url_base: Annotated[
        str, _opt("URL that serves --serve-root (for neuroglancer sources).")
    ] = "http://127.0.0.1:8000",
    serve_root: Annotated[
        Path | None, _opt("Directory served at --url-base (default: common root).")
    ] = None,
    force: Annotated[bool, _opt("Overwrite outputs.", "--force")] = False,
    as_json: Annotated[bool, _opt("Print a JSON summary.", "--json")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Write A and B resampled as one OME-Zarr (napari) and a neuroglancer state."""
    options = _from_flags(ctx, parse_options)  # --frame, --box, --pixel-size, ...
    ws = _load_ws(workspace)
    summary = export_viewer(
        ws, a, b, out, options, size=size, url_base=url_base, serve_root=serve_root, force=force
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for f in summary["files"]:
        typer.echo(f"wrote {f}")
    serve = summary["serve"]
    typer.echo(f"neuroglancer sources expect {serve['directory']} served at {serve['url']}")


@app.command("report")
def report_cmd(
    out: Annotated[Path | None, _opt("HTML file (default report.html).", "--out", "-o")] = None,
    size: Annotated[int, _opt("Longest side of each overlay view.")] = 256,
    force: Annotated[bool, _opt("Overwrite the report.", "--force")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Write one self-contained HTML QC page: graph, edges, metrics, overlays."""
    path = write_report(_load_ws(workspace), out, size=size, force=force)
    typer.echo(f"wrote {path}")


@app.command("export-scene")
def export_scene_cmd(
    out: Annotated[Path, _arg("Output OME-NGFF scene (Zarr group).")],
    field_spacing: Annotated[float | None, _opt("Store splines as fields: node spacing.")] = None,
    force: Annotated[bool, _opt("Overwrite OUT.", "--force")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Write the workspace's spaces and edges as one OME-NGFF (RFC-5) scene."""
    ws = _load_ws(workspace)
    written = export_scene(ws, out, force=force, field_spacing=field_spacing)
    typer.echo(f"wrote {written}: {len(ws.all_spaces())} spaces, {len(ws.edges)} transformations")


@app.command("import-scene")
def import_scene_cmd(
    ctx: typer.Context,
    path: Annotated[Path, _arg("OME-NGFF scene: Zarr group or .json file.")],
    unit: Annotated[str | None, _opt("Unit of the scene's axes that declare none.")] = None,
    force: Annotated[bool, _opt("Replace edges and files.", "--force")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Add a scene's coordinate systems as spaces and its transformations as edges."""
    ws = _load_ws(workspace)
    new = import_scene(ws, path, unit=unit, force=force, command=_command_line(ctx))
    new.save()
    for e in [e for e in new.edges if not any(e is old for old in ws.edges)]:
        typer.echo(f"edge {e.source} -> {e.target}: {e.kind}, {e.file}")
    typer.echo(f"imported {path}: {len(new.all_spaces())} spaces, {len(new.edges)} edges in total")


@app.command("resample")
def resample_cmd(
    ctx: typer.Context,
    source: Annotated[str, _arg("Image to resample (workspace image name).")],
    into: Annotated[str, _opt("Image whose frame and grid the output takes.", "--into")],
    out: Annotated[Path, _opt("Output: OME-Zarr directory or .tif file.", "--out", "-o")],
    level: Annotated[str | None, _opt("Level of INTO giving the grid (default 0).")] = None,
    voxel_size: Annotated[str | None, _opt("Output voxel size: one value or z,y,x.")] = None,
    box: Annotated[str | None, _opt("Physical box z0,y0,x0:z1,y1,x1 of INTO.")] = None,
    source_level: Annotated[str | None, _opt("Level of SOURCE to read.")] = None,
    interpolation: Annotated[
        str | None, _opt("linear, bspline or nearest (labels: nearest).")
    ] = None,
    zarr_version: Annotated[int, _opt("2 (OME-Zarr 0.4) or 3 (OME-Zarr 0.5).")] = 2,
    fmt: Annotated[str | None, _opt("ome-zarr or tiff (default: from -o).", "--format")] = None,
    scheduler: Annotated[str | None, _opt("dask.distributed scheduler address.")] = None,
    memory: Annotated[str, _opt("Memory budget of one task.", "--memory-per-task")] = "256MB",
    pyramid: Annotated[
        int | None, _opt("Output levels (default: auto).", "--pyramid-levels")
    ] = None,
    chunks: Annotated[str | None, _opt("Output chunk shape z,y,x (default 64,128,128).")] = None,
    compressor: Annotated[
        str, _opt("Chunk compressor: lz4 (fastest), zstd (smaller), gzip or none.")
    ] = "lz4",
    max_output_size: Annotated[
        str, _opt("Refuse outputs larger than this (level 0, uncompressed).")
    ] = DEFAULT_MAX_OUTPUT,
    on_bad_chunk: Annotated[
        str, _opt("At a corrupt source chunk: error, or fill (read it as zeros).")
    ] = "error",
    via: Annotated[list[str] | None, _opt("Pass through this space.")] = None,
    force: Annotated[bool, _opt("Overwrite OUT or restart it.", "--force")] = False,
    quiet: Annotated[bool, _opt("No progress bar.", "--quiet")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Resample SOURCE into the frame of image INTO: chunked, resumable, on dask."""
    ws = _load_ws(workspace)
    options = _from_flags(ctx, resample_options, ws=ws, command=_command_line(ctx))
    try:
        result = resample_workspace(ws, source, into, out, options)
    except KeyboardInterrupt:  # Ctrl-C: say what is kept and how to go on
        typer.echo(interrupted_message(out, fmt), err=True)
        raise typer.Exit(130) from None
    typer.echo(describe_result(result))


# ---------------------------------------------------------------------- registration (commands/)

app.command("register")(register_cmd)
app.command("locate")(locate_cmd)
app.command("nuclei")(nuclei_cmd)

# ---------------------------------------------------------------------- demo


@app.command("demo")
def demo_cmd(
    directory: Annotated[Path, _arg("Output directory (the demo workspace).")] = Path(
        "coframe-demo"
    ),
    size: Annotated[str, _opt("default, small or tiny.")] = "default",
    seed: Annotated[int, _opt("Seed of the sample and its noise.")] = 0,
    force: Annotated[bool, _opt("Overwrite a previous demo.", "--force")] = False,
) -> None:
    """Write a synthetic CellMap-like sample (FIB-SEM, labels, X-ray, TEM) with ground truth."""
    for text in run_demo(directory, size=size, seed=seed, force=force):
        typer.echo(text)
