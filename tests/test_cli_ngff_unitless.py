"""CLI tests of OME-NGFF scenes whose coordinate systems have axes without a unit.

NGFF makes ``unit`` optional. ``coframe points --scene`` takes unitless axes
in the points' own unit, so points between unitless coordinate systems map as
the plain numbers the file's parameters give; placing such a coordinate
system in a workspace (``link``, ``import-scene``) needs ``--unit``. The
axes are listed x first, as most NGFF files do; coframe's points are
(z, y, x). Every expected value below is worked out by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from coframe.cli import app

XY = [{"name": "x", "type": "space"}, {"name": "y", "type": "space"}]
XYZ = [{"name": n} for n in "xyz"]  # neither unit nor type: spatial by name

TRANSFORMATIONS: dict[str, dict[str, Any]] = {
    "scaled": {"type": "scale", "scale": [2, 3]},
    "shifted": {"type": "translation", "translation": [10, 20]},
    "sheared": {"type": "affine", "affine": [[0, -1, 5], [1, 0, 7]]},
    "turned": {"type": "rotation", "rotation": [[0.6, -0.8, 0], [0.8, 0.6, 0], [0, 0, 1]]},
    "chained": {
        "type": "sequence",
        "transformations": [
            {"type": "scale", "scale": [2, 3]},
            {"type": "translation", "translation": [10, 20]},
        ],
    },
    "halved": {"type": "inverseOf", "transformation": {"type": "scale", "scale": [2, 4]}},
    "paired": {
        "type": "bijection",
        "forward": {"type": "translation", "translation": [1, -1]},
        "inverse": {"type": "translation", "translation": [-1, 1]},
    },
}

# (output space, point in the input space (z,) y, x, the same point in the output space)
CASES = [
    ("scaled", [1, 1], [3, 2]),  # x' = 2 * 1, y' = 3 * 1
    ("shifted", [1, 1], [21, 11]),  # x' = 1 + 10, y' = 1 + 20
    ("sheared", [1, 2], [9, 4]),  # x' = -y + 5 = 4, y' = x + 7 = 9
    ("turned", [5, 1, 2], [5, 2.2, 0.4]),  # x' = 0.6*2 - 0.8*1, y' = 0.8*2 + 0.6*1, z' = z
    ("chained", [1, 1], [23, 12]),  # scale then shift: x' = 2 + 10, y' = 3 + 20
    ("halved", [8, 4], [2, 2]),  # inverse of scale (2, 4): x' = 4 / 2, y' = 8 / 4
    ("paired", [0, 0], [-1, 1]),  # forward shift: x' = 0 + 1, y' = 0 - 1
]


def _scene(path: Path) -> Path:
    systems = [{"name": "in", "axes": XY}, {"name": "in3", "axes": XYZ}]
    systems += [{"name": name, "axes": XYZ if name == "turned" else XY} for name in TRANSFORMATIONS]
    transformations = [
        {**t, "input": "in3" if name == "turned" else "in", "output": name}
        for name, t in TRANSFORMATIONS.items()
    ]
    transformations.append({"type": "scale", "scale": [0.5, 0.25], "input": "in", "output": "um"})
    um_axes = [{**axis, "unit": "micrometer"} for axis in XY]
    systems.append({"name": "um", "axes": um_axes})
    doc = {"coordinateSystems": systems, "coordinateTransformations": transformations}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return _scene(tmp_path / "unitless.json")


def _points(runner: CliRunner, *args: str) -> np.ndarray:
    result = runner.invoke(app, ["points", *args])
    assert result.exit_code == 0, result.output
    return np.asarray(json.loads(result.stdout)["coordinates"])


@pytest.mark.parametrize(("target", "point", "expected"), CASES, ids=[c[0] for c in CASES])
def test_points_map_through_unitless_scene(
    runner: CliRunner, scene: Path, target: str, point: list[float], expected: list[float]
) -> None:
    source = "in3" if len(point) == 3 else "in"
    forward = _points(runner, source, target, json.dumps([point]), "--scene", str(scene))
    np.testing.assert_allclose(forward, [expected], atol=1e-12)
    back = _points(runner, target, source, json.dumps([expected]), "--scene", str(scene))
    np.testing.assert_allclose(back, [point], atol=1e-12)
    # No unit conversion between unitless systems, whatever the points' unit.
    in_um = _points(
        runner, source, target, json.dumps([point]), "--scene", str(scene), "--unit", "um"
    )
    np.testing.assert_allclose(in_um, [expected], atol=1e-12)


def test_unitless_axes_take_the_points_unit(runner: CliRunner, scene: Path) -> None:
    # scale (0.5, 0.25) into micrometres: (y, x) = (4, 8) -> x' = 4 um, y' = 1 um
    got_nm = _points(runner, "in", "um", "[[4, 8]]", "--scene", str(scene))
    np.testing.assert_allclose(got_nm, [[1000.0, 4000.0]])
    got_um = _points(runner, "in", "um", "[[4, 8]]", "--scene", str(scene), "--unit", "um")
    np.testing.assert_allclose(got_um, [[1.0, 4.0]])


def _workspace(runner: CliRunner, root: Path) -> Path:
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    return root


def test_import_scene_needs_a_unit_for_unitless_axes(
    runner: CliRunner, scene: Path, tmp_path: Path
) -> None:
    ws = _workspace(runner, tmp_path / "ws")
    before = (ws / "coframe.yaml").read_text()
    refused = runner.invoke(app, ["import-scene", str(scene), "-w", str(ws)])
    assert refused.exit_code == 2
    message = refused.stderr.strip()
    assert "\n" not in message and "has no unit" in message and "--unit" in message
    assert "nanometer" in message
    assert (ws / "coframe.yaml").read_text() == before
    result = runner.invoke(app, ["import-scene", str(scene), "--unit", "um", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    # The numbers are micrometres: (1, 1) um -> (3, 2) um, in the workspace's nanometres.
    got = _points(runner, "in", "scaled", "[[1000, 1000]]", "-w", str(ws))
    np.testing.assert_allclose(got, [[3000.0, 2000.0]])
    got = _points(runner, "in", "um", "[[4000, 8000]]", "-w", str(ws))
    np.testing.assert_allclose(got, [[1000.0, 4000.0]])


def test_link_needs_a_unit_for_unitless_axes(
    runner: CliRunner, scene: Path, tmp_path: Path
) -> None:
    ws = _workspace(runner, tmp_path / "ws")
    text = (ws / "coframe.yaml").read_text()
    text = text.replace("spaces: {}", "spaces:\n  a: {axes: [y, x]}\n  b: {axes: [y, x]}")
    (ws / "coframe.yaml").write_text(text)
    single = tmp_path / "shift.json"
    doc = json.loads(scene.read_text())
    doc["coordinateTransformations"] = [
        {**TRANSFORMATIONS["shifted"], "input": "in", "output": "shifted"}
    ]
    single.write_text(json.dumps(doc))
    refused = runner.invoke(app, ["link", "a", "b", str(single), "-w", str(ws)])
    assert refused.exit_code == 2
    assert "\n" not in refused.stderr.strip() and "--unit" in refused.stderr
    result = runner.invoke(app, ["link", "a", "b", str(single), "--unit", "um", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    # translation (10, 20) um along (x, y): (y, x) = (0, 0) -> (20000, 10000) nm
    got = _points(runner, "a", "b", "[[0, 0]]", "-w", str(ws))
    np.testing.assert_allclose(got, [[20000.0, 10000.0]])
    back = _points(runner, "b", "a", "[[20000, 10000]]", "-w", str(ws))
    np.testing.assert_allclose(back, [[0.0, 0.0]], atol=1e-9)
