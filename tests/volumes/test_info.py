"""`coframe info` and coframe.volumes.info: the description, the table, and one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from coframe.cli import app
from coframe.volumes.info import describe, render_text
from coframe.volumes.open import open_volume


def _image(
    path: Path, *, axes: list[dict] | None = None, shape: tuple[int, ...] = (8, 8, 8)
) -> Path:
    """A two-level OME-Zarr 0.4 image (s0 8 nm with a 1000 nm z offset, s1 16 nm)."""
    axes = axes or [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    group = zarr.open_group(zarr.storage.LocalStore(path), mode="w", zarr_format=2)
    lead = len(shape) - 3
    datasets = []
    for i in range(2):
        f = 2**i
        level_shape = shape[:lead] + tuple(n // f for n in shape[lead:])
        group.create_array(f"s{i}", shape=level_shape, chunks=(4,) * len(shape), dtype="uint8")
        datasets.append(
            {
                "path": f"s{i}",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0] * lead + [8.0 * f] * 3},
                    {"type": "translation", "translation": [0.0] * lead + [1000.0, 0.0, 0.0]},
                ],
            }
        )
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return path


def _error_line(result: object) -> str:
    """The single stderr line of a failed command."""
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.exit_code == 2, (result.exit_code, result.output)  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_describe_is_json_ready_and_complete(tmp_path: Path) -> None:
    vol = open_volume(_image(tmp_path / "em.zarr"), modality="fibsem")
    info = describe(vol)
    assert json.loads(json.dumps(info)) == info
    assert info["format"] == "ome-zarr"
    assert info["axes"] == ["z", "y", "x"]
    assert info["unit"] == "nanometer"
    assert info["dtype"] == "uint8"
    assert info["modality"] == "fibsem"
    s0, s1 = info["levels"]
    assert s0 == {
        "index": 0,
        "path": "s0",
        "shape": [8, 8, 8],
        "voxel_size": [8.0, 8.0, 8.0],
        "origin": [1000.0, 0.0, 0.0],
        "extent": [[996.0, 1060.0], [-4.0, 60.0], [-4.0, 60.0]],
        "chunks": [4, 4, 4],
    }
    assert s1["voxel_size"] == [16.0, 16.0, 16.0]
    only = describe(vol, level="s1")
    assert [lvl["path"] for lvl in only["levels"]] == ["s1"]
    text = render_text(info)
    assert "ome-zarr (NGFF 0.4)" in text
    assert "8 x 8 x 8" in text and "[996, 1060]" in text and "fibsem" in text


def test_info_command_table_and_json(runner: CliRunner, tmp_path: Path) -> None:
    path = _image(tmp_path / "em.zarr")
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "s1" in result.stdout and "16 x 16 x 16" in result.stdout
    result = runner.invoke(app, ["info", str(path), "--json", "--unit", "um"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["unit"] == "micrometer"
    assert info["levels"][0]["voxel_size"] == pytest.approx([0.008] * 3)
    assert info["levels"][0]["origin"] == pytest.approx([1.0, 0.0, 0.0])


def test_info_overrides_select_and_level(runner: CliRunner, tmp_path: Path) -> None:
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"
    ]
    path = _image(tmp_path / "czyx.zarr", axes=axes, shape=(3, 8, 8, 8))
    args = ["info", str(path), "--json", "--select", "c=1", "--level", "1"]
    args += ["--voxel-size", "0.04,0.01,0.01", "--input-unit", "um", "--origin", "0,0,0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["metadata"]["selected"] == {"c": 1}
    (level,) = info["levels"]
    assert level["index"] == 1
    assert level["voxel_size"] == pytest.approx([80.0, 20.0, 20.0])
    assert level["origin"] == pytest.approx([0.0, 0.0, 0.0])


def test_plain_tiff_with_voxel_size_flag(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "section.tif"
    tifffile.imwrite(path, np.zeros((6, 10), np.uint8))
    result = runner.invoke(app, ["info", str(path), "--voxel-size", "4", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["levels"][0]["voxel_size"] == [4.0, 4.0]


def test_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    line = _error_line(runner.invoke(app, ["info", str(tmp_path / "nope.zarr")]))
    assert "nope.zarr does not exist" in line


def test_corrupt_containers_name_the_file(runner: CliRunner, tmp_path: Path) -> None:
    bad_json = _image(tmp_path / "bad.zarr")
    (bad_json / ".zattrs").write_text('{"multiscales": [{"axes": ')
    line = _error_line(runner.invoke(app, ["info", str(bad_json)]))
    assert "invalid JSON in" in line and "bad.zarr/.zattrs" in line

    good_tif = tmp_path / "good.tif"
    stack = np.arange(4 * 32 * 32, dtype=np.uint16).reshape(4, 32, 32)
    tifffile.imwrite(good_tif, stack, photometric="minisblack")
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good_tif.read_bytes()[:3000])
    line = _error_line(runner.invoke(app, ["info", str(truncated), "--voxel-size", "1"]))
    assert "truncated.tif" in line and "expected a complete TIFF" in line

    junk = tmp_path / "junk.mrc"
    junk.write_bytes(os.urandom(3000))
    line = _error_line(runner.invoke(app, ["info", str(junk)]))
    assert "junk.mrc" in line and "expected an MRC2014 file" in line

    plain = tmp_path / "plain.zarr"
    zarr.open_group(zarr.storage.LocalStore(plain), mode="w", zarr_format=2)
    line = _error_line(runner.invoke(app, ["info", str(plain)]))
    assert "no OME-Zarr 'multiscales' in" in line and "plain.zarr/.zattrs" in line


def test_unknown_unit(runner: CliRunner, tmp_path: Path) -> None:
    path = _image(tmp_path / "em.zarr")
    line = _error_line(runner.invoke(app, ["info", str(path), "--unit", "parsec"]))
    assert "unknown unit 'parsec' in --unit" in line


def test_missing_voxel_size(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((3, 10, 12), np.uint8), photometric="minisblack")
    line = _error_line(runner.invoke(app, ["info", str(path)]))
    assert "no physical voxel size" in line and "--voxel-size" in line
    line = _error_line(runner.invoke(app, ["info", str(path), "--voxel-size", "eight"]))
    assert "--voxel-size 'eight'" in line


def test_non_spatial_axis_names(runner: CliRunner, tmp_path: Path) -> None:
    path = _image(tmp_path / "abc.zarr", axes=[{"name": n} for n in "abc"])
    line = _error_line(runner.invoke(app, ["info", str(path)]))
    assert "0 spatial axes" in line and "a(untyped)" in line


def test_time_and_channel_axes_need_select(runner: CliRunner, tmp_path: Path) -> None:
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
    axes += [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    path = _image(tmp_path / "tczyx.zarr", axes=axes, shape=(2, 3, 8, 8, 8))
    line = _error_line(runner.invoke(app, ["info", str(path)]))
    assert "'t'" in line and "--select t=INDEX" in line
    line = _error_line(runner.invoke(app, ["info", str(path), "--select", "t=0"]))
    assert "'c'" in line and "--select c=INDEX" in line
    line = _error_line(runner.invoke(app, ["info", str(path), "--select", "t"]))
    assert "AXIS=INDEX" in line
    result = runner.invoke(app, ["info", str(path), "--select", "t=1", "--select", "c=2"])
    assert result.exit_code == 0, result.output
    assert "selected: t=1, c=2" in result.stdout


def test_level_that_does_not_exist(runner: CliRunner, tmp_path: Path) -> None:
    path = _image(tmp_path / "em.zarr")
    line = _error_line(runner.invoke(app, ["info", str(path), "--level", "9"]))
    assert "level 9 does not exist" in line and "--level" in line
    line = _error_line(runner.invoke(app, ["info", str(path), "--level", "s7"]))
    assert "'s7' does not exist" in line
