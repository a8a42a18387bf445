"""``coframe register``, ``coframe locate`` and ``coframe nuclei``: parse, call the app, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from coframe.app.locate import render_locate, run_locate
from coframe.app.nuclei import NucleiRequest, describe_nuclei, run_nuclei
from coframe.app.register import RegisterRequest, format_report, refuse, run_register
from coframe.commands.common import (
    WorkspaceOption,
    arg,
    command_line,
    from_flags,
    load_ws,
    opt,
)
from coframe.core.errors import WorkspaceError
from coframe.registration.locate_result import LocateOptions
from coframe.volumes.open import parse_box, parse_floats, parse_point


def register_cmd(
    ctx: typer.Context,
    moving: Annotated[str, arg("Image to move (name in the workspace).")],
    fixed: Annotated[str, arg("Image that stays (name in the workspace).")],
    preset: Annotated[str | None, opt("Preset name (xray-to-fibsem...) or YAML path.")] = None,
    steps: Annotated[str | None, opt("Chained steps, e.g. rigid,affine,bspline.")] = None,
    set_: Annotated[list[str] | None, opt("Override a preset key: key=value.", "--set")] = None,
    init: Annotated[
        str | None,
        opt("Start: auto, identity, geometry, moments, edge or landmarks."),
    ] = None,
    init_edge: Annotated[
        bool, opt("Start from the workspace's FIXED -> MOVING path.", "--init-edge")
    ] = False,
    landmarks: Annotated[
        Path | None, opt("BigWarp landmarks (CSV/JSON) that give the start.")
    ] = None,
    eval_landmarks: Annotated[
        Path | None, opt("BigWarp landmarks held out to measure TRE.")
    ] = None,
    landmarks_unit: Annotated[
        str | None, opt("Unit of landmark files (default: workspace unit).")
    ] = None,
    fixed_mask: Annotated[Path | None, opt("Mask image in FIXED's space.")] = None,
    moving_mask: Annotated[Path | None, opt("Mask image in MOVING's space.")] = None,
    multi_start: Annotated[
        bool, opt("Try rotated starts (poses far from identity).", "--multi-start")
    ] = False,
    level_moving: Annotated[str | None, opt("Pyramid level of MOVING.")] = None,
    level_fixed: Annotated[str | None, opt("Pyramid level of FIXED.")] = None,
    ground_truth: Annotated[
        Path | None,
        opt("FIXED -> MOVING transform (ITK, OME-NGFF) or BigWarp landmarks to measure TRE."),
    ] = None,
    near: Annotated[str | None, opt("Search near z,y,x (in the larger image).")] = None,
    search_box: Annotated[str | None, opt("Search box z0,y0,x0:z1,y1,x1 (ditto).")] = None,
    axis: Annotated[str | None, opt("Search about axis z,y,x only, or any.")] = None,
    max_tilt: Annotated[float | None, opt("With --axis: largest tilt, degrees.")] = None,
    moving_labels: Annotated[
        str | None, opt("Nucleus labels in MOVING's space (image name or path): nuclei step.")
    ] = None,
    fixed_labels: Annotated[
        str | None, opt("Nucleus labels in FIXED's space (image name or path): nuclei step.")
    ] = None,
    force: Annotated[
        bool,
        opt("Replace an edge; store a result that worsened or that is not trusted.", "--force"),
    ] = False,
    as_json: Annotated[bool, opt("Print the report as JSON.", "--json")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Register MOVING onto FIXED; store the FIXED -> MOVING edge if coframe trusts it.

    With no start given, an image much smaller than the other is first
    searched for over all orientations and a scale range. With
    --fixed-labels/--moving-labels (or --steps nuclei,...), the start comes
    from the nuclei both images show, matched as point sets; the matched
    nuclei are written beside the edge as BigWarp landmarks.
    """
    ws = load_ws(workspace)
    box = None if search_box is None else parse_box(search_box, 3, flag="--search-box")
    request = from_flags(
        ctx,
        RegisterRequest,
        steps=None if steps is None else tuple(s.strip() for s in steps.split(",") if s.strip()),
        overrides=tuple(set_ or ()),
        near=None if near is None else parse_point(near, flag="--near"),
        search_box=None if box is None else (*box[0], *box[1]),
        axis=None if axis is None else () if axis == "any" else parse_point(axis, flag="--axis"),
        command=command_line(ctx),
    )
    ws, outcome = run_register(ws, request, progress=not as_json)
    if outcome.stored is not None:
        ws.save()
    typer.echo(json.dumps(outcome.to_dict(), indent=2) if as_json else format_report(outcome))
    refuse(outcome)


def locate_cmd(
    ctx: typer.Context,
    section: Annotated[str, arg("2D section image (name in the workspace).")],
    volume: Annotated[str, arg("3D volume image (name in the workspace).")],
    normal: Annotated[str | None, opt("Expected plane normal z,y,x (either sign).")] = None,
    near: Annotated[str | None, opt("Physical point z,y,x near the section centre.")] = None,
    max_tilt: Annotated[
        float | None,
        opt("Largest angle (degrees) from --normal (or the volume z axis)."),
    ] = None,
    shrinkage: Annotated[
        bool, opt("Fit in-plane shrinkage and shear (2D affine).", "--shrinkage")
    ] = False,
    assumed_compression: Annotated[
        float,
        opt(
            "With --shrinkage: if no pose is trusted, search again as if the section were "
            "compressed by this fraction along y, then x (0: never)."
        ),
    ] = LocateOptions.assumed_compression,
    section_mask: Annotated[
        str | None, opt("2D mask of SECTION (image name or file; nonzero = tissue to match).")
    ] = None,
    auto_mask: Annotated[
        bool, opt("Mask grid bars, empty film and folds.", "--auto-mask/--no-auto-mask")
    ] = True,
    search_pixels: Annotated[
        int,
        opt("Pixels across the section's shorter side in the global search (fewer: faster)."),
    ] = LocateOptions.search_pixels,
    search_score: Annotated[
        str,
        opt(
            "Global and local scan score: auto (edges, then correlation where edges "
            "leave doubt), edges (any contrast relation), ncc (same or inverted "
            "contrast) or both (each brings half the candidates)."
        ),
    ] = LocateOptions.search_score,
    out_dir: Annotated[
        Path | None,
        opt("Folder of the matched slice, picture and report (default: locate/...)."),
    ] = None,
    force: Annotated[
        bool, opt("Replace outputs and the edge; store a doubtful pose.", "--force")
    ] = False,
    as_json: Annotated[bool, opt("Print the report as JSON.", "--json")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Find where the 2D SECTION lies in the 3D VOLUME; store the SECTION -> VOLUME edge."""
    options = LocateOptions(
        normal=None if normal is None else parse_point(normal, flag="--normal"),
        near=None if near is None else parse_point(near, flag="--near"),
        max_tilt=max_tilt,
        shrinkage=shrinkage,
        assumed_compression=assumed_compression,
        auto_mask=auto_mask,
        search_pixels=search_pixels,
        search_score=search_score,
    )
    ws, report = run_locate(
        load_ws(workspace),
        section,
        volume,
        options,
        command=command_line(ctx),
        out_dir=out_dir,
        force=force,
        section_mask=section_mask,
    )
    ws.save()
    typer.echo(json.dumps(report, indent=2) if as_json else render_locate(report))


def nuclei_cmd(
    ctx: typer.Context,
    image: Annotated[str, arg("Image: a workspace image name, or a path or URL.")],
    out: Annotated[Path, opt("Output CSV (one row per nucleus).", "--out", "-o")],
    labels: Annotated[
        bool, opt("IMAGE is a nucleus segmentation (default: its modality says).", "--labels")
    ] = False,
    polarity: Annotated[
        str | None, opt("Blobs: bright, dark, both or auto (from the modality).")
    ] = None,
    diameter: Annotated[
        str | None, opt("Size prior MIN,MAX in micrometres (default: the preset's).")
    ] = None,
    preset: Annotated[str | None, opt("Preset whose nuclei section gives the defaults.")] = None,
    level: Annotated[str | None, opt("Level to read (default: nuclei >= 4 voxels across).")] = None,
    unit: Annotated[str, opt("Length unit of the CSV.")] = "micrometer",
    voxel_size: Annotated[str | None, opt("For a path: one value or z,y,x.")] = None,
    input_unit: Annotated[str | None, opt("Unit of --voxel-size.")] = None,
    modality: Annotated[str | None, opt("xray, fibsem, tem or labels.")] = None,
    force: Annotated[bool, opt("Overwrite OUT.", "--force")] = False,
    as_json: Annotated[bool, opt("Print a JSON summary.", "--json")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Find the nuclei of IMAGE (labels: one per id; intensities: blobs) and write them as CSV."""
    try:
        ws = load_ws(workspace)
    except WorkspaceError:
        if workspace is not None:
            raise
        ws = None  # a path outside any workspace
    request = from_flags(
        ctx,
        NucleiRequest,
        diameter=None if diameter is None else parse_floats(diameter, flag="--diameter"),
        voxel_size=None if voxel_size is None else parse_floats(voxel_size, flag="--voxel-size"),
    )
    summary = run_nuclei(ws, request)
    typer.echo(json.dumps(summary, indent=2) if as_json else describe_nuclei(summary))
