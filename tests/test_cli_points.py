"""CLI tests of `coframe points` across three spaces, and of scene export and import.

The workspace holds X-ray and FIB-SEM volumes and a 2D TEM section. Two edges
are stored: ``fibsem -> xray`` (a hand-written ITK affine, x-first in the
file) and ``tem -> xray`` (a 2D -> 3D OME-NGFF affine, the section's pose).
Expected answers are computed here with plain numpy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from coframe.cli import app

A_XYZ = np.array([[0.99, 0.06, -0.01], [-0.05, 1.01, 0.02], [0.02, -0.03, 0.97]])
T_XYZ = np.array([-2500.0, 800.0, 1200.0])
# TEM pose: rows z, y, x; columns y, x, 1 (section physical nm -> X-ray physical nm)
POSE = np.array([[0.12, 0.0, 4000.0], [0.97, 0.21, -300.0], [-0.2, 0.96, 150.0]])

WORKSPACE = """\
coframe: 1
unit: nanometer
spaces:
  xray: {axes: [z, y, x]}
  fibsem: {axes: [z, y, x]}
  tem: {axes: [y, x]}
images:
  xray: {path: xray.zarr, modality: xray, space: xray}
  fibsem: {path: fibsem.zarr, modality: fibsem, space: fibsem}
  tem: {path: tem.tif, modality: tem, space: tem}
transforms: []
"""


def _axes(names: str) -> list[dict[str, str]]:
    return [{"name": n, "type": "space", "unit": "nanometer"} for n in names]


def _fibsem_to_xray(p: np.ndarray) -> np.ndarray:
    return (p[:, ::-1] @ A_XYZ.T + T_XYZ)[:, ::-1]


def _xray_to_fibsem(q: np.ndarray) -> np.ndarray:
    return np.linalg.solve(A_XYZ, (q[:, ::-1] - T_XYZ).T).T[:, ::-1]


def _tem_to_xray(p: np.ndarray) -> np.ndarray:
    return p @ POSE[:, :2].T + POSE[:, 2]


@pytest.fixture
def ws(tmp_path: Path, runner: CliRunner) -> Path:
    root = tmp_path / "ws"
    (root / "transforms").mkdir(parents=True)
    (root / "coframe.yaml").write_text(WORKSPACE)
    params = " ".join(repr(float(v)) for v in [*A_XYZ.ravel(), *T_XYZ])
    tfm = root / "transforms" / "fibsem-to-xray.tfm"
    tfm.write_text(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
        f"Parameters: {params}\nFixedParameters: 0 0 0\n"
    )
    pose = root / "transforms" / "tem-pose.json"
    pose.write_text(
        json.dumps(
            {
                "coordinateSystems": [
                    {"name": "tem", "axes": _axes("yx")},
                    {"name": "xray", "axes": _axes("zyx")},
                ],
                "coordinateTransformations": [
                    {"type": "affine", "affine": POSE.tolist(), "input": "tem", "output": "xray"}
                ],
            }
        )
    )
    for args in (["fibsem", "xray", str(tfm)], ["tem", "xray", str(pose)]):
        result = runner.invoke(app, ["link", *args, "-w", str(root)])
        assert result.exit_code == 0, result.output
    return root


def _points(runner: CliRunner, *args: str) -> np.ndarray:
    result = runner.invoke(app, ["points", *args])
    assert result.exit_code == 0, result.output
    return np.asarray(json.loads(result.stdout)["coordinates"])


P3 = np.array([[1000.0, -2000.0, 500.0], [12.5, 40.0, 7000.0], [0.0, 0.0, 0.0]])
P2 = np.array([[100.0, 200.0], [-3000.0, 4500.0]])


def test_chains_through_inverted_edges_give_independent_answers(
    runner: CliRunner, ws: Path
) -> None:
    w = ["-w", str(ws)]
    xray = _points(runner, "fibsem", "xray", json.dumps(P3.tolist()), *w)
    np.testing.assert_allclose(xray, _fibsem_to_xray(P3), atol=1e-9)
    back = _points(runner, "xray", "fibsem", json.dumps(P3.tolist()), *w)
    np.testing.assert_allclose(back, _xray_to_fibsem(P3), atol=1e-9)
    tem_in_fibsem = _points(runner, "tem", "fibsem", json.dumps(P2.tolist()), *w)
    np.testing.assert_allclose(tem_in_fibsem, _xray_to_fibsem(_tem_to_xray(P2)), atol=1e-9)
    in_um = _points(runner, "tem", "xray", json.dumps((P2 / 1000).tolist()), "--unit", "um", *w)
    np.testing.assert_allclose(in_um, _tem_to_xray(P2) / 1000, atol=1e-12)


def test_a_volume_cannot_be_mapped_into_a_section(runner: CliRunner, ws: Path) -> None:
    result = runner.invoke(app, ["points", "fibsem", "tem", "[1, 2, 3]", "-w", str(ws)])
    assert result.exit_code == 2
    message = json.loads(result.stdout)["message"]
    assert "needs the inverse of edge tem -> xray (transforms/tem-pose.json)" in message
    assert "2D -> 3D" in message
    assert result.stderr.strip() == f"error: {message}"
    wrong_dim = runner.invoke(app, ["points", "tem", "xray", "[1, 2, 3]", "-w", str(ws)])
    assert wrong_dim.exit_code == 2
    assert "3 coordinates but space 'tem' has 2 axes" in json.loads(wrong_dim.stdout)["message"]


def test_graph_summarises_the_three_spaces(runner: CliRunner, ws: Path) -> None:
    desc = json.loads(runner.invoke(app, ["graph", "--json", "-w", str(ws)]).stdout)
    assert [(e["from"], e["to"], e["kind"], e["format"]) for e in desc["edges"]] == [
        ("fibsem", "xray", "affine", "itk"),
        ("tem", "xray", "affine", "ngff"),
    ]
    assert desc["components"] == [["xray", "fibsem", "tem"]]


def test_export_scene_then_points_from_the_scene(
    runner: CliRunner, ws: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scene.zarr"
    result = runner.invoke(app, ["export-scene", str(out), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    assert "3 spaces, 2 transformations" in result.stdout
    again = runner.invoke(app, ["export-scene", str(out), "-w", str(ws)])
    assert again.exit_code == 2 and "--force" in again.stderr
    assert runner.invoke(app, ["export-scene", str(out), "--force", "-w", str(ws)]).exit_code == 0
    scene = ["--scene", str(out)]
    got = _points(runner, "tem", "fibsem", json.dumps(P2.tolist()), *scene)
    np.testing.assert_allclose(got, _xray_to_fibsem(_tem_to_xray(P2)), atol=1e-6)
    got_um = _points(
        runner, "fibsem", "xray", json.dumps((P3 / 1e3).tolist()), *scene, "--unit", "um"
    )
    np.testing.assert_allclose(got_um, _fibsem_to_xray(P3) / 1e3, atol=1e-9)
    missing = runner.invoke(app, ["points", "tem", "lm", "[1, 2]", *scene])
    assert missing.exit_code == 2
    assert "unknown space 'lm'" in json.loads(missing.stdout)["message"]


def test_points_from_a_hand_written_scene(runner: CliRunner, tmp_path: Path) -> None:
    scene = tmp_path / "scene.json"
    scene.write_text(
        json.dumps(
            {
                "coordinateSystems": [
                    {"name": "a", "axes": _axes("xyz")},
                    {"name": "b", "axes": _axes("xyz")},
                ],
                "coordinateTransformations": [
                    {"type": "translation", "translation": [1, 2, 3], "input": "a", "output": "b"}
                ],
            }
        )
    )
    got = _points(runner, "b", "a", "[[10, 20, 30]]", "--scene", str(scene))
    np.testing.assert_allclose(got, [[7.0, 18.0, 29.0]])  # (z, y, x) minus (3, 2, 1)


def test_import_scene_adds_spaces_and_edges(runner: CliRunner, ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "scene.zarr"
    assert runner.invoke(app, ["export-scene", str(out), "-w", str(ws)]).exit_code == 0
    fresh = tmp_path / "fresh"
    assert runner.invoke(app, ["init", str(fresh)]).exit_code == 0
    result = runner.invoke(app, ["import-scene", str(out), "-w", str(fresh)])
    assert result.exit_code == 0, result.output
    assert "edge tem -> xray: affine, transforms/tem-to-xray.zarr" in result.stdout
    doc = yaml.safe_load((fresh / "coframe.yaml").read_text())
    assert doc["spaces"] == {
        "xray": {"axes": ["z", "y", "x"]},
        "fibsem": {"axes": ["z", "y", "x"]},
        "tem": {"axes": ["y", "x"]},
    }
    assert [(e["from"], e["to"], e["format"]) for e in doc["transforms"]] == [
        ("fibsem", "xray", "ngff"),
        ("tem", "xray", "ngff"),
    ]
    assert doc["transforms"][0]["provenance"]["inputs"]["scene"] == str(out)
    assert (fresh / "transforms" / "fibsem-to-xray.zarr").is_dir()
    got = _points(runner, "tem", "fibsem", json.dumps(P2.tolist()), "-w", str(fresh))
    np.testing.assert_allclose(got, _xray_to_fibsem(_tem_to_xray(P2)), atol=1e-6)
    before = (fresh / "coframe.yaml").read_text()
    again = runner.invoke(app, ["import-scene", str(out), "-w", str(fresh)])
    assert again.exit_code == 2 and "--force" in again.stderr
    assert (fresh / "coframe.yaml").read_text() == before
    assert (
        runner.invoke(app, ["import-scene", str(out), "--force", "-w", str(fresh)]).exit_code == 0
    )
