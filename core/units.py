"""Physical length units: names, aliases and conversion factors.

A workspace declares one unit (default ``nanometer``); every image's metadata
is converted into it on load. An unknown unit is an error, never a guess.
"""

from __future__ import annotations

from coframe.core.errors import UnitError

#: Length of one unit in nanometres, keyed by the canonical OME-NGFF name.
NANOMETERS_PER_UNIT: dict[str, float] = {
    "angstrom": 0.1,
    "nanometer": 1.0,
    "micrometer": 1e3,
    "millimeter": 1e6,
    "centimeter": 1e7,
    "meter": 1e9,
}

_ALIASES: dict[str, str] = {
    "a": "angstrom",
    "å": "angstrom",
    "Å": "angstrom",
    "\u212b": "angstrom",
    "angstroms": "angstrom",
    "nm": "nanometer",
    "nanometers": "nanometer",
    "nanometre": "nanometer",
    "nanometres": "nanometer",
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometers": "micrometer",
    "micrometre": "micrometer",
    "micrometres": "micrometer",
    "mm": "millimeter",
    "millimeters": "millimeter",
    "millimetre": "millimeter",
    "millimetres": "millimeter",
    "cm": "centimeter",
    "centimeters": "centimeter",
    "m": "meter",
    "meters": "meter",
    "metre": "meter",
    "metres": "meter",
}


def canonical_unit(name: str, *, key: str = "unit") -> str:
    """Return the canonical OME-NGFF name of a length unit.

    Parameters
    ----------
    name
        A unit name or common abbreviation (``nm``, ``µm``, ``micrometer``...).
    key
        The metadata key or CLI flag the value came from, named in the error.

    Raises
    ------
    UnitError
        If the unit is not a known length unit.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnitError(
            f"missing unit in {key!s}: expected one of {', '.join(NANOMETERS_PER_UNIT)}"
        )
    text = name.strip()
    if text in NANOMETERS_PER_UNIT:
        return text
    for candidate in (text, text.lower()):
        if candidate in _ALIASES:
            return _ALIASES[candidate]
        if candidate in NANOMETERS_PER_UNIT:
            return candidate
    raise UnitError(
        f"unknown unit {name!r} in {key}: expected one of "
        f"{', '.join(NANOMETERS_PER_UNIT)} (or nm, um, mm, A); fix the metadata or pass --unit"
    )


def unit_factor(from_unit: str, to_unit: str) -> float:
    """Factor that converts a length in ``from_unit`` into ``to_unit``."""
    return (
        NANOMETERS_PER_UNIT[canonical_unit(from_unit)]
        / NANOMETERS_PER_UNIT[canonical_unit(to_unit)]
    )
