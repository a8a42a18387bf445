"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


@pytest.fixture
def runner() -> CliRunner:
    """Typer CLI runner (stderr kept apart from stdout)."""
    return CliRunner()
