"""Benchmark results as JSON under ``benchmarks/results/``: provenance, medians and ranges.

Every script writes ``benchmarks/results/<name>.json`` with the machine (CPU
count, model, memory, load average before and after), the versions of coframe
(git commit) and of the peers, the command line, the date and the per-run
numbers; ``benchmarks/tables.py`` renders them as the Markdown tables that the
README and ``docs/scale.md`` include.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PACKAGES = (
    "numpy", "scipy", "SimpleITK", "itk-elastix", "itk-core", "antspyx", "numba", "tensorstore",
    "zarr", "nilearn",
)  # fmt: skip


def spread(values: list[float]) -> dict[str, float]:
    """Median, minimum and maximum of a list of numbers (the figures reported)."""
    a = np.asarray(values, dtype=np.float64)
    return {
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": len(a),
    }


def fmt(s: dict[str, float] | None, digits: int) -> str:
    """``median (min-max)`` of a :func:`spread`, or ``-``."""
    if not s:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance() -> dict[str, Any]:
    """Machine, versions, command and date of a run (call at its start)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "memory_gb": _memory_gb(),
            "system": platform.platform(),
            "python": platform.python_version(),
            "load_average_start": list(os.getloadavg()),
        },
        "coframe_commit": _commit(),
        "versions": versions,
    }


def write(
    name: str, report: dict[str, Any], meta: dict[str, Any], path: Path | None = None
) -> Path:
    """Write ``report`` with its provenance to ``benchmarks/results/<name>.json`` (or ``path``)."""
    meta["machine"]["load_average_end"] = list(os.getloadavg())
    out = path or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**meta, **report}, indent=1, default=_plain) + "\n")
    tmp.replace(out)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def load(name: str) -> dict[str, Any] | None:
    """A results file, or None when it was not produced yet."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
