"""Checks of ITK text transform files (``.tfm``, ``.txt``) before SimpleITK reads them.

ITK's text reader trusts the file: a rigid, similarity, versor or scale
transform with fewer ``Parameters`` than its kind holds is read past the end
of the list (an empty list crashes the process), and the grid size in a
B-spline's or displacement field's ``FixedParameters`` is allocated before
the parameters are counted (a huge or negative size corrupts the heap). So
every transform of a text file is checked here first: its kind must be one
coframe reads, it must hold exactly as many ``Parameters`` as its kind (and
grid) needs, and at least as many ``FixedParameters``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from coframe.core.errors import FormatError

_NAME = re.compile(r"^(\w+?)_(?:double|float)_(\d+)_(\d+)$")
#: A number as ITK's stream reading takes it whole (anything else ends its list early).
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

#: Kinds of any dimension D: (parameters, fixed parameters) as functions of D.
_ANY_DIM = {
    "AffineTransform": (lambda d: d * d + d, lambda d: d),
    "ScaleTransform": (lambda d: d, lambda d: d),
    "TranslationTransform": (lambda d: d, lambda d: 0),
    "IdentityTransform": (lambda d: 0, lambda d: 0),
}
#: Kinds of one dimension: (D, parameters, fixed parameters).
_ONE_DIM = {
    "Euler2DTransform": (2, 3, 2),
    "Similarity2DTransform": (2, 4, 2),
    "Euler3DTransform": (3, 6, 3),
    "Similarity3DTransform": (3, 7, 3),
    "VersorTransform": (3, 3, 3),
    "VersorRigid3DTransform": (3, 6, 3),
    "ScaleVersor3DTransform": (3, 9, 3),
    "ScaleSkewVersor3DTransform": (3, 15, 3),
}
#: Kinds whose FixedParameters start with a grid size: size, origin, spacing, direction.
_GRID = ("BSplineTransform", "DisplacementFieldTransform")
_KINDS = (*_ANY_DIM, *_ONE_DIM, *_GRID, "CompositeTransform")


def _blocks(text: str) -> list[dict[str, list[str]]]:
    """The ``Transform``, ``Parameters`` and ``FixedParameters`` fields of each transform."""
    blocks: list[dict[str, list[str]]] = []
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        key = key.strip()
        if not sep or key.startswith("#"):
            continue
        if key == "Transform":
            blocks.append({})
        if blocks:
            blocks[-1][key] = value.split()
    return blocks


def _finite_number(text: str) -> bool:
    return bool(_NUMBER.match(text)) and math.isfinite(float(text))


def _grid_nodes(size: list[str]) -> int:
    """Number of nodes of a grid size as ITK reads it (0 if a size is not a positive number)."""
    nodes = 1
    for value in size:
        number = float(value) if _finite_number(value) else 0.0
        if number < 1:
            return 0
        nodes *= int(number)
    return nodes


def check_itk_text(path: Path) -> None:
    """Refuse an ITK text transform file that ITK would misread or crash on.

    Raises
    ------
    FormatError
        Naming the transform, the field and the counts expected.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise FormatError(f"cannot read {str(path)!r}: {e}") from e
    for block in _blocks(text):
        name = " ".join(block["Transform"])
        match = _NAME.match(name)
        kind = match.group(1) if match else None
        if match is None or kind not in _KINDS:
            raise FormatError(
                f"{str(path)!r}: Transform: {name!r} is not an ITK transform coframe reads: "
                f"expected one of {', '.join(_KINDS)} (as Kind_double_D_D)"
            )
        if kind == "CompositeTransform":
            continue  # a composite lists its members as the transforms that follow
        d, d_out = int(match.group(2)), int(match.group(3))
        fixed = block.get("FixedParameters", [])
        if kind in _ONE_DIM:
            dim, wanted, wanted_fixed = _ONE_DIM[kind]
            d = dim if (d, d_out) == (dim, dim) else -1
        elif kind in _GRID:
            d = d if 0 < d <= 3 else -1
            wanted, wanted_fixed = max(d, 0) * _grid_nodes(fixed[: max(d, 0)]), d * (3 + d)
        else:
            wanted, wanted_fixed = (f(d) for f in _ANY_DIM[kind])
        if d != d_out or d < 1:
            raise FormatError(
                f"{str(path)!r}: Transform: {name!r} has dimensions {match.group(2)} -> "
                f"{match.group(3)}: expected the dimension of its kind, the same on both sides"
            )
        for field in ("Parameters", "FixedParameters"):
            bad = next((v for v in block.get(field, []) if not _finite_number(v)), None)
            if bad is not None:
                raise FormatError(
                    f"{str(path)!r}: {name} {field} holds {bad[:40]!r}: expected finite decimal "
                    "numbers; the file is corrupt"
                )
        count = len(block.get("Parameters", []))
        if count != wanted or len(fixed) < wanted_fixed:
            grid = f" for the grid size {' x '.join(fixed[:d])}" if kind in _GRID else ""
            raise FormatError(
                f"{str(path)!r}: {name} holds {count} Parameters and {len(fixed)} "
                f"FixedParameters but needs {wanted}{grid} and {wanted_fixed}: the file is "
                "corrupt; write the transform again"
            )
