"""Every OME-NGFF 0.6 (RFC-5) transformation type, forward and inverse, with and without units.

One case per type, built from the specification's own examples (the RFC-5
text and its ``examples/transformations/*.json``: the same coordinate
systems, parameters and array values), each with a point worked out by hand
in its comment. Every case is mapped by ``coframe points --scene`` forward
(input -> output) and back (output -> input) in three settings:

- ``unitless``: the axes have no unit (as in the examples): numbers map as
  they are, whatever the points' unit;
- ``micrometer``: every spatial axis in micrometres, points in nanometres:
  ``1000 p`` maps to ``1000 f(p)``;
- ``unitless-to-micrometer``: unitless input, output in micrometres: a
  unitless axis takes the points' unit (nm), so ``p`` maps to ``1000 f(p)``.

coframe's points are in its own axis order: axes named z, y, x are put in
that order, every other axis keeps its place (``[x, y]`` is read as
``(y, x)``; ``[i, j]`` stays ``(i, j)``). The expected values below are in
that order; the comments give the specification's formula in the file's
order. Maps with no inverse (2D -> 3D) are refused backwards in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from coframe.cli import app


@dataclass(frozen=True)
class Case:
    """One transformation between coordinate systems ``in`` and ``out``."""

    transformation: dict[str, Any]
    inputs: tuple[str, ...]  # axis names of "in", in the file's order
    outputs: tuple[str, ...]  # axis names of "out"
    point: list[float]  # in "in", coframe's order
    expected: list[float]  # in "out", coframe's order
    invertible: bool = True
    #: 1D field arrays by path: (vector axis type, the system the grid lies over, values)
    arrays: dict[str, tuple[str, str, list[float]]] = field(default_factory=dict)


def _field(kind: str, path: str, interpolation: str | None = None) -> dict[str, Any]:
    return {
        "type": kind,
        "path": path,
        **({"interpolation": interpolation} if interpolation else {}),
    }


CASES: dict[str, Case] = {
    # identity: y = j, x = i; (j, i) = (1, 2) -> (y, x) = (1, 2)
    "identity": Case({"type": "identity"}, ("j", "i"), ("y", "x"), [1, 2], [1, 2]),
    # mapAxis [1, 0]: output axis k takes input axis mapAxis[k]: y = i, x = j;
    # (j, i) = (1, 2) -> (y, x) = (2, 1)
    "mapAxis": Case({"type": "mapAxis", "mapAxis": [1, 0]}, ("j", "i"), ("y", "x"), [1, 2], [2, 1]),
    # mapAxis by names {"y": "i", "x": "j"} (the examples' "permutation"): the same map
    "mapAxis-names": Case(
        {"type": "mapAxis", "mapAxis": {"y": "i", "x": "j"}}, ("j", "i"), ("y", "x"), [1, 2], [2, 1]
    ),
    # translation [9, -1.42]: x = i + 9, y = j - 1.42; (i, j) = (1, 2) -> x = 10, y = 0.58
    "translation": Case(
        {"type": "translation", "translation": [9, -1.42]},
        ("i", "j"),
        ("x", "y"),
        [1, 2],
        [0.58, 10],
    ),
    # scale [3.12, 2]: x = 3.12 i, y = 2 j; (1, 2) -> x = 3.12, y = 4
    "scale": Case({"type": "scale", "scale": [3.12, 2]}, ("i", "j"), ("x", "y"), [1, 2], [4, 3.12]),
    # affine [[1, 2, 3], [4, 5, 6]]: y = j + 2 i + 3, x = 4 j + 5 i + 6;
    # (j, i) = (1, 2) -> y = 8, x = 20 (determinant -3: invertible)
    "affine": Case(
        {"type": "affine", "affine": [[1, 2, 3], [4, 5, 6]]},
        ("j", "i"),
        ("y", "x"),
        [1, 2],
        [8, 20],
    ),
    # affine 2D -> 3D [[1, 2, 3], [4, 5, 6], [7, 8, 9]]: x = i + 2 j + 3, y = 4 i + 5 j + 6,
    # z = 7 i + 8 j + 9; (i, j) = (1, 2) -> x = 8, y = 20, z = 32; (z, y, x) = (32, 20, 8)
    "affine-2d-3d": Case(
        {"type": "affine", "affine": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]},
        ("i", "j"),
        ("x", "y", "z"),
        [1, 2],
        [32, 20, 8],
        invertible=False,
    ),
    # rotation [[0, -1], [1, 0]]: y = -i, x = j; (j, i) = (1, 2) -> y = -2, x = 1
    "rotation": Case(
        {"type": "rotation", "rotation": [[0, -1], [1, 0]]}, ("j", "i"), ("y", "x"), [1, 2], [-2, 1]
    ),
    # sequence [translation [0.1, 0.9], scale [2, 3]]: x = 2 (i + 0.1), y = 3 (j + 0.9);
    # (1, 2) -> x = 2.2, y = 8.7
    "sequence": Case(
        {
            "type": "sequence",
            "transformations": [
                {"type": "translation", "translation": [0.1, 0.9]},
                {"type": "scale", "scale": [2, 3]},
            ],
        },
        ("i", "j"),
        ("x", "y"),
        [1, 2],
        [8.7, 2.2],
    ),
    # coordinates, 1D, array [-9, 9, 0] on i = 0, 1, 2, linear: x(i) = -9 + 18 i on [0, 1];
    # i = 0.25 -> x = -4.5 (the only i with x = -4.5: the inverse is unique there)
    "coordinates": Case(
        _field("coordinates", "coordinateTransformations/i2x"),
        ("i",),
        ("x",),
        [0.25],
        [-4.5],
        arrays={"coordinateTransformations/i2x": ("coordinate", "in", [-9, 9, 0])},
    ),
    # displacements, 1D, array [-1, 0, 1] on i = 0, 1, 2, linear: x = i + (i - 1) = 2 i - 1;
    # i = 1.5 -> x = 2
    "displacements": Case(
        _field("displacements", "coordinateTransformations/i2x"),
        ("i",),
        ("x",),
        [1.5],
        [2],
        arrays={"coordinateTransformations/i2x": ("displacement", "in", [-1, 0, 1])},
    ),
    # displacements read at the nearest node, array [-1, 0.5, 1]: i = 1.4 is nearest node 1,
    # x = 1.4 + 0.5 = 1.9 (linear would give 1.4 + 0.7 = 2.1)
    "displacements-nearest": Case(
        _field("displacements", "fields/d", "nearest"),
        ("i",),
        ("x",),
        [1.4],
        [1.9],
        arrays={"fields/d": ("displacement", "in", [-1, 0.5, 1])},
    ),
    # displacements by cubic convolution (Keys, a = -1/2), array [0, 0, 0.4, 0]: at i = 1.5
    # the nodes 0..3 weigh -1/16, 9/16, 9/16, -1/16, so d = 0.4 * 9/16 = 0.225, x = 1.725
    # (linear would give 1.7)
    "displacements-cubic": Case(
        _field("displacements", "fields/d", "cubic"),
        ("i",),
        ("x",),
        [1.5],
        [1.725],
        arrays={"fields/d": ("displacement", "in", [0, 0, 0.4, 0])},
    ),
    # inverseOf displacements (the example's registration result): x = i - d, with
    # d = [-1, 0, 1] the field x + d(x) = i: 2 x - 1 = i; i = 2 -> x = 1.5
    "inverseOf": Case(
        {"type": "inverseOf", "transformation": _field("displacements", "fields/d")},
        ("i",),
        ("x",),
        [2],
        [1.5],
        arrays={"fields/d": ("displacement", "out", [-1, 0, 1])},
    ),
    # inverseOf scale [2, 4]: x = i / 2, y = j / 4; (2, 8) -> x = 1, y = 2
    "inverseOf-scale": Case(
        {"type": "inverseOf", "transformation": {"type": "scale", "scale": [2, 4]}},
        ("i", "j"),
        ("x", "y"),
        [2, 8],
        [2, 1],
    ),
    # bijection, forward and inverse coordinates fields (the example's form), 1D:
    # forward [0, 2, 4] (x = 2 i), inverse [0, 0.5, 1, 1.5, 2] (i = x / 2); i = 1.5 -> x = 3
    "bijection": Case(
        {
            "type": "bijection",
            "forward": _field("coordinates", "forward_coordinates"),
            "inverse": _field("coordinates", "inverse_coordinates"),
        },
        ("i",),
        ("x",),
        [1.5],
        [3],
        arrays={
            "forward_coordinates": ("coordinate", "in", [0, 2, 4]),
            "inverse_coordinates": ("coordinate", "out", [0, 0.5, 1, 1.5, 2]),
        },
    ),
    # byDimension: translation [-1] from i to x, scale [2] from j to y: x = i - 1, y = 2 j;
    # (i, j) = (1, 2) -> x = 0, y = 4
    "byDimension": Case(
        {
            "type": "byDimension",
            "transformations": [
                {
                    "type": "translation",
                    "translation": [-1],
                    "input_axes": ["i"],
                    "output_axes": ["x"],
                },
                {"type": "scale", "scale": [2], "input_axes": ["j"], "output_axes": ["y"]},
            ],
        },
        ("i", "j"),
        ("x", "y"),
        [1, 2],
        [4, 0],
    ),
}

#: Every transformation type RFC-5 defines has a case.
TYPES = {
    "identity",
    "mapAxis",
    "translation",
    "scale",
    "affine",
    "rotation",
    "sequence",
    "coordinates",
    "displacements",
    "inverseOf",
    "bijection",
    "byDimension",
}

#: (input axes' unit, output axes' unit, factor on the points in, factor on the points out)
UNITS = {
    "unitless": (None, None, 1.0, 1.0),
    "micrometer": ("micrometer", "micrometer", 1000.0, 1000.0),
    "unitless-to-micrometer": (None, "micrometer", 1.0, 1000.0),
}


def test_every_rfc5_type_has_a_case() -> None:
    assert {c.transformation["type"] for c in CASES.values()} == TYPES


def _axes(names: tuple[str, ...], unit: str | None) -> list[dict[str, Any]]:
    return [{"name": n, "type": "space", **({"unit": unit} if unit else {})} for n in names]


def _scene(root: Path, case: Case, unit_in: str | None, unit_out: str | None) -> Path:
    """A Zarr v3 scene with ``in``, ``out``, the transformation and its 1D field arrays."""
    transformation = {**case.transformation, "input": "in", "output": "out"}
    doc = {
        "version": "0.6",
        "coordinateSystems": [
            {"name": "in", "axes": _axes(case.inputs, unit_in)},
            {"name": "out", "axes": _axes(case.outputs, unit_out)},
        ],
        "coordinateTransformations": [transformation],
    }
    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    group.attrs.put({"ome": doc})
    for path, (kind, over, values) in case.arrays.items():
        # one grid axis (nodes at 0, 1, 2, ... of the system it lies over), vector axis last
        names, unit = (case.inputs, unit_in) if over == "in" else (case.outputs, unit_out)
        array = group.create_array(path, shape=(len(values), 1), dtype="f8")
        array[...] = np.asarray(values, dtype=float)[:, None]
        vector = {"name": "v", "type": kind, "discrete": True}
        array.attrs.put(
            {
                "ome": {
                    "coordinateSystems": [{"name": path, "axes": [*_axes(names, unit), vector]}],
                    "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}],
                }
            }
        )
    return root


def _points(runner: CliRunner, scene: Path, source: str, target: str, point: list[float]):  # noqa: ANN202
    args = ["points", source, target, json.dumps([point]), "--scene", str(scene)]
    return runner.invoke(app, [*args, "--unit", "nanometer"])


@pytest.mark.parametrize("units", list(UNITS))
@pytest.mark.parametrize("name", list(CASES))
def test_spec_example_forward_and_inverse(
    tmp_path: Path, runner: CliRunner, name: str, units: str
) -> None:
    case = CASES[name]
    unit_in, unit_out, f_in, f_out = UNITS[units]
    scene = _scene(tmp_path / "scene.zarr", case, unit_in, unit_out)
    point = [v * f_in for v in case.point]
    expected = [v * f_out for v in case.expected]
    forward = _points(runner, scene, "in", "out", point)
    assert forward.exit_code == 0, forward.output
    mapped = json.loads(forward.stdout)["coordinates"]
    np.testing.assert_allclose(mapped, [expected], rtol=1e-6, atol=1e-9)
    back = _points(runner, scene, "out", "in", expected)
    if case.invertible:
        assert back.exit_code == 0, back.output
        # a numerical inverse stops within 1e-5 of a grid spacing (1 unit here)
        back_mapped = json.loads(back.stdout)["coordinates"]
        np.testing.assert_allclose(back_mapped, [point], rtol=1e-6, atol=1e-5 * f_in)
    else:
        assert back.exit_code == 2
        assert len(back.stderr.strip().splitlines()) == 1, back.stderr
