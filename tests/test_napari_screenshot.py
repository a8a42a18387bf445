"""The napari reader in napari itself: a workspace opened in a real viewer and drawn.

napari (Qt, PyQt5) runs in a child process on a virtual X display: the one in
``DISPLAY``, else an ``Xvfb`` this test starts (``.ci/run`` installs it); a Qt
failure there cannot take the test run down. Without napari, a Qt binding or a
display the test skips. The placement of every layer is checked without Qt in
``test_napari_reader.py``; here the viewer opens the workspace through the
plugin and screenshots of its canvas show the image in grey and the labels in
colour.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from samples import em_workspace

pytestmark = [
    pytest.mark.slow,
    pytest.mark.gui,
    pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in ("napari", "PyQt5")),
        reason="needs napari and PyQt5 (the test extra)",
    ),
]

WORKSPACE = """\
coframe: 1
unit: nanometer
spaces:
  fibsem: {axes: [z, y, x]}
images:
  fibsem: {path: fibsem.zarr, modality: fibsem, space: fibsem}
  nuc: {path: nuc.zarr, modality: labels, space: fibsem}
"""

#: Run in the child: open the workspace with the plugin, take three screenshots.
CHILD = """
import json, sys
import numpy as np
import napari

workspace, out = sys.argv[1], sys.argv[2]
viewer = napari.Viewer(show=True)
layers = viewer.open(workspace, plugin="coframe")
image, labels = layers
info = {
    "layers": [[ly.name, type(ly).__name__, bool(ly.multiscale), len(ly.data)] for ly in layers]
}
viewer.reset_view()
shots = {"both": viewer.screenshot(canvas_only=True, flash=False)}
labels.visible = False
shots["image"] = viewer.screenshot(canvas_only=True, flash=False)
labels.visible, image.visible = True, False
shots["labels"] = viewer.screenshot(canvas_only=True, flash=False)
np.savez(out + "/shots.npz", **{k: v[..., :3] for k, v in shots.items()})
open(out + "/info.json", "w").write(json.dumps(info))
viewer.close()
"""


@pytest.fixture
def display() -> Iterator[str]:
    """An X display: ``DISPLAY`` if set, else an Xvfb started (and stopped) here."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("needs an X display or Xvfb (.ci/run installs it)")
    read, write = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    try:
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    em_workspace(root, WORKSPACE)
    return root


def _grey(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 20) & (r == g) & (g == b)


def _coloured(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return np.maximum(np.abs(r - g), np.maximum(np.abs(g - b), np.abs(r - b))) > 40


def test_workspace_opens_in_napari_and_draws_image_and_labels(
    display: str, ws: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(ws), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["layers"] == [["fibsem", "Image", True, 3], ["nuc", "Labels", True, 2]]
    shots = np.load(tmp_path / "shots.npz")
    both, only_image, only_labels = shots["both"], shots["image"], shots["labels"]
    pixels = both.shape[0] * both.shape[1]
    # the image alone: grey blobs over a good part of the canvas, no colour
    grey = _grey(only_image)
    assert grey.sum() > 0.1 * pixels and _coloured(only_image).sum() == 0
    assert only_image[grey][:, 0].std() > 10  # blobs, not a flat square
    # the labels alone: coloured nuclei where the image is bright (em > 128)
    nuclei = _coloured(only_labels)
    assert nuclei.sum() > 0.01 * pixels
    assert only_image[nuclei][:, 0].mean() > only_image[grey][:, 0].mean()
    # both: the labels drawn over the image
    assert _coloured(both).sum() > 0.5 * nuclei.sum() and _grey(both).sum() > 0
