"""The napari reader in napari itself: a workspace opened in a real viewer and drawn.

napari (Qt, PyQt5) runs on a virtual X display: the one in ``DISPLAY``, else an
``Xvfb`` this test starts (``.ci/run`` installs it). Without napari, a Qt
binding or a display these tests skip. The placement of every layer is checked
without Qt in ``test_napari_reader.py``; here the viewer opens the workspace
through the plugin and a screenshot of its canvas shows the image in grey and
the labels in colour.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from samples import blobs, cellmap_pyramid

pytest.importorskip("napari")
pytest.importorskip("PyQt5")

pytestmark = [pytest.mark.slow, pytest.mark.gui]

WORKSPACE = """\
coframe: 1
unit: nanometer
spaces:
  fibsem: {axes: [z, y, x]}
images:
  fibsem: {path: fibsem.zarr, modality: fibsem, space: fibsem}
  nuc: {path: nuc.zarr, modality: labels, space: fibsem}
"""


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """An X display for Qt: ``DISPLAY`` if set, else an Xvfb started here.

    The Xvfb ends by itself when its last client (this process's Qt) disconnects
    (``-terminate``): stopping it under a live Qt connection makes Qt exit the process.
    """
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("needs an X display or Xvfb (.ci/run installs it)")
    read, write = os.pipe()
    args = [xvfb, "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"]
    proc = subprocess.Popen(
        [*args, "-terminate"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    yield os.environ["DISPLAY"]
    from qtpy.QtWidgets import QApplication

    if QApplication.instance() is None:  # no client ever connected: stop it here
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "coframe.yaml").write_text(WORKSPACE)
    em = (blobs((32, 32, 32), seed=3) * 255).astype(np.uint8)
    cellmap_pyramid(root / "fibsem.zarr", em, levels=3)
    cellmap_pyramid(root / "nuc.zarr", (em > 128).astype(np.uint32) * 5, levels=2)
    return root


def _grey(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 20) & (r == g) & (g == b)


def _coloured(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return np.maximum(np.abs(r - g), np.maximum(np.abs(g - b), np.abs(r - b))) > 40


def test_workspace_opens_in_napari_and_draws_image_and_labels(display: str, ws: Path) -> None:
    import napari

    viewer = napari.Viewer(show=True)
    try:
        layers = viewer.open(str(ws), plugin="coframe")
        assert [(ly.name, type(ly).__name__) for ly in layers] == [
            ("fibsem", "Image"),
            ("nuc", "Labels"),
        ]
        image, labels = layers
        assert image.multiscale and len(image.data) == 3 and labels.multiscale
        viewer.reset_view()
        both = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
        labels.visible = False
        only_image = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
        labels.visible, image.visible = True, False
        only_labels = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    finally:
        viewer.close()
    pixels = both.shape[0] * both.shape[1]
    # the image alone: grey blobs over a good part of the canvas, no colour
    assert _grey(only_image).sum() > 0.1 * pixels and _coloured(only_image).sum() == 0
    assert only_image[_grey(only_image)][:, 0].std() > 10  # blobs, not a flat square
    # the labels alone: coloured nuclei where the image is bright (em > 128)
    nuclei = _coloured(only_labels)
    assert nuclei.sum() > 0.01 * pixels
    assert only_image[nuclei][:, 0].mean() > only_image[_grey(only_image)][:, 0].mean()
    # both: the labels drawn over the image
    assert _coloured(both).sum() > 0.5 * nuclei.sum() and _grey(both).sum() > 0
