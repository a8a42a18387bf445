"""The provenance record of a stored transform: command, time, SHA-256 of files, versions."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from coframe.core.errors import InputNotFoundError


def make_provenance(
    command: str,
    *,
    inputs: Mapping[str, str | Path] | None = None,
    parameters: Mapping[str, Any] | None = None,
    metric: Mapping[str, Any] | None = None,
    files: Mapping[str, str | Path] | None = None,
) -> dict[str, Any]:
    """A provenance record for a stored transform.

    Parameters
    ----------
    command
        The command line that made the transform.
    inputs
        Input identities (image names to paths or URLs).
    parameters
        Parameters of the method (plain values).
    metric
        Metric values (e.g. ``{"before": ..., "after": ...}``).
    files
        Local files to fingerprint, each recorded under ``sha256`` (a
        directory, such as a Zarr group, is hashed over its relative file
        names and contents).

    Returns
    -------
    A mapping with ``command``, ``created`` (UTC, ISO 8601), the optional
    sections given, and ``software`` (versions).
    """
    record: dict[str, Any] = {
        "command": command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": plain_values(parameters or {}),
        "inputs": {k: str(p) for k, p in (inputs or {}).items()},
        "sha256": {k: sha256_path(p) for k, p in (files or {}).items()},
        "metric": plain_values(metric or {}),
    }
    record = {k: val for k, val in record.items() if val != {}}
    record["software"] = software_versions()
    return record


def software_versions() -> dict[str, str]:
    """Versions of Python, coframe and the numerical libraries it relies on."""
    out = {"python": platform.python_version()}
    for dist in ("coframe", "numpy", "scipy", "SimpleITK", "zarr"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def sha256_path(path: str | Path) -> str:
    """SHA-256 of a file, or of a directory's relative file names and contents.

    Raises
    ------
    InputNotFoundError
        If the path does not exist.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p} does not exist: cannot fingerprint it")
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def plain_values(value: Any) -> Any:
    """Plain YAML/JSON-safe values (numpy scalars and arrays, tuples, paths converted)."""
    if isinstance(value, Mapping):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_values(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    tolist = getattr(value, "tolist", None)
    return plain_values(tolist()) if callable(tolist) else str(value)
