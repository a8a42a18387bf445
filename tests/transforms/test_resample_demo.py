"""The demo's resampling step, with the demo's ground-truth map linked as the edge."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from typer.testing import CliRunner

from coframe.cli import app
from coframe.demo.outputs import DemoSample
from coframe.demo.resample import OUT_DIR, demo_resample_step
from coframe.volumes.open import open_volume


def test_without_an_edge_the_step_is_skipped(demo_copy: DemoSample) -> None:
    root = demo_copy.root
    text = demo_resample_step(root, demo_copy)
    assert "skipped" in text and "coframe register" in text
    assert not (root / OUT_DIR).exists()


def test_each_modality_lands_in_the_others_frame(demo_copy: DemoSample, runner: CliRunner) -> None:
    root, sample = demo_copy.root, demo_copy
    linked = runner.invoke(
        app,
        [
            "link",
            "fibsem",
            "xray",
            str(root / "ground_truth" / "fibsem_to_xray.zarr"),
            "-w",
            str(root),
        ],
    )
    assert linked.exit_code == 0, linked.output
    text = demo_resample_step(root, sample)
    assert text.count("blocks in") == 3, text

    xray = open_volume(root / "xray.zarr").levels[0]
    fib_in_xray = open_volume(root / OUT_DIR / "fibsem-in-xray.zarr").levels[0]
    assert fib_in_xray.shape == xray.shape
    np.testing.assert_allclose(fib_in_xray.voxel_size, xray.voxel_size)
    a = fib_in_xray.read().astype(np.float64)
    b = xray.read().astype(np.float64)
    inside = ndimage.binary_erosion(a > 0, iterations=2)  # away from the block's zero padding
    # the block fills a small part of the X-ray field: about 16 of its 88 voxels per axis
    assert 1000 < inside.sum() < 0.02 * inside.size
    # X-ray contrast is inverted relative to the uint8 EM: the right map anticorrelates them,
    # more than the same map off by three X-ray voxels
    right = np.corrcoef(a[inside], b[inside])[0, 1]
    shifted = np.corrcoef(a[inside], np.roll(b, 3, axis=2)[inside])[0, 1]
    assert right < -0.3
    assert right < shifted - 0.2

    nuc = open_volume(root / "fibsem.zarr/recon-1/labels/nuc")
    nuc_out = open_volume(root / OUT_DIR / "nuc-in-fibsem.zarr").levels[0]
    ids = set(np.unique(nuc.levels[0].read()).tolist())
    got = nuc_out.read()
    assert got.dtype == nuc.dtype
    assert set(np.unique(got).tolist()) <= ids
    assert len(np.unique(got)) > 1

    x_in_fib = open_volume(root / OUT_DIR / "xray-in-fibsem.zarr").levels[0]
    assert x_in_fib.shape == nuc_out.shape
    np.testing.assert_allclose(x_in_fib.origin, nuc_out.origin)
    assert np.count_nonzero(x_in_fib.read()) > 0
