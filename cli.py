"""The ``coframe`` command line: parse, call, report. No numerics here."""

from __future__ import annotations

from typing import Any

import click
import typer
from typer.core import TyperGroup

from transforms.errors import CoframeError


class _Group(TyperGroup):
    """Typer group that turns a :class:`CoframeError` into one line on stderr and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CoframeError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e


app = typer.Typer(
    cls=_Group,
    name="coframe",
    help="Bring X-ray microCT, TEM and FIB-SEM images of one sample into one physical frame.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"coframe {version('coframe')}")
        except PackageNotFoundError:
            typer.echo("coframe (not installed)")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Bring X-ray microCT, TEM and FIB-SEM images of one sample into one physical frame."""
