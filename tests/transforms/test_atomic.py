"""Atomic outputs: complete or absent, never half-written; --force to replace."""

from __future__ import annotations

from pathlib import Path

import pytest

import coframe.core.atomic as atomic
from coframe.core.atomic import atomic_output, write_text_atomic
from coframe.core.errors import OutputError, OverwriteError


def test_text_write_refuses_existing_and_replaces_with_force(tmp_path: Path) -> None:
    p = write_text_atomic(tmp_path / "a" / "t.txt", "one")
    assert p.read_text() == "one"
    with pytest.raises(OverwriteError, match="--force"):
        write_text_atomic(p, "two")
    write_text_atomic(p, "two", force=True)
    assert p.read_text() == "two"
    assert [q.name for q in p.parent.iterdir()] == ["t.txt"]


def test_directory_output_replaces_an_existing_directory_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.zarr"
    (target / "old").mkdir(parents=True)
    with atomic_output(target, force=True) as tmp:
        (tmp / "new").mkdir(parents=True)
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_failed_body_leaves_target_and_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    target.write_text("kept")
    with pytest.raises(RuntimeError), atomic_output(target, force=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


def test_system_refusal_becomes_one_line_output_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t.txt"
    target.write_text("kept")

    def full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(OutputError, match="No space left on device.*rerun") as info:
        write_text_atomic(target, "new", force=True)
    assert "\n" not in str(info.value)
    assert target.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]
