"""What ``coframe locate`` writes: the matched slice, a picture, the corners, an edge.

- the oblique slice of the volume on the section's pixel grid (TIFF with its
  pixel size), next to the section in a PNG (section | matched slice |
  overlay, the slice shown in the section's polarity);
- the four corners of the section (outer pixel edges) in the volume's space
  and in every space reachable from it through the workspace graph;
- the 2D -> 3D affine as an OME-NGFF transform file, added to the workspace as
  the edge SECTION_SPACE -> VOLUME_SPACE with its provenance.

A volume that is mirror-symmetric (see :mod:`coframe.registration.locate_symmetry`)
gets one line about the pose's mirror twin; when the twin ties, the pose is
not trusted and the line names ``--near``/``--normal`` as the way to choose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from coframe.app.provenance import make_provenance
from coframe.app.workspace import Workspace
from coframe.core.atomic import refuse_existing, write_text_atomic
from coframe.core.errors import CoframeError, MetadataError, OverwriteError, RegistrationError
from coframe.registration.locate import locate_section
from coframe.registration.locate_geometry import GridImage, Pose, pose_errors
from coframe.registration.locate_inputs import check_section, check_sizes, read_section_image
from coframe.registration.locate_refine import slice_values
from coframe.registration.locate_result import LocateOptions, LocateResult
from coframe.transforms.affine import Affine
from coframe.transforms.formats.dispatch import write_transform
from coframe.views.render import composite, normalize, robust_limits, save_png
from coframe.volumes.open import open_volume
from coframe.volumes.volume import Volume
from coframe.volumes.write import write_tiff

#: Largest side (pixels) of the matched slice; finer sections are binned by an integer factor.
MAX_SLICE_PIXELS = 2048
#: Smallest side (pixels) of the panels of the PNG (small images are enlarged).
MIN_PANEL_PIXELS = 256


@dataclass(frozen=True)
class MatchedSlice:
    """The section and the volume's oblique slice on one pixel grid.

    Parameters
    ----------
    section
        The section (float32), binned by ``factor``.
    matched
        The volume's values at the same pixels, placed by the pose (0 outside).
    inside
        Pixels whose position lies inside the volume.
    pixel
        Pixel size (physical).
    origin
        Physical (y, x) of pixel (0, 0) in the section.
    factor
        Binning of the section's pixels.
    """

    section: np.ndarray
    matched: np.ndarray
    inside: np.ndarray
    pixel: float
    origin: tuple[float, float]
    factor: int


def matched_slice(
    section: Volume, volume: Volume, affine: Affine, *, max_pixels: int = MAX_SLICE_PIXELS
) -> MatchedSlice:
    """Resample the volume on the section's pixel grid placed by a 2D -> 3D affine.

    Sections wider than ``max_pixels`` are binned by the smallest integer
    factor that fits. The volume level nearest the pixel size (not coarser)
    is read, only in the box the plane crosses.
    """
    lvl0 = section.levels[0]
    factor = max(1, int(np.ceil(max(lvl0.shape) / max_pixels)))
    pixel = float(np.mean(lvl0.voxel_size)) * factor
    if factor > 1 or not np.allclose(lvl0.voxel_size[0], lvl0.voxel_size[1]):
        grid = read_section_image(section, pixel)  # band by band: montages are never read whole
    else:
        grid = GridImage(lvl0.read().astype(np.float32), lvl0.voxel_size, lvl0.origin)
    pose = Pose(affine.apply(grid.center), affine.linear, grid.center)
    pts = pose.apply(grid.corners)
    index = 0
    for i, lvl in enumerate(volume.levels):
        if float(np.exp(np.mean(np.log(lvl.voxel_size)))) <= pixel * 1.001:
            index = i
    step = np.asarray(volume.levels[index].voxel_size)
    got = volume.read_box(pts.min(axis=0) - 2 * step, pts.max(axis=0) + 2 * step, level=index)
    if got is None:
        matched = np.zeros(grid.shape, np.float32)
        inside = np.zeros(grid.shape, bool)
    else:
        array, origin = got
        crop = GridImage(array.astype(np.float32), tuple(step), origin)
        matched, inside = slice_values(crop, pose, grid)
        inside &= _inside_volume(volume, pose, grid)
        matched = np.where(inside, matched, 0.0).astype(np.float32)
    return MatchedSlice(
        grid.array, matched, inside, pixel, (float(grid.origin[0]), float(grid.origin[1])), factor
    )


def _inside_volume(volume: Volume, pose: Pose, grid: GridImage) -> np.ndarray:
    pts = pose.apply(grid.points())
    ext = np.asarray(volume.levels[0].extent)
    ok = np.all((pts >= ext[:, 0]) & (pts <= ext[:, 1]), axis=1)
    return ok.reshape(grid.shape)


def overlay_picture(match: MatchedSlice, ncc: float) -> np.ndarray:
    """Section | matched slice (in the section's polarity) | overlay, as RGB uint8.

    The overlay shows the section in magenta and the slice in green.
    """

    a = normalize(match.section, robust_limits(match.section))
    limits = robust_limits(match.matched, match.inside)
    if ncc < 0:
        limits = (limits[1], limits[0])
    b = np.where(match.inside, normalize(match.matched, limits), 0.0).astype(np.float32)
    panels = [np.repeat(a[..., None], 3, -1), np.repeat(b[..., None], 3, -1)]
    panels = [np.clip(np.rint(p * 255), 0, 255).astype(np.uint8) for p in panels]
    panels.append(composite(a, b))
    zoom = max(1, MIN_PANEL_PIXELS // max(a.shape))
    panels = [np.kron(p, np.ones((zoom, zoom, 1), np.uint8)) for p in panels]
    gap = np.full((panels[0].shape[0], 8, 3), 24, np.uint8)
    return np.hstack([panels[0], gap, panels[1], gap, panels[2]])


def section_corners(section: Volume) -> np.ndarray:
    """Physical (y, x) of the section's four outer corners (pixel edges), clockwise from (0, 0)."""
    (y0, y1), (x0, x1) = section.levels[0].extent
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)


def corners_in_spaces(
    workspace: Workspace, volume_space: str, corners: np.ndarray, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The plane's corners (volume space) mapped into every 3D space reachable from it.

    Returns a mapping of space name to a list of (z, y, x) corners, or to
    ``{"error": message}`` when a chain cannot be applied.
    """
    graph = workspace.graph()
    out: dict[str, Any] = {volume_space: np.round(corners, 3).tolist()}
    for space in graph.reachable(volume_space):
        axes = graph.spaces.get(space)
        if space == volume_space or space in skip or (axes is not None and len(axes) != 3):
            continue
        try:
            mapped = graph.transform(volume_space, space).apply(corners)
        except CoframeError as e:
            out[space] = {"error": str(e)}
            continue
        out[space] = np.round(mapped, 3).tolist()
    return out


@dataclass(frozen=True)
class LocatePaths:
    """Files ``coframe locate`` writes.

    Parameters
    ----------
    out_dir
        Directory of the pictures and reports.
    slice_tiff
        The matched oblique slice.
    picture
        The side-by-side PNG.
    report
        The JSON report.
    transform
        The NGFF transform file of the edge.
    """

    out_dir: Path
    slice_tiff: Path
    picture: Path
    report: Path
    transform: Path


def locate_paths(
    workspace: Workspace, section: str, volume: str, out_dir: Path | None
) -> LocatePaths:
    """Default output files: ``locate/SECTION-in-VOLUME/`` and ``transforms/SRC-to-DST.json``."""
    if out_dir is None:
        base = workspace.inside(f"locate/{section}-in-{volume}", "locate output folder")
    else:
        base = Path(out_dir)
    src, dst = workspace.space_of(section), workspace.space_of(volume)
    return LocatePaths(
        base,
        base / "matched-slice.tif",
        base / "overlay.png",
        base / "locate.json",
        workspace.inside(f"transforms/{src}-to-{dst}.json", "transform file"),
    )


def run_locate(
    workspace: Workspace,
    section_name: str,
    volume_name: str,
    options: LocateOptions,
    *,
    command: str,
    out_dir: Path | None = None,
    force: bool = False,
    section_mask: str | None = None,
) -> tuple[Workspace, dict[str, Any]]:
    """Locate a workspace image (2D) in another (3D), write the outputs, add the edge.

    ``section_mask`` names a workspace image or a file: a 2D mask of the
    section (nonzero = tissue to match). A mask with the section's shape takes
    the section's placement; any other is placed by its own metadata.

    The workspace is returned with the new edge but not saved.

    Raises
    ------
    OverwriteError
        If an output or the edge exists and ``force`` is false (checked
        before any work).
    RegistrationError
        If the pose is not trustworthy and ``force`` is false: nothing is written.
    """
    section = workspace.open_image(section_name)
    volume = workspace.open_image(volume_name)
    check_sizes(section, volume, section_name=section_name, volume_name=volume_name)
    mask = None if section_mask is None else open_section_mask(workspace, section_mask, section)
    src, dst = workspace.space_of(section_name), workspace.space_of(volume_name)
    paths = locate_paths(workspace, section_name, volume_name, out_dir)
    if not force:
        for p in (paths.slice_tiff, paths.picture, paths.report, paths.transform):
            refuse_existing(p)
        for e in workspace.edges:
            if (e.source, e.target) == (src, dst):
                raise OverwriteError(
                    f"an edge {src} -> {dst} already exists in {workspace.file} (file {e.file}): "
                    f"pass --force to replace it"
                )
    result = locate_section(
        section,
        volume,
        options,
        section_name=section_name,
        volume_name=volume_name,
        section_mask=mask,
    )
    return store_located(
        workspace,
        section_name,
        volume_name,
        result,
        command=command,
        paths=paths,
        force=force,
        section_mask=section_mask,
    )


def store_located(
    workspace: Workspace,
    section_name: str,
    volume_name: str,
    result: LocateResult,
    *,
    command: str,
    paths: LocatePaths,
    force: bool = False,
    section_mask: str | None = None,
) -> tuple[Workspace, dict[str, Any]]:
    """Write the outputs of a located section and add its edge (the workspace is not saved).

    Raises
    ------
    RegistrationError
        If the pose is not trustworthy and ``force`` is false: nothing is written.
    """
    options = result.options
    section = workspace.open_image(section_name)
    volume = workspace.open_image(volume_name)
    src, dst = workspace.space_of(section_name), workspace.space_of(volume_name)
    if not result.trustworthy and not force:
        if result.inside < options.min_inside:
            raise RegistrationError(
                f"section {section_name!r} in {volume_name!r}: only {result.inside:.0%} of the "
                f"section's unmasked pixels lie inside the volume at the best pose (score "
                f"{result.score:.3f}, NCC {result.ncc:.2f}): the pose is not trustworthy (needs "
                f">= {options.min_inside:.0%} inside to judge); nothing stored; give a volume "
                f"that covers more of the section, --near, or pass --force to store it anyway"
            )
        summary = result.summary()
        tie = (
            mirror_text(summary["mirror"], result.score, volume_name, volume.unit) + "; "
            if result.mirror_tie
            else ""
        )
        raise RegistrationError(
            f"section {section_name!r} in {volume_name!r}: {tie}best score {result.score:.3f} "
            f"(NCC {result.ncc:.2f}, edge agreement {result.edges:.2f}), runner-up "
            f"{result.runner_up:.3f}, confidence {result.confidence:.3f}, tilt margin "
            f"{result.tilt_margin:.3f}, {result.working_pixels} working voxels across: the pose "
            f"is not trustworthy (needs edge agreement >= {options.min_edges:g}, confidence "
            f">= {options.min_confidence:g}, tilt "
            f"margin > {options.min_tilt_margin:g} at {options.tilt_check:g} degrees, >= "
            f"{options.min_pixels} voxels); nothing stored; "
            f"give --normal/--max-tilt/--near, or pass --force to store it anyway"
        )
    report = describe_result(result, section, section_name, volume_name)
    corners3d = result.affine.apply(section_corners(section))
    report["corners"] = corners_in_spaces(workspace, dst, corners3d, skip=(src,))
    match = matched_slice(section, volume, result.affine)

    write_tiff(
        paths.slice_tiff, match.matched, (match.pixel, match.pixel), volume.unit, overwrite=force
    )
    save_png(paths.picture, overlay_picture(match, result.ncc), overwrite=force)

    write_transform(
        result.affine,
        paths.transform,
        unit=workspace.unit,
        format="ngff",
        input_space=src,
        output_space=dst,
        force=force,
    )
    metric = {
        "score": result.score,
        "runner_up": result.runner_up,
        "confidence": result.confidence,
        "ncc": result.ncc,
        "edges": result.edges,
        "trustworthy": result.trustworthy,
        "mirror_score": None if result.mirror is None else result.mirror.score,
        "mirror_tie": result.mirror_tie,
        "inside": result.inside,
        "masked": result.masked,
        "compression": result.compression,
    }
    prov = make_provenance(
        command,
        inputs={
            section_name: workspace.resolve(workspace.images[section_name].path),
            volume_name: workspace.resolve(workspace.images[volume_name].path),
        },
        parameters=_parameters(result, section_mask),
        metric=metric,
        files={"transform": paths.transform},
    )
    ws = workspace.add_edge(src, dst, paths.transform, "ngff", None, prov, force, kind="affine")
    report["files"] = {
        "transform": str(paths.transform),
        "matched_slice": str(paths.slice_tiff),
        "picture": str(paths.picture),
        "report": str(paths.report),
    }
    report["edge"] = f"{src} -> {dst}"
    write_text_atomic(paths.report, json.dumps(report, indent=2) + "\n", force=force)
    return ws, report


def _parameters(result: LocateResult, section_mask: str | None) -> dict[str, Any]:
    o = result.options
    return {
        "method": "locate: FFT pose search (global, screen, local) + SimpleITK refinement",
        "normal": None if o.normal is None else list(o.normal),
        "near": None if o.near is None else list(o.near),
        "max_tilt": o.max_tilt,
        "shrinkage": o.shrinkage,
        "assumed_compression": o.assumed_compression,
        "angle_step": o.angle_step,
        "search_pixels": o.search_pixels,
        "search_score": o.search_score,
        "seeds": o.seeds,
        "screen": o.screen,
        "screen_spacing": o.screen_spacing,
        "refine": o.refine,
        "metric": o.metric,
        "score": o.score,
        "auto_mask": o.auto_mask,
        "section_mask": section_mask,
        "working_level": result.working_level,
        "working_pixels": result.working_pixels,
        "spacings": result.spacings,
        "symmetry": [p.summary() for p in result.symmetry],
    }


def open_section_mask(workspace: Workspace, mask: str, section: Volume) -> Volume:
    """The user's section mask (a workspace image name or a file), placed on the section.

    A mask with the section's shape (finest level) takes the section's
    placement; any other keeps its own.

    Raises
    ------
    DimensionError
        If the mask is not a 2D image.
    """
    if mask in workspace.images:
        vol = workspace.open_image(mask)
    else:
        try:
            vol = open_volume(mask, unit=section.unit)
        except MetadataError as e:  # no pixel size of its own: the section's, if shapes agree
            vol = open_volume(mask, unit=section.unit, voxel_size=section.levels[0].voxel_size)
            if vol.levels[0].shape != section.levels[0].shape:
                raise MetadataError(
                    f"section mask {mask} has no pixel size and its shape {vol.levels[0].shape} "
                    f"is not the section's {section.levels[0].shape}: give a mask of the "
                    f"section's shape, or add it (coframe add NAME {mask} --voxel-size ...) "
                    f"and pass its name to --section-mask"
                ) from e
    check_section(vol, f"--section-mask {mask}")
    if vol.levels[0].shape == section.levels[0].shape:
        ref = section.levels[0]
        level = replace(vol.levels[0], voxel_size=ref.voxel_size, origin=ref.origin)
        return replace(vol, unit=section.unit, levels=(level,))
    return vol.in_unit(section.unit)


def describe_result(
    result: LocateResult, section: Volume, section_name: str, volume_name: str
) -> dict[str, Any]:
    """A JSON-ready account of a located section (pose, scores, timings)."""
    return {
        "section": section_name,
        "volume": volume_name,
        "unit": section.unit,
        "trustworthy": result.trustworthy,
        **result.summary(),
        "matrix": np.round(result.affine.matrix, 9).tolist(),
        "working_level": result.working_level,
        "spacings": {k: round(v, 3) for k, v in result.spacings.items()},
        "seconds": {k: round(v, 2) for k, v in result.timings.items()},
    }


def render_locate(report: Mapping[str, Any]) -> str:
    """Human-readable text of a :func:`run_locate` report."""
    unit = report["unit"]
    lines = [
        f"located {report['section']} in {report['volume']}: score {report['score']:.3f}, "
        f"runner-up {report['runner_up']:.3f}, confidence {report['confidence']:.3f}, "
        f"NCC {report['ncc']:.3f}, edge agreement {report['edges']:.3f}"
        + ("" if report["trustworthy"] else "  (NOT trustworthy)"),
        f"  normal (z, y, x) {_vec(report['normal'])}, in-plane scale "
        f"{_vec(report['in_plane_scale'])}, centre {_vec(report['center'], 1)} {unit}",
    ]
    comp = report.get("compression")
    if comp is not None:
        lines.append(
            f"  compression {comp['compression']:.1%} along {comp['angle']:.0f} degrees from the "
            f"section's y axis (scales {_vec(comp['scales'])}); {report['inside']:.0%} of the "
            f"section inside the volume, {report['masked']:.0%} masked"
        )
    if report.get("mirror"):
        lines.append("  " + mirror_text(report["mirror"], report["score"], report["volume"], unit))
    for space, corners in report.get("corners", {}).items():
        if isinstance(corners, dict):
            lines.append(f"  corners in {space}: {corners['error']}")
            continue
        lines.append(f"  corners in {space} (z, y, x, {unit}):")
        lines.extend(f"    {_vec(c, 1)}" for c in corners)
    if "edge" in report:
        lines.append(f"  edge {report['edge']}: {report['files']['transform']}")
        lines.append(f"  matched slice {report['files']['matched_slice']}")
        lines.append(f"  picture {report['files']['picture']}")
    return "\n".join(lines)


def mirror_text(mirror: Mapping[str, Any], score: float, volume_name: str, unit: str) -> str:
    """One line about a pose's mirror twin (a ``mirror`` entry of :meth:`LocateResult.summary`).

    A tie says that nothing tells the twins apart and names ``--near`` and
    ``--normal`` (with ``--max-tilt``) as the way to choose.
    """
    plane = f"{mirror['axis']} = {mirror['plane']:.1f} {unit}"
    twin = (
        f"the mirror pose (centre {_vec(mirror['center'], 1)} {unit}, normal "
        f"{_vec(mirror['normal'], 3)}) scores {mirror['score']:.3f} against {score:.3f}"
    )
    if not mirror["tie"]:
        return (
            f"mirror twin told apart: volume {volume_name!r} is mirror-symmetric about {plane} "
            f"(NCC {mirror['plane_ncc']:.2f}); {twin}"
        )
    return (
        f"MIRROR TIE: volume {volume_name!r} is mirror-symmetric about {plane} (NCC "
        f"{mirror['plane_ncc']:.2f}) and {twin}: nothing tells the two apart; give --near "
        f"(a point near the centre) or --normal with --max-tilt to choose"
    )


def _vec(values: Any, digits: int = 4) -> str:
    return "(" + ", ".join(f"{float(v):.{digits}f}" for v in values) + ")"


def truth_errors(found: Affine, truth: Affine, section: Volume, voxel: float) -> dict[str, float]:
    """Pose errors of a located section against a known pose, at the section centre.

    See :func:`coframe.registration.locate_geometry.pose_errors`.
    """
    centre = np.asarray(section.levels[0].extent, dtype=float).mean(axis=1)
    return pose_errors(found, truth, centre, voxel)
