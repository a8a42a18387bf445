"""Reading COSEM-style N5: x-fastest arrays come back as (z, y, x), placed by their attributes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
from typer.testing import CliRunner

from coframe.cli import app
from coframe.core.errors import FormatError, MetadataError
from coframe.volumes.open import detect_format, open_volume


def _write_dataset(path: Path, data: np.ndarray, block: tuple[int, int, int]) -> None:
    """Write a (z, y, x) array as an N5 dataset (dimensions in x, y, z order) with tensorstore."""
    store = ts.open(
        {
            "driver": "n5",
            "kvstore": {"driver": "file", "path": str(path)},
            "metadata": {
                "dimensions": list(data.shape[::-1]),
                "blockSize": list(block[::-1]),
                "dataType": str(data.dtype),
                "compression": {"type": "gzip"},
            },
        },
        create=True,
    ).result()
    store[...] = data.T


def _transform(scale: float, translate: float) -> dict:
    return {
        "axes": ["z", "y", "x"],
        "units": ["nm", "nm", "nm"],
        "scale": [scale] * 3,
        "translate": [translate] * 3,
    }


def _cosem_group(root: Path, data: np.ndarray, *, per_array_transform: bool = True) -> Path:
    """An N5 container with a COSEM multiscale group em/fibsem-uint8 of 3 levels."""
    (root / "sample.n5").mkdir(parents=True)
    (root / "sample.n5" / "attributes.json").write_text(json.dumps({"n5": "2.3.0"}))
    group = root / "sample.n5" / "em" / "fibsem-uint8"
    datasets = []
    for i in range(3):
        f = 2**i
        _write_dataset(group / f"s{i}", np.ascontiguousarray(data[::f, ::f, ::f]), (2, 4, 8))
        transform = _transform(8.0 * f, 8.0 * (f - 1) / 2)
        datasets.append({"path": f"s{i}", "transform": transform})
        if per_array_transform:
            attrs_file = group / f"s{i}" / "attributes.json"
            attrs = json.loads(attrs_file.read_text())
            attrs["pixelResolution"] = {"dimensions": [8.0 * f] * 3, "unit": "nm"}
            attrs["transform"] = transform
            attrs_file.write_text(json.dumps(attrs))
    group_attrs = {
        "axes": ["x", "y", "z"],
        "units": ["nm", "nm", "nm"],
        "scales": [[1, 1, 1], [2, 2, 2], [4, 4, 4]],
        "pixelResolution": {"dimensions": [8.0, 8.0, 8.0], "unit": "nm"},
        "multiscales": [{"name": None, "datasets": datasets}],
    }
    (group / "attributes.json").write_text(json.dumps(group_attrs))
    return group


@pytest.fixture
def anisotropic() -> np.ndarray:
    """Distinct sizes per axis so a wrong axis order cannot go unnoticed."""
    return np.arange(8 * 12 * 20, dtype=np.uint16).reshape(8, 12, 20)


def test_cosem_group_reads_in_zyx_order_with_every_level(
    tmp_path: Path, anisotropic: np.ndarray
) -> None:
    group = _cosem_group(tmp_path, anisotropic)
    assert detect_format(group) == "n5"
    vol = open_volume(group)
    assert vol.format == "n5"
    assert vol.axes == ("z", "y", "x")
    assert [lvl.path for lvl in vol.levels] == ["s0", "s1", "s2"]
    assert vol.levels[0].shape == (8, 12, 20)
    assert vol.levels[0].chunks == (2, 4, 8)
    assert [lvl.voxel_size for lvl in vol.levels] == [(8.0,) * 3, (16.0,) * 3, (32.0,) * 3]
    assert [lvl.origin for lvl in vol.levels] == [(0.0,) * 3, (4.0,) * 3, (12.0,) * 3]
    np.testing.assert_array_equal(vol.levels[0].read(), anisotropic)
    box = (slice(1, 6), slice(3, 11), slice(7, 19))
    np.testing.assert_array_equal(vol.levels[0].read(box), anisotropic[box])
    np.testing.assert_array_equal(vol.levels[2].read(), anisotropic[::4, ::4, ::4])


def test_per_array_transform_places_an_anisotropic_level_in_mixed_units(
    tmp_path: Path, anisotropic: np.ndarray
) -> None:
    group = _cosem_group(tmp_path, anisotropic)
    transform = {
        "axes": ["z", "y", "x"],
        "units": ["um", "nm", "nm"],
        "scale": [0.03, 4.0, 5.0],
        "translate": [1.0, 20.0, 30.0],
    }
    attrs_file = group / "s0" / "attributes.json"
    attrs = json.loads(attrs_file.read_text())
    attrs["transform"] = transform
    attrs["pixelResolution"] = {"dimensions": [5.0, 4.0, 30.0], "unit": "nm"}  # x, y, z
    attrs_file.write_text(json.dumps(attrs))
    group_attrs = json.loads((group / "attributes.json").read_text())
    group_attrs["multiscales"][0]["datasets"] = [{"path": "s0", "transform": transform}]
    del group_attrs["pixelResolution"], group_attrs["scales"]
    (group / "attributes.json").write_text(json.dumps(group_attrs))
    s0 = open_volume(group).levels[0]
    assert s0.voxel_size == pytest.approx((30.0, 4.0, 5.0))
    assert s0.origin == pytest.approx((1000.0, 20.0, 30.0))


def _lone_dataset(path: Path, data: np.ndarray, transform: dict) -> Path:
    """One N5 dataset (no group) placed by ``transform``."""
    _write_dataset(path, data, (2, 4, 8))
    attrs = json.loads((path / "attributes.json").read_text())
    attrs["transform"] = transform
    (path / "attributes.json").write_text(json.dumps(attrs))
    return path


_XYZ = {"scale": [5.0, 4.0, 30.0], "translate": [50.0, 40.0, 300.0], "units": ["nm"] * 3}
_ZYX = {"scale": [30.0, 4.0, 5.0], "translate": [300.0, 40.0, 50.0], "units": ["nm"] * 3}


@pytest.mark.parametrize(
    "transform",
    [
        {"axes": ["x", "y", "z"], **_XYZ},
        {"axes": ["x", "y", "z"], "ordering": "F", **_XYZ},
        {"axes": ["z", "y", "x"], "ordering": "C", **_ZYX},
        {"axes": ["z", "y", "x"], **_ZYX},
        {"axes": ["y", "z", "x"], **{k: [v[1], v[0], v[2]] for k, v in _ZYX.items()}},
    ],
    ids=["xyz", "xyz-F", "zyx-C", "zyx", "yzx"],
)
def test_transform_axes_are_read_by_name_whatever_order_they_are_listed_in(
    tmp_path: Path, anisotropic: np.ndarray, runner: CliRunner, transform: dict
) -> None:
    path = _lone_dataset(tmp_path / "x.n5" / "raw", anisotropic, transform)
    vol = open_volume(path)
    assert vol.levels[0].shape == (8, 12, 20)
    assert vol.levels[0].voxel_size == (30.0, 4.0, 5.0)
    assert vol.levels[0].origin == (300.0, 40.0, 50.0)
    assert vol.metadata["file_axes"] == ["x", "y", "z"]
    np.testing.assert_array_equal(vol.levels[0].read(), anisotropic)
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["levels"][0]["shape"] == [8, 12, 20]


def test_metadata_that_disagrees_is_refused_naming_both_fields(
    tmp_path: Path, anisotropic: np.ndarray
) -> None:
    group = _cosem_group(tmp_path, anisotropic)
    s1 = group / "s1" / "attributes.json"
    good = s1.read_text()
    attrs = json.loads(good)
    attrs["pixelResolution"]["dimensions"] = [16.0, 16.0, 40.0]
    s1.write_text(json.dumps(attrs))
    with pytest.raises(
        MetadataError,
        match=r"transform\.scale in .*s1/attributes\.json gives \(16 nm, 16 nm, 16 nm\) but "
        r"voxel size from pixelResolution in .*s1/attributes\.json gives \(16 nm, 16 nm, 40 nm\) "
        r"\(x, y, z\): the two disagree on the scale",
    ):
        open_volume(group)

    attrs = json.loads(good)
    attrs["transform"]["translate"] = [8.0, 4.0, 4.0]
    s1.write_text(json.dumps(attrs))
    with pytest.raises(
        MetadataError,
        match=r"transform\.translate in .*s1/attributes\.json .* but "
        r"multiscales\[0\]\.datasets\[path=s1\]\.transform\.translate in .*disagree on the "
        "translation",
    ):
        open_volume(group)

    s1.write_text(good)
    group_attrs = json.loads((group / "attributes.json").read_text())
    group_attrs["pixelResolution"]["dimensions"] = [8.0, 8.0, 10.0]
    (group / "attributes.json").write_text(json.dumps(group_attrs))
    with pytest.raises(
        MetadataError,
        match=r"pixelResolution in .*fibsem-uint8/attributes\.json times scales\[0\]",
    ):
        open_volume(group)


def test_axis_names_that_contradict_the_group_axes_or_a_bad_ordering_are_refused(
    tmp_path: Path, anisotropic: np.ndarray
) -> None:
    group = _cosem_group(tmp_path, anisotropic)
    attrs_file = group / "s0" / "attributes.json"
    attrs = json.loads(attrs_file.read_text())
    attrs["transform"]["axes"] = ["x", "y", "z"]
    attrs["transform"]["ordering"] = "C"  # says z is the fastest dimension
    attrs_file.write_text(json.dumps(attrs))
    with pytest.raises(
        MetadataError,
        match=r"transform\.axes = \['x', 'y', 'z'\] in .*s0/attributes\.json \(ordering 'C'\) "
        r"puts the N5 dimensions in order \['z', 'y', 'x'\] but axes in "
        r".*fibsem-uint8/attributes\.json lists \['x', 'y', 'z'\]",
    ):
        open_volume(group)
    attrs["transform"]["ordering"] = "row-major"
    attrs_file.write_text(json.dumps(attrs))
    with pytest.raises(FormatError, match=r"transform\.ordering = 'row-major' .* expected \"C\""):
        open_volume(group)


def test_scales_and_pixel_resolution_without_transforms(
    tmp_path: Path, anisotropic: np.ndarray
) -> None:
    group = _cosem_group(tmp_path, anisotropic, per_array_transform=False)
    attrs = json.loads((group / "attributes.json").read_text())
    del attrs["multiscales"]
    attrs["pixelResolution"] = {"dimensions": [4.0, 5.0, 6.0], "unit": "nm"}  # x, y, z
    (group / "attributes.json").write_text(json.dumps(attrs))
    vol = open_volume(group)
    assert vol.levels[0].voxel_size == (6.0, 5.0, 4.0)
    assert vol.levels[1].voxel_size == (12.0, 10.0, 8.0)
    # half a level-0 voxel per factor of two, as for block averaging
    assert vol.levels[1].origin == (3.0, 2.5, 2.0)
    assert vol.levels[2].origin == (9.0, 7.5, 6.0)


def test_scales_shorter_than_the_levels_is_a_format_error(
    tmp_path: Path, anisotropic: np.ndarray
) -> None:
    group = _cosem_group(tmp_path, anisotropic, per_array_transform=False)
    attrs = json.loads((group / "attributes.json").read_text())
    for entry in attrs["multiscales"][0]["datasets"]:
        del entry["transform"]
    attrs["scales"] = attrs["scales"][:2]
    (group / "attributes.json").write_text(json.dumps(attrs))
    with pytest.raises(FormatError, match=r"scales in .*has 2 entries but level 2 needs"):
        open_volume(group)


def test_single_dataset_is_placed_by_its_group(tmp_path: Path, anisotropic: np.ndarray) -> None:
    group = _cosem_group(tmp_path, anisotropic, per_array_transform=False)
    vol = open_volume(group / "s1")
    assert len(vol.levels) == 1
    assert vol.levels[0].voxel_size == (16.0,) * 3
    assert vol.levels[0].origin == (4.0,) * 3
    assert vol.metadata["group"] == str(group)
    np.testing.assert_array_equal(vol.levels[0].read(), anisotropic[::2, ::2, ::2])


def test_lone_dataset_without_metadata_needs_a_voxel_size(
    tmp_path: Path, anisotropic: np.ndarray
) -> None:
    path = tmp_path / "lone.n5" / "raw"
    _write_dataset(path, anisotropic, (4, 4, 4))
    with pytest.raises(MetadataError, match="--voxel-size"):
        open_volume(path)
    vol = open_volume(path, voxel_size=(30, 4, 4))
    assert vol.levels[0].voxel_size == (30.0, 4.0, 4.0)
    np.testing.assert_array_equal(vol.levels[0].read(), anisotropic)


def test_nearest_level_picks_by_voxel_size(tmp_path: Path, anisotropic: np.ndarray) -> None:
    vol = open_volume(_cosem_group(tmp_path, anisotropic))
    assert vol.nearest_level(8.0) == 0
    assert vol.nearest_level(20.0) == 1
    assert vol.nearest_level(1000.0) == 2


def test_box_read_fetches_only_the_blocks_under_it(
    tmp_path: Path, anisotropic: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = _cosem_group(tmp_path, anisotropic)
    vol = open_volume(group)
    # blocks are (z, y, x) = (2, 4, 8): this box covers z-blocks 1, y-block 0, x-blocks 0..1
    box = (slice(2, 4), slice(0, 3), slice(5, 10))
    for block in (group / "s0").rglob("*"):
        if block.is_file() and block.name != "attributes.json":
            x, y, z = (int(p) for p in block.relative_to(group / "s0").parts)
            if not (z == 1 and y == 0 and x in (0, 1)):
                block.unlink()  # a read touching these would come back as fill value 0
    np.testing.assert_array_equal(vol.levels[0].read(box), anisotropic[box])
    assert not np.array_equal(vol.levels[0].read(), anisotropic)


def test_missing_level_and_bad_attributes_are_format_errors(
    tmp_path: Path, anisotropic: np.ndarray
) -> None:
    group = _cosem_group(tmp_path, anisotropic)
    attrs_file = group / "attributes.json"
    attrs = json.loads(attrs_file.read_text())
    attrs["multiscales"][0]["datasets"].append({"path": "s9"})
    attrs_file.write_text(json.dumps(attrs))
    with pytest.raises(FormatError, match="level 's9' .* expected an N5 dataset"):
        open_volume(group)
    attrs_file.write_text(json.dumps({"axes": ["x", "y", "z"]}))
    with pytest.raises(FormatError, match="no 'multiscales' or 'scales'"):
        open_volume(group)
    attrs_file.write_text("{not json")
    with pytest.raises(FormatError, match="invalid JSON in .*attributes.json"):
        open_volume(group)


def test_n5_non_finite_transform_and_resolution_are_refused(
    tmp_path: Path, anisotropic: np.ndarray
) -> None:
    group = _cosem_group(tmp_path / "a", anisotropic, per_array_transform=False)
    attrs = json.loads((group / "attributes.json").read_text())
    attrs["multiscales"][0]["datasets"][1]["transform"]["translate"] = [4.0, math.inf, 4.0]
    (group / "attributes.json").write_text(json.dumps(attrs))
    with pytest.raises(
        MetadataError,
        match=r"multiscales\[0\]\.datasets\[path=s1\]\.transform\.translate in "
        r".*fibsem-uint8/attributes\.json = \(4, inf, 4\).*for level s1",
    ):
        open_volume(group)

    group = _cosem_group(tmp_path / "b", anisotropic, per_array_transform=False)
    attrs = json.loads((group / "attributes.json").read_text())
    del attrs["multiscales"]
    attrs["pixelResolution"] = {"dimensions": [8.0, -8.0, 8.0], "unit": "nm"}
    (group / "attributes.json").write_text(json.dumps(attrs))
    with pytest.raises(MetadataError, match=r"pixelResolution in .*attributes\.json.*positive"):
        open_volume(group)
