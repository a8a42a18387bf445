"""``coframe resample`` when something is wrong: absurd grids, bad flags, unwritable outputs
(with ``init`` and ``export-viewer``, which create directories too), corrupt source chunks,
workers elsewhere. Each gives one line and exit 2, or a run that finishes; nothing stored is
lost."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import coframe.resampling.engine as engine_mod
import coframe.resampling.runner as runner_mod
import coframe.resampling.writer as writer_mod
from coframe.cli import app
from coframe.resampling.plan import OutputGrid, plan_blocks
from coframe.resampling.runner import DaskRunner
from coframe.resampling.source import ImageSource
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine
from coframe.transforms.formats.itk import write_itk
from coframe.volumes.open import open_volume

EM_SHAPE = (32, 40, 48)


def _em() -> np.ndarray:
    z, y, x = np.indices(EM_SHAPE)
    return (40 + (z * 3 + y * 2 + x) % 200).astype(np.uint8)


@pytest.fixture
def ws(tmp_path: Path, runner: CliRunner) -> Path:
    """A workspace: `em` (4 nm, chunks 16^3) and `xr` (10 nm), linked by an affine edge."""
    root = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    em = create_ome_zarr(
        root / "em.zarr", shape0=EM_SHAPE, voxel_size0=(4.0,) * 3, dtype=np.uint8, chunks=(16,) * 3
    )
    em.write(0, (0, 0, 0), _em())
    xr = create_ome_zarr(
        root / "xr.zarr", shape0=(12, 14, 16), voxel_size0=(10.0,) * 3, dtype=np.uint8
    )
    xr.write(0, (0, 0, 0), np.full((12, 14, 16), 7, np.uint8))
    for name in ("em", "xr"):
        added = runner.invoke(app, ["add", name, str(root / f"{name}.zarr"), "-w", str(root)])
        assert added.exit_code == 0, added.output
    write_itk(Affine.from_linear(np.eye(3), (6.0, -4.0, 10.0)), root / "xr-to-em.tfm")
    linked = runner.invoke(app, ["link", "xr", "em", str(root / "xr-to-em.tfm"), "-w", str(root)])
    assert linked.exit_code == 0, linked.output
    return root


def _run(runner: CliRunner, ws: Path, *args: str) -> object:
    return runner.invoke(app, ["resample", *args, "--quiet", "-w", str(ws)])


def _one_line_error(result: object, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# --------------------------------------------------------------------------- output size


def test_voxel_count_of_a_huge_grid_does_not_overflow() -> None:
    grid = OutputGrid(
        (224_000_000, 280_000_000, 336_000_000),
        (1.0,) * 3,
        (0.0,) * 3,
        ("z", "y", "x"),
        "nm",
        (64, 128, 128),
    )
    assert grid.n_voxels == 224_000_000 * 280_000_000 * 336_000_000


@pytest.mark.timeout(60)
def test_absurd_output_is_refused_before_anything_is_created(runner: CliRunner, ws: Path) -> None:
    out = ws / "huge.zarr"
    result = _run(runner, ws, "em", "--into", "xr", "-o", str(out), "--voxel-size", "1e-6")
    _one_line_error(result, "120000000 x 140000000 x 160000000", "--max-output-size 16 TB")
    assert "--voxel-size" in result.stderr
    assert not out.exists()


def test_max_output_size_sets_the_bound(runner: CliRunner, ws: Path) -> None:
    out = ws / "small.zarr"
    # 12 x 14 x 16 uint8 voxels: 2688 bytes
    refused = _run(runner, ws, "em", "--into", "xr", "-o", str(out), "--max-output-size", "2kB")
    _one_line_error(refused, "12 x 14 x 16", "2.69 kB", "--max-output-size 2 kB")
    assert not out.exists()
    bad = _run(runner, ws, "em", "--into", "xr", "-o", str(out), "--max-output-size", "lots")
    _one_line_error(bad, "--max-output-size 'lots'", "2TB")
    allowed = _run(runner, ws, "em", "--into", "xr", "-o", str(out), "--max-output-size", "3kB")
    assert allowed.exit_code == 0, allowed.output
    assert open_volume(out).levels[0].shape == (12, 14, 16)


# --------------------------------------------------------------------------- distributed workers


class _Done:
    """A finished future of :class:`_FarClient`."""

    def __init__(self, key: int, value: object) -> None:
        self.key = key
        self.value = value

    def result(self) -> object:
        return self.value


class _FarClient:
    """A ``dask.distributed`` client whose one worker runs in another working directory."""

    workdir: Path

    def __init__(self, address: str, timeout: str | None = None) -> None:
        self.address = address

    def nthreads(self) -> dict[str, int]:
        return {"tcp://worker": 1}

    def compute(self, tasks: list[object]) -> list[_Done]:
        import dask
        import dask.local

        here = os.getcwd()
        os.chdir(self.workdir)
        try:
            values = dask.compute(*tasks, scheduler=dask.local.get_sync)
        finally:
            os.chdir(here)
        return [_Done(i, v) for i, v in enumerate(values)]

    def cancel(self, futures: object) -> None:
        pass

    def close(self) -> None:
        pass


def test_scheduler_workers_get_absolute_paths(
    runner: CliRunner, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative -o reaches workers that start elsewhere as the same absolute output."""
    distributed = pytest.importorskip("distributed")
    workdir = tmp_path / "worker-home"
    workdir.mkdir()
    monkeypatch.setattr(_FarClient, "workdir", workdir, raising=False)
    monkeypatch.setattr(distributed, "Client", _FarClient)
    monkeypatch.setattr(distributed, "as_completed", iter)
    monkeypatch.chdir(ws)
    args = ["em", "--into", "xr", "--chunks", "8,8,8"]
    result = _run(runner, ws, *args, "-o", "outd.zarr", "--scheduler", "tcp://scheduler:8786")
    assert result.exit_code == 0, result.output
    assert not any(workdir.iterdir())
    level = open_volume(ws / "outd.zarr").levels[0]
    assert level.shape == (12, 14, 16)
    local = _run(runner, ws, *args, "-o", "local.zarr")
    assert local.exit_code == 0, local.output
    assert np.array_equal(level.read(), open_volume(ws / "local.zarr").levels[0].read())
    assert np.count_nonzero(level.read()) > 0


def test_a_source_spec_holds_an_absolute_path(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ws)
    assert ImageSource("em.zarr").path == str(ws / "em.zarr")
    assert ImageSource("s3://bucket/em.zarr").path == "s3://bucket/em.zarr"


# --------------------------------------------------------------------------- read-only outputs

#: The three commands that create an output directory, with their output inside ``{ro}``.
_WRITERS = {
    "init": ["init", "{ro}/new-ws"],
    "resample": ["resample", "em", "--into", "xr", "-o", "{ro}/out.zarr", "--quiet"],
    "export-viewer": ["export-viewer", "em", "xr", "-o", "{ro}/viewer", "--size", "16"],
}


def _simulate_read_only(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """``mkdir`` under ``directory`` fails as on a read-only file system (whoever runs)."""
    real = os.mkdir

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        if Path(os.fspath(path)).absolute().is_relative_to(directory):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refuse)


def _write_into(runner: CliRunner, ws: Path, command: str, ro: Path) -> object:
    args = [a.format(ro=ro) for a in _WRITERS[command]]
    return runner.invoke(app, [*args, *([] if command == "init" else ["-w", str(ws)])])


@pytest.mark.parametrize("command", list(_WRITERS))
def test_read_only_output_location_is_one_line(
    runner: CliRunner, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    ro = tmp_path / "read-only"
    ro.mkdir()
    _simulate_read_only(monkeypatch, ro)
    result = _write_into(runner, ws, command, ro)
    _one_line_error(result, f"cannot write {ro}/", "Read-only file system")
    assert "-o" in result.stderr or "DIR" in result.stderr or "another location" in result.stderr
    assert not any(ro.iterdir())


@pytest.mark.parametrize("command", list(_WRITERS))
def test_unwritable_directory_is_one_line(
    runner: CliRunner, ws: Path, tmp_path: Path, command: str
) -> None:
    """The same through real permissions (skipped where they do not apply: root)."""
    ro = tmp_path / "locked"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):
        ro.chmod(0o755)
        pytest.skip("this user writes into a 0o555 directory (root)")
    try:
        result = _write_into(runner, ws, command, ro)
    finally:
        ro.chmod(0o755)
    _one_line_error(result, f"cannot write {ro}/", "Permission denied")
    assert not any(ro.iterdir())


def test_output_turning_read_only_during_a_run_is_one_line(
    runner: CliRunner, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tensorstore's refusal of a chunk write (its errno in the text) names the output."""

    class _Refusing:
        def __getitem__(self, box: object) -> _Refusing:
            return self

        def write(self, data: object) -> None:
            raise ValueError(
                'PERMISSION_DENIED: Error writing local file "s0/0/0/0": '
                "[os_error_code='30'] [tensorstore_spec='{...}']"
            )

    monkeypatch.setattr(writer_mod, "output_array", lambda *args: _Refusing())
    out = ws / "o.zarr"
    result = _run(runner, ws, "em", "--into", "xr", "-o", str(out))
    _one_line_error(result, f"cannot write {out}: Read-only file system", "(-o)")
    assert "tensorstore_spec" not in result.stderr


# --------------------------------------------------------------------------- corrupt source chunks

#: em's chunk 1,1,1 (voxels 16:32 on every axis): inside what the xr frame maps to.
_BAD_CHUNK = "em.zarr/s0/1/1/1"


def _corrupt(ws: Path) -> bytes:
    """Truncate em's chunk 1,1,1 (as a copy cut short does); the intact bytes."""
    path = ws / _BAD_CHUNK
    intact = path.read_bytes()
    path.write_bytes(intact[:40])
    return intact


class _InOrder(DaskRunner):
    """Runs the blocks one after another in plan order (blocks before a failure finish)."""

    def run(self, fn: Any, job: Any, blocks: Any, **kwargs: Any) -> list[Any]:
        return [fn(job, b) for b in blocks]


def test_corrupt_source_chunk_is_named_kept_blocks_resume_once_fixed(
    runner: CliRunner, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["em", "--into", "xr", "--chunks", "4,4,4"]
    reference = _run(runner, ws, *args, "-o", str(ws / "reference.zarr"))
    assert reference.exit_code == 0, reference.output
    intact = _corrupt(ws)
    out = ws / "out.zarr"
    monkeypatch.setattr(engine_mod, "DaskRunner", _InOrder)
    failed = _run(runner, ws, *args, "-o", str(out))
    _one_line_error(
        failed,
        "chunk 1,1,1 (voxels [16:32, 16:32, 16:32]) of level s0 of source",
        str(ws / "em.zarr"),
        "Truncated",
        "run the same command again",
        f"finished blocks are kept in {out}",
        "--on-bad-chunk fill",
    )
    kept = len(list((out / ".coframe" / "done" / "s0").iterdir()))
    assert kept > 0
    monkeypatch.undo()

    (ws / _BAD_CHUNK).write_bytes(intact)  # the source is repaired
    resumed = _run(runner, ws, *args, "-o", str(out))
    assert resumed.exit_code == 0, resumed.output
    counts = re.search(r"(\d+) blocks \((\d+) computed, (\d+) resumed\)", resumed.stdout)
    assert counts is not None, resumed.stdout
    total, computed, skipped = (int(n) for n in counts.groups())
    assert (computed, skipped) == (total - kept, kept)
    assert "read as zeros" not in resumed.stdout
    got, want = open_volume(out), open_volume(ws / "reference.zarr")
    assert len(got.levels) == len(want.levels)
    for a, b in zip(got.levels, want.levels, strict=True):
        assert np.array_equal(a.read(), b.read())


@pytest.mark.parametrize("name", ["filled.zarr", "filled.tif"])
def test_on_bad_chunk_fill_reads_zeros_and_counts_them(
    runner: CliRunner, ws: Path, name: str
) -> None:
    zeroed = _em()
    zeroed[16:32, 16:32, 16:32] = 0
    em0 = create_ome_zarr(
        ws / "em0.zarr", shape0=EM_SHAPE, voxel_size0=(4.0,) * 3, dtype=np.uint8, chunks=(16,) * 3
    )
    em0.write(0, (0, 0, 0), zeroed)
    added = runner.invoke(app, ["add", "em0", str(ws / "em0.zarr"), "--space", "em", "-w", str(ws)])
    assert added.exit_code == 0, added.output
    expected = _run(runner, ws, "em0", "--into", "xr", "-o", str(ws / "expected.tif"))
    assert expected.exit_code == 0, expected.output

    _corrupt(ws)
    out = ws / name
    stopped = _run(runner, ws, "em", "--into", "xr", "-o", str(out))
    _one_line_error(stopped, "chunk 1,1,1", "--on-bad-chunk fill")
    filled = _run(runner, ws, "em", "--into", "xr", "-o", str(out), "--on-bad-chunk", "fill")
    assert filled.exit_code == 0, filled.output
    assert "1 corrupt source chunk(s) read as zeros (--on-bad-chunk fill): s0 1,1,1" in (
        filled.stdout
    )
    got = open_volume(out).levels[0].read()
    assert np.array_equal(got, open_volume(ws / "expected.tif").levels[0].read())
    assert np.count_nonzero(got) > 0
    if name.endswith(".zarr"):
        record = zarr.open_group(str(out), mode="r").attrs["coframe"]
        assert record["filled_source_chunks"] == [{"level": "s0", "chunk": [1, 1, 1]}]
    bad = _run(runner, ws, "em", "--into", "xr", "-o", str(ws / "x.zarr"), "--on-bad-chunk", "0")
    _one_line_error(bad, "--on-bad-chunk '0'", "error", "fill")


def test_progress_advances_by_the_chunks_each_block_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    advanced: list[int] = []

    @contextmanager
    def counting(*args: object, **kwargs: object) -> Iterator[Any]:
        yield advanced.append

    monkeypatch.setattr(runner_mod, "chunk_progress", counting)
    blocks = plan_blocks((4, 4, 8), (4, 4, 4))
    results = DaskRunner(None, True).run(
        lambda job, b: (3, None, ()), None, blocks, label="x", total_chunks=6, done_chunks=0
    )
    assert len(results) == 2 and sorted(advanced) == [3, 3]


# --------------------------------------------------------------------------- smaller flags


@pytest.mark.parametrize("chunks", ["1.5,16,16", "16,16.25,16", "0,16,16", "16,16"])
def test_chunks_must_be_whole_positive_numbers(runner: CliRunner, ws: Path, chunks: str) -> None:
    out = ws / "c.zarr"
    result = _run(runner, ws, "em", "--into", "xr", "-o", str(out), "--chunks", chunks)
    _one_line_error(result, f"--chunks {chunks}", "whole positive numbers", "64,128,128")
    assert not out.exists()


def test_pyramid_levels_beyond_one_voxel_are_refused(runner: CliRunner, ws: Path) -> None:
    out = ws / "p.zarr"
    args = ["em", "--into", "em", "-o", str(out), "--source-level", "0"]
    refused = _run(runner, ws, *args, "--pyramid-levels", "50")
    _one_line_error(refused, "--pyramid-levels 50", "32x40x48", "1x1x1 at level 6", "at most 7")
    assert not out.exists()
    zero = _run(runner, ws, *args, "--pyramid-levels", "0")
    _one_line_error(zero, "--pyramid-levels 0", "at least 1")
    most = _run(runner, ws, *args, "--pyramid-levels", "7")
    assert most.exit_code == 0, most.output
    levels = open_volume(out).levels
    assert [lvl.shape for lvl in levels][-2:] == [(1, 2, 2), (1, 1, 1)]
