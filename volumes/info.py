"""What ``coframe info`` reports about a volume: a JSON-ready dict and a text table."""

from __future__ import annotations

import io
import math
from typing import Any

from coframe.volumes.volume import Level, Volume


def _json_safe(value: Any) -> Any:
    """Metadata made JSON-ready (tuples become lists, other objects their text)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def describe_level(level: Level, index: int) -> dict[str, Any]:
    """One level as a JSON-ready dict (path, shape, voxel size, origin, extent, chunks)."""
    return {
        "index": index,
        "path": level.path,
        "shape": list(level.shape),
        "voxel_size": [float(v) for v in level.voxel_size],
        "origin": [float(o) for o in level.origin],
        "extent": [[float(lo), float(hi)] for lo, hi in level.extent],
        "chunks": list(level.chunks),
    }


def describe(volume: Volume, level: int | str | None = None) -> dict[str, Any]:
    """A JSON-ready description of a volume.

    Parameters
    ----------
    volume
        The opened volume.
    level
        Describe only this level (number or path); all levels by default.

    Returns
    -------
    ``source``, ``format``, ``axes``, ``unit``, ``dtype``, ``modality``,
    ``levels`` (each with ``path``, ``shape``, ``voxel_size``, ``origin``,
    ``extent`` as physical [min, max] per axis from voxel edge to voxel edge,
    and ``chunks``) and the reader's ``metadata``.

    Raises
    ------
    LevelError
        If ``level`` does not exist.
    """
    if level is None:
        chosen = list(enumerate(volume.levels))
    else:
        wanted = volume.level(level)
        chosen = [(i, lvl) for i, lvl in enumerate(volume.levels) if lvl is wanted]
    return {
        "source": volume.source,
        "format": volume.format,
        "axes": list(volume.axes),
        "unit": volume.unit,
        "dtype": str(volume.dtype),
        "modality": volume.modality,
        "levels": [describe_level(lvl, i) for i, lvl in chosen],
        "metadata": _json_safe(volume.metadata),
    }


def _numbers(values: list[float]) -> str:
    return " x ".join(f"{v:g}" for v in values)


def info_table(description: dict[str, Any]) -> Any:
    """A ``rich`` table of the levels of a :func:`describe` result."""
    from rich.table import Table

    axes = ",".join(description["axes"])
    unit = description["unit"]
    table = Table(title=None, show_edge=False, header_style="bold")
    table.add_column("level", justify="right")
    table.add_column("path")
    table.add_column(f"shape ({axes})")
    table.add_column(f"voxel size ({unit})")
    table.add_column(f"origin ({unit})")
    table.add_column(f"extent ({unit})")
    table.add_column("chunks")
    for lvl in description["levels"]:
        extent = " ".join(f"[{lo:g}, {hi:g}]" for lo, hi in lvl["extent"])
        table.add_row(
            str(lvl["index"]),
            lvl["path"] or "-",
            _numbers(lvl["shape"]),
            _numbers(lvl["voxel_size"]),
            _numbers(lvl["origin"]),
            extent,
            _numbers(lvl["chunks"]),
        )
    return table


def render_text(description: dict[str, Any], width: int = 140) -> str:
    """Human-readable summary of a :func:`describe` result: header lines and a level table."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True, highlight=False, soft_wrap=False)
    meta = description.get("metadata", {})
    lines = [
        f"source:   {description['source']}",
        f"format:   {description['format']}"
        + (f" (NGFF {meta['ngff_version']})" if meta.get("ngff_version") else ""),
        f"axes:     {', '.join(description['axes'])}",
        f"unit:     {description['unit']}",
        f"dtype:    {description['dtype']}",
        f"modality: {description['modality'] or 'unknown'}",
    ]
    if meta.get("selected"):
        chosen = ", ".join(f"{k}={v}" for k, v in meta["selected"].items())
        lines.append(f"selected: {chosen}")
    if meta.get("placed_by") and meta["placed_by"] != "file":
        lines.append(f"placed by: {meta['placed_by']}")
    for line in lines:
        console.print(line, markup=False)
    console.print(info_table(description))
    return buffer.getvalue().rstrip()
