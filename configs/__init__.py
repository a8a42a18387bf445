"""The registration presets shipped with coframe (YAML). Data only: imports nothing of coframe."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent


def preset_path(name: str) -> Path:
    """Path of the shipped preset ``name`` (with or without ``.yaml``)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    return CONFIG_DIR / f"{stem}.yaml"


__all__ = ["CONFIG_DIR", "preset_path"]
