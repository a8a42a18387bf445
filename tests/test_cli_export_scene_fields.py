"""`coframe export-scene`: a thin-plate-spline edge's error names a command that works; a
cycle of edges that disagree is not exported."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import tifffile
from typer.testing import CliRunner

from coframe.cli import app
from coframe.transforms.affine import Scale, Translation
from coframe.transforms.formats.itk import write_itk


def _stack(path: Path, shape: tuple[int, ...]) -> Path:
    tifffile.imwrite(
        path,
        np.zeros(shape, np.uint8),
        imagej=True,
        resolution=(1.0, 1.0),
        metadata={"axes": "ZYX", "spacing": 1.0, "unit": "um"},
    )
    return path


def _bigwarp(path: Path) -> Path:
    rng = np.random.default_rng(3)
    fixed = rng.uniform(0, 5000, (8, 3))
    moving = fixed * 1.01 + rng.normal(0, 40, (8, 3)) + [200.0, -100.0, 50.0]
    rows = [
        ",".join(f'"{v}"' for v in [f"Pt-{i}", "true", *m[::-1], *f[::-1]])
        for i, (m, f) in enumerate(zip(moving, fixed, strict=True))
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_spline_edge_names_the_command_that_exports_it(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    w = ["-w", str(root)]
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    for name in ("a", "b"):
        stack = _stack(tmp_path / f"{name}.tif", (4, 5, 6))
        assert runner.invoke(app, ["add", name, str(stack), *w]).exit_code == 0
    assert (
        runner.invoke(app, ["link", "a", "b", str(_bigwarp(tmp_path / "lm.csv")), *w]).exit_code
        == 0
    )
    out = tmp_path / "scene.zarr"

    refused = runner.invoke(app, ["export-scene", str(out), *w])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "thin-plate-spline" in refused.stderr and "sample_to_field" not in refused.stderr
    assert not out.exists()
    command = shlex.split(re.search(r"`coframe ([^`]+)`", refused.stderr).group(1))
    assert command[:2] == ["export-scene", str(out)] and "--field-spacing" in command

    done = runner.invoke(app, [*command, *w])
    assert done.exit_code == 0, done.output
    point = json.dumps([[1500.0, 2500.0, 3100.0]])
    direct = runner.invoke(app, ["points", "a", "b", point, *w])
    via_scene = runner.invoke(app, ["points", "a", "b", point, "--scene", str(out)])
    np.testing.assert_allclose(
        json.loads(via_scene.stdout)["coordinates"],
        json.loads(direct.stdout)["coordinates"],
        atol=1.0,  # nm: linear between nodes ~95 nm apart, the spline is nearly affine
    )

    too_fine = runner.invoke(
        app, ["export-scene", str(out), "--force", "--field-spacing", "0.01", *w]
    )
    assert too_fine.exit_code == 2 and "use --field-spacing" in too_fine.stderr
    negative = runner.invoke(
        app, ["export-scene", str(out), "--force", "--field-spacing", "-5", *w]
    )
    assert negative.exit_code == 2 and "not a positive length" in negative.stderr


def test_a_cycle_of_edges_that_disagree_is_not_exported(runner: CliRunner, tmp_path: Path) -> None:
    """a -> b -> c and a -> c must agree, or the scene would be refused when read back."""
    root = tmp_path / "ws"
    w = ["-w", str(root)]
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    for name in ("a", "b", "c"):
        stack = _stack(tmp_path / f"{name}.tif", (4, 5, 6))
        assert runner.invoke(app, ["add", name, str(stack), *w]).exit_code == 0
    edges = {
        ("a", "b"): Scale([2.0, 2.0, 2.0]),
        ("b", "c"): Translation([0.0, 0.0, 100.0]),
        ("a", "c"): Scale([2.0, 2.0, 2.0]).then(Translation([0.0, 30.0, 100.0])),  # 30 nm off
    }
    for (src, dst), t in edges.items():
        path = write_itk(t, tmp_path / f"{src}-{dst}.tfm")
        assert runner.invoke(app, ["link", src, dst, str(path), *w]).exit_code == 0
    out = tmp_path / "scene.zarr"
    refused = runner.invoke(app, ["export-scene", str(out), *w])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1, refused.output
    assert "edge a -> c (" in refused.stderr and "a -> b, b -> c" in refused.stderr
    assert "before exporting" in refused.stderr and not out.exists()
    # corrected, the cycle agrees: exported, and it reads back through either chain
    fixed = Scale([2.0, 2.0, 2.0]).then(Translation([0.0, 0.0, 100.0]))
    write_itk(fixed, tmp_path / "a-c.tfm", force=True)
    link = ["link", "a", "c", str(tmp_path / "a-c.tfm"), "--force", *w]
    assert runner.invoke(app, link).exit_code == 0
    done = runner.invoke(app, ["export-scene", str(out), *w])
    assert done.exit_code == 0, done.output
    mapped = runner.invoke(app, ["points", "a", "c", "[[1, 2, 3]]", "--scene", str(out)])
    assert mapped.exit_code == 0, mapped.output
    np.testing.assert_allclose(json.loads(mapped.stdout)["coordinates"], [[2, 4, 106]])
