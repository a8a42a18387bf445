"""A hand-edited ``coframe.yaml`` saying what coframe does not know is a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from coframe.app.workspace import init_workspace, load_workspace
from coframe.app.workspace_file import check_kind
from coframe.cli import app
from coframe.core.errors import DimensionError, WorkspaceError
from coframe.transforms.graph import KIND_NAMES

HEAD = """\
coframe: 1
unit: nanometer
spaces:
  fibsem: {axes: [z, y, x]}
images:
  fibsem: {path: fibsem.tif, modality: fibsem, space: fibsem}
  xray: {path: xray.tif, modality: xray}
"""
EDGE = "transforms:\n  - {from: fibsem, to: xray, file: t.tfm, format: itk, kind: affine}\n"


def _write(root: Path, text: str) -> Path:
    root.mkdir(exist_ok=True)
    (root / "coframe.yaml").write_text(text)
    return root


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEAD + EDGE + "imgaes: {}\n", "imgaes: unknown top-level key; expected one of coframe"),
        (
            HEAD + "  nuc: {path: nuc.zarr, space: fibsm}\n" + EDGE,
            "images.nuc.space: space 'fibsm' is not declared: use a known space (fibsem, xray)",
        ),
        (
            HEAD + EDGE.replace("to: xray", "to: xrya"),
            "transforms[0].to: space 'xrya' is not declared",
        ),
        (
            HEAD + EDGE.replace("kind: affine", "kind: afine"),
            "transforms[0].kind: 'afine' is not a transform kind (unknown word 'afine')",
        ),
        (
            HEAD + EDGE.replace("kind: affine", "kind: 'sequence(affine, displacements'"),
            "(unpaired parentheses)",
        ),
    ],
)
def test_the_error_names_the_key_and_the_fix(
    runner: CliRunner, tmp_path: Path, text: str, expected: str
) -> None:
    root = _write(tmp_path / "ws", text)
    with pytest.raises(WorkspaceError) as info:
        load_workspace(root)
    assert expected in str(info.value)
    result = runner.invoke(app, ["graph", "-w", str(root)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr
    assert str(root / "coframe.yaml") in result.stderr
    assert "declare it under spaces" in result.stderr or "correct" in result.stderr


def test_what_the_commands_write_still_loads(tmp_path: Path) -> None:
    for kind in [*KIND_NAMES.values(), "sequence(affine, inverse(displacements))", "unitscaled"]:
        assert check_kind(kind, "kind") == kind
    text = HEAD + EDGE
    text += "  - {from: xray, to: tem, file: t.json, format: ngff, kind: bijection(affine)}\n"
    text += "x-notes: {by: another tool}\n"
    text = text.replace("spaces:\n", "spaces:\n  tem: {axes: [y, x]}\n")
    ws = load_workspace(_write(tmp_path / "ws", text))
    assert [e.target for e in ws.edges] == ["xray", "tem"]
    assert ws.extras == {"x-notes": {"by": "another tool"}}


def _tif(path: Path, shape: tuple[int, ...]) -> None:
    tifffile.imwrite(
        path,
        np.zeros(shape, np.uint8),
        imagej=True,
        resolution=(1.0, 1.0),
        metadata={"axes": "ZYX"[-len(shape) :], "spacing": 1.0, "unit": "um"},
    )


@pytest.mark.parametrize("axes", ["[y, x]", "[x, y, z]"])
def test_axes_that_disagree_with_the_image_are_an_error_when_it_is_opened(
    runner: CliRunner, tmp_path: Path, axes: str
) -> None:
    root = _write(tmp_path / "ws", HEAD.replace("[z, y, x]", axes))
    _tif(root / "fibsem.tif", (4, 5, 6))
    _tif(root / "xray.tif", (4, 5, 6))
    with pytest.raises(DimensionError, match=r"spaces\.fibsem\.axes is \[.*\] but image 'fibsem'"):
        load_workspace(root).open_image("fibsem")
    result = runner.invoke(app, ["register", "xray", "fibsem", "-w", str(root)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "set spaces.fibsem.axes to ['z', 'y', 'x']" in result.stderr
    assert not (root / "transforms").exists()


def test_an_image_added_in_another_space_declares_it(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ws.add_image("nuc", tmp_path / "nuc.zarr", "labels", space="em").save()
    back = load_workspace(tmp_path / "ws")
    assert back.images["nuc"].space == "em" and back.spaces["em"].axes is None
