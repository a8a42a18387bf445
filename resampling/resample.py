"""Resample any image into any other's frame: chunked, memory-bounded, resumable, on dask.

:func:`resample` pulls SOURCE's voxels back through the TARGET -> SOURCE
point map onto an :class:`~coframe.resampling.plan.OutputGrid`;
:func:`resample_workspace` finds the images, the grid and the map in a
workspace. The work is a list of block tasks (see
:mod:`coframe.resampling.block`) run with dask: the local threaded
scheduler by default, or a ``dask.distributed`` scheduler at an address
(same task list either way; workers open the source from its spec and write
their chunks straight into the output store).

An OME-Zarr output is declared first with its arrays and *no* multiscales
metadata, next to a run record (``<out>/.coframe/run.json``). Every finished
block leaves a marker (``<out>/.coframe/done/<level>/<block>``), so running the
same command again after an interruption (Ctrl-C, a killed worker, a full
disk) computes only the missing blocks; other arguments against an unfinished
output are refused unless ``--force``. Coarser pyramid levels are filled from
the finer ones block by block (labels by mode, never averaged), the
multiscales metadata is written last, and the run record is then removed, so
a partial output is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from coframe.core.errors import (
    CoframeError,
    DimensionError,
    MetadataError,
    OutputError,
    OverwriteError,
    TransformError,
    WorkspaceError,
)
from coframe.resampling.block import (
    STATE_DIR,
    BlockJob,
    ImageSource,
    PyramidJob,
    disk_full_error,
    done_marker,
    forget_outputs,
    open_source,
    run_block,
    run_pyramid_block,
)
from coframe.resampling.chain import (
    SPLINE_FIELD_BYTES,
    chain_members,
    inverse_tolerance,
    map_points_checked,
    prepare_chain,
    spline_lead,
)
from coframe.resampling.kernel import KERNEL_DTYPES, kernel_takes
from coframe.resampling.plan import (
    INTERPOLATIONS,
    Block,
    OutputGrid,
    boundary_points,
    choose_source_level,
    grid_for_target,
    grow_shape,
    parse_memory,
    plan_blocks,
    source_voxels_per_output_voxel,
)
from coframe.resampling.progress import chunk_progress
from coframe.transforms.base import Transform
from coframe.transforms.field import DisplacementField
from coframe.transforms.sitk_bridge import to_sitk
from coframe.volumes.open import parse_box
from coframe.volumes.write import MultiscaleWriter, compressors, pyramid_specs, write_tiff

#: Default memory budget of one task.
DEFAULT_MEMORY = "256MB"
#: Largest output written as TIFF (bytes).
TIFF_LIMIT = 2**30
#: Default chunk compressor of resampled outputs: Blosc LZ4 writes and reads several
#: times faster than zstd (resampling is CPU-bound); ``--compressor zstd`` gives
#: smaller files.
DEFAULT_COMPRESSOR = "lz4"
#: Target bytes of one shard (Zarr v3 outputs with many chunks).
SHARD_BYTES = 64 * 2**20
#: Chunks a level must have before it is sharded.
SHARD_MIN_CHUNKS = 64
#: Coarsest pyramid level: every axis within one chunk, at most this many levels.
MAX_LEVELS = 12
_TIFF_SUFFIXES = (".tif", ".tiff")
_SITK_DTYPES = {
    np.dtype(t)
    for t in (
        np.uint8,
        np.int8,
        np.uint16,
        np.int16,
        np.uint32,
        np.int32,
        np.uint64,
        np.int64,
        np.float32,
        np.float64,
    )
}
_ZARR_KEYS = (".zgroup", ".zattrs", ".zarray", "zarr.json")


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


@dataclass(frozen=True)
class RunPlan:
    """How the output is laid out and cut into tasks.

    Parameters
    ----------
    levels
        Output pyramid geometry (:class:`coframe.volumes.write.LevelSpec`), finest first.
    shards
        Shard shape per level, or ``None`` (unsharded).
    block_shape
        Level-0 block shape (a multiple of the chunks or shards).
    piece_shape
        Shape of the pieces a block is computed in.
    slab_points
        Points mapped at once by the ``numpy`` method.
    """

    levels: tuple[Any, ...]
    shards: tuple[tuple[int, ...] | None, ...]
    block_shape: tuple[int, ...]
    piece_shape: tuple[int, ...]
    slab_points: int

    def unit(self, level: int) -> tuple[int, ...]:
        """Shape no two tasks may share in a level: its shard, else its chunk."""
        shard = self.shards[level]
        return tuple(shard) if shard is not None else tuple(self.levels[level].chunks)


# --------------------------------------------------------------------------- decisions


def check_interpolation(interpolation: str | None, labels: bool) -> str:
    """The interpolation to use: nearest for labels, linear by default.

    Raises
    ------
    MetadataError
        For an unknown name, or anything but nearest for labels.
    """
    if interpolation is None:
        return "nearest" if labels else "linear"
    name = str(interpolation).lower()
    if name not in INTERPOLATIONS:
        raise MetadataError(
            f"--interpolation {interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}"
        )
    if labels and name != "nearest":
        raise MetadataError(
            f"--interpolation {name} would average label ids: labels are resampled with "
            "--interpolation nearest (the default for labels)"
        )
    return name


def _fields_cover(t: Transform, points: np.ndarray) -> bool:
    """Whether every displacement field of the chain is queried only inside its grid.

    Inside its grid coframe's field (which clamps outside) and ITK's (zero
    beyond half a node outside) agree, so SimpleITK can resample the chain.
    """

    current = points
    for member in chain_members(t):
        if isinstance(member, DisplacementField):
            index = (current - member.origin) / member.spacing
            upper = np.asarray(member.grid_shape, dtype=np.float64) - 1.0
            if not (np.all(index >= 0.0) and np.all(index <= upper)):
                return False
        current = member.apply(current)
    return True


def choose_method(transform: Transform, grid: OutputGrid, dtype: Any, interpolation: str) -> str:
    """``kernel`` or ``sitk`` where they give SimpleITK's result, else ``numpy``.

    Linear resampling onto a 3D grid through an affine, or through a leading
    B-spline and at most one affine (a registration's deformable result),
    goes through coframe's compiled kernel (:mod:`coframe.resampling.kernel`:
    SimpleITK's values, several times faster). SimpleITK resamples the other
    affine chains, and non-linear chains it can hold (fields, B-splines)
    whose fields cover every mapped point of the grid; thin plate splines,
    numerical inverses, 2D -> 3D maps, data types ITK lacks and 64-bit
    labels (ITK interpolates in double) go through numpy.
    """

    dt = np.dtype(dtype)
    if transform.input_dim != transform.output_dim or grid.ndim not in (2, 3):
        return "numpy"
    if dt not in _SITK_DTYPES:
        return "numpy"
    if interpolation == "nearest" and dt.itemsize == 8 and np.issubdtype(dt, np.integer):
        return "numpy"
    affine = transform.as_affine() is not None
    if not affine:
        try:
            to_sitk(transform)
        except (TransformError, DimensionError):
            return "numpy"
        step = max(8, math.ceil(max(grid.shape) / 48))
        points = boundary_points(grid, (0,) * grid.ndim, grid.shape, interior=True, step=step)
        if not _fields_cover(transform, points):
            return "numpy"
    if interpolation == "linear" and grid.ndim == 3 and (affine or spline_lead(transform)):
        if dt in KERNEL_DTYPES and kernel_takes(prepare_chain(transform)):
            return "kernel"
    return "sitk"


def transform_fingerprint(transform: Transform, grid: OutputGrid) -> str:
    """A digest of the map's values on a lattice over the grid (same map -> same digest)."""
    axes = [np.linspace(0, n - 1, 4) for n in grid.shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    points = grid.index_to_physical(np.stack([m.ravel() for m in mesh], axis=1))
    mapped = map_points_checked(transform, points, inverse_tolerance(grid.voxel_size))
    text = ",".join(f"{v:.9g}" for v in mapped.ravel())
    return hashlib.sha256(f"{type(transform).__name__}:{text}".encode()).hexdigest()[:24]


def default_levels(shape: Sequence[int], chunks: Sequence[int]) -> int:
    """Pyramid levels until every axis fits one chunk (at most :data:`MAX_LEVELS`)."""
    n = 1
    for size, c in zip(shape, chunks, strict=True):
        if size > c:
            n = max(n, 1 + math.ceil(math.log2(size / c)))
    return min(n, MAX_LEVELS)


def plan_run(
    grid: OutputGrid,
    source_level: Any,
    transform: Transform,
    dtype: Any,
    budget: int,
    workers: int,
    *,
    method: str,
    interpolation: str,
    zarr_version: int = 2,
    n_levels: int | None = None,
) -> RunPlan:
    """Lay out the output pyramid and size blocks and pieces to the memory budget.

    A block's output fits the budget and there are at least four blocks per
    worker when the grid allows; a piece's working memory (source box,
    SimpleITK copies or coordinate slabs, result) fits the budget.
    """

    dt = np.dtype(dtype)
    out_bytes = dt.itemsize
    src_bytes = np.dtype(source_level.dtype).itemsize
    ratio = source_voxels_per_output_voxel(source_level, transform, grid)
    count = default_levels(grid.shape, grid.chunks) if n_levels is None else int(n_levels)
    if count < 1:
        raise MetadataError(f"pyramid levels {n_levels}: expected at least 1")
    levels = pyramid_specs(grid.shape, grid.voxel_size, grid.origin, count, grid.chunks)
    shards: list[tuple[int, ...] | None] = []
    for spec in levels:
        n_chunks = math.prod(math.ceil(n / c) for n, c in zip(spec.shape, spec.chunks, strict=True))
        if zarr_version == 3 and n_chunks > SHARD_MIN_CHUNKS:
            shards.append(grow_shape(spec.chunks, spec.shape, SHARD_BYTES // out_bytes))
        else:
            shards.append(None)
    unit = shards[0] if shards[0] is not None else grid.chunks
    unit_voxels = math.prod(unit)
    spread = math.ceil(grid.n_voxels / (4 * max(1, workers)))
    block_voxels = max(unit_voxels, min(budget // out_bytes, spread))
    block_shape = grow_shape(unit, grid.shape, block_voxels)
    slab_points = int(max(4096, min(2**18, budget // 1024)))
    cubic = 8.0 * ratio if INTERPOLATIONS[interpolation] > 1 else 0.0
    if method in ("sitk", "kernel"):
        per_voxel = 2.0 * out_bytes + 2.0 * ratio * src_bytes + cubic
        if spline_lead(transform) is not None:
            per_voxel += SPLINE_FIELD_BYTES * grid.ndim  # the piece's dense B-spline field
        fixed = 0
    else:
        per_voxel = out_bytes + ratio * src_bytes + cubic
        fixed = slab_points * 256
    piece_voxels = max(1, int((budget - fixed) / per_voxel))
    piece_shape = grow_shape(grid.chunks, block_shape, piece_voxels)
    return RunPlan(tuple(levels), tuple(shards), block_shape, piece_shape, slab_points)


# --------------------------------------------------------------------------- execution


class _Runner:
    """Runs block tasks with dask: local threads, or a distributed scheduler at an address."""

    def __init__(self, scheduler: str | None, progress: bool) -> None:
        self.client: Any = None
        self.progress = progress
        self.cores = os.cpu_count() or 1
        if scheduler:
            from distributed import Client

            try:
                self.client = Client(scheduler, timeout="15s")
            except (OSError, TimeoutError, ValueError) as e:
                raise CoframeError(
                    f"cannot reach the dask scheduler at {scheduler}: {e}; check --scheduler"
                ) from e
            self.workers = max(1, sum(self.client.nthreads().values()))
        else:
            self.workers = self.cores

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def threads_per_task(self) -> int:
        """Threads SimpleITK or the compiled kernel may use inside one task.

        Local tasks ask for every core through ITK's own threads or the
        kernel's (both release the GIL while they resample, so tasks overlap
        inside them and in their reads and writes). Distributed workers ask
        for one thread per task; since SimpleITK's default (platform)
        threader follows only the process-wide thread count, a worker lowers
        that count to one (:func:`coframe.resampling.block.run_block`).
        """
        return 1 if self.client is not None else self.cores

    def run(
        self,
        fn: Callable[[Any, Block], tuple[int, Any]],
        job: Any,
        blocks: Sequence[Block],
        *,
        label: str,
        total_chunks: int,
        done_chunks: int,
    ) -> list[tuple[int, Any]]:
        """Run ``fn(job, block)`` for every block, advancing a progress bar by chunks."""
        import dask

        if not blocks:
            return []
        job_d = dask.delayed(job, traverse=False)
        tasks = [dask.delayed(fn, pure=False)(job_d, b) for b in blocks]
        with chunk_progress(label, total_chunks, done_chunks, enabled=self.progress) as advance:
            if self.client is None:
                from dask.callbacks import Callback

                class _Advance(Callback):  # type: ignore[misc]
                    def _posttask(self, key: Any, result: Any, *args: Any) -> None:
                        if isinstance(result, tuple) and len(result) == 2:
                            advance(int(result[0]))

                import dask.threaded

                # the scheduler function itself: naming it would import dask.distributed
                with _Advance():
                    results = dask.compute(
                        *tasks,
                        scheduler=dask.threaded.get,
                        num_workers=min(self.workers, len(tasks)),
                    )
                return list(results)
            return self._run_distributed(tasks, advance)

    def _run_distributed(
        self, tasks: list[Any], advance: Callable[[int], None]
    ) -> list[tuple[int, Any]]:
        from distributed import as_completed

        futures = self.client.compute(tasks)
        order = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        try:
            for future in as_completed(futures):
                value = future.result()
                advance(int(value[0]))
                results[order[future.key]] = value
        except BaseException:
            self.client.cancel(futures)
            raise
        return results


# --------------------------------------------------------------------------- output state


def _looks_like_zarr(path: Path) -> bool:
    return path.is_dir() and any((path / k).is_file() for k in _ZARR_KEYS)


def _remove_output(path: Path) -> None:
    """Remove an earlier output for ``--force``, refusing anything that is not one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif _looks_like_zarr(path) or (path / STATE_DIR).is_dir():
        shutil.rmtree(path)
    elif path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    else:
        raise OutputError(
            f"{path} exists and is not a Zarr output, so --force will not delete it: choose "
            "another output path (-o)"
        )


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _prepare_output(
    output: Path, spec: dict[str, Any], plan: RunPlan, force: bool
) -> tuple[RunPlan, bool]:
    """Start a fresh output or resume an unfinished one with the same run spec.

    Returns the plan to use (a resumed run keeps its block layout) and whether
    the run resumes.

    Raises
    ------
    OverwriteError
        If the output exists (finished, foreign, or an unfinished run with
        other arguments) and ``force`` is false.
    """
    record = output / STATE_DIR / "run.json"
    if output.exists() or output.is_symlink():
        if record.is_file() and not force:
            try:
                stored = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise OverwriteError(
                    f"{output} holds an unreadable run record {record}: pass --force to start over"
                ) from e
            if stored.get("spec") != spec:
                keys = ", ".join(_differences(stored.get("spec", {}), spec))
                raise OverwriteError(
                    f"{output} holds an unfinished resample run with other arguments ({keys}): "
                    "run the same command to resume it, or pass --force to start over"
                )
            resumed = replace(
                plan, block_shape=tuple(int(n) for n in stored["plan"]["block_shape"])
            )
            return resumed, True
        if not force:
            raise OverwriteError(f"output {output} already exists: pass --force to overwrite it")
        _remove_output(output)
    output.mkdir(parents=True, exist_ok=False)
    _write_json(record, {"spec": spec, "plan": {"block_shape": list(plan.block_shape)}})
    return plan, False


def _declare_arrays(
    output: Path,
    plan: RunPlan,
    dtype: Any,
    zarr_version: int,
    compressor: str,
    compression_level: int | None,
) -> Any:
    """Create (or, when resuming, complete) the output group and its level arrays."""
    import zarr

    codec = compressors(compressor, compression_level, zarr_version)
    group = zarr.open_group(str(output), mode="a", zarr_format=zarr_version)
    for spec, shard in zip(plan.levels, plan.shards, strict=True):
        if any((output / spec.path / key).is_file() for key in (".zarray", "zarr.json")):
            continue
        kwargs: dict[str, Any] = dict(
            name=spec.path,
            shape=spec.shape,
            chunks=spec.chunks,
            dtype=np.dtype(dtype),
            fill_value=0,
            **codec,
        )
        if zarr_version == 2:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        if shard is not None:
            kwargs["shards"] = shard
        group.create_array(**kwargs)
    return group


# --------------------------------------------------------------------------- the engine


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
    force: bool = False,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
) -> ResampleResult:
    """Resample a source image onto an output grid through a point map.

    Parameters
    ----------
    source
        How to open the source (:class:`~coframe.resampling.block.ImageSource`
        or any picklable, hashable object with ``open()`` and ``describe()``).
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
        :func:`coframe.volumes.write.compressors`) and its level (default per compressor).
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
        If the disk fills up (rerun to resume) or a TIFF would be too large.
    DimensionError, LevelError, MetadataError
        For inputs that do not fit together.
    """
    started = time.perf_counter()
    out = Path(output)
    if zarr_version not in (2, 3):
        raise MetadataError(f"--zarr-version {zarr_version}: expected 2 or 3")

    compressors(compressor, compression_level, zarr_version)  # an unknown name fails here
    fmt = _output_format(out, output_format)
    budget = parse_memory(memory_per_task)
    volume = source.open()
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
    runner = _Runner(scheduler, progress)
    try:
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
        )
        if fmt == "tiff":
            counts = _resample_tiff(out, job, plan, runner, force=force)
        else:
            counts = _resample_zarr(
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
    finally:
        runner.close()
    return ResampleResult(
        output=out,
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
    )


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
    out: Path, job: BlockJob, plan: RunPlan, runner: _Runner, *, force: bool
) -> tuple[int, int]:

    grid = job.grid
    size = grid.n_voxels * np.dtype(job.dtype).itemsize
    if size > TIFF_LIMIT:
        raise OutputError(
            f"the output is {size / 2**30:.1f} GiB, above the TIFF limit of "
            f"{TIFF_LIMIT / 2**30:.0f} GiB: write OME-Zarr instead (--format ome-zarr with an "
            "output directory)"
        )
    if (out.exists() or out.is_symlink()) and not force:
        raise OverwriteError(f"output {out} already exists: pass --force to overwrite it")
    blocks = plan_blocks(grid.shape, plan.block_shape)
    job = replace(job, output=None, threads=runner.threads_per_task())
    total = sum(b.n_chunks(grid.chunks) for b in blocks)
    results = runner.run(
        run_block, job, blocks, label="resample", total_chunks=total, done_chunks=0
    )
    image = np.zeros(grid.shape, dtype=np.dtype(job.dtype))
    for block, (_, data) in zip(blocks, results, strict=True):
        image[tuple(slice(a, b) for a, b in zip(block.start, block.stop, strict=True))] = data
    try:
        write_tiff(out, image, grid.voxel_size, grid.unit, grid.axes, overwrite=force)
    except OSError as e:
        if e.errno == 28:
            raise disk_full_error(e, str(out)) from e
        raise
    return len(blocks), len(blocks)


def _pending(output: str, level_path: str, blocks: Sequence[Block]) -> list[Block]:
    return [b for b in blocks if not done_marker(output, level_path, b).exists()]


def _resample_zarr(
    out: Path,
    job: BlockJob,
    plan: RunPlan,
    runner: _Runner,
    *,
    spec: dict[str, Any],
    labels: bool,
    zarr_version: int,
    compressor: str,
    compression_level: int | None,
    force: bool,
    provenance: dict[str, Any] | None,
) -> tuple[int, int]:

    grid = job.grid
    output = str(out)
    forget_outputs(output)
    plan, _ = _prepare_output(out, spec, plan, force)
    try:
        group = _declare_arrays(out, plan, job.dtype, zarr_version, compressor, compression_level)
    except OSError as e:
        if e.errno == 28:
            raise disk_full_error(e, output) from e
        raise
    blocks = plan_blocks(grid.shape, plan.block_shape)
    todo = _pending(output, "s0", blocks)
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
        pending = _pending(output, spec_i.path, level_blocks)
        total = sum(b.n_chunks(spec_i.chunks) for b in level_blocks)
        done = total - sum(b.n_chunks(spec_i.chunks) for b in pending)
        runner.run(
            run_pyramid_block,
            pjob,
            pending,
            label=f"pyramid {spec_i.path}",
            total_chunks=total,
            done_chunks=done,
        )
    writer = MultiscaleWriter(
        out, group, plan.levels, axes=grid.axes, unit=grid.unit, name=out.name, labels=labels
    )
    writer.write_metadata()
    record = dict(provenance or {})
    record["resample"] = spec
    group.attrs["coframe"] = record
    shutil.rmtree(out / STATE_DIR)
    return len(blocks), len(todo)


# --------------------------------------------------------------------------- workspace


def resample_workspace(
    workspace: Any,
    source_name: str,
    target_name: str,
    output: str | os.PathLike[str],
    *,
    level: int | str | None = None,
    voxel_size: float | Sequence[float] | None = None,
    box: str | tuple[Sequence[float], Sequence[float]] | None = None,
    source_level: int | str | None = None,
    chunks: Sequence[int] | None = None,
    via: Sequence[str] = (),
    **options: Any,
) -> ResampleResult:
    """Resample workspace image SOURCE into the frame of image TARGET.

    The output grid comes from TARGET (a level, or a voxel size over its
    extent, optionally a box); the map is the graph's TARGET -> SOURCE chain.

    Parameters
    ----------
    workspace
        A :class:`~coframe.app.workspace.Workspace`.
    source_name, target_name
        Image names.
    output
        Output path.
    level, voxel_size, box
        Output grid choice (see :func:`~coframe.resampling.plan.grid_for_target`);
        ``box`` as ``"z0,y0,x0:z1,y1,x1"`` text or corner pair.
    source_level
        Source level to read (default: nearest the output voxel size).
    chunks
        Output chunk shape (default 64x128x128, 512x512 in 2D).
    via
        Spaces the chain must pass through.
    **options
        Passed to :func:`resample`.

    Raises
    ------
    WorkspaceError
        If an image is unknown.
    NoPathError
        If no chain of edges joins the two spaces.
    """

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
    source_dim = len(open_source(source).axes)
    if source_dim < target.ndim:
        raise DimensionError(
            f"SOURCE {source_name} is {source_dim}D and INTO {target_name} is {target.ndim}D: a "
            f"section has no values off its plane; resample the volume into the section's frame "
            f"(coframe resample {target_name} --into {source_name}) or compare them with coframe "
            f"overlay {target_name} {source_name}"
        )
    t = workspace.graph().transform(
        workspace.space_of(target_name), workspace.space_of(source_name), via
    )
    corners = parse_box(box, target.ndim) if isinstance(box, str) else box
    grid = grid_for_target(target, level=level, voxel_size=voxel_size, box=corners, chunks=chunks)
    return resample(source, t, grid, output, source_level=source_level, **options)
