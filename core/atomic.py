"""Atomic output: nothing stored is lost or left half-written.

Every file or directory coframe writes goes to a temporary name beside its
target and is renamed onto it only once complete. An existing target is
replaced only with ``force`` (the CLI's ``--force``); a replaced directory is
moved aside first and restored if the rename fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coframe.core.errors import OutputError, OverwriteError


def refuse_existing(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Raise :class:`OverwriteError` if ``path`` exists and ``force`` is false.

    Returns the path as a :class:`~pathlib.Path`.
    """
    p = Path(path)
    if (p.exists() or p.is_symlink()) and not force:
        raise OverwriteError(f"output {p} already exists: pass --force to overwrite it")
    return p


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def replace_path(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Move ``staging`` onto ``target``, replacing an existing file or directory.

    A directory cannot be renamed over a non-empty one, so an existing target is
    first moved aside, and moved back if the final rename fails.
    """
    staging, target = Path(staging), Path(target)
    if not target.is_dir() or target.is_symlink():
        os.replace(staging, target)
        return
    backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(backup, target)
        raise
    _remove(backup)


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The body may create a file or a directory at the yielded path. If the body
    raises, the temporary output is removed and the target is left untouched.

    Raises
    ------
    OverwriteError
        If ``path`` exists and ``force`` is false.
    OutputError
        If the system refuses the write (disk full, permissions), naming the
        target and the reason.
    """
    target = refuse_existing(path, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise OutputError(f"nothing was written to the temporary output of {target}")
        replace_path(tmp, target)
    except OSError as e:
        raise OutputError(
            f"cannot write {target}: {e.strerror or e}; free space or fix permissions and rerun "
            "(the previous file, if any, is untouched)"
        ) from e
    finally:
        _remove(tmp)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    """Write a UTF-8 text file atomically (temporary file, fsync, rename).

    Raises
    ------
    OverwriteError
        If ``path`` exists and ``force`` is false.
    """
    data = text.encode("utf-8")
    with atomic_output(path, force=force) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)
