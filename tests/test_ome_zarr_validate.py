"""OME-Zarr 0.4 and 0.5 outputs checked by the NGFF metadata models, read back by two readers.

``ome-zarr-models`` validates a group against the OME-Zarr specification
(0.5 requires Zarr v3 ``dimension_names`` equal to the multiscales axes);
ngff-zarr and ome-zarr-py, readers independent of coframe, must find the
scale and translation coframe says it wrote. Covered: ``coframe resample`` of an intensity image
and of labels with ``--zarr-version 2`` and ``3``, and the writer's layouts
(3D, 2D, and a leading channel axis as the viewer export writes).
"""

from __future__ import annotations

import re
from pathlib import Path

import ngff_zarr as nz
import numpy as np
import pytest
import zarr
from ome_zarr_models import v04, v05
from ome_zarr_py import read_levels
from typer.testing import CliRunner

from coframe.cli import app
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Translation
from coframe.transforms.formats.itk import write_itk

SPACE = ("z", "y", "x")


def _validate(path: Path, zarr_version: int) -> None:
    """Validate ``path`` as an OME-Zarr 0.4 (Zarr v2) or 0.5 (Zarr v3) image."""
    group = zarr.open_group(str(path), mode="r")
    assert group.metadata.zarr_format == zarr_version
    model = v04.Image if zarr_version == 2 else v05.Image
    model.from_zarr(group)


@pytest.fixture
def ws(tmp_path: Path, runner: CliRunner) -> Path:
    """A workspace: an image `em` with labels `nuc` in its space, an image `xr`, an edge."""
    root = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    rng = np.random.default_rng(3)
    images = (
        ("em", (16, 20, 24), 4.0, np.uint8, ["--modality", "fibsem"]),
        ("nuc", (8, 10, 12), 8.0, np.uint16, ["--modality", "labels", "--space", "em"]),
        ("xr", (8, 8, 8), 10.0, np.uint8, ["--modality", "xray"]),
    )
    for name, shape, voxel, dtype, flags in images:
        writer = create_ome_zarr(
            root / f"{name}.zarr",
            shape0=shape,
            voxel_size0=(voxel,) * 3,
            dtype=dtype,
            chunks=(8, 8, 8),
            labels=name == "nuc",
        )
        writer.write(0, (0, 0, 0), rng.integers(1, 9, shape).astype(dtype))
        added = runner.invoke(
            app, ["add", name, str(root / f"{name}.zarr"), *flags, "-w", str(root)]
        )
        assert added.exit_code == 0, added.output
    write_itk(Translation([3.0, -2.0, 5.0]), root / "xr-to-em.tfm")
    linked = runner.invoke(app, ["link", "xr", "em", str(root / "xr-to-em.tfm"), "-w", str(root)])
    assert linked.exit_code == 0, linked.output
    return root


def _stated_grid(stdout: str) -> tuple[list[int], list[float], list[float]]:
    m = re.search(r"shape \[([^]]+)\], voxel \[([^]]+)\] nanometer, origin \[([^]]+)\]", stdout)
    assert m, stdout
    shape, voxel, origin = ([float(v) for v in g.split(",")] for g in m.groups())
    return [int(n) for n in shape], voxel, origin


@pytest.mark.parametrize("zarr_version", [2, 3])
@pytest.mark.parametrize(("source", "into"), [("em", "xr"), ("nuc", "xr")], ids=["image", "labels"])
def test_resampled_output_is_valid_ome_zarr_and_reads_back(
    runner: CliRunner, ws: Path, source: str, into: str, zarr_version: int
) -> None:
    out = ws / f"{source}-v{zarr_version}.zarr"
    args = ["resample", source, "--into", into, "-o", str(out), "--pyramid-levels", "2"]
    args += ["--zarr-version", str(zarr_version), "-w", str(ws)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    _validate(out, zarr_version)
    if zarr_version == 3:
        for level in ("s0", "s1"):
            assert zarr.open_array(str(out / level), mode="r").metadata.dimension_names == SPACE
    shape, voxel, origin = _stated_grid(result.stdout)
    images = nz.from_ngff_zarr(str(out)).images
    levels = read_levels(out)
    assert len(images) == len(levels) == 2
    for i, (image, level) in enumerate(zip(images, levels, strict=True)):
        f = 2**i  # level i: voxels 2**i larger, centred half a coarse voxel further in
        expected = np.add(origin, np.multiply(voxel, (f - 1) / 2))
        assert image.dims == level.dims == SPACE
        assert image.axes_units == dict.fromkeys(SPACE, "nanometer")
        assert level.units == ("nanometer",) * 3
        assert list(image.data.shape) == list(level.shape) == [-(-n // f) for n in shape]
        np.testing.assert_allclose([image.scale[d] for d in SPACE], np.multiply(voxel, f))
        np.testing.assert_allclose([image.translation[d] for d in SPACE], expected, atol=1e-9)
        np.testing.assert_allclose(level.scale, np.multiply(voxel, f))
        np.testing.assert_allclose(level.translation, expected, atol=1e-9)


@pytest.mark.parametrize("zarr_version", [2, 3])
@pytest.mark.parametrize(
    ("shape", "channels", "dims"),
    [((6, 8, 10), None, SPACE), ((8, 10), None, ("y", "x")), ((6, 8, 10), 2, ("c", *SPACE))],
    ids=["3d", "2d", "channels"],
)
def test_writer_layouts_are_valid_ome_zarr(
    tmp_path: Path, zarr_version: int, shape: tuple[int, ...], channels: int | None, dims: tuple
) -> None:
    out = tmp_path / "out.zarr"
    voxel, origin = (6.0,) * len(shape), (1.0,) * len(shape)
    writer = create_ome_zarr(
        out,
        shape0=shape,
        voxel_size0=voxel,
        origin0=origin,
        dtype=np.uint8,
        n_levels=2,
        zarr_version=zarr_version,
        channels=channels,
        chunks=(4,) * len(shape),
    )
    lead = () if channels is None else (channels,)
    writer.write(0, (0,) * len(dims), np.ones(lead + shape, np.uint8))
    writer.downsample_level(0)
    _validate(out, zarr_version)
    if zarr_version == 3:
        assert zarr.open_array(str(out / "s0"), mode="r").metadata.dimension_names == dims
    image = nz.from_ngff_zarr(str(out)).images[1]
    assert image.dims == dims
    spatial = dims[-len(shape) :]
    np.testing.assert_allclose([image.scale[d] for d in spatial], np.multiply(voxel, 2))
    np.testing.assert_allclose([image.translation[d] for d in spatial], np.add(origin, 3.0))
    level = read_levels(out)[1]
    assert level.dims == dims
    assert level.shape == lead + tuple(-(-n // 2) for n in shape)
    np.testing.assert_allclose(level.scale, [*[1.0] * len(lead), *np.multiply(voxel, 2)])
    np.testing.assert_allclose(level.translation, [*[0.0] * len(lead), *np.add(origin, 3.0)])


def test_viewer_export_is_valid_ome_zarr(runner: CliRunner, ws: Path) -> None:
    out = ws / "view"
    result = runner.invoke(app, ["export-viewer", "em", "xr", "-o", str(out), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    _validate(out / "overlay.ome.zarr", 2)
    (image,) = nz.from_ngff_zarr(str(out / "overlay.ome.zarr")).images
    assert image.dims == ("c", *SPACE)
    (level,) = read_levels(out / "overlay.ome.zarr")
    assert level.dims == ("c", *SPACE)
    assert level.shape == tuple(image.data.shape)
    np.testing.assert_allclose(level.scale, [image.scale[d] for d in level.dims])
    np.testing.assert_allclose(level.translation, [image.translation[d] for d in level.dims])
