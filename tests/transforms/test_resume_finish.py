"""A resample run killed while creating or removing its run state is resumed by the same command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coframe.resampling import resume
from coframe.resampling.plan import plan_blocks


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.mark.parametrize("removals", range(0, 6))
def test_a_run_stopped_while_finishing_keeps_its_record_or_no_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, removals: int
) -> None:
    out = tmp_path / "out.zarr"
    resume.start_or_resume(out, {"a": 1}, (4, 4, 4), force=False)
    for block in plan_blocks((8, 8, 8), (4, 4, 4)):
        resume.mark_done(str(out), "s0", block)
    unlink, count = os.unlink, [0]

    def dying_unlink(*args: object, **kwargs: object) -> None:
        if count[0] == removals:
            raise Killed
        count[0] += 1
        unlink(*args, **kwargs)

    monkeypatch.setattr(os, "unlink", dying_unlink)
    with pytest.raises(Killed):
        resume.finish_run(out)
    monkeypatch.undo()
    state = out / resume.STATE_DIR
    # the same command resumes (same block layout) from what is left
    assert (state / "run.json").is_file()
    assert resume.start_or_resume(out, {"a": 1}, (2, 2, 2), force=False) == ((4, 4, 4), True)


def test_a_run_stopped_while_starting_leaves_no_output_without_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.zarr"

    def dying_write(*args: object) -> None:
        raise Killed

    monkeypatch.setattr(resume, "_write_json", dying_write)
    with pytest.raises(Killed):
        resume.start_or_resume(out, {"a": 1}, (4, 4, 4), force=False)
    monkeypatch.undo()
    assert not out.exists()
    # the same command starts afresh, without --force
    assert resume.start_or_resume(out, {"a": 1}, (4, 4, 4), force=False) == ((4, 4, 4), False)
    assert (out / resume.STATE_DIR / "run.json").is_file()
