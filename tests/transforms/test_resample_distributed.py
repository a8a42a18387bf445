"""The same resampling on a real dask.distributed cluster of two worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage

from coframe.resampling.engine import resample
from coframe.resampling.plan import OutputGrid
from coframe.resampling.source import ImageSource
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine
from coframe.transforms.field import DisplacementField


@pytest.mark.slow
@pytest.mark.parametrize("chain", ["affine", "affine+field"])
def test_local_cluster_of_two_processes_gives_the_same_output(tmp_path: Path, chain: str) -> None:
    """Through the compiled kernel (an affine) and numpy (an affine, then a field it leaves)."""
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(3)
    data = ndimage.gaussian_filter(rng.random((30, 34, 38)), 1.2)
    data = ((data - data.min()) * (255 / np.ptp(data))).astype(np.uint8)
    writer = create_ome_zarr(
        tmp_path / "src.zarr",
        shape0=data.shape,
        voxel_size0=(3.0, 3.0, 3.0),
        dtype=np.uint8,
        chunks=(16, 16, 16),
        n_levels=1,
    )
    writer.write(0, (0, 0, 0), data)
    source = ImageSource(str(tmp_path / "src.zarr"))
    field = DisplacementField(rng.normal(0, 2.0, (6, 6, 6, 3)), (-20.0,) * 3, (25.0,) * 3)
    t = Affine.from_linear(np.eye(3) * 1.03, (2.0, -3.0, 4.0))
    if chain == "affine+field":
        t = t.then(field)
    grid = OutputGrid(
        (28, 32, 36), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0), ("z", "y", "x"), "nanometer", (8, 16, 16)
    )
    local = resample(
        source, t, grid, tmp_path / "local.zarr", memory_per_task="2MB", progress=False
    )
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    ) as cluster:
        remote = resample(
            source,
            t,
            grid,
            tmp_path / "cluster.zarr",
            memory_per_task="2MB",
            progress=False,
            scheduler=cluster.scheduler_address,
        )
    assert remote.method == local.method == ("kernel" if chain == "affine" else "numpy")
    assert remote.blocks == local.blocks > 2
    for level in range(local.levels):
        a = zarr.open_array(str(tmp_path / "local.zarr" / f"s{level}"), mode="r")[...]
        b = zarr.open_array(str(tmp_path / "cluster.zarr" / f"s{level}"), mode="r")[...]
        assert np.array_equal(a, b)
    assert np.count_nonzero(a) > 0
