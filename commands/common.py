"""What every command definition shares: option helpers, the workspace, the command line."""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from coframe.app.workspace import find_workspace, load_workspace

T = TypeVar("T")


def opt(help: str, *names: str) -> Any:
    """A ``typer.Option`` with its help (and its flag names, when not the parameter's)."""
    return typer.Option(*names, help=help)


def arg(help: str) -> Any:
    """A ``typer.Argument`` with its help."""
    return typer.Argument(help=help)


WORKSPACE_HELP = "Workspace directory (default: search for coframe.yaml from here upward)."


def load_ws(workspace: Path | None) -> Any:
    """The workspace of ``--workspace``, or the one found from here upward."""
    return load_workspace(find_workspace(explicit=workspace))


def from_flags(ctx: typer.Context, make: Callable[..., T], **given: Any) -> T:
    """``make(...)`` called with the parsed flags named like its parameters, and ``given``."""
    names = inspect.signature(make).parameters
    flags = {k: v for k, v in ctx.params.items() if k in names and k not in given}
    return make(**flags, **given)


def command_line(ctx: typer.Context) -> str:
    """The command line of ``ctx``, rebuilt from its parsed parameters (for provenance)."""
    parts = ["coframe", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name == "argument":
            parts.append(shlex.quote(str(value)))
        elif value not in (None, False, (), [], param.default):
            flag = param.opts[0]
            parts.append(flag if value is True else f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


WorkspaceOption = Annotated[
    Path | None, typer.Option("--workspace", "-w", help=WORKSPACE_HELP, show_default=False)
]
