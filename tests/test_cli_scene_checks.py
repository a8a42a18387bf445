"""CLI tests of what ``coframe points --scene`` accepts and refuses in an OME-NGFF scene.

A rotation written to three decimals is made orthonormal with a one-line
warning; truly invalid scenes (a matrix far from a rotation, parameters for
the wrong number of axes, an unknown type, a cycle whose transformations
disagree) are refused in one line that names the field and the fix, with
exit status 2. Axes are listed x first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from coframe.cli import app

AXES = [{"name": n, "type": "space", "unit": "micrometer"} for n in "xy"]


def _scene(path: Path, transformation: dict[str, Any]) -> Path:
    doc = {
        "coordinateSystems": [{"name": "a", "axes": AXES}, {"name": "b", "axes": AXES}],
        "coordinateTransformations": [{**transformation, "input": "a", "output": "b"}],
    }
    path.write_text(json.dumps(doc))
    return path


def test_rounded_rotation_maps_with_a_one_line_warning(runner: CliRunner, tmp_path: Path) -> None:
    a, b = 0.17, 0.985
    scene = _scene(tmp_path / "s.json", {"type": "rotation", "rotation": [[a, -b], [b, a]]})
    result = runner.invoke(app, ["points", "a", "b", "[[0, 1]]", "--scene", str(scene)])
    assert result.exit_code == 0, result.output
    warning = result.stderr.strip()
    assert "\n" not in warning and warning.startswith("warning: ")
    assert "coordinateTransformations[0].rotation" in warning
    assert "|R R^T - I| = 0.000875" in warning
    # (y, x) = (0, 1): x' = a/n, y' = b/n with n = |(a, b)| (the nearest rotation)
    n = np.hypot(a, b)
    got = json.loads(result.stdout)["coordinates"]
    np.testing.assert_allclose(got, [[b / n, a / n]], rtol=1e-12)


@pytest.mark.parametrize(
    ("transformation", "field", "fix"),
    [
        (
            {"type": "rotation", "rotation": [[1.0, 0.1], [0.0, 1.0]]},
            "coordinateTransformations[0].rotation",
            "write an 'affine' for a general linear map",
        ),
        (
            {"type": "scale", "scale": [1, 2, 3]},
            "coordinateTransformations[0]",
            "give parameters for 2 axes",
        ),
        (
            {"type": "affine", "affine": [[1, 0, 0, 5], [0, 1, 0, 6], [0, 0, 1, 7]]},
            "coordinateTransformations[0]",
            "give parameters for 2 axes",
        ),
        (
            {"type": "thinPlateSpline"},
            "coordinateTransformations[0].type",
            "expected one of identity, mapAxis, translation",
        ),
    ],
    ids=["far-from-rotation", "dimension-scale", "dimension-affine", "unknown-type"],
)
def test_invalid_scene_is_refused_in_one_line(
    runner: CliRunner, tmp_path: Path, transformation: dict[str, Any], field: str, fix: str
) -> None:
    scene = _scene(tmp_path / "bad.json", transformation)
    result = runner.invoke(app, ["points", "a", "b", "[[0, 1]]", "--scene", str(scene)])
    assert result.exit_code == 2
    error = result.stderr.strip()
    assert "\n" not in error and error.startswith(f"error: {scene}: {field}: ")
    assert fix in error


def _cycle(path: Path, a_to_c: list[float]) -> Path:
    """a -> b (scale 2), b -> c (shift 10 in x), a -> c: a translation-free map ``a_to_c``."""
    doc = {
        "coordinateSystems": [{"name": n, "axes": AXES} for n in "abc"],
        "coordinateTransformations": [
            {"type": "scale", "scale": [2, 2], "input": "a", "output": "b"},
            {"type": "translation", "translation": [10, 0], "input": "b", "output": "c"},
            {"type": "affine", "affine": [[2, 0, a_to_c[0]], [0, 2, a_to_c[1]]]},
        ],
    }
    doc["coordinateTransformations"][2] |= {"input": "a", "output": "c", "name": "direct"}
    path.write_text(json.dumps(doc))
    return path


def test_a_cycle_whose_transformations_disagree_is_refused(
    runner: CliRunner, tmp_path: Path
) -> None:
    # x_c = 2 x_a + 10, y_c = 2 y_a through b: the direct edge agrees, or is 3 um off in y
    good = _cycle(tmp_path / "good.json", [10, 0])
    result = runner.invoke(app, ["points", "a", "c", "[[1000, 1000]]", "--scene", str(good)])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(json.loads(result.stdout)["coordinates"], [[2000, 12000]])
    bad = _cycle(tmp_path / "bad.json", [10, 3])
    result = runner.invoke(app, ["points", "a", "c", "[[1000, 1000]]", "--scene", str(bad)])
    assert result.exit_code == 2
    error = result.stderr.strip()
    assert "\n" not in error and error.startswith(f"error: {bad}: coordinateTransformations[2] ")
    assert "(direct: a -> c)" in error and "a -> b -> c" in error
    assert "correct or remove one of them" in error
