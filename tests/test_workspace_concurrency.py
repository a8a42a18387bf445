"""Commands that change one workspace at once all keep their changes, or fail in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from filelock import FileLock
from typer.testing import CliRunner

import coframe.app.workspace_sync as sync
from coframe.app.workspace import init_workspace, load_workspace
from coframe.cli import app
from coframe.core.errors import WorkspaceError

# A child process runs one coframe command; its save waits until every child is
# ready to save, so that all of them have read coframe.yaml before any writes it.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import coframe.app.workspace as w

    gate, count, args = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    save = w.Workspace.save

    def save_together(self, **kwargs):
        (gate / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(gate.iterdir())) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return save(self, **kwargs)

    w.Workspace.save = save_together
    from coframe.cli import app
    app(args)
    """
)


def _stack(path: Path) -> Path:
    tifffile.imwrite(
        path,
        np.zeros((3, 4, 5), np.uint8),
        imagej=True,
        resolution=(1.0, 1.0),
        metadata={"axes": "ZYX", "spacing": 1.0, "unit": "um"},
    )
    return path


def _itk_translation(path: Path, offset: float) -> Path:
    path.write_text(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: TranslationTransform_double_3_3\n"
        f"Parameters: {offset} 0 0\nFixedParameters:\n"
    )
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = init_workspace(tmp_path / "ws")
    for name in ("a", "b", "c"):
        ws = ws.add_image(name, _stack(tmp_path / f"{name}.tif"), None, axes=("z", "y", "x"))
    ws.save()
    return ws.root


def test_concurrent_adds_and_links_all_land(root: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    image = _stack(tmp_path / "img.tif")
    commands = [["add", f"p{i}", str(image)] for i in range(2)]
    commands += [
        ["link", "a", "b", str(_itk_translation(tmp_path / "ab.tfm", 1.0))],
        ["link", "a", "c", str(_itk_translation(tmp_path / "ac.tfm", 2.0))],
    ]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(gate), str(len(commands)), *c, "-w", str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    try:
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            child.kill()
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    doc = yaml.safe_load((root / "coframe.yaml").read_text())
    assert sorted(doc["images"]) == ["a", "b", "c", "p0", "p1"]
    assert sorted(doc["spaces"]) == ["a", "b", "c", "p0", "p1"]
    assert sorted((e["from"], e["to"]) for e in doc["transforms"]) == [("a", "b"), ("a", "c")]


def test_a_value_read_before_another_save_keeps_both_changes(root: Path) -> None:
    first, second = load_workspace(root), load_workspace(root)
    first.add_edge("a", "b", "ab.tfm", "itk", None, {"command": "one"}).save()
    stored = second.add_edge("b", "c", "bc.tfm", "itk", None, {"command": "two"}).save()
    assert [(e.source, e.target) for e in stored.edges] == [("a", "b"), ("b", "c")]
    assert load_workspace(root) == stored
    # saving a value again changes nothing, even after other saves
    again = second.add_edge("b", "c", "bc.tfm", "itk", None, {"command": "two"})
    assert again.save() == stored


def test_the_same_entry_changed_twice_meanwhile_is_an_error_and_keeps_the_first(
    root: Path, tmp_path: Path
) -> None:
    first, second = load_workspace(root), load_workspace(root)
    first.add_image("x", tmp_path / "one.tif", None).save()
    with pytest.raises(WorkspaceError, match="image 'x' was changed by another command"):
        second.add_image("x", tmp_path / "two.tif", None).save()
    assert load_workspace(root).images["x"].path == str(tmp_path / "one.tif")


def test_a_lock_held_too_long_gives_one_line_and_changes_nothing(
    runner: CliRunner, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "LOCK_TIMEOUT", 0.2)
    before = (root / "coframe.yaml").read_text()
    with FileLock(root / sync.LOCK_FILE):
        result = runner.invoke(app, ["add", "late", str(tmp_path / "a.tif"), "-w", str(root)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "another coframe command has been writing" in result.stderr
    assert "run this command again" in result.stderr
    assert (root / "coframe.yaml").read_text() == before
    after = runner.invoke(app, ["add", "late", str(tmp_path / "a.tif"), "-w", str(root)])
    assert after.exit_code == 0, after.output
