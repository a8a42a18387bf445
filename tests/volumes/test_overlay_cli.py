"""`coframe overlay` through the CLI: outputs, frames, section planes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from samples import blobs

from coframe.cli import app
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine, Translation
from coframe.transforms.formats.dispatch import write_transform
from coframe.volumes.write import write_tiff


def write_volume(path: Path, data: np.ndarray, voxel: float) -> None:
    w = create_ome_zarr(path, shape0=data.shape, voxel_size0=(voxel,) * 3, dtype=data.dtype)
    w.write(0, (0, 0, 0), data)


@pytest.fixture
def workspace(tmp_path: Path, runner) -> Path:
    """Workspace: fibsem (3D), xray (3D, shifted), tem (2D section located in fibsem)."""
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    vol = blobs((16, 48, 48), 1)
    write_volume(ws / "fibsem.zarr", vol, 10.0)
    write_volume(ws / "xray.zarr", vol[::2, ::2, ::2].copy(), 20.0)
    write_tiff(ws / "tem.tif", vol[8], 10.0)
    for name, path, modality in (
        ("fibsem", "fibsem.zarr", "fibsem"),
        ("xray", "xray.zarr", "xray"),
        ("tem", "tem.tif", "tem"),
    ):
        res = runner.invoke(
            app, ["add", name, str(ws / path), "--modality", modality, "-w", str(ws)]
        )
        assert res.exit_code == 0, res.output
    write_transform(Translation(np.array([0.0, 0.0, 30.0])), ws / "f2x.tfm")
    pose = Affine.from_linear(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), [85.0, 0.0, 0.0])
    write_transform(pose, ws / "pose.json", input_space="tem", output_space="fibsem")
    for args in (["fibsem", "xray", str(ws / "f2x.tfm")], ["tem", "fibsem", str(ws / "pose.json")]):
        res = runner.invoke(app, ["link", *args, "-w", str(ws)])
        assert res.exit_code == 0, res.output
    return ws


def test_overlay_png_grid_and_json_summary(workspace: Path, runner) -> None:
    out = workspace / "ov.png"
    res = runner.invoke(
        app, ["overlay", "fibsem", "xray", "-o", str(out), "-w", str(workspace), "--json"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert [v["name"].split(" ")[0] for v in summary["views"]] == ["z", "y", "x"]
    assert summary["limits_a"][0] > 0
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[1] > 4 * 48
    res = runner.invoke(app, ["overlay", "fibsem", "xray", "-o", str(out), "-w", str(workspace)])
    assert res.exit_code == 2 and "already exists" in res.stderr and "--force" in res.stderr
    res = runner.invoke(
        app, ["overlay", "fibsem", "xray", "-o", str(out), "-w", str(workspace), "--force"]
    )
    assert res.exit_code == 0 and f"wrote {out}" in res.stdout


def test_overlay_tiff_keeps_float_channels_and_pixel_size(workspace: Path, runner) -> None:
    out = workspace / "ov.tif"
    args = ["overlay", "fibsem", "xray", "-o", str(out), "-w", str(workspace)]
    res = runner.invoke(app, [*args, "--views", "z", "--frame", "B", "--pixel-size", "20"])
    assert res.exit_code == 0, res.output
    with tifffile.TiffFile(out) as tf:
        data = tf.asarray()
        assert tf.imagej_metadata["unit"] == "nm"
        x_res = tf.pages[0].tags["XResolution"].value
    assert data.shape == (2, 24, 24) and data.dtype == np.float32
    assert x_res[0] / x_res[1] == pytest.approx(1 / 20)
    assert np.count_nonzero(data[0]) > 0 and np.count_nonzero(data[1]) > 0


def test_overlay_of_a_located_section_uses_its_plane(workspace: Path, runner) -> None:
    out = workspace / "sec.tif"
    res = runner.invoke(
        app, ["overlay", "tem", "fibsem", "-o", str(out), "-w", str(workspace), "--json"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert [v["space"] for v in summary["views"]] == ["tem"]
    data = tifffile.imread(out)
    # the section is fibsem slice 8 and the pose puts it at z = 85 nm (between 8 and 9)
    assert np.corrcoef(data[0].ravel(), data[1].ravel())[0, 1] > 0.95
    res = runner.invoke(
        app,
        ["overlay", "fibsem", "xray", "-o", str(workspace / "p.png"), "-w", str(workspace)]
        + ["--plane", "tem", "--modes", "composite"],
    )
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--limits-a", "5"], "--limits-a"),
        (["--limits-b", "3,3"], "--limits-b"),
        (["--frame", "C"], "--frame"),
        (["--views", "z,q"], "--views"),
        (["--modes", "sparkle"], "--modes"),
        (["--tile", "3 parsecs"], "--tile"),
        (["--box", "1,2,3"], "--box"),
        (["--plane", "nowhere"], "--plane"),
    ],
)
def test_overlay_errors_are_one_line(
    workspace: Path, runner, extra: list[str], needle: str
) -> None:
    out = workspace / "bad.png"
    res = runner.invoke(
        app, ["overlay", "fibsem", "xray", "-o", str(out), "-w", str(workspace), *extra]
    )
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and needle in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_overlay_unknown_image_and_suffix(workspace: Path, runner) -> None:
    res = runner.invoke(
        app, ["overlay", "fibsem", "nope", "-o", str(workspace / "o.png"), "-w", str(workspace)]
    )
    assert res.exit_code == 2 and "'nope'" in res.stderr
    res = runner.invoke(
        app, ["overlay", "fibsem", "xray", "-o", str(workspace / "o.jpg"), "-w", str(workspace)]
    )
    assert res.exit_code == 2 and ".png" in res.stderr


@pytest.mark.parametrize("frame", ["A", "B"])
def test_overlay_point_outside_both_images_is_refused(workspace: Path, runner, frame: str) -> None:
    out = workspace / "far.png"
    args = ["overlay", "fibsem", "xray", "-o", str(out), "-w", str(workspace), "--frame", frame]
    res = runner.invoke(app, [*args, "--point", "1e6,1e6,1e6"])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1
    for needle in ("--point 1e+06,1e+06,1e+06", "outside both images", "blank"):
        assert needle in res.stderr
    own, other = ("fibsem", "xray") if frame == "A" else ("xray", "fibsem")
    assert f"{own} spans -" in res.stderr and f"{other} spans about " in res.stderr
    assert not out.exists()


def test_overlay_point_inside_only_the_other_image_is_shown(workspace: Path, runner) -> None:
    """x = -20 lies left of fibsem (the frame) but inside xray (shifted 30 nm)."""
    out = workspace / "edge.png"
    args = ["overlay", "fibsem", "xray", "-o", str(out), "-w", str(workspace), "--json"]
    res = runner.invoke(app, [*args, "--point", "80,200,-20", "--views", "x"])
    assert res.exit_code == 0, res.output
    view = json.loads(res.stdout)["views"][0]
    assert view["coverage_a"] == 0.0 and view["coverage_b"] > 0.5


@pytest.mark.timeout(60)
def test_overlay_of_absurd_size_is_refused(workspace: Path, runner) -> None:
    out = workspace / "huge.png"
    args = ["overlay", "fibsem", "xray", "-o", str(out), "-w", str(workspace)]
    res = runner.invoke(app, [*args, "--pixel-size", "1e-6"])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert "pixels of 1e-06 nanometer" in res.stderr and "--pixel-size" in res.stderr
    assert not out.exists()
