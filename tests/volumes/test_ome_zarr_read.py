"""Reading OME-Zarr 0.4 / 0.5: placement, axes, levels, single arrays, bad metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from numcodecs import Zstd

from coframe.core.errors import AxisError, FormatError, MetadataError, ParseError
from coframe.volumes.open import open_volume


def _ngff_image(
    data: np.ndarray, out: Path, version: str, *, scale: dict, translation: dict, units: str
) -> None:
    """Write ``data`` (z, y, x) as a 3-level OME-Zarr with ngff-zarr."""
    import ngff_zarr as nz

    image = nz.to_ngff_image(
        data,
        dims=["z", "y", "x"],
        scale=scale,
        translation=translation,
        axes_units={a: units for a in "zyx"},
    )
    multiscales = nz.to_multiscales(image, scale_factors=[2, 4], chunks=8)
    nz.to_ngff_zarr(str(out), multiscales, version=version)


def _cellmap_group(root: Path, data: np.ndarray, levels: int = 3, **extra: object) -> Path:
    """A CellMap-style image group: Zarr v2, ``/`` separator, zstd, s0..sN, half-voxel offsets."""
    group_path = root / "sample.zarr" / "recon-1" / "em" / "fibsem-uint8"
    store = zarr.storage.LocalStore(root / "sample.zarr")
    top = zarr.open_group(store, mode="w", zarr_format=2)
    group = top.require_group("recon-1/em/fibsem-uint8")
    datasets = []
    for i in range(levels):
        f = 2**i
        level = data[::f, ::f, ::f]
        arr = group.create_array(
            f"s{i}",
            shape=level.shape,
            chunks=(4, 8, 8),
            dtype=level.dtype,
            compressors=Zstd(level=3),
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        arr[...] = level
        datasets.append(
            {
                "path": f"s{i}",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [8.0 * f] * 3},
                    {"type": "translation", "translation": [8.0 * (f - 1) / 2] * 3},
                ],
            }
        )
    attrs = {
        "multiscales": [
            {
                "version": "0.4",
                "name": "/recon-1/em/fibsem-uint8",
                "axes": [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"],
                "datasets": datasets,
                "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}],
                **extra,
            }
        ]
    }
    (group_path / ".zattrs").write_text(json.dumps(attrs))
    return group_path


@pytest.fixture
def volume_data() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, size=(16, 24, 32), dtype=np.uint8)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngff_zarr_written_image_reads_with_its_placement(
    tmp_path: Path, volume_data: np.ndarray, version: str
) -> None:
    out = tmp_path / f"image-{version}.zarr"
    _ngff_image(
        volume_data,
        out,
        version,
        scale={"z": 40.0, "y": 8.0, "x": 8.0},
        translation={"z": 100.0, "y": -16.0, "x": 0.0},
        units="nanometer",
    )
    vol = open_volume(out)
    assert vol.format == "ome-zarr"
    assert vol.axes == ("z", "y", "x")
    assert vol.unit == "nanometer"
    assert vol.metadata["ngff_version"] == version
    assert [lvl.shape for lvl in vol.levels] == [(16, 24, 32), (8, 12, 16), (4, 6, 8)]
    assert vol.levels[0].voxel_size == (40.0, 8.0, 8.0)
    assert vol.levels[0].origin == (100.0, -16.0, 0.0)
    assert vol.levels[1].voxel_size == (80.0, 16.0, 16.0)
    # coarser levels are offset by half a level-0 voxel per factor of two
    assert vol.levels[1].origin == pytest.approx((120.0, -12.0, 4.0))
    np.testing.assert_array_equal(vol.levels[0].read(), volume_data)
    box = (slice(3, 9), slice(5, 17), slice(0, 7))
    np.testing.assert_array_equal(vol.levels[0].read(box), volume_data[box])


def test_micrometer_metadata_is_converted_into_the_workspace_unit(
    tmp_path: Path, volume_data: np.ndarray
) -> None:
    out = tmp_path / "xray.zarr"
    _ngff_image(
        volume_data,
        out,
        "0.4",
        scale={"z": 1.5, "y": 1.5, "x": 1.5},
        translation={"z": 10.0, "y": 0.0, "x": 0.0},
        units="micrometer",
    )
    vol = open_volume(out, unit="nanometer")
    assert vol.levels[0].voxel_size == pytest.approx((1500.0, 1500.0, 1500.0))
    assert vol.levels[0].origin == pytest.approx((10000.0, 0.0, 0.0))
    in_mm = open_volume(out, unit="mm")
    assert in_mm.unit == "millimeter"
    assert in_mm.levels[0].voxel_size == pytest.approx((0.0015,) * 3)


def test_cellmap_layout_group_and_single_array(tmp_path: Path, volume_data: np.ndarray) -> None:
    group = _cellmap_group(tmp_path, volume_data)
    assert (group / "s0" / "0" / "0" / "0").is_file()  # '/' chunk-key separator
    vol = open_volume(group)
    assert [lvl.path for lvl in vol.levels] == ["s0", "s1", "s2"]
    assert [lvl.voxel_size for lvl in vol.levels] == [(8.0,) * 3, (16.0,) * 3, (32.0,) * 3]
    assert [lvl.origin for lvl in vol.levels] == [(0.0,) * 3, (4.0,) * 3, (12.0,) * 3]
    assert vol.levels[0].chunks == (4, 8, 8)
    np.testing.assert_array_equal(vol.levels[2].read(), volume_data[::4, ::4, ::4])

    single = open_volume(group / "s1")
    assert len(single.levels) == 1
    assert single.levels[0].path == "s1"
    assert single.levels[0].voxel_size == (16.0,) * 3
    assert single.levels[0].origin == (4.0,) * 3
    assert single.metadata["group"] == str(group)
    np.testing.assert_array_equal(single.levels[0].read(), volume_data[::2, ::2, ::2])


def test_nested_dataset_path_of_ngff_zarr_opens_as_one_level(
    tmp_path: Path, volume_data: np.ndarray
) -> None:
    out = tmp_path / "nested.zarr"
    _ngff_image(
        volume_data,
        out,
        "0.5",
        scale={"z": 8.0, "y": 8.0, "x": 8.0},
        translation={"z": 0.0, "y": 0.0, "x": 0.0},
        units="nanometer",
    )
    vol = open_volume(out / "scale2" / "image")
    assert len(vol.levels) == 1
    assert vol.levels[0].voxel_size == (32.0,) * 3
    assert vol.levels[0].origin == (12.0,) * 3


def test_multiscale_level_transformations_apply_after_dataset_ones(
    tmp_path: Path, volume_data: np.ndarray
) -> None:
    group = _cellmap_group(tmp_path, volume_data, levels=2)
    attrs = json.loads((group / ".zattrs").read_text())
    attrs["multiscales"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [2.0, 1.0, 1.0]},
        {"type": "translation", "translation": [1000.0, 0.0, -50.0]},
    ]
    (group / ".zattrs").write_text(json.dumps(attrs))
    vol = open_volume(group)
    assert vol.levels[0].voxel_size == (16.0, 8.0, 8.0)
    assert vol.levels[0].origin == (1000.0, 0.0, -50.0)
    assert vol.levels[1].voxel_size == (32.0, 16.0, 16.0)
    assert vol.levels[1].origin == (1008.0, 4.0, -46.0)


def _write_5d(path: Path, shape: tuple[int, ...], axes: list[dict], version: int = 2) -> np.ndarray:
    """A one-level OME-Zarr with arbitrary axes; returns the data."""
    data = np.arange(int(np.prod(shape)), dtype=np.uint16).reshape(shape)
    group = zarr.open_group(zarr.storage.LocalStore(path), mode="w", zarr_format=version)
    group.create_array("0", shape=shape, chunks=shape, dtype=data.dtype)[...] = data
    ms = {
        "axes": axes,
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0] * (len(shape) - 3) + [2.0, 0.5, 0.5]}
                ],
            }
        ],
    }
    if version == 2:
        ms["version"] = "0.4"
        group.attrs["multiscales"] = [ms]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    return data


_TCZYX = [
    {"name": "t", "type": "time"},
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


@pytest.mark.parametrize("version", [2, 3])
def test_channel_and_time_axes_need_a_selection(tmp_path: Path, version: int) -> None:
    path = tmp_path / "tczyx.zarr"
    data = _write_5d(path, (2, 3, 4, 5, 6), _TCZYX, version)
    with pytest.raises(AxisError, match=r"'t'.*--select t=INDEX"):
        open_volume(path)
    with pytest.raises(AxisError, match=r"'c'.*--select c=INDEX"):
        open_volume(path, axis_select={"t": 1})
    vol = open_volume(path, axis_select={"t": 1, "c": 2})
    assert vol.axes == ("z", "y", "x")
    assert vol.levels[0].voxel_size == (2000.0, 500.0, 500.0)
    assert vol.metadata["selected"] == {"t": 1, "c": 2}
    np.testing.assert_array_equal(vol.levels[0].read(), data[1, 2])
    np.testing.assert_array_equal(
        vol.levels[0].read((slice(1, 3), slice(0, 2), slice(4, 6))), data[1, 2, 1:3, 0:2, 4:6]
    )


def test_bad_selections_are_axis_errors(tmp_path: Path) -> None:
    path = tmp_path / "tczyx.zarr"
    _write_5d(path, (2, 3, 4, 5, 6), _TCZYX)
    with pytest.raises(AxisError, match="out of range"):
        open_volume(path, axis_select={"t": 0, "c": 3})
    with pytest.raises(AxisError, match="names no axis"):
        open_volume(path, axis_select={"t": 0, "c": 0, "q": 1})
    with pytest.raises(AxisError, match="spatial axis"):
        open_volume(path, axis_select={"t": 0, "c": 0, "z": 1})


def test_singleton_channel_is_dropped_and_xyz_order_is_put_in_zyx(tmp_path: Path) -> None:
    path = tmp_path / "cxyz.zarr"
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "x", "type": "space", "unit": "nanometer"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "z", "type": "space", "unit": "nanometer"},
    ]
    data = _write_5d(path, (1, 4, 5, 6), axes)
    vol = open_volume(path)
    assert vol.axes == ("z", "y", "x")
    # file scale is (c, x, y, z) = (1, 2, 0.5, 0.5)
    assert vol.levels[0].voxel_size == (0.5, 0.5, 2.0)
    assert vol.levels[0].shape == (6, 5, 4)
    np.testing.assert_array_equal(vol.levels[0].read(), data[0].transpose(2, 1, 0))


def test_non_spatial_axis_names_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "abc.zarr"
    _write_5d(path, (4, 5, 6), [{"name": n} for n in "abc"])
    with pytest.raises(AxisError, match=r"0 spatial axes among a\(untyped\)"):
        open_volume(path)


def test_space_axes_with_other_names_are_taken_in_order(tmp_path: Path) -> None:
    path = tmp_path / "pqr.zarr"
    axes = [{"name": n, "type": "space", "unit": "nm"} for n in ("p", "q", "r")]
    _write_5d(path, (4, 5, 6), axes)
    vol = open_volume(path)
    assert vol.axes == ("z", "y", "x")
    assert vol.levels[0].shape == (4, 5, 6)
    assert vol.metadata["file_axes"] == ["p", "q", "r"]


def test_labels_group_defaults_to_labels_modality(tmp_path: Path, volume_data: np.ndarray) -> None:
    group = _cellmap_group(tmp_path, volume_data, levels=1)
    attrs = json.loads((group / ".zattrs").read_text())
    attrs["image-label"] = {"version": "0.4"}
    (group / ".zattrs").write_text(json.dumps(attrs))
    assert open_volume(group).modality == "labels"
    assert open_volume(group, modality="fibsem").modality == "fibsem"


def test_plain_zarr_array_needs_a_voxel_size(tmp_path: Path) -> None:
    path = tmp_path / "plain.zarr"
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    zarr.create_array(zarr.storage.LocalStore(path), shape=data.shape, dtype=data.dtype)[...] = data
    with pytest.raises(MetadataError, match="--voxel-size"):
        open_volume(path)
    vol = open_volume(path, voxel_size=(40, 8, 8))
    assert vol.levels[0].voxel_size == (40.0, 8.0, 8.0)
    np.testing.assert_array_equal(vol.levels[0].read(), data)


def test_unitless_axes_need_an_input_unit(tmp_path: Path) -> None:
    path = tmp_path / "nounit.zarr"
    _write_5d(path, (4, 5, 6), [{"name": n, "type": "space"} for n in "zyx"])
    with pytest.raises(MetadataError, match="--input-unit"):
        open_volume(path)
    vol = open_volume(path, input_unit="um")
    assert vol.levels[0].voxel_size == (2000.0, 500.0, 500.0)


def test_corrupt_and_incomplete_metadata_are_format_errors(
    tmp_path: Path, volume_data: np.ndarray
) -> None:
    group = _cellmap_group(tmp_path, volume_data, levels=2)
    zattrs = group / ".zattrs"
    good = zattrs.read_text()

    zattrs.write_text('{"multiscales": [')
    with pytest.raises(ParseError, match=r"invalid JSON in .*fibsem-uint8/\.zattrs at line 1"):
        open_volume(group)

    attrs = json.loads(good)
    attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] = [16.0, 16.0]
    zattrs.write_text(json.dumps(attrs))
    with pytest.raises(FormatError, match=r"scale \[16.0, 16.0\] .* expected 3 numbers"):
        open_volume(group)

    attrs = json.loads(good)
    attrs["multiscales"][0]["datasets"].append({"path": "s7", "coordinateTransformations": []})
    zattrs.write_text(json.dumps(attrs))
    with pytest.raises(FormatError, match="array 's7' .* is missing"):
        open_volume(group)


def test_group_without_multiscales_lists_the_image_groups_inside(
    tmp_path: Path, volume_data: np.ndarray
) -> None:
    _cellmap_group(tmp_path, volume_data, levels=1)
    with pytest.raises(FormatError, match=r"no OME-Zarr 'multiscales'.*recon-1/em/fibsem-uint8"):
        open_volume(tmp_path / "sample.zarr")
