"""What makes a long OME-Zarr write resumable: a run record and a marker per finished block.

An output being written holds ``<out>/.coframe/run.json`` (the run's
arguments and block layout) and, for every finished block,
``<out>/.coframe/done/<level>/<block>`` (empty, or listing the corrupt source
chunks the block read as zeros). Running the same command again
after an interruption (Ctrl-C, a killed worker, a full disk) finds the
record, keeps the block layout and computes only the blocks without a
marker; other arguments against an unfinished output are refused unless
``--force``. When the output is complete its metadata is written
(:mod:`coframe.resampling.writer`) and :func:`finish_run` removes the run
state.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coframe.core.errors import OutputError, OverwriteError
from coframe.resampling.plan import Block

#: Name of the run-state directory inside an output.
STATE_DIR = ".coframe"
_ZARR_KEYS = (".zgroup", ".zattrs", ".zarray", "zarr.json")


def done_marker(output: str, level_path: str, block: Block) -> Path:
    """Path of the marker that records a finished block."""
    return Path(output) / STATE_DIR / "done" / level_path / block.name


def mark_done(
    output: str,
    level_path: str,
    block: Block,
    filled: Sequence[tuple[str, Sequence[int]]] = (),
) -> None:
    """Record a finished block (after all its chunks are written).

    ``filled`` lists the source chunks (level path, chunk index) the block
    read as zeros; the marker keeps them, so a resumed run still reports them.
    """
    marker = done_marker(output, level_path, block)
    marker.parent.mkdir(parents=True, exist_ok=True)
    if filled:
        _write_json(marker, {"filled": [[lvl, list(index)] for lvl, index in filled]})
    else:
        marker.touch()


def filled_chunks(output: str, level_path: str) -> list[tuple[str, tuple[int, ...]]]:
    """The source chunks read as zeros by the finished blocks of a level (from their markers)."""
    folder = Path(output) / STATE_DIR / "done" / level_path
    found: set[tuple[str, tuple[int, ...]]] = set()
    if folder.is_dir():
        for entry in os.scandir(folder):
            if entry.is_file() and not entry.name.startswith(".") and entry.stat().st_size:
                doc = json.loads(Path(entry.path).read_text(encoding="utf-8"))
                found.update(
                    (str(lvl), tuple(int(i) for i in index)) for lvl, index in doc["filled"]
                )
    return sorted(found)


def pending(output: str, level_path: str, blocks: Sequence[Block]) -> list[Block]:
    """The blocks of a level without a done marker."""
    return [b for b in blocks if not done_marker(output, level_path, b).exists()]


def _looks_like_zarr(path: Path) -> bool:
    return path.is_dir() and any((path / k).is_file() for k in _ZARR_KEYS)


def _remove_output(path: Path) -> None:
    """Remove an earlier output for ``--force``, refusing anything that is not one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif _looks_like_zarr(path) or (path / STATE_DIR).is_dir():
        shutil.rmtree(path)
    elif path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    else:
        raise OutputError(
            f"{path} exists and is not a Zarr output, so --force will not delete it: choose "
            "another output path (-o)"
        )


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def start_or_resume(
    output: Path, spec: dict[str, Any], block_shape: tuple[int, ...], force: bool
) -> tuple[tuple[int, ...], bool]:
    """Start a fresh output or resume an unfinished one with the same run spec.

    Parameters
    ----------
    output
        The output directory.
    spec
        JSON-ready arguments of the run; a resumed run must have the same.
    block_shape
        Level-0 block shape of a fresh run.
    force
        Replace an existing output (finished, or unfinished with any arguments).

    Returns
    -------
    tuple
        The block shape to use (a resumed run keeps its own) and whether the
        run resumes.

    Raises
    ------
    OverwriteError
        If the output exists (finished, foreign, or an unfinished run with
        other arguments) and ``force`` is false.
    OutputError
        If ``force`` would delete something that is not an output.
    OSError
        If the system refuses to create the output (read-only, permissions).
    """
    record = output / STATE_DIR / "run.json"
    if output.exists() or output.is_symlink():
        if record.is_file() and not force:
            try:
                stored = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise OverwriteError(
                    f"{output} holds an unreadable run record {record}: pass --force to start over"
                ) from e
            if stored.get("spec") != spec:
                keys = ", ".join(_differences(stored.get("spec", {}), spec))
                raise OverwriteError(
                    f"{output} holds an unfinished resample run with other arguments ({keys}): "
                    "run the same command to resume it, or pass --force to start over"
                )
            return tuple(int(n) for n in stored["plan"]["block_shape"]), True
        if not force:
            raise OverwriteError(f"output {output} already exists: pass --force to overwrite it")
        _remove_output(output)
    # made under a temporary name with its run record, then renamed: a run killed
    # here leaves no output without a record (which a rerun would refuse)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir()
    try:
        _write_json(
            staging / STATE_DIR / "run.json",
            {"spec": spec, "plan": {"block_shape": list(block_shape)}},
        )
        os.rename(staging, output)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # the empty output made just now
        raise
    return block_shape, False


def finish_run(output: Path) -> None:
    """Remove the run state of a finished output (its metadata is written).

    The run record goes last: a run stopped part way through (``kill -9``)
    still holds it, so running the same command again resumes and finishes
    instead of finding a finished-looking output with stray block markers.
    """
    state = output / STATE_DIR
    for entry in os.scandir(state):
        if entry.name != "run.json":
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    (state / "run.json").unlink(missing_ok=True)
    state.rmdir()
