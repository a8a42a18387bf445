"""The ``coframe`` command line: parse, call, report. No numerics here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from coframe.app.edges import export_scene, import_scene, link_transform
from coframe.app.locate import render_locate, run_locate
from coframe.app.overlay import overlay_in_workspace
from coframe.app.points import points_csv_text, read_points
from coframe.app.register import RegisterRequest, format_report, refuse, run_register
from coframe.app.report import write_report
from coframe.app.viewer import export_viewer
from coframe.app.workspace import find_workspace, init_workspace, load_workspace
from coframe.core.atomic import write_text_atomic
from coframe.core.errors import CoframeError
from coframe.core.units import canonical_unit, unit_factor
from coframe.demo.pipeline import run_demo
from coframe.registration.locate import LocateOptions
from coframe.resampling.resample import resample_workspace
from coframe.transforms.formats.ngff import read_scene
from coframe.transforms.graph import SpaceGraph, describe_graph, map_points, render_graph
from coframe.views.overlay_views import check_output, overlay_summary, parse_options, write_overlay
from coframe.volumes.info import describe, render_text
from coframe.volumes.open import open_volume, parse_floats, parse_select


class _Group(TyperGroup):
    """Typer group that turns a :class:`CoframeError` into one line on stderr and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
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
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"coframe {version('coframe')}")
        except PackageNotFoundError:
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
    path: Annotated[str, typer.Argument(help="Image path or URL (OME-Zarr, N5, TIFF, MRC).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    unit: Annotated[str, typer.Option("--unit", help="Unit of reported lengths.")] = "nanometer",
    voxel_size: Annotated[
        str | None, typer.Option("--voxel-size", help="Level-0 voxel size: one value or z,y,x.")
    ] = None,
    origin: Annotated[
        str | None, typer.Option("--origin", help="Centre of voxel 0 of level 0: z,y,x.")
    ] = None,
    input_unit: Annotated[
        str | None,
        typer.Option("--input-unit", help="Unit of --voxel-size and --origin (default: --unit)."),
    ] = None,
    select: Annotated[
        list[str] | None,
        typer.Option("--select", help="AXIS=INDEX for a channel or time axis (repeatable)."),
    ] = None,
    modality: Annotated[
        str | None, typer.Option("--modality", help="xray, fibsem, tem or labels.")
    ] = None,
    level: Annotated[
        str | None, typer.Option("--level", help="Show only this level (number or path).")
    ] = None,
) -> None:
    """Show an image's axes, unit, levels, voxel sizes, origins, extents and chunks."""
    import json

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

_WORKSPACE_HELP = "Workspace directory (default: search for coframe.yaml from here upward)."


def _load_ws(workspace: Path | None) -> Any:
    return load_workspace(find_workspace(explicit=workspace))


def _command_line(ctx: typer.Context) -> str:
    """The command line of ``ctx``, rebuilt from its parsed parameters (for provenance)."""
    import shlex

    parts = ["coframe", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name == "argument":
            parts.append(shlex.quote(str(value)))
        elif value not in (None, False, (), [], param.default):
            flag = param.opts[0]
            parts.append(flag if value is True else f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


@app.command("init")
def init_cmd(
    directory: Annotated[Path, typer.Argument(help="Workspace directory (created).")] = Path("."),
    unit: Annotated[str, typer.Option("--unit", help="Workspace length unit.")] = "nanometer",
    force: Annotated[bool, typer.Option("--force", help="Overwrite coframe.yaml.")] = False,
) -> None:
    """Create a workspace (coframe.yaml) in DIRECTORY."""

    ws = init_workspace(directory, unit=unit, force=force)
    typer.echo(f"workspace {ws.file} (unit {ws.unit})")


_WorkspaceOption = Annotated[
    Path | None, typer.Option("--workspace", "-w", help=_WORKSPACE_HELP, show_default=False)
]


@app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="Image name.")],
    path: Annotated[str, typer.Argument(help="Image path or URL (OME-Zarr, N5, TIFF, MRC).")],
    modality: Annotated[str | None, typer.Option(help="xray, fibsem, tem or labels.")] = None,
    voxel_size: Annotated[str | None, typer.Option(help="One value or z,y,x.")] = None,
    input_unit: Annotated[str | None, typer.Option(help="Unit of --voxel-size.")] = None,
    space: Annotated[str | None, typer.Option(help="Space name (default: NAME).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an image.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Add an image to the workspace (it is opened to validate it)."""

    ws = _load_ws(workspace)
    vs = None if voxel_size is None else parse_floats(voxel_size, flag="--voxel-size")
    location = path if "://" in path else str(Path(path).expanduser().absolute())
    volume = open_volume(
        location, unit=ws.unit, voxel_size=vs, input_unit=input_unit, modality=modality
    )
    ws = ws.add_image(
        name, location, modality or volume.modality, space, vs, input_unit, force, axes=volume.axes
    )
    ws.save()
    img, level = ws.images[name], volume.levels[0]
    typer.echo(
        f"added {name} ({img.modality or 'unknown modality'}) in space {img.space}: {img.path}, "
        f"axes {list(volume.axes)}, shape {list(level.shape)}, voxel {list(level.voxel_size)} "
        f"{volume.unit}, {len(volume.levels)} level(s)"
    )


@app.command("link")
def link_cmd(
    ctx: typer.Context,
    from_space: Annotated[str, typer.Argument(help="Space whose points the transform maps.")],
    to_space: Annotated[str, typer.Argument(help="Space the points are mapped into.")],
    file: Annotated[Path, typer.Argument(help="Transform file: ITK, OME-NGFF or BigWarp.")],
    unit: Annotated[str | None, typer.Option(help="Unit of an ITK/BigWarp file.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an edge.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Add a transform file as the edge FROM_SPACE -> TO_SPACE.

    A BigWarp landmark file maps FIXED -> MOVING: link it as FIXED MOVING.
    """

    ws = _load_ws(workspace)
    command = _command_line(ctx)
    ws, t = link_transform(
        ws, from_space, to_space, file, file_unit=unit, command=command, force=force
    )
    ws.save()
    pair = (ws.space_of(from_space), ws.space_of(to_space))
    edge = next(e for e in ws.edges if (e.source, e.target) == pair)
    typer.echo(
        f"linked {edge.source} -> {edge.target}: {edge.kind} ({t.input_dim}D -> {t.output_dim}D), "
        f"{edge.file} ({edge.format}, {edge.unit})"
    )


@app.command("graph")
def graph_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Show the spaces, their images and the transform edges of the workspace."""
    import json

    description = describe_graph(_load_ws(workspace))
    typer.echo(json.dumps(description, indent=2) if as_json else render_graph(description))


@app.command("points")
def points_cmd(
    source: Annotated[str, typer.Argument(help="Source space (or image name).")],
    target: Annotated[str, typer.Argument(help="Target space (or image name).")],
    coords: Annotated[str, typer.Argument(help="JSON list of (z, y, x) points, or a CSV file.")],
    scene: Annotated[Path | None, typer.Option(help="Read the graph from an NGFF scene.")] = None,
    via: Annotated[list[str] | None, typer.Option(help="Pass through this space.")] = None,
    csv_out: Annotated[Path | None, typer.Option(help="Also write the points as CSV.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --csv-out.")] = False,
    unit: Annotated[
        str | None, typer.Option(help="Unit of COORDS (default: workspace unit, nm for --scene).")
    ] = None,
    workspace: _WorkspaceOption = None,
) -> None:
    """Map physical (z, y, x) points from SOURCE to TARGET and print them as JSON."""
    import json

    stops = list(via or [])
    try:
        points = read_points(coords)
        factor = 1.0
        if scene is not None:
            scene_unit = canonical_unit(unit or "nanometer", key="--unit")
            graph = SpaceGraph.from_scene(read_scene(scene, unit=scene_unit))
        else:
            ws = _load_ws(workspace)
            graph = ws.graph()
            factor = 1.0 if unit is None else unit_factor(canonical_unit(unit), ws.unit)
            source, target = ws.space_of(source), ws.space_of(target)
            stops = [ws.space_of(v) for v in stops]
        mapped = map_points(graph, source, target, points, stops, scale=factor)
        if csv_out is not None:
            text = points_csv_text(mapped, graph.spaces.get(target))
            write_text_atomic(csv_out, text, force=force)
    except CoframeError as e:
        typer.echo(json.dumps({"message": str(e)}))
        raise
    typer.echo(json.dumps({"coordinates": mapped.tolist()}))


# ---------------------------------------------------------------------- overlays and QC report


@app.command("overlay")
def overlay_cmd(
    a: Annotated[str, typer.Argument(help="Image A (magenta).")],
    b: Annotated[str, typer.Argument(help="Image B (green).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .png (panel grid) or .tif.")],
    frame: Annotated[str, typer.Option(help="Views in the space of A or B.")] = "A",
    views: Annotated[
        str | None, typer.Option(help="z,y,x,max-z,max-y,max-x (3D) or plane (2D).")
    ] = None,
    modes: Annotated[
        str | None, typer.Option(help="composite,checkerboard,difference,blend (default all).")
    ] = None,
    box: Annotated[
        str | None, typer.Option(help="Physical box z0,y0,x0:z1,y1,x1 in the frame.")
    ] = None,
    point: Annotated[str | None, typer.Option(help="Slices pass through z,y,x.")] = None,
    pixel_size: Annotated[float | None, typer.Option(help="Output pixel size.")] = None,
    level: Annotated[
        str | None, typer.Option(help="Frame image level giving the pixel size.")
    ] = None,
    size: Annotated[int, typer.Option(help="Longest view side in pixels.")] = 512,
    tile: Annotated[
        str, typer.Option(help="Checkerboard tile: pixels (32) or length (2um).")
    ] = "32",
    alpha: Annotated[float, typer.Option(help="Weight of B in the blend.")] = 0.5,
    limits_a: Annotated[str | None, typer.Option(help="Contrast of A: lo,hi.")] = None,
    limits_b: Annotated[str | None, typer.Option(help="Contrast of B: lo,hi.")] = None,
    plane: Annotated[
        str | None, typer.Option(help="Show the plane of a located 2D section (its space).")
    ] = None,
    viewer_out: Annotated[
        Path | None, typer.Option(help="Also write an OME-Zarr + neuroglancer state here.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite outputs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Show images A and B in one frame: composite, checkerboard, difference, blend."""
    import json

    check_output(out, force=force)
    options = parse_options(
        frame=frame,
        views=views,
        modes=modes,
        box=box,
        point=point,
        pixel_size=pixel_size,
        level=level,
        size=size,
        tile=tile,
        alpha=alpha,
        limits_a=limits_a,
        limits_b=limits_b,
        plane=plane,
    )
    ws = _load_ws(workspace)
    overlay = overlay_in_workspace(ws, a, b, options)
    files = write_overlay(overlay, out, force=force)
    summary = overlay_summary(overlay, files)
    if viewer_out is not None:
        summary["viewer"] = export_viewer(ws, a, b, viewer_out, options, force=force)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for f in files:
        typer.echo(f"wrote {f}")
    if viewer_out is not None:
        for f in summary["viewer"]["files"]:
            typer.echo(f"wrote {f}")


@app.command("export-viewer")
def export_viewer_cmd(
    a: Annotated[str, typer.Argument(help="Image A (magenta, channel 0).")],
    b: Annotated[str, typer.Argument(help="Image B (green, channel 1).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    frame: Annotated[str, typer.Option(help="Resample into the space of A or B.")] = "A",
    box: Annotated[
        str | None, typer.Option(help="Physical box z0,y0,x0:z1,y1,x1 in the frame.")
    ] = None,
    pixel_size: Annotated[float | None, typer.Option(help="Output voxel size.")] = None,
    level: Annotated[
        str | None, typer.Option(help="Frame image level giving the voxel size.")
    ] = None,
    size: Annotated[int, typer.Option(help="Longest side of the export in voxels.")] = 256,
    limits_a: Annotated[str | None, typer.Option(help="Window of A: lo,hi.")] = None,
    limits_b: Annotated[str | None, typer.Option(help="Window of B: lo,hi.")] = None,
    plane: Annotated[
        str | None, typer.Option(help="Export the plane of a located 2D section (its space).")
    ] = None,
    url_base: Annotated[
        str, typer.Option(help="URL that serves --serve-root (for neuroglancer sources).")
    ] = "http://127.0.0.1:8000",
    serve_root: Annotated[
        Path | None, typer.Option(help="Directory served at --url-base (default: common root).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite outputs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Write A and B resampled as one OME-Zarr (napari) and a neuroglancer state."""
    import json

    options = parse_options(
        frame=frame,
        box=box,
        pixel_size=pixel_size,
        level=level,
        size=size,
        limits_a=limits_a,
        limits_b=limits_b,
        plane=plane,
    )
    summary = export_viewer(
        _load_ws(workspace),
        a,
        b,
        out,
        options,
        size=size,
        url_base=url_base,
        serve_root=serve_root,
        force=force,
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
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file (default report.html).")
    ] = None,
    size: Annotated[int, typer.Option(help="Longest side of each overlay view.")] = 256,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the report.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Write one self-contained HTML QC page: graph, edges, metrics, overlays."""

    path = write_report(_load_ws(workspace), out, size=size, force=force)
    typer.echo(f"wrote {path}")


@app.command("export-scene")
def export_scene_cmd(
    out: Annotated[Path, typer.Argument(help="Output OME-NGFF scene (Zarr group).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Write the workspace's spaces and edges as one OME-NGFF (RFC-5) scene."""

    ws = _load_ws(workspace)
    written = export_scene(ws, out, force=force)
    typer.echo(f"wrote {written}: {len(ws.all_spaces())} spaces, {len(ws.edges)} transformations")


@app.command("import-scene")
def import_scene_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="OME-NGFF scene: Zarr group or .json file.")],
    force: Annotated[bool, typer.Option("--force", help="Replace edges and files.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Add a scene's coordinate systems as spaces and its transformations as edges."""

    ws = _load_ws(workspace)
    new = import_scene(ws, path, force=force, command=_command_line(ctx))
    new.save()
    added = [e for e in new.edges if not any(e is old for old in ws.edges)]
    for e in added:
        typer.echo(f"edge {e.source} -> {e.target}: {e.kind}, {e.file}")
    typer.echo(f"imported {path}: {len(new.all_spaces())} spaces, {len(new.edges)} edges in total")


@app.command("resample")
def resample_cmd(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Image to resample (workspace image name).")],
    into: Annotated[
        str, typer.Option("--into", help="Image whose frame and grid the output takes.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output: OME-Zarr directory or .tif file.")
    ],
    level: Annotated[
        str | None, typer.Option("--level", help="Level of INTO giving the grid (default 0).")
    ] = None,
    voxel_size: Annotated[
        str | None, typer.Option("--voxel-size", help="Output voxel size: one value or z,y,x.")
    ] = None,
    box: Annotated[
        str | None, typer.Option("--box", help="Physical box z0,y0,x0:z1,y1,x1 of INTO.")
    ] = None,
    source_level: Annotated[
        str | None, typer.Option("--source-level", help="Level of SOURCE to read.")
    ] = None,
    interpolation: Annotated[
        str | None,
        typer.Option("--interpolation", help="linear, bspline or nearest (labels: nearest)."),
    ] = None,
    zarr_version: Annotated[
        int, typer.Option("--zarr-version", help="2 (OME-Zarr 0.4) or 3 (OME-Zarr 0.5).")
    ] = 2,
    fmt: Annotated[
        str | None, typer.Option("--format", help="ome-zarr or tiff (default: from -o).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="dask.distributed scheduler address.")
    ] = None,
    memory: Annotated[
        str, typer.Option("--memory-per-task", help="Memory budget of one task.")
    ] = "256MB",
    pyramid: Annotated[
        int | None, typer.Option("--pyramid-levels", help="Output levels (default: auto).")
    ] = None,
    chunks: Annotated[
        str | None, typer.Option("--chunks", help="Output chunk shape z,y,x (default 64,128,128).")
    ] = None,
    compressor: Annotated[
        str,
        typer.Option(
            "--compressor", help="Chunk compressor: lz4 (fastest), zstd (smaller), gzip or none."
        ),
    ] = "lz4",
    via: Annotated[list[str] | None, typer.Option(help="Pass through this space.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT or restart it.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Resample SOURCE into the frame of image INTO: chunked, resumable, on dask."""

    ws = _load_ws(workspace)
    size = None if voxel_size is None else parse_floats(voxel_size, flag="--voxel-size")
    shape = None if chunks is None else [int(c) for c in parse_floats(chunks, flag="--chunks")]
    try:
        result = resample_workspace(
            ws,
            source,
            into,
            out,
            level=level,
            voxel_size=size,
            box=box,
            source_level=source_level,
            chunks=shape,
            via=[ws.space_of(v) for v in via or []],
            interpolation=interpolation,
            zarr_version=zarr_version,
            output_format=fmt,
            scheduler=scheduler,
            memory_per_task=memory,
            n_levels=pyramid,
            compressor=compressor,
            force=force,
            progress=not quiet,
            provenance={"command": _command_line(ctx)},
        )
    except KeyboardInterrupt:  # Ctrl-C: say what is kept and how to go on
        tiff = fmt == "tiff" or (fmt is None and out.suffix.lower() in (".tif", ".tiff"))
        kept = "nothing was written" if tiff else f"finished blocks are kept in {out}"
        typer.echo(f"interrupted: {kept}; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    g = result.grid
    typer.echo(
        f"wrote {result.output} ({result.format}, {result.levels} level(s)): shape "
        f"{list(g.shape)}, voxel {list(g.voxel_size)} {g.unit}, origin {list(g.origin)}; "
        f"source level {result.source_level}, {result.interpolation} ({result.method}); "
        f"{result.blocks} blocks ({result.blocks_computed} computed, {result.blocks_skipped} "
        f"resumed) in {result.seconds:.1f} s"
    )


# ---------------------------------------------------------------------- registration


@app.command("register")
def register_cmd(
    ctx: typer.Context,
    moving: Annotated[str, typer.Argument(help="Image to move (name in the workspace).")],
    fixed: Annotated[str, typer.Argument(help="Image that stays (name in the workspace).")],
    preset: Annotated[
        str | None, typer.Option(help="Preset name (xray-to-fibsem...) or YAML path.")
    ] = None,
    steps: Annotated[
        str | None, typer.Option(help="Chained steps, e.g. rigid,affine,bspline.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a preset key: key=value.")
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(help="Start: auto, identity, geometry, moments, edge or landmarks."),
    ] = None,
    init_edge: Annotated[
        bool, typer.Option("--init-edge", help="Start from the workspace's FIXED -> MOVING path.")
    ] = False,
    landmarks: Annotated[
        Path | None, typer.Option(help="BigWarp landmarks (CSV/JSON) that give the start.")
    ] = None,
    eval_landmarks: Annotated[
        Path | None, typer.Option(help="BigWarp landmarks held out to measure TRE.")
    ] = None,
    landmarks_unit: Annotated[
        str | None, typer.Option(help="Unit of landmark files (default: workspace unit).")
    ] = None,
    fixed_mask: Annotated[Path | None, typer.Option(help="Mask image in FIXED's space.")] = None,
    moving_mask: Annotated[Path | None, typer.Option(help="Mask image in MOVING's space.")] = None,
    multi_start: Annotated[
        bool, typer.Option("--multi-start", help="Try rotated starts (poses far from identity).")
    ] = False,
    level_moving: Annotated[str | None, typer.Option(help="Pyramid level of MOVING.")] = None,
    level_fixed: Annotated[str | None, typer.Option(help="Pyramid level of FIXED.")] = None,
    ground_truth: Annotated[
        Path | None,
        typer.Option(
            help="FIXED -> MOVING transform (ITK, OME-NGFF) or BigWarp landmarks to measure TRE."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an edge; store a result whose metric worsened.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Register MOVING onto FIXED and store the FIXED -> MOVING edge with its QC."""
    import json

    ws = _load_ws(workspace)
    request = RegisterRequest(
        moving=moving,
        fixed=fixed,
        preset=preset,
        steps=None if steps is None else tuple(s.strip() for s in steps.split(",") if s.strip()),
        overrides=tuple(set_ or ()),
        landmarks=landmarks,
        eval_landmarks=eval_landmarks,
        landmarks_unit=landmarks_unit,
        fixed_mask=fixed_mask,
        moving_mask=moving_mask,
        multi_start=multi_start,
        init=init,
        init_edge=init_edge,
        level_moving=level_moving,
        level_fixed=level_fixed,
        ground_truth=ground_truth,
        force=force,
        command=_command_line(ctx),
    )
    ws, outcome = run_register(ws, request)
    if outcome.stored is not None:
        ws.save()
    typer.echo(json.dumps(outcome.to_dict(), indent=2) if as_json else format_report(outcome))
    refuse(outcome)


@app.command("locate")
def locate_cmd(
    ctx: typer.Context,
    section: Annotated[str, typer.Argument(help="2D section image (name in the workspace).")],
    volume: Annotated[str, typer.Argument(help="3D volume image (name in the workspace).")],
    normal: Annotated[
        str | None, typer.Option(help="Expected plane normal z,y,x (either sign).")
    ] = None,
    near: Annotated[
        str | None, typer.Option(help="Physical point z,y,x near the section centre.")
    ] = None,
    max_tilt: Annotated[
        float | None,
        typer.Option(help="Largest angle (degrees) from --normal (or the volume z axis)."),
    ] = None,
    shrinkage: Annotated[
        bool, typer.Option("--shrinkage", help="Fit in-plane shrinkage and shear (2D affine).")
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of the matched slice, picture and report (default: locate/...)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace outputs and the edge; store a doubtful pose.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    workspace: _WorkspaceOption = None,
) -> None:
    """Find where the 2D SECTION lies in the 3D VOLUME; store the SECTION -> VOLUME edge."""
    import json

    options = LocateOptions(
        normal=None if normal is None else parse_floats(normal, flag="--normal"),  # type: ignore[arg-type]
        near=None if near is None else parse_floats(near, flag="--near"),  # type: ignore[arg-type]
        max_tilt=max_tilt,
        shrinkage=shrinkage,
    )
    ws = _load_ws(workspace)
    ws, report = run_locate(
        ws, section, volume, options, command=_command_line(ctx), out_dir=out_dir, force=force
    )
    ws.save()
    typer.echo(json.dumps(report, indent=2) if as_json else render_locate(report))


# ---------------------------------------------------------------------- demo


@app.command("demo")
def demo_cmd(
    directory: Annotated[
        Path, typer.Argument(help="Output directory (the demo workspace).")
    ] = Path("coframe-demo"),
    size: Annotated[str, typer.Option("--size", help="default, small or tiny.")] = "default",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and its noise.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a previous demo.")] = False,
) -> None:
    """Write a synthetic CellMap-like sample (FIB-SEM, labels, X-ray, TEM) with ground truth."""

    for text in run_demo(directory, size=size, seed=seed, force=force):
        typer.echo(text)
