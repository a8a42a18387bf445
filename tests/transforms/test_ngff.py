"""OME-NGFF (RFC-5) scenes and transforms: reading, writing, axis order and units."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

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
    Axis,
    ByDimension,
    CoordinateSystem,
    FieldView,
    SceneTransformation,
    read_ngff_transform,
    read_scene,
    write_ngff_transform,
    write_scene,
)

RNG = np.random.default_rng(42)


def _rotation(angle: float, axis: int = 0) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    r = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _field(shape: tuple[int, ...] = (5, 6, 7), amplitude: float = 3.0) -> DisplacementField:
    d = len(shape)
    vectors = amplitude * RNG.standard_normal((*shape, d))
    return DisplacementField(vectors, RNG.uniform(-5, 5, d), RNG.uniform(8, 12, d))


def _points(dim: int = 3, n: int = 25, low: float = 0.0, high: float = 60.0) -> np.ndarray:
    return RNG.uniform(low, high, (n, dim))


def _close(a: Transform, b: Transform, points: np.ndarray) -> None:
    expected = b.apply(points)
    np.testing.assert_allclose(
        a.apply(points), expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max()
    )


def _xyz(name: str, unit: str = "nanometer") -> CoordinateSystem:
    return CoordinateSystem(name, tuple(Axis(a, "space", unit) for a in "xyz"))


def _group(path: Path, attributes: dict[str, Any], zarr_format: int = 3) -> zarr.Group:
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.attrs.put({"ome": attributes} if zarr_format == 3 else attributes)
    return group


AFFINE = Affine.from_linear(_rotation(0.3) @ np.diag([1.2, 0.9, 1.1]), [10.0, -20.0, 5.0])

TRANSFORMS: dict[str, Transform] = {
    "identity": Identity(3),
    "translation": Translation([1.5, -2.0, 300.0]),
    "scale": Scale([2.0, 0.5, 8.0]),
    "rotation": Rotation(_rotation(0.7, axis=1)),
    "affine": AFFINE,
    "sequence": Chain((Scale([2.0, 3.0, 4.0]), Translation([1.0, 2.0, 3.0]), AFFINE)),
}

FIELD_TRANSFORMS: dict[str, Any] = {
    "displacements": lambda: _field(),
    "sequence-with-field": lambda: Chain((AFFINE, _field())),
    "inverse-field": lambda: InverseDisplacementField(_field(amplitude=1.0)),
    "bijection": lambda: Bijection(_field(amplitude=1.0), _field(amplitude=1.0)),
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
    _close(back, t, _points())
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
    pts = _points(low=0.0, high=50.0)
    _close(back, t, pts)
    assert type(back) is type(t)


def test_field_stays_lazy_and_in_zarr(tmp_path: Path) -> None:
    f = _field()
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
    array_meta = json.loads((path / entry["path"] / "zarr.json").read_text())["attributes"]["ome"]
    axes = array_meta["coordinateSystems"][0]["axes"]
    assert [a.get("type") for a in axes] == ["space", "space", "space", "displacement"]


def test_two_d_to_three_d_affine_round_trip(tmp_path: Path) -> None:
    pose = Affine([[0.0, 0.1, 500.0], [1.0, 0.0, 20.0], [0.0, 1.0, 30.0]])
    path = write_ngff_transform(tmp_path / "tem.json", pose, input_space="tem", output_space="xray")
    back = read_ngff_transform(path)
    assert (back.input_dim, back.output_dim) == (2, 3)
    _close(back, pose, _points(dim=2))
    with pytest.raises(NotInvertibleError):
        back.inverse()


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_nested_transforms_between_differently_ordered_spaces(
    tmp_path: Path, zarr_format: int
) -> None:
    """Unnamed spaces inside sequences are written and read in the same frames."""
    field = _field(amplitude=0.5)
    t = Chain(
        (
            AFFINE,
            InverseDisplacementField(field),
            Bijection(_field(amplitude=0.5), _field(amplitude=0.5)),
            Scale([1.5, 2.0, 0.5]),
        )
    )
    path = write_ngff_transform(
        tmp_path / "nested.zarr",
        t,
        input_space=_xyz("a", "micrometer"),
        output_space=CoordinateSystem.spatial("b", 3, "millimeter"),
        zarr_format=zarr_format,
    )
    back = read_ngff_transform(path)
    pts = _points(high=40.0)
    np.testing.assert_allclose(back.apply(pts), t.apply(pts), rtol=1e-6, atol=1e-4)
    reverse = Chain((Translation([1.0, 2.0, 3.0]), InverseDisplacementField(field)))
    path = write_ngff_transform(
        tmp_path / "reverse.zarr",
        reverse,
        input_space=_xyz("a", "micrometer"),
        output_space=_xyz("b", "nanometer"),
        zarr_format=zarr_format,
    )
    np.testing.assert_allclose(
        read_ngff_transform(path).apply(pts), reverse.apply(pts), rtol=1e-6, atol=1e-4
    )


# --------------------------------------------------------------------- axis order and units


@pytest.mark.parametrize("kind", ["affine", "sequence", "field"])
def test_xyz_coordinate_systems_map_the_same_points(tmp_path: Path, kind: str) -> None:
    t = _field() if kind == "field" else TRANSFORMS[kind]
    zyx = write_ngff_transform(tmp_path / "zyx.zarr", t, input_space="a", output_space="b")
    xyz = write_ngff_transform(
        tmp_path / "xyz.zarr", t, input_space=_xyz("a", "micrometer"), output_space=_xyz("b")
    )
    pts = _points()
    _close(read_ngff_transform(zyx), t, pts)
    _close(read_ngff_transform(xyz), t, pts)
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
    f = _field(amplitude=2.0)
    path = write_ngff_transform(
        tmp_path / "um.zarr",
        f,
        input_space=CoordinateSystem.spatial("a", 3, "micrometer"),
        output_space=CoordinateSystem.spatial("b", 3, "micrometer"),
        unit="micrometer",
    )
    in_nm = read_ngff_transform(path, unit="nanometer")
    pts = _points()
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


# --------------------------------------------------------------------- fields stored by others


def _field_scene(tmp_path: Path, vectors_first: bool, zarr_format: int) -> tuple[Path, Any]:
    """A scene with an xyz-ordered field, its vector axis first or last, in micrometres."""
    shape_xyz = (4, 5, 6)
    vectors = RNG.standard_normal((*shape_xyz, 3))  # components (x, y, z), micrometres
    spacing, origin = [2.0, 3.0, 4.0], [1.0, -1.0, 0.5]
    data = np.moveaxis(vectors, -1, 0) if vectors_first else vectors
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "xyz"]
    vector_axis = {"name": "v", "type": "displacement", "discrete": True}
    field_axes = [vector_axis, *axes] if vectors_first else [*axes, vector_axis]
    scale = [1.0, *spacing] if vectors_first else [*spacing, 1.0]
    shift = [0.0, *origin] if vectors_first else [*origin, 0.0]
    root = tmp_path / f"scene-{vectors_first}-{zarr_format}.zarr"
    meta = {
        "version": "0.6",
        "coordinateSystems": [{"name": "moving", "axes": axes}, {"name": "fixed", "axes": axes}],
        "coordinateTransformations": [
            {
                "type": "displacements",
                "path": "coordinateTransformations/warp",
                "input": "moving",
                "output": "fixed",
                "name": "warp",
            }
        ],
    }
    group = _group(root, meta, zarr_format)
    array = group.create_array("coordinateTransformations/warp", shape=data.shape, dtype="f8")
    array[...] = data
    field_meta = {
        "coordinateSystems": [{"name": "warp", "axes": field_axes}],
        "coordinateTransformations": [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": shift},
        ],
    }
    array.attrs.put({"ome": field_meta} if zarr_format == 3 else field_meta)

    def expected(points_zyx_nm: np.ndarray) -> np.ndarray:
        p_xyz = points_zyx_nm[:, ::-1] / 1000.0
        reference = DisplacementField(vectors, origin, spacing)
        return reference.apply(p_xyz)[:, ::-1] * 1000.0

    return root, expected


@pytest.mark.parametrize("vectors_first", [True, False])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_field_vector_axis_first_or_last(
    tmp_path: Path, vectors_first: bool, zarr_format: int
) -> None:
    root, expected = _field_scene(tmp_path, vectors_first, zarr_format)
    t = read_ngff_transform(root, name="warp")
    pts = _points(low=0.0, high=12000.0)
    np.testing.assert_allclose(t.apply(pts), expected(pts), rtol=1e-9, atol=1e-6)
    assert isinstance(t, DisplacementField) and isinstance(t.vectors, FieldView)


def test_field_without_vector_axis_type_is_rejected(tmp_path: Path) -> None:
    root, _ = _field_scene(tmp_path, True, 3)
    array = zarr.open_array(str(root / "coordinateTransformations/warp"), mode="r+")
    meta = dict(array.attrs)["ome"]
    meta["coordinateSystems"][0]["axes"][0]["type"] = "channel"
    array.attrs.put({"ome": meta})
    with pytest.raises(FormatError, match="exactly one axis of type 'displacement'"):
        read_scene(root)


def test_field_axes_in_another_order_than_input_are_rejected(tmp_path: Path) -> None:
    root, _ = _field_scene(tmp_path, False, 3)
    array = zarr.open_array(str(root / "coordinateTransformations/warp"), mode="r+")
    meta = dict(array.attrs)["ome"]
    axes = meta["coordinateSystems"][0]["axes"]
    axes[0], axes[2] = axes[2], axes[0]
    array.attrs.put({"ome": meta})
    with pytest.raises(FormatError, match=r"not in the order of its input coordinate system"):
        read_scene(root)


def test_ome_zarr_04_image_is_not_a_scene(tmp_path: Path) -> None:
    root = tmp_path / "image.zarr"
    _group(
        root,
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "axes": [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"],
                    "datasets": [
                        {
                            "path": "s0",
                            "coordinateTransformations": [{"type": "scale", "scale": [8, 8, 8]}],
                        }
                    ],
                    "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}],
                }
            ]
        },
        zarr_format=2,
    )
    with pytest.raises(FormatError, match="no coordinateSystems or coordinateTransformations"):
        read_scene(root)


def test_missing_field_array_names_path(tmp_path: Path) -> None:
    f = _field()
    path = write_ngff_transform(tmp_path / "f.zarr", f, input_space="a", output_space="b")
    import shutil

    shutil.rmtree(path / "coordinateTransformations")
    with pytest.raises(InputNotFoundError, match="coordinateTransformations/a-to-b"):
        read_ngff_transform(path)


def test_coordinates_field(tmp_path: Path) -> None:
    shape = (4, 5)
    spacing, origin = np.array([2.0, 3.0]), np.array([1.0, -1.0])
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    positions = origin + index * spacing
    displacement = RNG.standard_normal((*shape, 2))
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "yx"]
    meta = {
        "coordinateSystems": [{"name": "in", "axes": axes}, {"name": "out", "axes": axes}],
        "coordinateTransformations": [
            {"type": "coordinates", "path": "coords", "input": "in", "output": "out"}
        ],
    }
    root = tmp_path / "coords.zarr"
    group = _group(root, meta)
    array = group.create_array("coords", shape=(*shape, 2), dtype="f8")
    array[...] = positions + displacement
    array.attrs.put(
        {
            "ome": {
                "coordinateSystems": [
                    {"name": "c", "axes": [*axes, {"name": "c", "type": "coordinate"}]}
                ],
                "coordinateTransformations": [
                    {"type": "scale", "scale": [*spacing, 1.0]},
                    {"type": "translation", "translation": [*origin, 0.0]},
                ],
            }
        }
    )
    t = read_ngff_transform(root)
    reference = DisplacementField(displacement, origin, spacing)
    pts = RNG.uniform([1.0, -1.0], [7.0, 11.0], (20, 2))
    np.testing.assert_allclose(t.apply(pts), reference.apply(pts), atol=1e-9)


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
    plane = _field(shape=(6, 7))
    t = ByDimension((Scale([40.0]), plane), ((0,), (1, 2)), ((0,), (1, 2)), 3, 3)
    path = write_ngff_transform(
        tmp_path / "bd.zarr", t, input_space=_xyz("a"), output_space=_xyz("b")
    )
    back = read_ngff_transform(path)
    assert isinstance(back, ByDimension)
    pts = _points()
    _close(back, t, pts)
    np.testing.assert_allclose(back.inverse().then(back).apply(pts), pts, atol=1e-3)


# --------------------------------------------------------------------- scenes


def _three_space_scene() -> tuple[list[CoordinateSystem], list[SceneTransformation]]:
    xray = _xyz("xray", "micrometer")
    fibsem = CoordinateSystem.spatial("fibsem", 3, "nanometer")
    tem = CoordinateSystem(
        "tem", (Axis("y", "space", "nanometer"), Axis("x", "space", "nanometer"))
    )
    to_xray = Chain((AFFINE, _field()))
    pose = Affine([[0.0, 0.0, 5000.0], [1.0, 0.0, 100.0], [0.0, 1.0, 200.0]])
    edges = [
        SceneTransformation("fibsem", "xray", to_xray, "fibsem-to-xray"),
        SceneTransformation("tem", "xray", pose, "tem-pose"),
    ]
    return [xray, fibsem, tem], edges


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_scene_with_three_spaces(tmp_path: Path, zarr_format: int) -> None:
    systems, edges = _three_space_scene()
    path = write_scene(tmp_path / "scene.zarr", systems, edges, zarr_format=zarr_format)
    scene = read_scene(path)
    assert sorted(scene.coordinate_systems) == ["fibsem", "tem", "xray"]
    assert [(st.input, st.output, st.name) for st in scene.transformations] == [
        ("fibsem", "xray", "fibsem-to-xray"),
        ("tem", "xray", "tem-pose"),
    ]
    _close(scene.transformations[0].transform, edges[0].transform, _points())
    pose = scene.transformations[1].transform
    assert (pose.input_dim, pose.output_dim) == (2, 3)
    _close(pose, edges[1].transform, _points(dim=2))
    assert scene.coordinate_systems["xray"].axis_names == ("x", "y", "z")
    assert scene.coframe_axes("xray") == ("z", "y", "x")


def test_scene_in_micrometres(tmp_path: Path) -> None:
    systems, edges = _three_space_scene()
    path = write_scene(tmp_path / "scene.zarr", systems, edges)
    in_um = read_scene(path, unit="micrometer")
    pts = _points(dim=2)
    np.testing.assert_allclose(
        in_um.transformations[1].transform.apply(pts / 1000.0),
        edges[1].transform.apply(pts) / 1000.0,
        rtol=1e-9,
    )


def test_spec_style_multiscales_and_scene_layout(tmp_path: Path) -> None:
    axes = [{"type": "space", "name": n, "unit": "micrometer"} for n in "zyx"]
    meta = {
        "version": "0.6dev2",
        "multiscales": [
            {
                "name": "multiscales",
                "coordinateSystems": [
                    {"name": "sheared", "axes": axes},
                    {"name": "physical", "axes": axes},
                ],
                "datasets": [
                    {
                        "path": "array",
                        "coordinateTransformations": [
                            {
                                "type": "scale",
                                "scale": [1, 1, 1],
                                "input": "array",
                                "output": "physical",
                            }
                        ],
                    }
                ],
                "coordinateTransformations": [
                    {
                        "type": "affine",
                        "input": "physical",
                        "output": "sheared",
                        "path": "affineParams",
                        "name": "physical-to-sheared",
                    }
                ],
            }
        ],
    }
    root = tmp_path / "spec.zarr"
    group = _group(root, meta)
    params = group.create_array("affineParams", shape=(3, 4), dtype="f8")
    params[...] = np.array([[1.0, 0.5, 0.0, 1.0], [0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]])
    t = read_ngff_transform(root)
    np.testing.assert_allclose(t.apply([1000.0, 2000.0, 3000.0]), [3000.0, 4000.0, 6000.0])


def test_inverse_of_and_bijection_json(tmp_path: Path) -> None:
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "yx"]
    doc = {
        "coordinateSystems": [{"name": "a", "axes": axes}, {"name": "b", "axes": axes}],
        "coordinateTransformations": [
            {
                "type": "inverseOf",
                "input": "a",
                "output": "b",
                "transformation": {"type": "scale", "scale": [2.0, 4.0]},
            },
            {
                "type": "bijection",
                "input": "a",
                "output": "b",
                "forward": {"type": "translation", "translation": [1.0, 2.0]},
                "inverse": {"type": "translation", "translation": [-1.0, -2.0]},
            },
        ],
    }
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(doc))
    inverse, bijection = (st.transform for st in read_scene(path).transformations)
    np.testing.assert_allclose(inverse.apply([2.0, 4.0]), [1.0, 1.0])
    assert isinstance(bijection, Bijection)
    np.testing.assert_allclose(bijection.inverse().apply([1.0, 2.0]), [0.0, 0.0])


def test_image_path_references(tmp_path: Path) -> None:
    root = tmp_path / "scene.zarr"
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "yx"]
    _group(
        root,
        {
            "version": "0.6",
            "scene": {
                "coordinateSystems": [{"name": "world", "axes": axes}],
                "coordinateTransformations": [
                    {
                        "type": "translation",
                        "translation": [0, 348],
                        "output": "world",
                        "input": {"path": "tile_1", "name": "physical"},
                        "name": "tile_1 to world",
                    }
                ],
            },
        },
    )
    _group(
        root / "tile_1",
        {
            "version": "0.6",
            "multiscales": [
                {"coordinateSystems": [{"name": "physical", "axes": axes}], "datasets": []}
            ],
        },
    )
    scene = read_scene(root)
    st = scene.transformations[0]
    assert (st.input, st.output) == ("tile_1/physical", "world")
    assert "tile_1/physical" in scene.coordinate_systems
    np.testing.assert_allclose(st.transform.apply([0.0, 0.0]), [0.0, 348000.0])


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
    path = write_ngff_transform(tmp_path / "f.zarr", _field(), input_space="a", output_space="b")
    _close(read_ngff_transform(f"file://{path}"), read_ngff_transform(path), _points())


def test_missing_container() -> None:
    with pytest.raises(InputNotFoundError, match="does not exist"):
        read_scene("/nonexistent/scene.zarr")


def test_selection_among_several_transformations(tmp_path: Path) -> None:
    systems, edges = _three_space_scene()
    path = write_scene(tmp_path / "scene.zarr", systems, edges)
    with pytest.raises(FormatError, match="2 transformations match: fibsem -> xray"):
        read_ngff_transform(path)
    t = read_ngff_transform(path, input_space="tem")
    assert t.input_dim == 2
    with pytest.raises(FormatError, match="no transformation matches"):
        read_ngff_transform(path, name="nope")


def test_overwrite_needs_force_and_write_is_atomic(tmp_path: Path) -> None:
    target = write_ngff_transform(tmp_path / "t.zarr", AFFINE, input_space="a", output_space="b")
    with pytest.raises(OverwriteError, match="--force"):
        write_ngff_transform(target, Identity(3), input_space="a", output_space="b")
    _close(read_ngff_transform(target), AFFINE, _points())
    thin = _ThinPlate()
    with pytest.raises(TransformError, match="sample_to_field"):
        write_ngff_transform(target, thin, input_space="a", output_space="b", force=True)
    _close(read_ngff_transform(target), AFFINE, _points())  # untouched by the failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]
    write_ngff_transform(target, Identity(3), input_space="a", output_space="b", force=True)
    assert isinstance(read_ngff_transform(target), Identity)


def test_fields_cannot_go_to_plain_json(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="Zarr group"):
        write_ngff_transform(tmp_path / "f.json", _field(), input_space="a", output_space="b")


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
