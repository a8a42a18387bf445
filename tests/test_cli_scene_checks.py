"""CLI tests of what ``coframe points --scene`` accepts and refuses in an OME-NGFF scene.

A rotation written to three decimals is made orthonormal with a one-line
warning. Axes are listed x first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
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
