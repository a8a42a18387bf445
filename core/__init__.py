"""The leaf layer: the error hierarchy, length units, atomic file writes and compiling.

Imports nothing of coframe; every other package may import it.

- :mod:`coframe.core.errors`: :class:`CoframeError` and its specific subclasses,
  each message naming the bad value, what was expected and the flag that fixes it;
- :mod:`coframe.core.units`: length unit names (nm, µm, mm, Å...) and factors;
- :mod:`coframe.core.atomic`: writes through a temporary file and a rename, and
  the refusal to overwrite without ``--force``;
- :mod:`coframe.core.jit`: numba compilation with an on-disk cache where one is writable.
"""

from __future__ import annotations

from coframe.core.atomic import atomic_output, refuse_existing, replace_path, write_text_atomic
from coframe.core.errors import (
    AmbiguousPathError,
    AxisError,
    CoframeError,
    DimensionError,
    FormatError,
    InputNotFoundError,
    LevelError,
    MetadataError,
    NoPathError,
    NotInvertibleError,
    OutputError,
    OverwriteError,
    ParseError,
    RegistrationError,
    TransformError,
    UnitError,
    WorkspaceError,
)
from coframe.core.units import canonical_unit, unit_factor

__all__ = [
    "AmbiguousPathError",
    "AxisError",
    "CoframeError",
    "DimensionError",
    "FormatError",
    "InputNotFoundError",
    "LevelError",
    "MetadataError",
    "NoPathError",
    "NotInvertibleError",
    "OutputError",
    "OverwriteError",
    "ParseError",
    "RegistrationError",
    "TransformError",
    "UnitError",
    "WorkspaceError",
    "atomic_output",
    "canonical_unit",
    "refuse_existing",
    "replace_path",
    "unit_factor",
    "write_text_atomic",
]
