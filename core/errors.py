"""Errors and warnings raised by coframe.

Every error a user can cause derives from :class:`CoframeError`. A message
names the bad value, what was expected, and the flag or key that fixes it, in
one line. The CLI prints it on stderr and exits with status 2.

Input that coframe accepts only after changing it (a rounded rotation matrix
made orthonormal) gives a :class:`CoframeWarning` through Python's
:mod:`warnings`, so library users can filter or escalate it; the CLI prints
it as one ``warning:`` line on stderr (:func:`one_line_warnings`) and goes on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class CoframeWarning(UserWarning):
    """An input was accepted after a change; the message says what changed and by how much."""


@contextmanager
def one_line_warnings(echo: Callable[[str], Any]) -> Iterator[None]:
    """Within the block, pass each :class:`CoframeWarning` to ``echo`` as ``warning: <message>``.

    Other warnings are shown as Python shows them; the previous display is
    restored on exit.
    """
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, CoframeWarning):
            echo(f"warning: {message}")
        else:
            shown(message, category, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


class CoframeError(Exception):
    """Root of every user-facing coframe error."""


class InputNotFoundError(CoframeError):
    """A file, directory or URL does not exist."""


class FormatError(CoframeError):
    """A container or file is unreadable, corrupt, or not the format expected."""


class ParseError(FormatError):
    """Malformed YAML, JSON or CSV text (the message names line and key)."""


class UnitError(CoframeError):
    """A unit is unknown or units disagree."""


class MetadataError(CoframeError):
    """Physical metadata (voxel size, origin, axes) is missing or invalid."""


class AxisError(MetadataError):
    """Axes are not spatial, or there are more than three of them."""


class LevelError(CoframeError):
    """A pyramid level that does not exist was asked for."""


class DimensionError(CoframeError):
    """Dimensions disagree: points, transforms or images of the wrong rank."""


class TransformError(CoframeError):
    """A transform cannot be built, applied or stored."""


class NotInvertibleError(TransformError):
    """A transform has no inverse (singular affine, folding field)."""


class WorkspaceError(CoframeError):
    """A workspace is missing, malformed or inconsistent."""


class NoPathError(WorkspaceError):
    """No chain of transforms joins two spaces."""


class AmbiguousPathError(WorkspaceError):
    """Several equally short chains join two spaces."""


class OverwriteError(CoframeError):
    """An output exists and ``--force`` was not given."""


class RegistrationError(CoframeError):
    """A registration cannot run or failed its checks (no overlap, empty mask, divergence)."""


class OutputError(CoframeError):
    """An output cannot be written: disk full, too large for its format, not an output."""


class RemoteError(InputNotFoundError):
    """A remote store could not be read: retries ran out, access was refused, or bad settings."""
