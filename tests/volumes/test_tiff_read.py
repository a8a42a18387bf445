"""Reading TIFF: 2D, stacks, ImageJ and OME metadata, pyramids, lazy reads, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import tifffile.zarr

from coframe.core.errors import AxisError, FormatError, MetadataError, UnitError
from coframe.volumes.open import detect_format, open_volume


@pytest.fixture
def stack() -> np.ndarray:
    return (np.arange(6 * 20 * 30) % 251).astype(np.uint8).reshape(6, 20, 30)


def test_plain_2d_tiff_needs_a_voxel_size(tmp_path: Path) -> None:
    path = tmp_path / "tem.tif"
    image = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    tifffile.imwrite(path, image)
    assert detect_format(path) == "tiff"
    with pytest.raises(MetadataError, match="no physical voxel size .*--voxel-size"):
        open_volume(path)
    vol = open_volume(path, voxel_size=2.5)
    assert vol.axes == ("y", "x")
    assert vol.levels[0].voxel_size == (2.5, 2.5)
    np.testing.assert_array_equal(vol.levels[0].read(), image)


def test_plain_multipage_stack_is_z(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    vol = open_volume(path, voxel_size=(1, 0.5, 0.5), input_unit="um")
    assert vol.axes == ("z", "y", "x")
    assert vol.levels[0].voxel_size == (1000.0, 500.0, 500.0)
    box = (slice(2, 5), slice(3, 9), slice(10, 30))
    np.testing.assert_array_equal(vol.levels[0].read(box), stack[box])


@pytest.mark.parametrize("unit", ["micron", "\\u00B5m", "um"])
def test_imagej_resolution_spacing_and_unit(tmp_path: Path, stack: np.ndarray, unit: str) -> None:
    path = tmp_path / "xray.tif"
    tifffile.imwrite(
        path,
        stack,
        imagej=True,
        resolution=(1 / 0.65, 1 / 0.65),
        metadata={"spacing": 1.3, "unit": unit, "axes": "ZYX"},
    )
    vol = open_volume(path)
    assert vol.metadata["calibration"] == "imagej"
    assert vol.levels[0].voxel_size == pytest.approx((1300.0, 650.0, 650.0))
    np.testing.assert_array_equal(vol.levels[0].read(), stack)


def test_imagej_hyperstack_needs_selection(tmp_path: Path) -> None:
    path = tmp_path / "hyper.tif"
    data = np.arange(2 * 4 * 3 * 8 * 10, dtype=np.uint16).reshape(2, 4, 3, 8, 10)
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(0.5, 0.5),
        metadata={"axes": "TZCYX", "spacing": 4.0, "unit": "nm"},
    )
    with pytest.raises(AxisError, match="--select t=INDEX"):
        open_volume(path)
    vol = open_volume(path, axis_select={"t": 1, "c": 2})
    assert vol.levels[0].shape == (4, 8, 10)
    assert vol.levels[0].voxel_size == (4.0, 2.0, 2.0)
    np.testing.assert_array_equal(vol.levels[0].read(), data[1, :, 2])


def test_rgb_samples_need_selection(tmp_path: Path) -> None:
    path = tmp_path / "rgb.tif"
    data = np.zeros((8, 10, 3), np.uint8)
    data[..., 1] = 7
    tifffile.imwrite(path, data, photometric="rgb")
    with pytest.raises(AxisError, match="--select s=INDEX"):
        open_volume(path, voxel_size=1)
    vol = open_volume(path, voxel_size=1, axis_select={"s": 1})
    np.testing.assert_array_equal(vol.levels[0].read(), data[..., 1])


def test_planes_stored_as_channels_name_both_readings(tmp_path: Path) -> None:
    """A 3-plane stack stored as planar RGB: one channel by --select, or a hint to relabel it."""
    path = tmp_path / "three.tif"
    data = np.arange(3 * 8 * 10, dtype=np.uint8).reshape(3, 8, 10)
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate")
    with pytest.raises(AxisError, match=r"--select s=INDEX; if its entries are z slices"):
        open_volume(path, voxel_size=1)
    vol = open_volume(path, voxel_size=1, axis_select={"s": 2})
    np.testing.assert_array_equal(vol.levels[0].read(), data[2])
    # a 3D stack with a channel axis gets no such hint
    hyper = tmp_path / "zcyx.tif"
    tifffile.imwrite(
        hyper, np.zeros((2, 3, 8, 10), np.uint8), imagej=True, metadata={"axes": "ZCYX"}
    )
    with pytest.raises(AxisError, match=r"--select c=INDEX$"):
        open_volume(hyper, voxel_size=1)


def test_ome_tiff_physical_sizes(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        path,
        stack,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 4.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 4.0,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 0.05,
            "PhysicalSizeZUnit": "µm",
        },
    )
    vol = open_volume(path)
    assert vol.metadata["calibration"] == "ome"
    assert vol.levels[0].voxel_size == pytest.approx((50.0, 4.0, 4.0))


def test_ome_plane_position_places_voxel_zero_only_with_a_length_unit(
    tmp_path: Path, stack: np.ndarray
) -> None:
    path = tmp_path / "placed.ome.tif"
    sizes = {f"PhysicalSize{a}": 0.5 for a in "XYZ"}  # µm by default
    n = stack.shape[0]
    planes = {
        "PositionX": [0.002] * n,
        "PositionXUnit": ["mm"] * n,
        "PositionY": [3.0] * n,
        "PositionYUnit": ["µm"] * n,
        "PositionZ": [7.0 + 0.5 * i for i in range(n)],  # OME's default unit: reference frame
    }
    tifffile.imwrite(path, stack, ome=True, metadata={"axes": "ZYX", **sizes, "Plane": planes})
    vol = open_volume(path)
    assert vol.levels[0].origin == pytest.approx((0.0, 3000.0, 2000.0))
    planes["PositionXUnit"] = ["pixel"] * n
    tifffile.imwrite(path, stack, ome=True, metadata={"axes": "ZYX", **sizes, "Plane": planes})
    with pytest.raises(UnitError, match="PositionXUnit 'pixel' in the OME-XML of .*placed"):
        open_volume(path)


def test_centimetre_resolution_unit_calibrates_2d(tmp_path: Path) -> None:
    path = tmp_path / "scan.tif"
    tifffile.imwrite(
        path, np.zeros((8, 8), np.uint8), resolution=(1e5, 1e5), resolutionunit="CENTIMETER"
    )
    assert open_volume(path).levels[0].voxel_size == pytest.approx((100.0, 100.0))


def test_unknown_imagej_unit_is_a_unit_error(tmp_path: Path) -> None:
    path = tmp_path / "parsec.tif"
    tifffile.imwrite(
        path, np.zeros((8, 8), np.uint8), imagej=True, resolution=(1, 1), metadata={"unit": "pc"}
    )
    with pytest.raises(UnitError, match="unknown unit 'pc'.*--voxel-size"):
        open_volume(path)


def test_pyramidal_tiff_levels_finest_first(tmp_path: Path) -> None:
    path = tmp_path / "pyramid.tif"
    base = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            base, subifds=2, tile=(16, 16), resolution=(1e6, 1e6), resolutionunit="CENTIMETER"
        )
        tif.write(base[::2, ::2], subfiletype=1, tile=(16, 16))
        tif.write(base[::4, ::4], subfiletype=1, tile=(16, 16))
    vol = open_volume(path)
    assert [lvl.shape for lvl in vol.levels] == [(64, 64), (32, 32), (16, 16)]
    assert vol.levels[2].voxel_size == pytest.approx((40.0, 40.0))
    assert vol.levels[2].origin == pytest.approx((15.0, 15.0))
    assert vol.nearest_level(25.0) == 1
    np.testing.assert_array_equal(vol.levels[1].read(), base[::2, ::2])


def test_box_read_decodes_only_the_pages_and_tiles_under_it(
    tmp_path: Path, stack: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, stack, tile=(16, 16))
    vol = open_volume(path, voxel_size=1)
    keys: list[str] = []
    original = tifffile.zarr.ZarrTiffStore.get

    async def counting_get(
        self: tifffile.zarr.ZarrTiffStore, key: str, *args: object, **kwargs: object
    ) -> object:
        keys.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(tifffile.zarr.ZarrTiffStore, "get", counting_get)
    box = (slice(2, 4), slice(0, 10), slice(20, 30))
    np.testing.assert_array_equal(vol.levels[0].read(box), stack[box])
    chunk_keys = [k for k in keys if not k.endswith((".zarray", ".zattrs", "zarr.json"))]
    # 2 pages x 1 tile row x 1 tile column (x 16..31)
    assert len(chunk_keys) == 2


def test_truncated_and_corrupt_tiffs_are_format_errors(tmp_path: Path, stack: np.ndarray) -> None:
    good = tmp_path / "good.tif"
    tifffile.imwrite(
        good,
        stack,
        imagej=True,
        resolution=(1, 1),
        metadata={"unit": "um", "spacing": 1, "axes": "ZYX"},
    )
    assert open_volume(good).levels[0].shape == stack.shape
    raw = good.read_bytes()
    for fraction in (0.3, 0.75):  # both cut into the image data
        cut = tmp_path / f"cut{fraction}.tif"
        cut.write_bytes(raw[: int(len(raw) * fraction)])
        with pytest.raises(FormatError, match=f"{cut.name} is truncated"):
            open_volume(cut)
    header_only = tmp_path / "header.tif"
    header_only.write_bytes(raw[:60])
    with pytest.raises(FormatError, match="header.tif"):
        open_volume(header_only)
    fake = tmp_path / "fake.tif"
    fake.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(FormatError, match="cannot read .*fake.tif as TIFF"):
        open_volume(fake)
