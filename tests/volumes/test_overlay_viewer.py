"""Viewer hand-off: the two-channel OME-Zarr (napari) and the neuroglancer state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from coframe.app.workspace import init_workspace, load_workspace
from coframe.cli import app
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine, Translation
from coframe.transforms.formats.dispatch import write_transform
from coframe.transforms.tps import ThinPlateSpline
from coframe.views import viewer as viewer_views
from coframe.volumes.open import open_volume
from coframe.volumes.write import write_tiff


def textured(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 200 + 30).astype(np.uint8)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    ws = init_workspace(root)
    fib = textured((12, 32, 36), 1)
    xray = textured((6, 16, 18), 2)
    for name, data, voxel, origin in (
        ("fibsem", fib, 10.0, (0.0, 0.0, 0.0)),
        ("xray", xray, 20.0, (5.0, 5.0, 5.0)),
    ):
        w = create_ome_zarr(
            root / f"{name}.zarr",
            shape0=data.shape,
            voxel_size0=(voxel,) * 3,
            origin0=origin,
            dtype=np.uint8,
        )
        w.write(0, (0, 0, 0), data)
        ws = ws.add_image(name, root / f"{name}.zarr", name, axes=("z", "y", "x"))
    write_tiff(root / "tem.tif", fib[6], 10.0)
    ws = ws.add_image("tem", root / "tem.tif", "tem", axes=("y", "x"))
    shift = Affine.from_linear(np.diag([1.0, 1.0, -1.0]), [0.0, 0.0, 350.0])  # mirror in x
    write_transform(shift, root / "f2x.tfm")
    ws = ws.add_edge("fibsem", "xray", root / "f2x.tfm", "itk", None, {}, kind="affine")
    pose = Affine.from_linear(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), [60.0, 0.0, 0.0])
    write_transform(pose, root / "pose.json", input_space="tem", output_space="fibsem")
    ws = ws.add_edge("tem", "fibsem", root / "pose.json", "ngff", None, {}, kind="affine")
    ws.save()
    return root


def _export(runner, ws: Path, *args: str) -> dict:
    res = runner.invoke(app, ["export-viewer", *args, "-w", str(ws), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_two_channel_ome_zarr_opens_with_channels_and_placement(workspace: Path, runner) -> None:
    out = workspace / "viewer"
    summary = _export(runner, workspace, "fibsem", "xray", "-o", str(out))
    assert summary["shape"] == [2, 12, 32, 36] and summary["voxel_size"] == [10.0] * 3
    group = zarr.open_group(str(out / "overlay.ome.zarr"), mode="r")
    attrs = group.attrs.asdict()
    ms = attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert ms["axes"][0]["type"] == "channel"
    omero = attrs["omero"]
    assert [c["color"] for c in omero["channels"]] == ["FF00FF", "00FF00"]
    assert [c["label"] for c in omero["channels"]] == ["fibsem", "xray"]
    for c in omero["channels"]:
        assert 30 <= c["window"]["start"] < c["window"]["end"] <= 230
    data = group["0"][:]
    assert data.dtype == np.uint8
    ws = load_workspace(workspace)
    fib = ws.open_image("fibsem").levels[0].read()
    np.testing.assert_array_equal(data[0], fib)  # frame A on A's own grid: A unchanged
    # coframe's own reader places channel 1 where the frame's voxels are
    vol = open_volume(str(out / "overlay.ome.zarr"), axis_select={"c": 1})
    assert vol.axes == ("z", "y", "x") and vol.levels[0].voxel_size == (10.0, 10.0, 10.0)
    assert vol.levels[0].origin == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(vol.levels[0].read(), data[1])


def test_neuroglancer_state_places_originals_with_affine_matrices(workspace: Path, runner) -> None:
    out = workspace / "viewer"
    summary = _export(
        runner, workspace, "fibsem", "xray", "-o", str(out), "--url-base", "http://localhost:9000/"
    )
    state = json.loads((out / "neuroglancer.json").read_text())
    assert summary["layers"] == ["fibsem", "xray"]
    assert summary["serve"]["directory"] == str(workspace.resolve())
    assert list(state["dimensions"]) == ["z", "y", "x"]
    assert state["dimensions"]["z"] == [1e-9, "m"]
    fib_layer, xray_layer = state["layers"]
    assert fib_layer["source"]["url"] == "zarr://http://localhost:9000/fibsem.zarr"
    assert "#ff00ff" in fib_layer["shader"] and "#00ff00" in xray_layer["shader"]
    # neuroglancer places an OME-Zarr by its metadata: the xray matrix sends xray physical
    # points (its voxel centres) to the fibsem points that map onto them
    ws = load_workspace(workspace)
    xray = ws.open_image("xray").levels[0]
    m = np.asarray(xray_layer["source"]["transform"]["matrix"])
    assert m.shape == (3, 4)
    idx = np.array([[0, 0, 0], [3, 7, 11], [5, 15, 17]], dtype=float)
    frame_pts = (m[:, :3] @ xray.index_to_physical(idx).T).T + m[:, 3]
    xray_pts = xray.index_to_physical(idx)
    to_xray = ws.graph().transform("fibsem", "xray")
    np.testing.assert_allclose(to_xray.apply(frame_pts), xray_pts, atol=1e-9)
    dims = xray_layer["source"]["transform"]["inputDimensions"]
    assert dims["x"] == [pytest.approx(20e-9), "m"]


def test_non_affine_chain_and_tiff_sources_use_the_resampled_zarr(workspace: Path, runner) -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (12, 3))
    tps = ThinPlateSpline(src, src + rng.normal(0, 4, src.shape))
    write_transform(tps, workspace / "warp.csv")
    res = runner.invoke(
        app,
        ["link", "fibsem", "xray", str(workspace / "warp.csv"), "-w", str(workspace), "--force"],
    )
    assert res.exit_code == 0, res.output
    out = workspace / "v2"
    summary = _export(runner, workspace, "fibsem", "xray", "-o", str(out))
    assert summary["layers"][0] == "fibsem"
    assert (
        summary["layers"][1].startswith("xray (resampled: ")
        and "not affine" in summary["layers"][1]
    )
    state = json.loads((out / "neuroglancer.json").read_text())
    layer = state["layers"][1]
    assert layer["source"]["url"].endswith("/v2/overlay.ome.zarr")
    assert layer["source"]["url"].startswith("zarr://") and "transform" not in layer["source"]
    assert layer["localDimensions"] == {"c'": [1, ""]} and layer["localPosition"] == [1]
    # a TIFF section in its own plane: (c, y, x), both layers resampled
    out3 = workspace / "v3"
    summary = _export(runner, workspace, "tem", "fibsem", "-o", str(out3))
    assert summary["shape"] == [2, 32, 36]
    assert all("resampled" in name for name in summary["layers"])
    data = zarr.open_array(str(out3 / "overlay.ome.zarr" / "0"), mode="r")[:]
    assert np.corrcoef(data[0].ravel(), data[1].ravel())[0, 1] > 0.99


def test_viewer_outputs_are_not_overwritten_without_force(workspace: Path, runner) -> None:
    out = workspace / "viewer"
    args = ["overlay", "fibsem", "xray", "-o", str(workspace / "o.png"), "-w", str(workspace)]
    res = runner.invoke(app, [*args, "--viewer-out", str(out), "--views", "z"])
    assert res.exit_code == 0, res.output
    assert (out / "overlay.ome.zarr").is_dir() and (out / "neuroglancer.json").is_file()
    res = runner.invoke(
        app, ["export-viewer", "fibsem", "xray", "-o", str(out), "-w", str(workspace)]
    )
    assert res.exit_code == 2 and "--force" in res.stderr
    res = runner.invoke(
        app,
        [
            "export-viewer",
            "fibsem",
            "xray",
            "-o",
            str(out),
            "-w",
            str(workspace),
            "--force",
            "--size",
            "8",
        ],
    )
    assert res.exit_code == 0, res.output
    assert zarr.open_array(str(out / "overlay.ome.zarr" / "0"), mode="r").shape == (2, 3, 8, 8)


def test_translation_edge_shifts_channel_b(tmp_path: Path, runner) -> None:
    root = tmp_path / "w"
    ws = init_workspace(root)
    data = textured((4, 10, 30), 5)
    w = create_ome_zarr(root / "a.zarr", shape0=data.shape, voxel_size0=(1.0,) * 3, dtype=np.uint8)
    w.write(0, (0, 0, 0), data)
    ws = ws.add_image("a", root / "a.zarr", "fibsem", axes=("z", "y", "x"))
    ws = ws.add_image("b", root / "a.zarr", "fibsem", space="bs", axes=("z", "y", "x"))
    write_transform(Translation(np.array([0.0, 0.0, 3.0])), root / "t.tfm")
    ws = ws.add_edge("a", "bs", root / "t.tfm", "itk", None, {}, kind="translation")
    ws.save()
    _export(runner, root, "a", "b", "-o", str(root / "v"), "--pixel-size", "1")
    arr = zarr.open_array(str(root / "v" / "overlay.ome.zarr" / "0"), mode="r")[:]
    np.testing.assert_array_equal(arr[1][:, :, :-3], data[:, :, 3:])
    assert not arr[1][:, :, -3:].any()  # outside B: zero fill


def test_export_of_a_section_plane_named_by_its_edge(workspace: Path, runner) -> None:
    out = workspace / "plane"
    summary = _export(
        runner, workspace, "fibsem", "xray", "-o", str(out), "--plane", "tem -> fibsem"
    )
    assert summary["shape"] == [2, 32, 36]
    assert all("resampled" in name for name in summary["layers"])
    data = zarr.open_array(str(out / "overlay.ome.zarr" / "0"), mode="r")[:]
    ws = load_workspace(workspace)
    tem = ws.open_image("tem").levels[0].read()
    assert np.corrcoef(data[0].ravel(), tem.ravel().astype(float))[0, 1] > 0.99


@pytest.mark.timeout(60)
def test_absurd_export_size_is_refused_before_anything_is_written(
    workspace: Path, runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = workspace / "viewer"
    args = ["export-viewer", "fibsem", "xray", "-o", str(out), "-w", str(workspace)]
    huge = runner.invoke(app, [*args, "--pixel-size", "1e-6"])
    assert huge.exit_code == 2, huge.output
    assert len(huge.stderr.strip().splitlines()) == 1
    assert "320000000 x 360000000 pixels" in huge.stderr and "--pixel-size" in huge.stderr
    monkeypatch.setattr(viewer_views, "MAX_EXPORT_VOXELS", 1000)
    deep = runner.invoke(app, [*args, "--size", "16"])
    assert deep.exit_code == 2, deep.output
    assert "above the 1,000 an export may have" in deep.stderr and "--box" in deep.stderr
    assert not out.exists()
