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


def write_refused(path: str | os.PathLike[str], error: OSError, fix: str) -> OutputError:
    """The one-line error of a write the system refused (read-only file system, permissions).

    Parameters
    ----------
    path
        What was being written.
    error
        The system's error (its file, when another, is named too).
    fix
        What to do, naming the flag or argument (``"choose another output (-o)"``).
    """
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
    return OutputError(f"cannot write {path}{where}: {error.strerror or error}: {fix}")


def make_directory(path: str | os.PathLike[str], fix: str) -> Path:
    """Create a directory and its missing parents (nothing if it exists).

    Raises
    ------
    OutputError
        If the system refuses (read-only file system, permissions, a file in
        the way), with ``fix`` saying what to do (:func:`write_refused`).
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_refused(p, e, fix) from e
    return p


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
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # a read-only place fails here
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise OutputError(f"nothing was written to the temporary output of {target}")
        replace_path(tmp, target)
    except OSError as e:
        raise OutputError(
            f"cannot write {target}: {e.strerror or e}: free space, fix its permissions or "
            "choose another location, and rerun (the previous file, if any, is untouched)"
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
