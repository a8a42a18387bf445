"""Chunked resampling of any image into any other's frame, and the one output writer.

Holds the output grid and its blocks (:mod:`~coframe.resampling.plan`), the
transform chain as resampling evaluates it (:mod:`~coframe.resampling.chain`),
the compiled kernel (:mod:`~coframe.resampling.kernel`), the run's decisions
(:mod:`~coframe.resampling.runplan`), reading the source
(:mod:`~coframe.resampling.source`), block tasks
(:mod:`~coframe.resampling.block`), the dask runner
(:mod:`~coframe.resampling.runner`), resumable runs
(:mod:`~coframe.resampling.resume`), byte sizes and the output-size bound
(:mod:`~coframe.resampling.sizes`), the OME-Zarr and TIFF output writer
(:mod:`~coframe.resampling.writer`) and the engine
(:mod:`~coframe.resampling.engine`: :func:`resample`).

May import :mod:`coframe.transforms`, :mod:`coframe.volumes` and
:mod:`coframe.core` only.
"""

from coframe.resampling.chain import map_points_checked
from coframe.resampling.engine import ResampleResult, resample
from coframe.resampling.plan import OutputGrid, grid_for_target
from coframe.resampling.source import ImageSource
from coframe.resampling.writer import MultiscaleWriter, create_ome_zarr

__all__ = [
    "ImageSource",
    "MultiscaleWriter",
    "OutputGrid",
    "ResampleResult",
    "create_ome_zarr",
    "grid_for_target",
    "map_points_checked",
    "resample",
]
