"""open_volume: format detection, overrides, units, flag parsing, level choice, box reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from samples import cellmap_pyramid

from coframe.core.errors import (
    AxisError,
    DimensionError,
    FormatError,
    InputNotFoundError,
    LevelError,
    MetadataError,
    UnitError,
)
from coframe.volumes.open import detect_format, open_volume, parse_floats, parse_select
from coframe.volumes.volume import Volume


@pytest.fixture
def pyramid(tmp_path: Path) -> Path:
    data = np.arange(16 * 16 * 16, dtype=np.uint16).reshape(16, 16, 16)
    return cellmap_pyramid(tmp_path / "em.zarr", data)


def test_detect_format_by_metadata_magic_and_name(tmp_path: Path, pyramid: Path) -> None:
    assert detect_format(pyramid) == "ome-zarr"
    assert detect_format(pyramid / "s0") == "ome-zarr"
    assert detect_format(pyramid / ".zattrs") == "ome-zarr"
    n5 = tmp_path / "c.n5"
    n5.mkdir()
    (n5 / "attributes.json").write_text(json.dumps({"n5": "2.3.0"}))
    assert detect_format(n5) == "n5"
    tif = tmp_path / "image.dat"
    tifffile.imwrite(tif, np.zeros((4, 4), np.uint8))
    assert detect_format(tif) == "tiff"  # by magic bytes, whatever the name
    (tmp_path / "junk.mrc").write_bytes(b"\x00" * 64)
    assert detect_format(tmp_path / "junk.mrc") == "mrc"  # by name; the reader judges content
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="holds no zarr.json"):
        detect_format(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FormatError, match="cannot tell the format of .*notes.txt"):
        detect_format(tmp_path / "notes.txt")
    with pytest.raises(InputNotFoundError, match="missing.zarr does not exist"):
        detect_format(tmp_path / "missing.zarr")


def test_metadata_file_given_directly_opens_its_image(pyramid: Path) -> None:
    assert len(open_volume(pyramid / ".zattrs").levels) == 4


def test_file_url_opens_like_a_path(pyramid: Path) -> None:
    vol = open_volume(pyramid.as_uri())
    assert vol.source == str(pyramid)
    assert vol.levels[0].shape == (16, 16, 16)


def test_voxel_size_override_rescales_every_level_consistently(pyramid: Path) -> None:
    vol = open_volume(pyramid, voxel_size=(0.04, 0.01, 0.01), input_unit="um")
    assert vol.metadata["placed_by"] == "--voxel-size"
    assert vol.levels[0].voxel_size == pytest.approx((40.0, 10.0, 10.0))
    assert vol.levels[1].voxel_size == pytest.approx((80.0, 20.0, 20.0))
    # the half-voxel offset of s1 follows the new level-0 voxel size
    assert vol.levels[1].origin == pytest.approx((20.0, 5.0, 5.0))


def test_origin_override_moves_every_level(pyramid: Path) -> None:
    vol = open_volume(pyramid, origin=(1.0, 2.0, 3.0), input_unit="um")
    assert vol.levels[0].origin == pytest.approx((1000.0, 2000.0, 3000.0))
    assert vol.levels[1].origin == pytest.approx((1004.0, 2004.0, 3004.0))
    assert vol.levels[0].voxel_size == (8.0, 8.0, 8.0)


def test_override_errors_name_the_flag(pyramid: Path) -> None:
    with pytest.raises(MetadataError, match="--voxel-size has 2 values .* give 1 or 3"):
        open_volume(pyramid, voxel_size=(1, 2))
    with pytest.raises(MetadataError, match="--voxel-size .* expected positive"):
        open_volume(pyramid, voxel_size=0)
    with pytest.raises(MetadataError, match="--origin has 4 values"):
        open_volume(pyramid, origin=(1, 2, 3, 4))
    with pytest.raises(UnitError, match="'parsec' in --unit"):
        open_volume(pyramid, unit="parsec")
    with pytest.raises(UnitError, match="'furlong' in --input-unit"):
        open_volume(pyramid, voxel_size=1, input_unit="furlong")
    with pytest.raises(MetadataError, match="--modality"):
        open_volume(pyramid, modality="mri")


def test_unknown_unit_in_the_file_is_a_unit_error(tmp_path: Path) -> None:
    path = cellmap_pyramid(
        tmp_path / "far.zarr", np.zeros((4, 4, 4), np.uint8), levels=1, unit="parsec"
    )
    with pytest.raises(UnitError, match="unknown unit 'parsec' for axis z"):
        open_volume(path)
    # an explicit voxel size places the image without the file's unit
    assert open_volume(path, voxel_size=8).levels[0].voxel_size == (8.0, 8.0, 8.0)


def test_parse_floats_and_select() -> None:
    assert parse_floats("1000", flag="--voxel-size") == (1000.0,)
    assert parse_floats("40, 8,8", flag="--voxel-size") == (40.0, 8.0, 8.0)
    with pytest.raises(MetadataError, match="--voxel-size 'abc'"):
        parse_floats("abc", flag="--voxel-size")
    with pytest.raises(MetadataError, match="1 to 3 finite numbers"):
        parse_floats("1,2,3,4", flag="--origin")
    assert parse_select(["c=0", "T=2"]) == {"c": 0, "t": 2}
    assert parse_select(None) == {}
    for bad in (["c"], ["c=-1"], ["=1"], ["c=x"]):
        with pytest.raises(AxisError, match="AXIS=INDEX"):
            parse_select(bad)
    with pytest.raises(AxisError, match="twice"):
        parse_select(["c=0", "c=1"])


def test_levels_finest_first_and_nearest_level(pyramid: Path) -> None:
    vol = open_volume(pyramid)
    assert [lvl.voxel_size[0] for lvl in vol.levels] == [8.0, 16.0, 32.0, 64.0]
    assert vol.nearest_level(8.0) == 0
    assert vol.nearest_level(30.0) == 2
    assert vol.nearest_level((60.0, 70.0, 70.0)) == 3
    assert vol.nearest_level(1000.0) == 3
    assert vol.level("s2") is vol.levels[2]
    with pytest.raises(LevelError, match="level 9 does not exist .*0..3"):
        vol.level(9)
    with pytest.raises(LevelError, match="'s9' does not exist"):
        vol.level("s9")


def test_level_order_does_not_depend_on_the_listing_order(tmp_path: Path) -> None:
    path = cellmap_pyramid(tmp_path / "rev.zarr", np.zeros((8, 8, 8), np.uint8), levels=3)
    attrs = json.loads((path / ".zattrs").read_text())
    attrs["multiscales"][0]["datasets"].reverse()
    (path / ".zattrs").write_text(json.dumps(attrs))
    assert [lvl.path for lvl in open_volume(path).levels] == ["s0", "s1", "s2"]


def test_read_box_and_dask_view_agree_with_the_data(pyramid: Path) -> None:
    data = np.arange(16 * 16 * 16, dtype=np.uint16).reshape(16, 16, 16)
    vol: Volume = open_volume(pyramid)
    result = vol.read_box((16.0, 0.0, 40.0), (40.0, 20.0, 64.0), level=0)
    assert result is not None
    block, origin = result
    np.testing.assert_array_equal(block, data[2:6, 0:3, 5:9])
    assert origin == (16.0, 0.0, 40.0)
    assert vol.read_box((1e6,) * 3, (2e6,) * 3) is None
    np.testing.assert_array_equal(vol.levels[1].to_dask().compute(), data[::2, ::2, ::2])
    with pytest.raises(DimensionError):
        vol.levels[0].read((slice(0, 2), slice(0, 2)))
    with pytest.raises(DimensionError):
        vol.levels[0].read((slice(0, 2), slice(0, 2), slice(10, 20)))


def test_box_read_fetches_only_the_chunks_under_it(
    pyramid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = open_volume(pyramid)
    keys: list[str] = []
    original = zarr.storage.LocalStore.get

    async def counting_get(
        self: zarr.storage.LocalStore, key: str, *args: object, **kwargs: object
    ) -> object:
        keys.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting_get)
    # chunks are 4 x 4 x 4: this box lies in chunks z 1, y 0..1, x 2
    out = vol.levels[0].read((slice(5, 7), slice(2, 6), slice(8, 12)))
    assert out.shape == (2, 4, 4)
    assert sorted(keys) == ["s0/1.0.2", "s0/1.1.2"]


def test_one_box_syntax_for_every_command() -> None:
    from coframe.volumes.open import parse_box

    assert parse_box("0,1,2:10,11,12") == ((0.0, 1.0, 2.0), (10.0, 11.0, 12.0))
    assert parse_box("0,1..10,11") == ((0.0, 1.0), (10.0, 11.0))
    assert parse_box("0,1:10,11", 2) == ((0.0, 1.0), (10.0, 11.0))
    for bad in ("0,0,0,10,10,10", "0,0:1,1,1", "1:2", "0,0,0:1,x,1", "5,5,5:1,10,10"):
        with pytest.raises(MetadataError, match="--box"):
            parse_box(bad)
    with pytest.raises(MetadataError, match="3 axes"):
        parse_box("0,0:1,1", 3)
