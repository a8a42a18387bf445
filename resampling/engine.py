"""Resample any image into any other's frame: chunked, memory-bounded, resumable, on dask.

:func:`resample` pulls SOURCE's voxels back through the TARGET -> SOURCE
point map onto an :class:`~coframe.resampling.plan.OutputGrid` (a workspace
finds the images, the grid and the map: :func:`coframe.app.resample.resample_workspace`).
The run's decisions (interpolation, method, task sizes) are
:mod:`coframe.resampling.runplan`'s. The work is a list of block tasks (see
:mod:`coframe.resampling.block`) run with dask
(:class:`~coframe.resampling.runner.DaskRunner`): the local threaded
scheduler by default, or a ``dask.distributed`` scheduler at an address
(same task list either way; workers open the source from its spec and write
their chunks straight into the output store, both named by absolute paths).

An OME-Zarr output (:mod:`coframe.resampling.writer`) is declared first with
its arrays and *no* multiscales metadata, next to a run record; every
finished block leaves a marker (:mod:`coframe.resampling.resume`), so running
the same command again after an interruption (Ctrl-C, a killed worker, a
full disk) computes only the missing blocks; other arguments against an
unfinished output are refused unless ``--force``. Coarser pyramid levels are
filled from the finer ones block by block (labels by mode, never averaged),
the multiscales metadata is written last, and the run record is then
removed, so a partial output is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from coframe.core.errors import DimensionError, MetadataError
from coframe.resampling.block import BlockJob, PyramidJob, run_block, run_pyramid_block
from coframe.resampling.plan import (
    OutputGrid,
    choose_source_level,
    grow_shape,
    parse_memory,
    plan_blocks,
)
from coframe.resampling.resume import filled_chunks, finish_run, pending, start_or_resume
from coframe.resampling.runner import DaskRunner
from coframe.resampling.runplan import (
    RunPlan,
    check_interpolation,
    choose_method,
    plan_run,
    transform_fingerprint,
)
from coframe.resampling.sizes import DEFAULT_MAX_OUTPUT, check_output_size, parse_size
from coframe.resampling.source import BAD_CHUNK_POLICIES, BadChunkError, source_for_run
from coframe.resampling.writer import (
    DEFAULT_COMPRESSOR,
    check_tiff_output,
    forget_outputs,
    open_ome_zarr,
    write_error,
    write_tiff_output,
)
from coframe.transforms.base import Transform
from coframe.volumes.write import compressors

#: Default memory budget of one task.
DEFAULT_MEMORY = "256MB"
_TIFF_SUFFIXES = (".tif", ".tiff")
#: Level-0 blocks, blocks computed by this call, source chunks read as zeros.
_Counts = tuple[int, int, tuple[tuple[str, tuple[int, ...]], ...]]


@dataclass(frozen=True)
class ResampleResult:
    """What a resampling run did.

    Parameters
    ----------
    output
        The output path.
    format
        ``ome-zarr`` or ``tiff``.
    grid
        The output grid (level 0).
    source_level
        Path (or number) of the source level read.
    method
        ``kernel``, ``sitk`` or ``numpy``.
    interpolation
        ``nearest``, ``linear`` or ``bspline``.
    levels
        Number of output pyramid levels.
    blocks
        Level-0 blocks in the run.
    blocks_computed
        Level-0 blocks computed by this call.
    blocks_skipped
        Level-0 blocks found done by an earlier, interrupted call.
    seconds
        Wall time of this call.
    filled_chunks
        Source chunks that could not be read and were read as zeros
        (``on_bad_chunk="fill"``): ``(level path, chunk index)``, counting
        those of blocks an earlier call finished.
    """

    output: Path
    format: str
    grid: OutputGrid
    source_level: str
    method: str
    interpolation: str
    levels: int
    blocks: int
    blocks_computed: int
    blocks_skipped: int
    seconds: float
    filled_chunks: tuple[tuple[str, tuple[int, ...]], ...] = ()


def resample(
    source: Any,
    transform: Transform,
    grid: OutputGrid,
    output: str | os.PathLike[str],
    *,
    labels: bool | None = None,
    interpolation: str | None = None,
    source_level: int | str | None = None,
    zarr_version: int = 2,
    memory_per_task: str | int = DEFAULT_MEMORY,
    scheduler: str | None = None,
    n_levels: int | None = None,
    output_format: str | None = None,
    compressor: str = DEFAULT_COMPRESSOR,
    compression_level: int | None = None,
    max_output_size: str | int = DEFAULT_MAX_OUTPUT,
    on_bad_chunk: str = "error",
    force: bool = False,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
) -> ResampleResult:
    """Resample a source image onto an output grid through a point map.

    Parameters
    ----------
    source
        How to open the source (:class:`~coframe.resampling.source.ImageSource`
        or any picklable, hashable object with ``open()`` and ``describe()``);
        opened once per process (:func:`~coframe.resampling.source.open_source`).
    transform
        Output (target) -> source point map, physical coordinates.
    grid
        The output grid.
    output
        Output path: an OME-Zarr group directory, or a ``.tif``/``.tiff`` file.
    labels
        Label image (nearest only, mode pyramid); default from the source's
        modality.
    interpolation
        ``linear`` (default), ``bspline`` or ``nearest`` (default for labels).
    source_level
        Source level to read (default: nearest the output voxel size).
    zarr_version
        2 (OME-Zarr 0.4) or 3 (OME-Zarr 0.5, sharded when large).
    memory_per_task
        Memory budget of one task (``"256MB"``...).
    scheduler
        Address of a ``dask.distributed`` scheduler; default local threads.
    n_levels
        Output pyramid levels (default: until one chunk holds a level).
    output_format
        ``ome-zarr`` or ``tiff`` (default from the output suffix).
    compressor, compression_level
        Chunk compressor (``lz4``, ``zstd``, ``gzip`` or ``none``, see
        :func:`~coframe.volumes.write.compressors`) and its level (default per compressor).
    max_output_size
        Largest output (level 0, uncompressed) to write, e.g. ``"2TB"``:
        a larger grid is refused before anything is created.
    on_bad_chunk
        At a source chunk that cannot be read or decoded: ``error`` (stop,
        naming it; finished blocks are kept and a rerun resumes) or ``fill``
        (read it as zeros; the result and the output's ``coframe``
        attributes list such chunks).
    force
        Replace an existing output (or an unfinished run with other arguments).
    progress
        Show a progress bar on stderr.
    provenance
        Extra JSON-ready facts stored with the output (command...).

    Raises
    ------
    OverwriteError
        If the output exists and ``force`` is false.
    OutputError
        If the grid is above ``max_output_size``, the disk fills up (rerun to
        resume) or a TIFF would be too large.
    BadChunkError
        If a source chunk cannot be read and ``on_bad_chunk`` is ``error``.
    DimensionError, LevelError, MetadataError
        For inputs that do not fit together.
    """
    started = time.perf_counter()
    # absolute before it goes into tasks: a dask.distributed worker resolves a relative path
    # in its own working directory
    out = Path(output).expanduser().absolute()
    if zarr_version not in (2, 3):
        raise MetadataError(f"--zarr-version {zarr_version}: expected 2 or 3")

    if on_bad_chunk not in BAD_CHUNK_POLICIES:
        raise MetadataError(
            f"--on-bad-chunk {on_bad_chunk!r}: expected error (stop at a corrupt source chunk) "
            "or fill (read it as zeros)"
        )
    compressors(compressor, compression_level, zarr_version)  # an unknown name fails here
    fmt = _output_format(out, output_format)
    budget = parse_memory(memory_per_task)
    limit = parse_size(max_output_size, flag="--max-output-size")
    with ExitStack() as stack:
        # opened once for the run (the local tasks share it), read afresh by the next run
        volume = stack.enter_context(source_for_run(source))
        # before any planning: the grid may be absurd
        check_output_size(grid.shape, grid.voxel_size, grid.unit, volume.dtype, limit)
        is_labels = volume.is_labels if labels is None else bool(labels)
        interp = check_interpolation(interpolation, is_labels)
        if transform.input_dim != grid.ndim or transform.output_dim != volume.ndim:
            raise DimensionError(
                f"the map takes {transform.input_dim}D points to {transform.output_dim}D but the "
                f"output grid is {grid.ndim}D and the source {volume.ndim}D: check the spaces' axes"
            )
        level_index = choose_source_level(volume, transform, grid, source_level)
        level = volume.levels[level_index]
        dtype = np.dtype(volume.dtype)
        method = choose_method(transform, grid, dtype, interp)
        runner = stack.enter_context(closing(DaskRunner(scheduler, progress)))
        plan = plan_run(
            grid,
            level,
            transform,
            dtype,
            budget,
            runner.workers,
            method=method,
            interpolation=interp,
            zarr_version=zarr_version,
            n_levels=1 if fmt == "tiff" else n_levels,
        )
        spec = {
            "source": source.describe(),
            "source_level": level.path or str(level_index),
            "transform": transform_fingerprint(transform, grid),
            "grid": json.loads(json.dumps(asdict(grid))),
            "interpolation": interp,
            "labels": is_labels,
            "dtype": dtype.str,
            "zarr_version": zarr_version,
            "levels": len(plan.levels),
            "compressor": compressor,
            "compression_level": compression_level,
        }
        token = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
        job = BlockJob(
            source=source,
            source_level=level_index,
            transform=transform,
            grid=grid,
            interpolation=interp,
            method=method,
            dtype=dtype.str,
            piece_shape=plan.piece_shape,
            slab_points=plan.slab_points,
            threads=1,
            token=token,
            on_bad_chunk=on_bad_chunk,
        )
        if fmt == "tiff":
            counts = _bad_chunks_said(_resample_tiff, "nothing was written")(
                out, job, plan, runner, force=force
            )
        else:
            counts = _bad_chunks_said(_resample_zarr, f"finished blocks are kept in {out}")(
                out,
                job,
                plan,
                runner,
                spec=spec,
                labels=is_labels,
                zarr_version=zarr_version,
                compressor=compressor,
                compression_level=compression_level,
                force=force,
                provenance=provenance,
            )
    return ResampleResult(
        output=Path(output),
        format=fmt,
        grid=grid,
        source_level=level.path or str(level_index),
        method=method,
        interpolation=interp,
        levels=len(plan.levels),
        blocks=counts[0],
        blocks_computed=counts[1],
        blocks_skipped=counts[0] - counts[1],
        seconds=time.perf_counter() - started,
        filled_chunks=counts[2],
    )


def _bad_chunks_said(run: Callable[..., _Counts], kept: str) -> Callable[..., _Counts]:
    """``run`` whose :class:`BadChunkError` also says what is kept and how to go on."""

    def said(*args: Any, **kwargs: Any) -> _Counts:
        try:
            return run(*args, **kwargs)
        except BadChunkError as e:
            raise BadChunkError(
                f"{e}: repair or replace that chunk and run the same command again ({kept}), or "
                "pass --on-bad-chunk fill to read corrupt chunks as zeros"
            ) from e

    return said


def _output_format(out: Path, output_format: str | None) -> str:
    if output_format is None:
        return "tiff" if out.suffix.lower() in _TIFF_SUFFIXES else "ome-zarr"
    name = output_format.lower().replace("_", "-")
    if name in ("zarr", "ome-zarr"):
        return "ome-zarr"
    if name in ("tif", "tiff"):
        return "tiff"
    raise MetadataError(f"--format {output_format!r}: expected ome-zarr or tiff")


def _resample_tiff(
    out: Path, job: BlockJob, plan: RunPlan, runner: DaskRunner, *, force: bool
) -> _Counts:
    grid = job.grid
    check_tiff_output(out, grid, job.dtype, force=force)
    blocks = plan_blocks(grid.shape, plan.block_shape)
    job = replace(job, output=None, threads=runner.threads_per_task())
    total = sum(b.n_chunks(grid.chunks) for b in blocks)
    results = runner.run(
        run_block, job, blocks, label="resample", total_chunks=total, done_chunks=0
    )
    image = np.zeros(grid.shape, dtype=np.dtype(job.dtype))
    filled: set[tuple[str, tuple[int, ...]]] = set()
    for block, (_, data, bad) in zip(blocks, results, strict=True):
        image[tuple(slice(a, b) for a, b in zip(block.start, block.stop, strict=True))] = data
        filled.update(bad)
    write_tiff_output(out, image, grid, force=force)
    return len(blocks), len(blocks), tuple(sorted(filled))


def _resample_zarr(
    out: Path,
    job: BlockJob,
    plan: RunPlan,
    runner: DaskRunner,
    *,
    spec: dict[str, Any],
    labels: bool,
    zarr_version: int,
    compressor: str,
    compression_level: int | None,
    force: bool,
    provenance: dict[str, Any] | None,
) -> _Counts:
    grid = job.grid
    output = str(out)
    forget_outputs(output)
    try:
        block_shape, _ = start_or_resume(out, spec, plan.block_shape, force)
        plan = replace(plan, block_shape=block_shape)
        writer = open_ome_zarr(
            out,
            plan.levels,
            axes=grid.axes,
            unit=grid.unit,
            labels=labels,
            name=out.name,
            dtype=job.dtype,
            zarr_version=zarr_version,
            compressor=compressor,
            compression_level=compression_level,
            shards=plan.shards,
        )
    except OSError as e:  # a read-only or full place, before any block
        raise write_error(e, output) from e
    blocks = plan_blocks(grid.shape, plan.block_shape)
    todo = pending(output, "s0", blocks)
    job = replace(job, output=output, threads=runner.threads_per_task())
    total = sum(b.n_chunks(grid.chunks) for b in blocks)
    done = total - sum(b.n_chunks(grid.chunks) for b in todo)
    runner.run(run_block, job, todo, label="resample s0", total_chunks=total, done_chunks=done)
    for i in range(1, len(plan.levels)):
        spec_i = plan.levels[i]
        unit = plan.unit(i)
        per_block = max(math.prod(unit), parse_memory("64MiB") // np.dtype(job.dtype).itemsize)
        level_blocks = plan_blocks(spec_i.shape, grow_shape(unit, spec_i.shape, per_block))
        pjob = PyramidJob(output, plan.levels, grid.axes, grid.unit, labels, i - 1)
        left = pending(output, spec_i.path, level_blocks)
        total = sum(b.n_chunks(spec_i.chunks) for b in level_blocks)
        done = total - sum(b.n_chunks(spec_i.chunks) for b in left)
        runner.run(
            run_pyramid_block,
            pjob,
            left,
            label=f"pyramid {spec_i.path}",
            total_chunks=total,
            done_chunks=done,
        )
    filled = tuple(filled_chunks(output, "s0"))
    record = dict(provenance or {})
    record["resample"] = spec
    if filled:  # corrupt source chunks read as zeros (--on-bad-chunk fill)
        record["filled_source_chunks"] = [{"level": lvl, "chunk": list(i)} for lvl, i in filled]
    try:
        writer.write_metadata()
        writer.write_attribute("coframe", record)
        finish_run(out)
    except OSError as e:
        raise write_error(e, output) from e
    return len(blocks), len(todo), filled
