"""Image and space names stay plain names: no path, line break or control character gets in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from typer.testing import CliRunner

from coframe.app.locate import locate_paths
from coframe.app.register import output_path
from coframe.app.workspace import Workspace, init_workspace, load_workspace
from coframe.app.workspace_file import ImageEntry, check_name
from coframe.cli import app
from coframe.core.errors import WorkspaceError
from coframe.transforms.affine import Translation
from coframe.transforms.formats.ngff import SceneTransformation, write_scene
from coframe.transforms.formats.ngff_axes import CoordinateSystem

BAD_NAMES = [
    "../../../../ESC2",
    "a/b",
    "a\\b",
    "n\nl",
    "tab\there",
    "bell\x07",
    ".hidden",
    "-flag",
    "a..b",
    "..",
    "",
    " padded ",
    "x" * 65,
    "fibsem->xray",
]


def _stack(path: Path) -> Path:
    tifffile.imwrite(
        path,
        np.zeros((3, 4, 5), np.uint8),
        imagej=True,
        resolution=(1.0, 1.0),
        metadata={"axes": "ZYX", "spacing": 1.0, "unit": "um"},
    )
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "a" / "b" / "c" / "d" / "ws"
    init_workspace(ws)
    return ws


@pytest.mark.parametrize("name", BAD_NAMES)
def test_add_refuses_unsafe_names_in_one_line(runner: CliRunner, root: Path, name: str) -> None:
    stack = _stack(root / "img.tif")
    for args in (["--", name, str(stack)], ["--space", name, "--", "ok", str(stack)]):
        result = runner.invoke(app, ["add", "-w", str(root), *args])
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert "is not allowed" in result.stderr
    assert yaml.safe_load((root / "coframe.yaml").read_text())["images"] == {}
    assert sorted(p.name for p in root.parents[3].iterdir()) == ["b"]


def test_the_message_suggests_a_safe_name(runner: CliRunner, root: Path) -> None:
    result = runner.invoke(
        app, ["add", "../../../../ESC2", str(_stack(root / "i.tif")), "-w", str(root)]
    )
    assert "NAME: name '../../../../ESC2' is not allowed" in result.stderr
    assert "e.g. 'ESC2'" in result.stderr


@pytest.mark.parametrize("name", ["fibsem", "tem-1", "jrc_mus-liver.s0", "_x", "A" * 64])
def test_plain_names_pass(name: str) -> None:
    assert check_name(name, "NAME") == name


@pytest.mark.parametrize(
    "entry",
    [
        "images:\n  ../../ESC2: {path: a.tif}\n",
        "images:\n  a: {path: a.tif, space: ../../ESC2}\n",
        'images:\n  "n\\nl": {path: a.tif}\n',
        "spaces:\n  a/b: {axes: [z, y, x]}\n",
        "images:\n  a: {path: a.tif}\n  b: {path: b.tif}\n"
        "transforms:\n  - {from: a, to: ../b, file: t.tfm, format: itk}\n",
    ],
)
def test_a_hand_edited_unsafe_name_is_refused_on_load(
    runner: CliRunner, root: Path, entry: str
) -> None:
    (root / "coframe.yaml").write_text("coframe: 1\n" + entry)
    with pytest.raises(WorkspaceError, match="is not allowed") as info:
        load_workspace(root)
    assert str(root / "coframe.yaml") in str(info.value) and "\n" not in str(info.value)
    result = runner.invoke(app, ["graph", "-w", str(root)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def test_files_placed_by_name_stay_inside_the_workspace(root: Path) -> None:
    # A workspace value built around the checks still cannot place a file outside.
    ws = Workspace(root, images={"../../ESC2": ImageEntry("../../ESC2", "a.tif", "../../ESC2")})
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        output_path(ws, "../../../../ESC2", "F", False)
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        locate_paths(ws, "../../ESC2", "../../ESC2", None)
    assert output_path(ws, "a", "b", True) == root / "transforms" / "a-to-b.h5"
    assert not list(root.parents[3].rglob("ESC2*"))


def test_import_scene_refuses_an_unsafe_coordinate_system_name(
    runner: CliRunner, root: Path
) -> None:
    systems = [CoordinateSystem.spatial(n, 3, "nanometer") for n in ("../../up", "b")]
    edge = SceneTransformation("../../up", "b", Translation([1.0, 2.0, 3.0]), None)
    scene = write_scene(root.parent / "scene.zarr", systems, [edge], unit="nanometer")
    before = (root / "coframe.yaml").read_text()
    result = runner.invoke(app, ["import-scene", str(scene), "-w", str(root)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "coordinate system in" in result.stderr and "'../../up' is not allowed" in result.stderr
    assert (root / "coframe.yaml").read_text() == before
