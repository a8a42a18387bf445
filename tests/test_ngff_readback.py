"""OME-Zarr that coframe writes, read back by independent readers (ngff-zarr, ome-zarr-py).

Each output's axes, units, shape, scale and translation are compared with what
coframe meant to write: the levels it reports (the demo's ``LevelSpec``, the
grid ``coframe resample`` prints, the shape ``export-viewer`` prints) and the
conventions it follows (CellMap half-voxel offsets, pyramids by two).
ome-zarr-py (:mod:`ome_zarr_py`) must find the same levels, shapes, scales
and translations.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import ngff_zarr as nz
import numpy as np
import pytest
from ome_zarr_py import read_levels
from typer.testing import CliRunner

from coframe.cli import app
from coframe.demo.outputs import DemoSample
from coframe.volumes.open import open_volume
from coframe.volumes.write import LevelSpec

SPACE = ("z", "y", "x")
#: A box (nm, z0,y0,x0:z1,y1,x1) inside the tiny demo's FIB-SEM block.
BOX = "2000,2000,2000:6000,8000,9000"


def _images(path: Path) -> list[nz.NgffImage]:
    return nz.from_ngff_zarr(str(path)).images


def _vector(mapping: dict[str, float], dims: tuple[str, ...] = SPACE) -> np.ndarray:
    return np.array([mapping[d] for d in dims], dtype=float)


def _check_level(image: nz.NgffImage, level: LevelSpec, unit: str) -> None:
    assert image.dims == SPACE
    assert image.axes_units == dict.fromkeys(SPACE, unit)
    assert tuple(image.data.shape) == tuple(level.shape)
    np.testing.assert_allclose(_vector(image.scale), level.voxel_size)
    np.testing.assert_allclose(_vector(image.translation), level.origin, atol=1e-9)


def _check_ome_zarr_py(path: Path, levels: list[LevelSpec], unit: str) -> None:
    """ome-zarr-py reads ``path`` with the levels coframe meant to write."""
    read = read_levels(path)
    assert len(read) == len(levels), path
    for got, level in zip(read, levels, strict=True):
        assert got.dims == SPACE
        assert got.units == (unit,) * 3
        assert got.shape == tuple(level.shape)
        np.testing.assert_allclose(got.scale, level.voxel_size)
        np.testing.assert_allclose(got.translation, level.origin, atol=1e-9)


def test_the_demo_images_read_back_with_their_placement(tiny_demo: DemoSample) -> None:
    cases = (
        (tiny_demo.fibsem, tiny_demo.fibsem_levels, "nanometer", np.uint8),
        (tiny_demo.labels, tiny_demo.label_levels, "nanometer", np.uint32),
        (tiny_demo.xray, tiny_demo.xray_levels, "micrometer", np.uint16),
    )
    for path, levels, unit, dtype in cases:
        images = _images(path)
        assert len(images) == len(levels), path
        for image, level in zip(images, levels, strict=True):
            _check_level(image, level, unit)
            assert image.data.dtype == dtype
        _check_ome_zarr_py(path, list(levels), unit)
    # CellMap's layout: 8 nm at s0, level i scaled 2**i with a half-voxel offset 4 * (2**i - 1)
    for i, image in enumerate(_images(tiny_demo.fibsem)):
        assert image.scale == dict.fromkeys(SPACE, 8.0 * 2**i)
        assert image.translation == dict.fromkeys(SPACE, 4.0 * (2**i - 1))
    # the labels share the EM's lower voxel edge
    labels = _images(tiny_demo.labels)[0]
    np.testing.assert_allclose(_vector(labels.translation) - _vector(labels.scale) / 2, -4.0)
    # and the voxels are coframe's
    ids = np.asarray(labels.data)
    np.testing.assert_array_equal(ids, open_volume(tiny_demo.labels).levels[0].read())


def _stated_grid(stdout: str) -> tuple[list[int], list[float], list[float]]:
    m = re.search(r"shape \[([^]]+)\], voxel \[([^]]+)\] nanometer, origin \[([^]]+)\]", stdout)
    assert m, stdout
    shape, voxel, origin = ([float(v) for v in g.split(",")] for g in m.groups())
    return [int(n) for n in shape], voxel, origin


@pytest.mark.parametrize(("zarr_version", "metadata"), [(2, ".zattrs"), (3, "zarr.json")])
def test_a_resampled_pyramid_reads_back_on_the_grid_it_reports(
    demo_copy: DemoSample, runner: CliRunner, zarr_version: int, metadata: str
) -> None:
    root, out = demo_copy.root, demo_copy.root / "xray-in-fibsem.zarr"
    truth = str(demo_copy.ground_truth / "fibsem_to_xray.zarr")
    linked = runner.invoke(app, ["link", "fibsem", "xray", truth, "-w", str(root)])
    assert linked.exit_code == 0, linked.output
    args = ["resample", "xray", "--into", "fibsem", "--level", "3", "--box", BOX, "-o", str(out)]
    args += ["--pyramid-levels", "3", "--zarr-version", str(zarr_version), "--quiet"]
    result = runner.invoke(app, [*args, "-w", str(root)])
    assert result.exit_code == 0, result.output
    shape, voxel, origin = _stated_grid(result.stdout)
    assert (out / metadata).is_file()

    images = _images(out)
    assert len(images) == 3
    expected = [
        LevelSpec(
            f"s{i}",
            tuple(math.ceil(n / 2**i) for n in shape),
            tuple(v * 2**i for v in voxel),
            tuple(o + (2**i - 1) * v / 2 for o, v in zip(origin, voxel, strict=True)),
            (),
        )
        for i in range(3)
    ]
    for image, level in zip(images, expected, strict=True):
        _check_level(image, level, "nanometer")
        assert image.data.dtype == np.uint16  # the X-ray's type
    _check_ome_zarr_py(out, expected, "nanometer")
    assert np.count_nonzero(np.asarray(images[0].data)) > 0
    # the output grid is the FIB-SEM's level 3 grid (as ngff-zarr reads it) ...
    s3 = _images(demo_copy.fibsem)[3]
    steps = (np.asarray(origin) - _vector(s3.translation)) / _vector(s3.scale)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    np.testing.assert_allclose(voxel, _vector(s3.scale))
    # ... cut to the voxels whose centres lie in the box
    lo, hi = (np.array([float(v) for v in part.split(",")]) for part in BOX.split(":"))
    first, step = np.asarray(origin), np.asarray(voxel)
    last = first + (np.asarray(shape) - 1) * step
    assert np.all(first >= lo) and np.all(first - step < lo)
    assert np.all(last <= hi) and np.all(last + step > hi)


def test_the_viewer_export_reads_back_as_two_channels_on_the_box(
    demo_copy: DemoSample, runner: CliRunner
) -> None:
    root, out, pixel = demo_copy.root, demo_copy.root / "view", 256.0
    truth = str(demo_copy.ground_truth / "fibsem_to_xray.zarr")
    linked = runner.invoke(app, ["link", "fibsem", "xray", truth, "-w", str(root)])
    assert linked.exit_code == 0, linked.output
    args = ["export-viewer", "fibsem", "xray", "-o", str(out), "--box", BOX]
    result = runner.invoke(app, [*args, "--pixel-size", str(pixel), "--json", "-w", str(root)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)

    multiscales = nz.from_ngff_zarr(str(out / "overlay.ome.zarr"))
    (image,) = multiscales.images
    dims = ("c", *SPACE)
    assert image.dims == dims
    assert image.axes_units == {"c": None, **dict.fromkeys(SPACE, "nanometer")}
    assert [c.label for c in multiscales.metadata.omero.channels] == ["fibsem", "xray"]
    lo, hi = (np.array([float(v) for v in part.split(",")]) for part in BOX.split(":"))
    cells = [math.ceil(n) for n in (hi - lo) / pixel]
    assert list(image.data.shape) == summary["shape"] == [2, *cells]
    np.testing.assert_allclose(_vector(image.scale, dims), [1.0, *summary["voxel_size"]])
    np.testing.assert_allclose(summary["voxel_size"], [pixel] * 3)
    np.testing.assert_allclose(_vector(image.translation, dims), [0.0, *(lo + pixel / 2)])
    data = np.asarray(image.data)
    assert np.count_nonzero(data[0]) > 0 and np.count_nonzero(data[1]) > 0
    # ome-zarr-py: the same channel and space axes, shape, scale and translation
    (level,) = read_levels(out / "overlay.ome.zarr")
    assert level.dims == dims
    assert level.units == (None, *("nanometer",) * 3)
    assert list(level.shape) == summary["shape"]
    np.testing.assert_allclose(level.scale, [1.0, *summary["voxel_size"]])
    np.testing.assert_allclose(level.translation, [0.0, *(lo + pixel / 2)])
