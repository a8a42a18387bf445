"""``coframe resample``: resample a workspace image into another's frame.

:func:`resample_workspace` finds the source image, the target's grid and the
TARGET -> SOURCE chain in a workspace and runs
:func:`coframe.resampling.engine.resample`; :class:`ResampleOptions` holds
every choice the command line offers; :func:`resample_options` reads them
from the command line's text, and :func:`describe_result` and
:func:`interrupted_message` are what the command prints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coframe.app.workspace import Workspace
from coframe.core.errors import DimensionError, WorkspaceError
from coframe.resampling.engine import DEFAULT_MEMORY, ResampleResult, resample
from coframe.resampling.plan import grid_for_target
from coframe.resampling.sizes import DEFAULT_MAX_OUTPUT
from coframe.resampling.source import ImageSource, source_for_run
from coframe.resampling.writer import DEFAULT_COMPRESSOR
from coframe.volumes.open import parse_box, parse_floats

_TIFF_SUFFIXES = (".tif", ".tiff")
#: Corrupt source chunks named in the printed line (the rest are counted).
_NAMED = 5


@dataclass(frozen=True)
class ResampleOptions:
    """How ``coframe resample`` runs: the output grid, the source level, the output and the run.

    Parameters
    ----------
    level, voxel_size, box
        Output grid choice (see :func:`~coframe.resampling.plan.grid_for_target`):
        a level of TARGET, or a voxel size over its extent, optionally
        restricted to a box given as ``"z0,y0,x0:z1,y1,x1"`` text or a corner
        pair.
    chunks
        Output chunk shape (default 64x128x128, 512x512 in 2D): whole numbers.
    via
        Spaces the chain must pass through.
    source_level
        Source level to read (default: nearest the output voxel size).
    interpolation, labels
        Interpolation and whether the source holds labels (defaults: linear,
        nearest for labels; labels from the image's modality).
    output_format, zarr_version, n_levels, compressor, compression_level
        The output: ``ome-zarr`` or ``tiff`` (default from its suffix), Zarr
        version 2 or 3, pyramid levels, chunk compressor and its level.
    scheduler, memory_per_task
        ``dask.distributed`` scheduler address (default local threads) and the
        memory budget of one task.
    max_output_size
        Largest output (level 0, uncompressed) to write, e.g. ``"2TB"``
        (default :data:`~coframe.resampling.sizes.DEFAULT_MAX_OUTPUT`).
    on_bad_chunk
        At a source chunk that cannot be read or decoded: ``error`` (stop,
        naming it) or ``fill`` (read it as zeros and report it).
    force
        Replace an existing output (or restart an unfinished one).
    progress
        Show a progress bar on stderr.
    provenance
        Extra JSON-ready facts stored with the output (the command line...).
    """

    level: int | str | None = None
    voxel_size: float | tuple[float, ...] | None = None
    box: str | tuple[tuple[float, ...], tuple[float, ...]] | None = None
    chunks: tuple[float, ...] | None = None
    via: tuple[str, ...] = ()
    source_level: int | str | None = None
    interpolation: str | None = None
    labels: bool | None = None
    output_format: str | None = None
    zarr_version: int = 2
    n_levels: int | None = None
    compressor: str = DEFAULT_COMPRESSOR
    compression_level: int | None = None
    scheduler: str | None = None
    memory_per_task: str | int = DEFAULT_MEMORY
    max_output_size: str | int = DEFAULT_MAX_OUTPUT
    on_bad_chunk: str = "error"
    force: bool = False
    progress: bool = True
    provenance: Mapping[str, Any] | None = None


def resample_workspace(
    workspace: Workspace,
    source_name: str,
    target_name: str,
    output: str | os.PathLike[str],
    options: ResampleOptions | None = None,
) -> ResampleResult:
    """Resample workspace image SOURCE into the frame of image TARGET.

    The output grid comes from TARGET (a level, or a voxel size over its
    extent, optionally a box); the map is the graph's TARGET -> SOURCE chain.
    The source is opened once (:func:`~coframe.resampling.source.source_for_run`).

    Parameters
    ----------
    workspace
        The workspace.
    source_name, target_name
        Image names.
    output
        Output path: an OME-Zarr directory or a ``.tif`` file.
    options
        Grid, output and run choices (default :class:`ResampleOptions`).

    Raises
    ------
    WorkspaceError
        If an image is unknown.
    DimensionError
        If SOURCE is a section and TARGET a volume.
    NoPathError
        If no chain of edges joins the two spaces.
    """
    opts = options or ResampleOptions()
    if source_name not in workspace.images:
        raise WorkspaceError(
            f"unknown image {source_name!r} (SOURCE) in {workspace.file}: known images "
            f"{', '.join(workspace.images) or '(none)'}"
        )
    target = workspace.open_image(target_name)
    img = workspace.images[source_name]
    source = ImageSource(
        path=workspace.resolve(img.path),
        unit=workspace.unit,
        voxel_size=None if img.voxel_size is None else tuple(img.voxel_size),
        input_unit=img.input_unit,
        modality=img.modality,
    )
    with source_for_run(source) as volume:  # opened here once; resample() reuses it
        source_dim = len(volume.axes)
        if source_dim < target.ndim:
            raise DimensionError(
                f"SOURCE {source_name} is {source_dim}D and INTO {target_name} is "
                f"{target.ndim}D: a section has no values off its plane; resample the volume "
                f"into the section's frame (coframe resample {target_name} --into "
                f"{source_name}) or compare them with coframe overlay {target_name} {source_name}"
            )
        t = workspace.graph().transform(
            workspace.space_of(target_name), workspace.space_of(source_name), opts.via
        )
        box = parse_box(opts.box, target.ndim) if isinstance(opts.box, str) else opts.box
        grid = grid_for_target(
            target, level=opts.level, voxel_size=opts.voxel_size, box=box, chunks=opts.chunks
        )
        return resample(
            source,
            t,
            grid,
            output,
            labels=opts.labels,
            interpolation=opts.interpolation,
            source_level=opts.source_level,
            zarr_version=opts.zarr_version,
            memory_per_task=opts.memory_per_task,
            max_output_size=opts.max_output_size,
            on_bad_chunk=opts.on_bad_chunk,
            scheduler=opts.scheduler,
            n_levels=opts.n_levels,
            output_format=opts.output_format,
            compressor=opts.compressor,
            compression_level=opts.compression_level,
            force=opts.force,
            progress=opts.progress,
            provenance=None if opts.provenance is None else dict(opts.provenance),
        )


def resample_options(
    ws: Workspace,
    *,
    level: str | None = None,
    voxel_size: str | None = None,
    box: str | None = None,
    chunks: str | None = None,
    via: Sequence[str] | None = None,
    source_level: str | None = None,
    interpolation: str | None = None,
    fmt: str | None = None,
    zarr_version: int = 2,
    pyramid: int | None = None,
    compressor: str = DEFAULT_COMPRESSOR,
    scheduler: str | None = None,
    memory: str = DEFAULT_MEMORY,
    max_output_size: str = DEFAULT_MAX_OUTPUT,
    on_bad_chunk: str = "error",
    force: bool = False,
    quiet: bool = False,
    command: str | None = None,
) -> ResampleOptions:
    """:class:`ResampleOptions` from the text of ``coframe resample``'s flags.

    Parameters are named like the command's flags (``fmt`` is ``--format``,
    ``memory`` ``--memory-per-task``, ``pyramid`` ``--pyramid-levels``);
    ``via`` names spaces or images of ``ws``; ``command`` is the command line
    stored as provenance.

    Raises
    ------
    MetadataError
        If a number list cannot be read (the message names the flag).
    """
    return ResampleOptions(
        level=level,
        voxel_size=None if voxel_size is None else parse_floats(voxel_size, flag="--voxel-size"),
        box=box,
        chunks=None if chunks is None else parse_floats(chunks, flag="--chunks"),
        via=tuple(ws.space_of(v) for v in via or ()),
        source_level=source_level,
        interpolation=interpolation,
        output_format=fmt,
        zarr_version=zarr_version,
        n_levels=pyramid,
        compressor=compressor,
        scheduler=scheduler,
        memory_per_task=memory,
        max_output_size=max_output_size,
        on_bad_chunk=on_bad_chunk,
        force=force,
        progress=not quiet,
        provenance=None if command is None else {"command": command},
    )


def describe_result(result: ResampleResult) -> str:
    """The line ``coframe resample`` prints about a finished run."""
    g = result.grid
    text = (
        f"wrote {result.output} ({result.format}, {result.levels} level(s)): shape "
        f"{list(g.shape)}, voxel {list(g.voxel_size)} {g.unit}, origin {list(g.origin)}; "
        f"source level {result.source_level}, {result.interpolation} ({result.method}); "
        f"{result.blocks} blocks ({result.blocks_computed} computed, {result.blocks_skipped} "
        f"resumed) in {result.seconds:.1f} s"
    )
    filled = result.filled_chunks
    if filled:
        named = ", ".join(f"{lvl} {','.join(map(str, i))}" for lvl, i in filled[:_NAMED])
        more = f" and {len(filled) - _NAMED} more" if len(filled) > _NAMED else ""
        where = " (listed in its coframe attributes)" if result.format == "ome-zarr" else ""
        text += (
            f"; {len(filled)} corrupt source chunk(s) read as zeros (--on-bad-chunk fill): "
            f"{named}{more}{where}"
        )
    return text


def interrupted_message(output: str | os.PathLike[str], output_format: str | None) -> str:
    """What an interrupted (Ctrl-C) run keeps, and how to go on."""
    out = Path(output)
    tiff = output_format == "tiff" or (
        output_format is None and out.suffix.lower() in _TIFF_SUFFIXES
    )
    kept = "nothing was written" if tiff else f"finished blocks are kept in {out}"
    return f"interrupted: {kept}; run the same command again to resume"
