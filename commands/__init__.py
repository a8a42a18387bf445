"""Groups of ``coframe`` command definitions that :mod:`coframe.cli` adds to its Typer app.

Like the CLI itself they parse, call the app layer and print; no numerics.
May import :mod:`coframe.app` and everything below it (not :mod:`coframe.demo`
or :mod:`coframe.cli`).

- :mod:`~coframe.commands.common`: option helpers, the workspace option, the
  command line rebuilt for provenance;
- :mod:`~coframe.commands.registration`: ``register``, ``locate`` and ``nuclei``.
"""

from __future__ import annotations

from coframe.commands.registration import locate_cmd, nuclei_cmd, register_cmd

__all__ = ["locate_cmd", "nuclei_cmd", "register_cmd"]
