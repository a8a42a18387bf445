"""Placement a volume cannot have is refused at open: NaN, infinities, zero sizes, missing scales.

Every reader's numbers pass one check before a volume is built (N5 cases are
in test_n5_read.py, beside its COSEM phantom); the error
names the file's field, the level and the fix, and `coframe add` / `coframe
info` print it in one line with exit code 2 and store nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
import yaml
from samples import cellmap_pyramid
from typer.testing import CliRunner

from coframe.cli import app
from coframe.core.errors import MetadataError
from coframe.volumes.open import open_volume


@pytest.fixture
def data() -> np.ndarray:
    return np.arange(8 * 8 * 8, dtype=np.uint8).reshape(8, 8, 8)


def _edit_zattrs(group: Path, edit: object) -> None:
    """Apply ``edit(multiscale)`` to the first multiscale of a Zarr v2 or v3 group."""
    v3 = group / "zarr.json"
    if v3.is_file():
        doc = json.loads(v3.read_text())
        edit(doc["attributes"]["ome"]["multiscales"][0])  # type: ignore[operator]
        v3.write_text(json.dumps(doc))
    else:
        doc = json.loads((group / ".zattrs").read_text())
        edit(doc["multiscales"][0])  # type: ignore[operator]
        (group / ".zattrs").write_text(json.dumps(doc))


def _transforms(ms: dict, level: int) -> list:
    return ms["datasets"][level]["coordinateTransformations"]


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda ms: _transforms(ms, 1)[1].update(translation=[math.inf, 4.0, 4.0]),
            r"datasets\[path=s1\]\.coordinateTransformations translation in .* = \(inf, 4, 4\) "
            r"\(z, y, x\) for level s1 of .*expected finite numbers",
        ),
        (
            lambda ms: _transforms(ms, 0)[0].update(scale=[8.0, math.nan, 8.0]),
            r"coordinateTransformations scale in .* = \(8, nan, 8\).*for level s0.*"
            "expected finite positive voxel sizes",
        ),
        (
            lambda ms: _transforms(ms, 2)[0].update(scale=[32.0, 0.0, -32.0]),
            r"\(32, 0, -32\).*for level s2 .*finite positive",
        ),
        (
            lambda ms: ms["datasets"][1].update(coordinateTransformations=[]),
            r"datasets\[path=s1\]\.coordinateTransformations in .* has no scale transform: "
            r"OME-Zarr 0\.[45] needs one per level.*add \{\"type\": \"scale\"",
        ),
        (
            lambda ms: ms["datasets"][2].pop("coordinateTransformations"),
            r"datasets\[path=s2\]\.coordinateTransformations in .* has no scale transform",
        ),
        (
            lambda ms: ms["datasets"][1].update(
                coordinateTransformations=[{"type": "translation", "translation": [4.0] * 3}]
            ),
            r"datasets\[path=s1\]\.coordinateTransformations in .* has no scale transform",
        ),
    ],
)
def test_ome_zarr_levels_without_a_usable_placement_are_refused(
    tmp_path: Path, data: np.ndarray, zarr_format: int, edit: object, expected: str
) -> None:
    group = cellmap_pyramid(tmp_path / "em.zarr", data, levels=3, zarr_format=zarr_format)
    _edit_zattrs(group, edit)
    with pytest.raises(MetadataError, match=expected):
        open_volume(group)


def test_ome_zarr_non_finite_multiscale_transform_is_named(
    tmp_path: Path, data: np.ndarray
) -> None:
    group = cellmap_pyramid(tmp_path / "em.zarr", data, levels=2)
    _edit_zattrs(
        group,
        lambda ms: ms.update(
            coordinateTransformations=[{"type": "translation", "translation": [0, math.nan, 0]}]
        ),
    )
    with pytest.raises(
        MetadataError, match="translation with multiscales.coordinateTransformations"
    ):
        open_volume(group)


def test_ngff_0_3_levels_without_transforms_are_placed_from_their_shapes(
    tmp_path: Path, data: np.ndarray
) -> None:
    group = cellmap_pyramid(tmp_path / "old.zarr", data, levels=3)

    def legacy(ms: dict) -> None:
        ms["version"] = "0.3"
        ms["axes"] = ["z", "y", "x"]
        for d in ms["datasets"]:
            d.pop("coordinateTransformations")

    _edit_zattrs(group, legacy)
    with pytest.raises(MetadataError, match=r"no physical voxel size \(OME-Zarr 0.3 levels"):
        open_volume(group)
    vol = open_volume(group, voxel_size=10)
    assert [lvl.voxel_size for lvl in vol.levels] == [(10.0,) * 3, (20.0,) * 3, (40.0,) * 3]
    assert vol.levels[1].origin == (5.0,) * 3


def test_tiff_non_finite_origin_is_refused_and_bad_sizes_ask_for_a_voxel_size(
    tmp_path: Path, data: np.ndarray
) -> None:
    path = tmp_path / "xray.tif"
    meta = {"axes": "ZYX", "unit": "um", "spacing": 2.0, "xorigin": math.nan}
    tifffile.imwrite(path, data, imagej=True, resolution=(1.0, 1.0), metadata=meta)
    with pytest.raises(MetadataError, match=r"ImageJ xorigin/yorigin/zorigin in .*xray\.tif"):
        open_volume(path)

    meta = {"axes": "ZYX", "unit": "um", "spacing": math.inf}
    tifffile.imwrite(path, data, imagej=True, resolution=(1.0, 1.0), metadata=meta)
    with pytest.raises(MetadataError, match=r"spacing .*give z = inf.*--voxel-size"):
        open_volume(path)
    assert open_volume(path, voxel_size=(2, 1, 1), input_unit="um").levels[0].voxel_size == (
        2000.0,
        1000.0,
        1000.0,
    )

    ome = tmp_path / "ome.tif"
    tifffile.imwrite(ome, data, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": -1.0})
    with pytest.raises(MetadataError, match=r"PhysicalSizeX/Y/Z .*give x = -1.*--voxel-size"):
        open_volume(ome)


def _mrc(path: Path, voxel: float, origin: tuple[float, float, float]) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.zeros((4, 6, 8), np.float32))
        mrc.voxel_size = voxel
        mrc.header.origin = origin
    return path


def test_mrc_non_finite_origin_is_refused_and_non_finite_size_asks_for_one(
    tmp_path: Path,
) -> None:
    with pytest.raises(MetadataError, match=r"header origin in .*nan.mrc = \(0, nan, 0\)"):
        open_volume(_mrc(tmp_path / "nan.mrc", 10.0, (0.0, math.nan, 0.0)))
    path = _mrc(tmp_path / "inf.mrc", math.inf, (0.0, 0.0, 0.0))
    with pytest.raises(MetadataError, match=r"is z = inf, y = inf, x = inf.*--voxel-size"):
        open_volume(path)
    assert open_volume(path, voxel_size=3).levels[0].voxel_size == (3.0,) * 3


def test_add_and_info_refuse_a_non_finite_placement_in_one_line(
    runner: CliRunner, tmp_path: Path, data: np.ndarray
) -> None:
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    before = (ws / "coframe.yaml").read_text()
    group = cellmap_pyramid(tmp_path / "em.zarr", data, levels=2)
    _edit_zattrs(group, lambda ms: _transforms(ms, 0)[1].update(translation=[0, math.inf, 0]))
    mrc = _mrc(tmp_path / "tem.mrc", 10.0, (math.nan, 0.0, 0.0))
    for path, field in ((group, "translation"), (mrc, "header origin")):
        for args in (["add", "img", str(path), "-w", str(ws)], ["info", str(path)]):
            result = runner.invoke(app, args)
            assert result.exit_code == 2, result.output
            assert len(result.stderr.strip().splitlines()) == 1
            assert field in result.stderr and "correct the file's metadata" in result.stderr
    assert (ws / "coframe.yaml").read_text() == before
    assert yaml.safe_load(before)["images"] in (None, {})
