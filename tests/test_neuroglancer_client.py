"""The state ``coframe export-viewer`` writes, loaded in the real neuroglancer client.

The client bundled in the ``neuroglancer`` package runs in headless Chromium
(:mod:`ngl_client`); the workspace and the export are served over HTTP with CORS
on 127.0.0.1. Chromium is installed by ``.ci/run``; without it these tests skip.
Covered: OME-Zarr sources placed by matrices, an N5 (COSEM, x-first) source, layers
taken from the resampled overlay, and a 2D section's export in its own plane.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr

from coframe.app.workspace import init_workspace, load_workspace
from coframe.cli import app
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine
from coframe.transforms.formats.dispatch import write_transform
from coframe.transforms.tps import ThinPlateSpline

neuroglancer = pytest.importorskip("neuroglancer")
static_file_server = pytest.importorskip("neuroglancer.static_file_server")
from ngl_client import Chromium, chromium_path  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(chromium_path() is None, reason="needs chromium (.ci/run installs it)"),
]


def _workspace(root: Path, xray_modality: str = "xray") -> Path:
    """FIB-SEM-like and X-ray-like OME-Zarr volumes joined by a mirror-and-shift edge."""
    ws = init_workspace(root)
    rng = np.random.default_rng(3)
    for name, shape, voxel, origin in (
        ("fibsem", (12, 32, 36), 10.0, (0.0, 0.0, 0.0)),
        ("xray", (6, 16, 18), 20.0, (5.0, 5.0, 5.0)),
    ):
        data = (rng.random(shape) * 200 + 30).astype(np.uint8)
        w = create_ome_zarr(
            root / f"{name}.zarr",
            shape0=shape,
            voxel_size0=(voxel,) * 3,
            origin0=origin,
            dtype=np.uint8,
        )
        w.write(0, (0, 0, 0), data)
        modality = xray_modality if name == "xray" else name
        ws = ws.add_image(name, root / f"{name}.zarr", modality, axes=("z", "y", "x"))
    mirror = Affine.from_linear(np.diag([1.0, 1.0, -1.0]), [0.0, 0.0, 350.0])
    write_transform(mirror, root / "f2x.tfm")
    ws = ws.add_edge("fibsem", "xray", root / "f2x.tfm", "itk", None, {}, kind="affine")
    ws.save()
    return root


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP with CORS on 127.0.0.1, and its URL."""
    root = tmp_path / "served"
    root.mkdir()
    server = static_file_server.StaticFileServer(str(root), bind_address="127.0.0.1", daemon=True)
    try:
        yield root, server.url
    finally:
        server.stop()


@pytest.fixture
def ng_viewer() -> Iterator[object]:
    """The neuroglancer Python viewer, serving the bundled client on 127.0.0.1."""
    neuroglancer.set_server_bind_address("127.0.0.1")
    viewer = neuroglancer.Viewer()
    yield viewer
    neuroglancer.stop()


def _export(runner, ws: Path, url: str, *extra: str) -> dict:
    out = ws / "viewer"
    args = ["export-viewer", "fibsem", "xray", "-o", str(out), "-w", str(ws)]
    args += ["--url-base", url, "--serve-root", str(ws), *extra]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads((out / "neuroglancer.json").read_text())


def _shown(state: dict) -> dict:
    """The exported state shown in one xy panel (no 3D view where one layer's slices hide
    another's), zoomed to 1 nm per pixel (10 pixels per FIB-SEM voxel), without the
    viewer's own coloured axis lines, boxes and scale bar."""
    shown = {**state, "layout": "xy", "crossSectionScale": 1.0, "showAxisLines": False}
    shown["crossSectionBackgroundColor"] = "#000000"
    return {**shown, "showDefaultAnnotations": False, "showScaleBar": False}


def _open(viewer, state: dict, profile: Path) -> Chromium:
    viewer.set_state(neuroglancer.ViewerState(_shown(state)))
    return Chromium(viewer.get_viewer_url(), profile)


def _magenta(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 40) & (np.abs(r - b) <= 8) & (g <= 8)


def _green(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (g > 40) & (r <= 8) & (b <= 8)


def _assert_no_errors(status: dict, browser: Chromium) -> None:
    """Every layer's source loaded, with no error message and a shader that compiled."""
    for layer in status["layers"]:
        assert layer["sources"] == ["loaded"], (layer, browser.console)
        errors = [m for m in layer["messages"] if m["severity"] >= 2]
        assert not errors and layer["shaderError"] is None, (layer, errors)


def _set_visible(browser: Chromium, visible: list[bool]) -> None:
    flags = json.dumps(visible)
    browser.evaluate(
        f"viewer.layerManager.managedLayers.forEach((m, i) => m.setVisible({flags}[i]))"
    )


def test_export_loads_without_layer_errors_and_shows_both_channels(
    served, ng_viewer, runner, tmp_path: Path
) -> None:
    root, url = served
    state = _export(runner, _workspace(root / "ws"), url + "/ws")
    assert [ly["source"]["url"].split("://")[0] for ly in state["layers"]] == ["zarr", "zarr"]
    browser = _open(ng_viewer, state, tmp_path / "profile")
    try:
        status = browser.wait_ready()
        assert [ly["name"] for ly in status["layers"]] == ["fibsem", "xray"]
        _assert_no_errors(status, browser)
        both = browser.canvas()
        _set_visible(browser, [True, False])
        browser.wait_ready()
        only_a = browser.canvas()
        _set_visible(browser, [False, True])
        browser.wait_ready()
        only_b = browser.canvas()
    finally:
        browser.close()
    pixels = both.shape[0] * both.shape[1]
    # each layer alone draws in its own colour only, over a good part of the canvas
    assert _magenta(only_a).sum() > 0.05 * pixels and _green(only_a).sum() == 0
    assert _green(only_b).sum() > 0.05 * pixels and _magenta(only_b).sum() == 0
    # together (additive blending) both colours show: where A is brighter, where B is
    r, g, b = (both[..., i].astype(int) for i in range(3))
    assert np.array_equal(r, b)
    assert ((r > g + 40) & (only_b[..., 1] > 0)).sum() > 0.02 * pixels
    assert ((g > r + 40) & (only_a[..., 0] > 0)).sum() > 0.02 * pixels


def _render(viewer, browser: Chromium, state: dict, layers: list[dict]) -> np.ndarray:
    """The canvas showing only ``layers`` in the export's view."""
    viewer.set_state(neuroglancer.ViewerState(_shown({**state, "layers": layers})))
    _assert_no_errors(browser.wait_ready([ly["name"] for ly in layers]), browser)
    return browser.canvas()


def test_layers_land_where_neuroglancer_places_the_same_ome_zarr(
    served, ng_viewer, runner, tmp_path: Path
) -> None:
    """The exported matrices put each image where coframe's chain does, in the real client.

    Frame A is FIB-SEM's own space: its layer must draw exactly as neuroglancer draws
    the OME-Zarr by its own metadata. The X-ray layer (mirrored, shifted, twice the
    voxel size; declared labels so that coframe resamples it by nearest neighbour) must
    draw like the export's channel 1, the X-ray coframe resampled into the frame, placed
    by neuroglancer from the overlay's metadata: the 10 nm grid's cell edges include
    every 20 nm X-ray voxel's, so both draw the same values over the same pixels.
    """
    root, url = served
    ws = _workspace(root / "ws", xray_modality="labels")
    state = _export(runner, ws, url + "/ws")
    # the panel shows z across and y down at x = 182 nm: inside one voxel of the FIB-SEM
    # (175-185), of the X-ray placed in the frame (175-195) and of the export (175-185)
    state["position"] = [60.0, 155.25, 182.0]
    fib, xray = state["layers"]
    browser = _open(ng_viewer, {**state, "layers": [fib]}, tmp_path / "profile")
    try:
        browser.wait_ready(["fibsem"])
        exported = browser.canvas()
        own = {**fib, "name": "own", "source": fib["source"]["url"]}
        by_metadata = _render(ng_viewer, browser, state, [own])
        drawn = _render(ng_viewer, browser, state, [xray])
        # the overlay as neuroglancer opens it: its channel axis c' a local axis, set to 1
        overlay = "zarr://" + url + "/ws/viewer/overlay.ome.zarr"
        channel = {**xray, "name": "resampled", "source": overlay}
        channel |= {"localDimensions": {"c'": [1, ""]}, "localPosition": [1]}
        resampled = _render(ng_viewer, browser, state, [channel])
    finally:
        browser.close()
    assert _magenta(exported).sum() > 0.05 * exported.shape[0] * exported.shape[1]
    np.testing.assert_array_equal(exported, by_metadata)
    g_drawn, g_resampled = drawn[..., 1].astype(float), resampled[..., 1].astype(float)
    # the frame (the export's box) holds 120 x 320 pixels of the X-ray
    inside = g_resampled > 0
    assert inside.sum() > 0.8 * 120 * 320 and _green(drawn).sum() > 0.8 * 120 * 320
    # the client scales the overlay's channel its own way (its omero window): fit the gain
    gain = np.median(g_drawn[inside] / g_resampled[inside])
    same = np.abs(g_drawn - gain * g_resampled) <= 3
    # pixels may differ only along voxel edges, where the two sample either side (a shift
    # of a tenth of an X-ray voxel, 2 pixels, would exceed that)
    assert same[inside].mean() > 0.9, same[inside].mean()


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def test_resampled_layer_of_a_non_affine_chain_fills_the_frame(
    served, ng_viewer, runner, tmp_path: Path
) -> None:
    """A layer taken from the resampled overlay (the chain is a thin-plate spline) loads
    without error and draws its channel in green over the frame's box, the pixels the
    FIB-SEM (frame A) layer covers."""
    root, url = served
    ws = _workspace(root / "ws")
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (12, 3))
    write_transform(ThinPlateSpline(src, src + rng.normal(0, 4, src.shape)), ws / "warp.csv")
    link = ["link", "fibsem", "xray", str(ws / "warp.csv"), "-w", str(ws), "--force"]
    res = runner.invoke(app, link)
    assert res.exit_code == 0, res.output
    state = _export(runner, ws, url + "/ws")
    state["position"] = [60.0, 155.25, 182.0]
    fib, xray = state["layers"]
    assert xray["name"].startswith("xray (resampled")
    browser = _open(ng_viewer, {**state, "layers": [xray]}, tmp_path / "profile")
    try:
        _assert_no_errors(browser.wait_ready([xray["name"]]), browser)
        resampled = browser.canvas()
        frame = _render(ng_viewer, browser, state, [fib])
    finally:
        browser.close()
    assert not resampled[..., 0].any() and not resampled[..., 2].any()  # green only
    assert _green(resampled).sum() > 0.8 * 120 * 320
    # the same box, to a pixel (1 nm, a tenth of a voxel)
    assert np.abs(np.subtract(_box(resampled[..., 1] > 0), _box(frame[..., 0] > 0))).max() <= 1


def _n5_cosem(root: Path, data: np.ndarray, voxel: float) -> Path:
    """A COSEM-style N5 multiscale group (one level, x-first arrays) holding ``data`` (z, y, x)."""
    (root).mkdir(parents=True)
    (root / "attributes.json").write_text(json.dumps({"n5": "2.3.0"}))
    group = root / "em" / "fibsem-uint8"
    store = ts.open(
        {
            "driver": "n5",
            "kvstore": {"driver": "file", "path": str(group / "s0")},
            "metadata": {
                "dimensions": list(data.shape[::-1]),
                "blockSize": [16, 16, 8],
                "dataType": str(data.dtype),
                "compression": {"type": "gzip"},
            },
        },
        create=True,
    ).result()
    store[...] = data.T
    transform = {"axes": ["z", "y", "x"], "units": ["nm"] * 3, "scale": [voxel] * 3}
    attrs_file = group / "s0" / "attributes.json"
    attrs = json.loads(attrs_file.read_text())
    attrs |= {"pixelResolution": {"dimensions": [voxel] * 3, "unit": "nm"}}
    attrs |= {"transform": {**transform, "translate": [0.0] * 3}}
    attrs_file.write_text(json.dumps(attrs))
    group_attrs = {
        "axes": ["x", "y", "z"],
        "units": ["nm"] * 3,
        "scales": [[1, 1, 1]],
        "pixelResolution": {"dimensions": [voxel] * 3, "unit": "nm"},
        "multiscales": [{"name": None, "datasets": [{"path": "s0"}]}],
    }
    (group / "attributes.json").write_text(json.dumps(group_attrs))
    return group


def test_n5_layer_lands_where_the_same_volume_as_ome_zarr_does(
    served, ng_viewer, runner, tmp_path: Path
) -> None:
    """An N5 source (x-first, COSEM attributes) is placed by the exported matrix exactly where
    the same voxels written as OME-Zarr draw: A (N5, magenta) and B (OME-Zarr, green) hold
    one volume in one space, so A's red channel equals B's green channel pixel for pixel."""
    root, url = served
    ws_root = root / "ws"
    ws = init_workspace(ws_root)
    data = (np.random.default_rng(5).random((12, 32, 36)) * 200 + 30).astype(np.uint8)
    n5 = _n5_cosem(ws_root / "em.n5", data, 10.0)
    w = create_ome_zarr(
        ws_root / "em.zarr", shape0=data.shape, voxel_size0=(10.0,) * 3, dtype=np.uint8
    )
    w.write(0, (0, 0, 0), data)
    ws = ws.add_image("n5", n5, "fibsem", axes=("z", "y", "x"))
    ws = ws.add_image("zarr", ws_root / "em.zarr", "fibsem", axes=("z", "y", "x"), space="n5")
    ws.save()
    out = ws_root / "viewer"
    args = ["export-viewer", "n5", "zarr", "-o", str(out), "-w", str(ws_root)]
    res = runner.invoke(app, [*args, "--url-base", url + "/ws", "--serve-root", str(ws_root)])
    assert res.exit_code == 0, res.output
    state = json.loads((out / "neuroglancer.json").read_text())
    a, b = state["layers"]
    assert a["source"]["url"].startswith("n5://") and b["source"]["url"].startswith("zarr://")
    # the panel shows z across and y down at x = 185 nm, the middle of voxel 18
    state["position"] = [60.0, 160.0, 185.0]
    browser = _open(ng_viewer, {**state, "layers": [a]}, tmp_path / "profile")
    try:
        _assert_no_errors(browser.wait_ready(["n5"]), browser)
        by_n5 = browser.canvas()
        by_zarr = _render(ng_viewer, browser, state, [b])
    finally:
        browser.close()
    red, green = by_n5[..., 0].astype(int), by_zarr[..., 1].astype(int)
    assert (red > 0).sum() > 0.8 * 120 * 320 and (green > 0).sum() > 0.8 * 120 * 320
    # equal to a grey level wherever both draw; a shift of half a voxel (5 pixels) would not be
    both = (red > 0) | (green > 0)
    assert (np.abs(red - green)[both] <= 2).mean() > 0.99


def test_section_export_draws_both_channels_in_the_sections_plane(
    served, ng_viewer, runner, tmp_path: Path
) -> None:
    """A 2D section's export (frame: the section's plane) loads in the client: the section
    (2D OME-Zarr, its own layer) and the FIB-SEM resampled onto its plane (a layer of the
    (c, y, x) overlay) load without error and draw the same slice, the section in magenta
    and the FIB-SEM in green, over the same pixels."""
    root, url = served
    ws_root = _workspace(root / "ws")
    fib = np.asarray(zarr.open_array(str(ws_root / "fibsem.zarr" / "s0"), mode="r")[...])
    w = create_ome_zarr(
        ws_root / "tem.zarr", shape0=fib.shape[1:], voxel_size0=(10.0, 10.0), dtype=np.uint8,
        axes=("y", "x"),
    )  # fmt: skip
    w.write(0, (0, 0), fib[6])  # the section is the FIB-SEM's slice 6, at z = 60 nm
    ws = load_workspace(ws_root).add_image("tem", ws_root / "tem.zarr", "tem", axes=("y", "x"))
    pose = Affine.from_linear(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), [60.0, 0.0, 0.0])
    write_transform(pose, ws_root / "pose.json", input_space="tem", output_space="fibsem")
    ws = ws.add_edge("tem", "fibsem", ws_root / "pose.json", "ngff", None, {}, kind="affine")
    ws.save()
    out = ws_root / "section"
    args = ["export-viewer", "tem", "fibsem", "-o", str(out), "-w", str(ws_root)]
    args += ["--url-base", url + "/ws", "--serve-root", str(ws_root), "--pixel-size", "10"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    state = json.loads((out / "neuroglancer.json").read_text())
    assert list(state["dimensions"]) == ["y", "x"]
    tem, resampled = state["layers"]
    assert tem["name"] == "tem" and "transform" in tem["source"]
    assert resampled["name"].startswith("fibsem (resampled")
    # off the voxel edges by a quarter pixel (edges on pixel centres draw either side)
    state["position"] = [155.25, 175.25]
    browser = _open(ng_viewer, {**state, "layers": [tem]}, tmp_path / "profile")
    try:
        _assert_no_errors(browser.wait_ready(["tem"]), browser)
        by_tem = browser.canvas()
        by_fib = _render(ng_viewer, browser, state, [resampled])
        both = _render(ng_viewer, browser, state, [tem, resampled])
        own = {**tem, "name": "own", "source": tem["source"]["url"]}
        by_metadata = _render(ng_viewer, browser, state, [own])
    finally:
        browser.close()
    # the section's 320 x 360 nm at 1 nm per pixel, each channel in its colour only
    assert _magenta(by_tem).sum() > 0.8 * 320 * 360 and not by_tem[..., 1].any()
    assert _green(by_fib).sum() > 0.8 * 320 * 360 and not by_fib[..., 0].any()
    red, green = by_tem[..., 0].astype(float), by_fib[..., 1].astype(float)
    # the section's layer draws where neuroglancer places the same OME-Zarr by its metadata
    np.testing.assert_array_equal(by_tem, by_metadata)
    # and the resampled FIB-SEM shows the same slice over the same box: the client draws the
    # overlay's (c, y, x) layer up to one pixel (a tenth of a voxel) off a 2D source placed
    # alike, so the best match within one pixel is taken (half a voxel off would not match)
    assert np.abs(np.subtract(_box(red > 0), _box(green > 0))).max() <= 1
    core = (slice(80, 420), slice(250, 550))
    corr = []
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            a = np.roll(red, (dr, dc), axis=(0, 1))[core].ravel()
            corr.append(np.corrcoef(a, green[core].ravel())[0, 1])
    assert max(corr) > 0.99, corr
    assert (both[..., 0] > 0).sum() > 0.8 * 320 * 360 and (both[..., 1] > 0).sum() > 0.8 * 320 * 360
