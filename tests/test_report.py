"""`coframe report`: one self-contained HTML page, checked as text and in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from samples import blobs

from coframe.app.provenance import make_provenance
from coframe.app.report import edge_role, find_value
from coframe.app.workspace import init_workspace, load_workspace
from coframe.cli import app
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine, Translation
from coframe.transforms.formats.dispatch import write_transform
from coframe.volumes.write import write_tiff

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """fibsem <- registered -> xray, a located TEM section, and a plain linked labels space."""
    root = tmp_path / "ws"
    ws = init_workspace(root)
    vol = blobs((16, 40, 40), 3)
    for name, data, voxel in (("fibsem", vol, 10.0), ("xray", vol[::2, ::2, ::2].copy(), 20.0)):
        w = create_ome_zarr(
            root / f"{name}.zarr", shape0=data.shape, voxel_size0=(voxel,) * 3, dtype=np.uint8
        )
        w.write(0, (0, 0, 0), data)
    write_tiff(root / "tem.tif", vol[8], 10.0)
    for name, modality in (("fibsem", "fibsem"), ("xray", "xray"), ("tem", "tem")):
        path = root / (f"{name}.zarr" if name != "tem" else "tem.tif")
        axes = ("y", "x") if name == "tem" else ("z", "y", "x")
        ws = ws.add_image(name, path, modality, axes=axes)
    write_transform(Translation(np.array([0.0, 0.0, 20.0])), root / "f2x.tfm")
    prov = make_provenance(
        "coframe register xray fibsem",
        parameters={"preset": "xray-to-fibsem", "levels": 3},
        metric={"name": "mattes", "before": -0.21, "after": -0.64},
    )
    prov["method"] = "center_of_mass -> rigid -> affine"
    prov["tre"] = {"mean": 12.5, "max": 31.0, "source": "landmarks", "n": 6}
    prov["jacobian"] = {"min": 0.97, "max": 1.03, "folding_fraction": 0.0}
    ws = ws.add_edge("fibsem", "xray", root / "f2x.tfm", "itk", None, prov, kind="affine")
    pose = Affine.from_linear(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), [80.0, 0.0, 0.0])
    write_transform(pose, root / "pose.json", input_space="tem", output_space="fibsem")
    located = make_provenance("coframe locate tem fibsem", metric={"confidence": 0.93})
    ws = ws.add_edge("tem", "fibsem", root / "pose.json", "ngff", None, located, kind="affine")
    ws.save()
    return root


def test_report_is_one_self_contained_page(workspace: Path, runner) -> None:
    res = runner.invoke(app, ["report", "-w", str(workspace)])
    assert res.exit_code == 0, res.output
    out = workspace / "report.html"
    assert res.stdout.strip() == f"wrote {out}"
    html = out.read_text(encoding="utf-8")
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) >= 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "<svg" in html and html.count("marker-end") == 2  # two edges drawn as arrows
    for text in (
        "fibsem",
        "xray",
        "tem",
        "mattes",
        "-0.64",
        "-0.21",
        "center_of_mass",
        "12.5",
        "folding_fraction",
        "0.93",
        "before (identity",
        "after (with the edge)",
        "located section",
        "Section and matched slice",
    ):
        assert text in html, text
    assert "cannot show" not in html
    again = runner.invoke(app, ["report", "-w", str(workspace)])
    assert again.exit_code == 2 and "--force" in again.stderr
    assert runner.invoke(app, ["report", "-w", str(workspace), "--force"]).exit_code == 0


def test_report_shows_an_edge_it_cannot_draw_and_goes_on(workspace: Path, runner) -> None:
    shutil.rmtree(workspace / "xray.zarr")
    out = workspace / "r.html"
    res = runner.invoke(app, ["report", "-o", str(out), "-w", str(workspace)])
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert html.count("cannot show this edge") == 1  # the xray edge; the section card is drawn
    assert "Section and matched slice" in html


@pytest.mark.parametrize("size", ["0", "-3"])
def test_report_refuses_a_size_below_one_pixel(workspace: Path, runner, size: str) -> None:
    out = workspace / "r.html"
    res = runner.invoke(app, ["report", "-o", str(out), "--size", size, "-w", str(workspace)])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert f"--size {size}: expected a positive number of pixels" in res.stderr
    assert not out.exists()


def test_report_of_an_empty_workspace(tmp_path: Path, runner) -> None:
    init_workspace(tmp_path)
    res = runner.invoke(app, ["report", "-w", str(tmp_path)])
    assert res.exit_code == 0
    assert "No edges yet" in (tmp_path / "report.html").read_text(encoding="utf-8")


def _chromium_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing but CI is set: the CI script must install chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); CI installs it")


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            _chromium_or_skip(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(workspace: Path, runner, tmp_path: Path) -> None:
    _chromium_or_skip()
    assert runner.invoke(app, ["report", "-w", str(workspace)]).exit_code == 0
    url = (workspace / "report.html").as_uri()
    dom = _chromium("--enable-logging=stderr", "--v=0", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-report-ready="yes"' in dom.stdout  # the inline script ran
    console_errors = [
        line for line in dom.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line
    ]
    assert not console_errors, console_errors
    shot = tmp_path / "shot.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 20  # not blank: header, tables and overlays
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200


def test_before_overlay_uses_the_initial_transform_named_in_provenance(
    workspace: Path, runner
) -> None:
    ws = load_workspace(workspace)
    edge = ws.edges[0]
    write_transform(Translation(np.array([0.0, 5.0, 0.0])), workspace / "init.tfm")
    prov = {**edge.provenance, "parameters": {"initial": "init.tfm", "levels": 3}}
    ws = ws.add_edge(edge.source, edge.target, workspace / edge.file, "itk", None, prov, True)
    ws.save()
    assert find_value(prov, "initial") == "init.tfm"
    assert edge_role(ws, ws.edges[0]) == "registration"
    assert edge_role(ws, ws.edges[1]) == "section"
    res = runner.invoke(app, ["report", "-w", str(workspace), "-o", str(workspace / "r.html")])
    assert res.exit_code == 0, res.output
    html = (workspace / "r.html").read_text(encoding="utf-8")
    assert "before (initial transform init.tfm)" in html


@pytest.mark.slow
def test_demo_ends_by_writing_the_report(demo_cli_run: tuple[Path, str]) -> None:
    directory, stdout = demo_cli_run
    report = directory / "report.html"
    assert stdout.rstrip().endswith(f"== QC report\n{report}")
    html = report.read_text(encoding="utf-8")
    for space in ("fibsem", "xray", "tem-1", "tem-2"):
        assert space in html
