"""Commands that change one workspace at once: the file lock, and merging a change into the file.

Commands that change a workspace (``add``, ``link``, ``register``, ``locate``,
``import-scene``...) may run at the same time. Each reads ``coframe.yaml``,
works (a registration may take minutes), then saves
(:meth:`coframe.app.workspace.Workspace.save`): under :func:`workspace_lock`
it re-reads the file and :func:`merge_changes` applies what the command
changed since it read the file to what the file holds now, so the entries
other commands added meanwhile are kept. An entry that both changed
differently is a conflict: the command fails in one line and writes nothing.

The lock is an operating-system file lock (:mod:`filelock`), held only while
the file is re-read and written; it is released when its holder exits, even
by a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from coframe.app.provenance import plain_values
from coframe.app.workspace_file import WORKSPACE_FILE, EdgeEntry, WorkspaceParts
from coframe.core.errors import OutputError, WorkspaceError

#: Name of the lock file beside ``coframe.yaml``.
LOCK_FILE = ".coframe.yaml.lock"
#: Seconds a command waits for another command's write before giving up.
LOCK_TIMEOUT = 60.0

_MISSING: Any = object()


@contextmanager
def workspace_lock(root: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the write lock of the workspace in ``root`` for the body.

    Parameters
    ----------
    root
        Workspace directory.
    timeout
        Seconds to wait for the lock (default :data:`LOCK_TIMEOUT`).

    Raises
    ------
    WorkspaceError
        If another command holds the lock for longer than ``timeout``.
    OutputError
        If the lock file cannot be created (permissions, read-only disk).
    """
    path = Path(root) / LOCK_FILE
    wait = LOCK_TIMEOUT if timeout is None else timeout
    lock = FileLock(path, timeout=wait)
    try:
        lock.acquire()
    except Timeout as e:
        raise WorkspaceError(
            f"another coframe command has been writing {Path(root) / WORKSPACE_FILE} for over "
            f"{wait:g} s (lock {path}): let it finish and run this command again ("
            f"{WORKSPACE_FILE} was not changed)"
        ) from e
    except OSError as e:
        raise OutputError(
            f"cannot lock {path}: {e.strerror or e}; make the workspace directory writable"
        ) from e
    try:
        yield
    finally:
        lock.release()


def merge_changes(
    base: WorkspaceParts | None, mine: WorkspaceParts, theirs: WorkspaceParts, file: Path
) -> WorkspaceParts:
    """Apply the changes from ``base`` to ``mine`` onto ``theirs`` (a three-way merge).

    Parameters
    ----------
    base
        The file's contents when the command read it (None: an empty workspace,
        so every entry of ``mine`` is new).
    mine
        The command's workspace: ``base`` with its changes.
    theirs
        The file's contents now (other commands may have changed it).
    file
        The workspace file, for messages.

    Returns
    -------
    ``theirs`` with every space, image, edge and top-level key that ``mine``
    added, replaced or removed; entries are kept in the file's order, new ones
    after them.

    Raises
    ------
    WorkspaceError
        If an entry the command changed was changed differently meanwhile.
    """
    if base is None:
        base = WorkspaceParts(mine.unit, {}, {}, (), {})
    unit = _merge({"unit": base.unit}, {"unit": mine.unit}, {"unit": theirs.unit}, "key", file)
    edges = _merge(
        _by_pair(base.edges), _by_pair(mine.edges), _by_pair(theirs.edges), "edge", file, _same_edge
    )
    return WorkspaceParts(
        unit["unit"],
        _merge(base.spaces, mine.spaces, theirs.spaces, "space", file),
        _merge(base.images, mine.images, theirs.images, "image", file),
        tuple(edges.values()),
        _merge(base.extras, mine.extras, theirs.extras, "top-level key", file, _same_plain),
    )


def _by_pair(edges: tuple[EdgeEntry, ...]) -> dict[str, EdgeEntry]:
    return {f"{e.source} -> {e.target}": e for e in edges}


def _same_edge(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    return a == b and plain_values(a.provenance) == plain_values(b.provenance)


def _same_plain(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    return bool(plain_values(a) == plain_values(b))


def _same(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    return bool(a == b)


def _merge(
    base: Mapping[str, Any],
    mine: Mapping[str, Any],
    theirs: Mapping[str, Any],
    what: str,
    file: Path,
    same: Callable[[Any, Any], bool] = _same,
) -> dict[str, Any]:
    out = dict(theirs)
    for key in [*mine, *(k for k in base if k not in mine)]:
        b, m, t = base.get(key, _MISSING), mine.get(key, _MISSING), theirs.get(key, _MISSING)
        if same(b, m) or same(t, m):
            continue  # not changed here, or already as wanted
        if not same(t, b):
            raise WorkspaceError(
                f"{file}: {what} {key!r} was changed by another command while this one ran: "
                f"run this command again ({WORKSPACE_FILE} was not changed)"
            )
        if m is _MISSING:
            del out[key]
        else:
            out[key] = m
    return out
