"""OME-NGFF (RFC-5) scenes and transforms: reading, writing, axis order and units."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from ngff_samples import AFFINE, assert_same_map, random_field, random_points, xyz_system
from samples import rotation

from coframe.core.errors import (
    DimensionError,
    FormatError,
    InputNotFoundError,
    NotInvertibleError,
    OverwriteError,
    ParseError,
    TransformError,
    UnitError,
)
from coframe.transforms.affine import Affine, Identity, Rotation, Scale, Translation
from coframe.transforms.base import Chain, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.field import DisplacementField, InverseDisplacementField
from coframe.transforms.formats.ngff import (
    ByDimension,
    CoordinateSystem,
    read_ngff_transform,
    read_scene,
    write_ngff_transform,
)

TRANSFORMS: dict[str, Transform] = {
    "identity": Identity(3),
    "translation": Translation([1.5, -2.0, 300.0]),
    "scale": Scale([2.0, 0.5, 8.0]),
    "rotation": Rotation(rotation(1, 0.7)),
    "affine": AFFINE,
    "sequence": Chain((Scale([2.0, 3.0, 4.0]), Translation([1.0, 2.0, 3.0]), AFFINE)),
}

FIELD_TRANSFORMS: dict[str, Any] = {
    "displacements": lambda: random_field(),
    "sequence-with-field": lambda: Chain((AFFINE, random_field())),
    "inverse-field": lambda: InverseDisplacementField(random_field(amplitude=1.0)),
    "bijection": lambda: Bijection(random_field(amplitude=1.0), random_field(amplitude=1.0)),
}


# --------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", sorted(TRANSFORMS))
@pytest.mark.parametrize("container", ["v3.zarr", "v2.zarr", "scene.json"])
def test_linear_round_trip(tmp_path: Path, kind: str, container: str) -> None:
    t = TRANSFORMS[kind]
    fmt = 2 if container.startswith("v2") else 3
    path = write_ngff_transform(
        tmp_path / container, t, input_space="a", output_space="b", zarr_format=fmt
    )
    back = read_ngff_transform(path)
    assert_same_map(back, t, random_points())
    if kind != "sequence":
        assert type(back) is type(t)


@pytest.mark.parametrize("kind", sorted(FIELD_TRANSFORMS))
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_field_round_trip(tmp_path: Path, kind: str, zarr_format: int) -> None:
    t = FIELD_TRANSFORMS[kind]()
    path = write_ngff_transform(
        tmp_path / "t.zarr", t, input_space="a", output_space="b", zarr_format=zarr_format
    )
    back = read_ngff_transform(path)
    pts = random_points(low=0.0, high=50.0)
    assert_same_map(back, t, pts)
    assert type(back) is type(t)


def test_field_stays_lazy_and_in_zarr(tmp_path: Path) -> None:
    f = random_field()
    path = write_ngff_transform(tmp_path / "f.zarr", f, input_space="a", output_space="b")
    back = read_ngff_transform(path)
    assert isinstance(back, DisplacementField)
    assert isinstance(back.vectors, zarr.Array)
    np.testing.assert_allclose(np.asarray(back.vectors[...]), f.vectors)
    meta = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    entry = meta["scene"]["coordinateTransformations"][0]
    assert entry["type"] == "displacements" and entry["path"].startswith(
        "coordinateTransformations/"
    )
    array_json = json.loads((path / entry["path"] / "zarr.json").read_text())
    axes = array_json["attributes"]["ome"]["coordinateSystems"][0]["axes"]
    assert [a.get("type") for a in axes] == ["space", "space", "space", "displacement"]
    # Zarr v3 dimension names are the names of the array's axes, as OME-Zarr 0.5 asks
    assert array_json["dimension_names"] == [a["name"] for a in axes]


def test_two_d_to_three_d_affine_round_trip(tmp_path: Path) -> None:
    pose = Affine([[0.0, 0.1, 500.0], [1.0, 0.0, 20.0], [0.0, 1.0, 30.0]])
    path = write_ngff_transform(tmp_path / "tem.json", pose, input_space="tem", output_space="xray")
    back = read_ngff_transform(path)
    assert (back.input_dim, back.output_dim) == (2, 3)
    assert_same_map(back, pose, random_points(dim=2))
    with pytest.raises(NotInvertibleError):
        back.inverse()


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_nested_transforms_between_differently_ordered_spaces(
    tmp_path: Path, zarr_format: int
) -> None:
    """Unnamed spaces inside sequences are written and read in the same frames."""
    field = random_field(amplitude=0.5)
    t = Chain(
        (
            AFFINE,
            InverseDisplacementField(field),
            Bijection(random_field(amplitude=0.5), random_field(amplitude=0.5)),
            Scale([1.5, 2.0, 0.5]),
        )
    )
    path = write_ngff_transform(
        tmp_path / "nested.zarr",
        t,
        input_space=xyz_system("a", "micrometer"),
        output_space=CoordinateSystem.spatial("b", 3, "millimeter"),
        zarr_format=zarr_format,
    )
    back = read_ngff_transform(path)
    pts = random_points(high=40.0)
    np.testing.assert_allclose(back.apply(pts), t.apply(pts), rtol=1e-6, atol=1e-4)
    reverse = Chain((Translation([1.0, 2.0, 3.0]), InverseDisplacementField(field)))
    path = write_ngff_transform(
        tmp_path / "reverse.zarr",
        reverse,
        input_space=xyz_system("a", "micrometer"),
        output_space=xyz_system("b", "nanometer"),
        zarr_format=zarr_format,
    )
    np.testing.assert_allclose(
        read_ngff_transform(path).apply(pts), reverse.apply(pts), rtol=1e-6, atol=1e-4
    )


# --------------------------------------------------------------------- axis order and units


@pytest.mark.parametrize("kind", ["affine", "sequence", "field"])
def test_xyz_coordinate_systems_map_the_same_points(tmp_path: Path, kind: str) -> None:
    t = random_field() if kind == "field" else TRANSFORMS[kind]
    zyx = write_ngff_transform(tmp_path / "zyx.zarr", t, input_space="a", output_space="b")
    xyz = write_ngff_transform(
        tmp_path / "xyz.zarr",
        t,
        input_space=xyz_system("a", "micrometer"),
        output_space=xyz_system("b"),
    )
    pts = random_points()
    assert_same_map(read_ngff_transform(zyx), t, pts)
    assert_same_map(read_ngff_transform(xyz), t, pts)
    stored = json.loads((xyz / "zarr.json").read_text())["attributes"]["ome"]["scene"]
    assert [a["name"] for a in stored["coordinateSystems"][0]["axes"]] == ["x", "y", "z"]


def test_hand_written_xyz_micrometer_scene(tmp_path: Path) -> None:
    doc = {
        "coordinateSystems": [
            {
                "name": "em",
                "axes": [{"name": n, "type": "space", "unit": "micrometer"} for n in "xyz"],
            },
            {
                "name": "ct",
                "axes": [{"name": n, "type": "space", "unit": "millimeter"} for n in "zyx"],
            },
        ],
        "coordinateTransformations": [
            {"type": "translation", "translation": [1.0, 2.0, 3.0], "input": "em", "output": "em"},
            {"type": "scale", "scale": [2.0, 3.0, 4.0], "input": "em", "output": "ct"},
        ],
    }
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(doc))
    scene = read_scene(path, unit="nanometer")
    shift, scale = (st.transform for st in scene.transformations)
    # Translation of (x=1, y=2, z=3) micrometres, as (z, y, x) nanometres.
    np.testing.assert_allclose(shift.apply([0.0, 0.0, 0.0]), [3000.0, 2000.0, 1000.0])
    # (z, y, x) = (1000, 2000, 3000) nm is em (x, y, z) = (3, 2, 1) um; the scale maps em axis k
    # to ct axis k: ct (z, y, x) = (2 * 3, 3 * 2, 4 * 1) mm.
    out = scale.apply([1000.0, 2000.0, 3000.0])
    np.testing.assert_allclose(out, [6e6, 6e6, 4e6])
    assert scene.coframe_axes("em") == ("z", "y", "x")


def test_unit_conversion_of_field_values(tmp_path: Path) -> None:
    f = random_field(amplitude=2.0)
    path = write_ngff_transform(
        tmp_path / "um.zarr",
        f,
        input_space=CoordinateSystem.spatial("a", 3, "micrometer"),
        output_space=CoordinateSystem.spatial("b", 3, "micrometer"),
        unit="micrometer",
    )
    in_nm = read_ngff_transform(path, unit="nanometer")
    pts = random_points()
    np.testing.assert_allclose(in_nm.apply(pts * 1000.0), f.apply(pts) * 1000.0, rtol=1e-9)


def test_axes_without_unit_need_file_unit(tmp_path: Path) -> None:
    doc = {
        "coordinateSystems": [
            {"name": "in", "axes": [{"name": "y"}, {"name": "x"}]},
            {"name": "out", "axes": [{"name": "y"}, {"name": "x"}]},
        ],
        "coordinateTransformations": [
            {"type": "translation", "translation": [1.0, 2.0], "input": "in", "output": "out"}
        ],
    }
    path = tmp_path / "nounit.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UnitError, match="axis 'y' of coordinate system 'in' has no unit"):
        read_scene(path)
    t = read_ngff_transform(path, file_unit="micrometer")
    np.testing.assert_allclose(t.apply([0.0, 0.0]), [1000.0, 2000.0])


# --------------------------------------------------------------------- mapAxis and byDimension


def test_map_axis_by_names_and_indices(tmp_path: Path) -> None:
    doc = {
        "coordinateSystems": [
            {"name": "in", "axes": [{"name": "j"}, {"name": "i"}]},
            {"name": "out1", "axes": [{"name": "y"}, {"name": "x"}]},
            {"name": "out2", "axes": [{"name": "y"}, {"name": "x"}]},
        ],
        "coordinateTransformations": [
            {
                "name": "same",
                "type": "mapAxis",
                "mapAxis": {"x": "i", "y": "j"},
                "input": "in",
                "output": "out1",
            },
            {
                "name": "swap",
                "type": "mapAxis",
                "mapAxis": {"y": "i", "x": "j"},
                "input": "in",
                "output": "out2",
            },
            {
                "name": "swap-index",
                "type": "mapAxis",
                "mapAxis": [1, 0],
                "input": "in",
                "output": "out2",
            },
        ],
    }
    path = tmp_path / "map.json"
    path.write_text(json.dumps(doc))
    scene = read_scene(path, file_unit="nanometer")
    same, swap, swap_index = (st.transform for st in scene.transformations)
    p = np.array([[1.0, 2.0], [3.0, -4.0]])
    np.testing.assert_allclose(same.apply(p), p)
    np.testing.assert_allclose(swap.apply(p), p[:, ::-1])
    np.testing.assert_allclose(swap_index.apply(p), p[:, ::-1])
    assert isinstance(swap, Affine)


def test_map_axis_missing_output_axis(tmp_path: Path) -> None:
    doc = {
        "coordinateSystems": [
            {"name": "in", "axes": [{"name": "j"}, {"name": "i"}]},
            {"name": "out", "axes": [{"name": "y"}, {"name": "x"}]},
        ],
        "coordinateTransformations": [
            {"type": "mapAxis", "mapAxis": {"x": "i"}, "input": "in", "output": "out"}
        ],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(
        ParseError, match=r"coordinateTransformations\[0\]\.mapAxis: output axis 'y'"
    ):
        read_scene(path, file_unit="nm")


BY_DIMENSION_CHILDREN = {
    "wrapped-indices": [
        {
            "transformation": {"type": "translation", "translation": [-1.0]},
            "input_axes": [1],
            "output_axes": [1],
        },
        {"transformation": {"type": "scale", "scale": [2.0]}, "inputAxes": [0], "outputAxes": [0]},
    ],
    "flat-names": [
        {"type": "translation", "translation": [-1.0], "input_axes": ["i"], "output_axes": ["x"]},
        {"type": "scale", "scale": [2.0], "input_axes": ["j"], "output_axes": ["y"]},
    ],
    "input-output-lists": [
        {"type": "translation", "translation": [-1.0], "input": ["i"], "output": ["x"]},
        {"type": "scale", "scale": [2.0], "input": ["j"], "output": ["y"]},
    ],
}


@pytest.mark.parametrize("variant", sorted(BY_DIMENSION_CHILDREN))
def test_by_dimension_variants(tmp_path: Path, variant: str) -> None:
    doc = {
        "coordinateSystems": [
            {"name": "in", "axes": [{"name": "j"}, {"name": "i"}]},
            {"name": "out", "axes": [{"name": "y"}, {"name": "x"}]},
        ],
        "coordinateTransformations": [
            {
                "type": "byDimension",
                "input": "in",
                "output": "out",
                "transformations": BY_DIMENSION_CHILDREN[variant],
            }
        ],
    }
    path = tmp_path / "bydim.json"
    path.write_text(json.dumps(doc))
    t = read_ngff_transform(path, file_unit="nm")
    assert isinstance(t, Affine)
    np.testing.assert_allclose(t.apply([[3.0, 5.0]]), [[6.0, 4.0]])


def test_by_dimension_nonlinear_round_trip(tmp_path: Path) -> None:
    plane = random_field(shape=(6, 7))
    t = ByDimension((Scale([40.0]), plane), ((0,), (1, 2)), ((0,), (1, 2)), 3, 3)
    path = write_ngff_transform(
        tmp_path / "bd.zarr", t, input_space=xyz_system("a"), output_space=xyz_system("b")
    )
    back = read_ngff_transform(path)
    assert isinstance(back, ByDimension)
    pts = random_points()
    assert_same_map(back, t, pts)
    np.testing.assert_allclose(back.inverse().then(back).apply(pts), pts, atol=1e-3)


# --------------------------------------------------------------------- errors and safety


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "coordinateSystems": [,]\n}')
    with pytest.raises(ParseError, match="line 2, column 25") as info:
        read_scene(path)
    assert "\n" not in str(info.value)
    group = tmp_path / "bad.zarr"
    group.mkdir()
    (group / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {')
    with pytest.raises(ParseError, match=r"zarr\.json: malformed JSON at line 1"):
        read_scene(group)


def test_unknown_type_lists_known_ones(tmp_path: Path) -> None:
    axes = [{"name": n, "type": "space", "unit": "nm"} for n in "yx"]
    doc = {
        "coordinateSystems": [{"name": "a", "axes": axes}, {"name": "b", "axes": axes}],
        "coordinateTransformations": [{"type": "thinPlateSpline", "input": "a", "output": "b"}],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(
        FormatError, match=r"unknown transformation type 'thinPlateSpline'.*byDimension"
    ):
        read_scene(path)


@pytest.mark.parametrize(
    ("transformation", "error", "message"),
    [
        ({"type": "scale", "scale": [1.0, 2.0, 3.0]}, DimensionError, "does not fit input"),
        ({"type": "affine", "affine": [[1, 0, "a"]]}, ParseError, r"\.affine: expected numbers"),
        ({"type": "translation"}, ParseError, "expected a 'translation' list or a 'path'"),
        ({"type": "sequence", "transformations": []}, ParseError, "non-empty list"),
        (
            {"type": "scale", "scale": [1.0, 1.0], "output": "nowhere"},
            FormatError,
            "'nowhere' is not defined",
        ),
        ({"scale": [1.0]}, ParseError, r"\[0\]\.type: expected a transformation type"),
    ],
)
def test_malformed_transformations(
    tmp_path: Path, transformation: dict[str, Any], error: type, message: str
) -> None:
    axes = [{"name": n, "type": "space", "unit": "nm"} for n in "yx"]
    entry = {"input": "a", "output": "b", **transformation}
    doc = {
        "coordinateSystems": [{"name": "a", "axes": axes}, {"name": "b", "axes": axes}],
        "coordinateTransformations": [entry],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(error, match=message) as info:
        read_scene(path)
    assert "\n" not in str(info.value)


def test_file_url(tmp_path: Path) -> None:
    path = write_ngff_transform(
        tmp_path / "f.zarr", random_field(), input_space="a", output_space="b"
    )
    assert_same_map(
        read_ngff_transform(f"file://{path}"), read_ngff_transform(path), random_points()
    )


def test_missing_container() -> None:
    with pytest.raises(InputNotFoundError, match="does not exist"):
        read_scene("/nonexistent/scene.zarr")


def test_overwrite_needs_force_and_write_is_atomic(tmp_path: Path) -> None:
    target = write_ngff_transform(tmp_path / "t.zarr", AFFINE, input_space="a", output_space="b")
    with pytest.raises(OverwriteError, match="--force"):
        write_ngff_transform(target, Identity(3), input_space="a", output_space="b")
    assert_same_map(read_ngff_transform(target), AFFINE, random_points())
    thin = _ThinPlate()
    with pytest.raises(TransformError, match="sample_to_field"):
        write_ngff_transform(target, thin, input_space="a", output_space="b", force=True)
    assert_same_map(
        read_ngff_transform(target), AFFINE, random_points()
    )  # untouched by the failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]
    write_ngff_transform(target, Identity(3), input_space="a", output_space="b", force=True)
    assert isinstance(read_ngff_transform(target), Identity)


def test_fields_cannot_go_to_plain_json(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="Zarr group"):
        write_ngff_transform(tmp_path / "f.json", random_field(), input_space="a", output_space="b")


def test_same_space_names_rejected(tmp_path: Path) -> None:
    with pytest.raises(TransformError, match="both named 'a'"):
        write_ngff_transform(tmp_path / "x.zarr", AFFINE, input_space="a", output_space="a")


class _ThinPlate(Transform):
    """A nonlinear map with no NGFF form."""

    @property
    def input_dim(self) -> int:
        return 3

    @property
    def output_dim(self) -> int:
        return 3

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return points + np.sin(points)
