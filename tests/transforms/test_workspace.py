"""Tests of the workspace file: schema, validation messages, atomic saves, discovery."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

import coframe.core.atomic as atomic
from coframe.app.points import points_csv_text, read_points
from coframe.app.provenance import make_provenance, sha256_path
from coframe.app.workspace import (
    EdgeEntry,
    Workspace,
    find_workspace,
    init_workspace,
    kind_is_linear,
    load_workspace,
)
from coframe.app.workspace_sync import LOCK_FILE
from coframe.core.errors import (
    DimensionError,
    FormatError,
    InputNotFoundError,
    NoPathError,
    OutputError,
    OverwriteError,
    ParseError,
    TransformError,
    UnitError,
    WorkspaceError,
)
from coframe.transforms.affine import Affine
from coframe.transforms.formats.dispatch import (
    detect_transform_format,
    read_transform,
    write_transform,
)
from coframe.transforms.tps import ThinPlateSpline

DEMO_YAML = """\
coframe: 1            # schema version
unit: nanometer
images:
  fibsem: {path: fibsem.zarr/recon-1/em/fibsem-uint8, modality: fibsem, space: fibsem}
  nuc:    {path: fibsem.zarr/recon-1/labels/nuc, modality: labels, space: fibsem}
  xray:   {path: xray.zarr, modality: xray, space: xray}
  tem-1:  {path: tem/section-1.tif, modality: tem, space: tem-1}
transforms: []        # edges, added by later commands
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "coframe.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def _three_space_workspace(root: Path) -> Workspace:
    ws = init_workspace(root)
    ws = ws.add_image("fibsem", root / "fibsem.zarr", "fibsem", axes=("z", "y", "x"))
    ws = ws.add_image("nuc", root / "nuc.zarr", "labels", space="fibsem", axes=("z", "y", "x"))
    ws = ws.add_image("xray", root / "xray.zarr", "xray", voxel_size=[750, 750, 750])
    ws = ws.add_image("tem", root / "tem" / "s1.tif", "tem", axes=("y", "x"))
    ws = ws.add_edge(
        "fibsem", "xray", root / "t" / "fibsem-to-xray.tfm", "itk", None, {"command": "x"}
    )
    return ws.add_edge("tem", "xray", root / "t" / "tem.zarr", "ngff", "micrometer", None)


def test_init_writes_an_empty_workspace_and_refuses_to_overwrite(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws", unit="um")
    assert ws.unit == "micrometer"
    doc = yaml.safe_load((tmp_path / "ws" / "coframe.yaml").read_text())
    assert doc == {"coframe": 1, "unit": "micrometer", "spaces": {}, "images": {}, "transforms": []}
    with pytest.raises(OverwriteError, match="--force"):
        init_workspace(tmp_path / "ws")
    assert init_workspace(tmp_path / "ws", force=True).unit == "nanometer"


def test_the_demo_shape_loads(tmp_path: Path) -> None:
    ws = load_workspace(_write(tmp_path, DEMO_YAML))
    assert ws.unit == "nanometer"
    assert list(ws.images) == ["fibsem", "nuc", "xray", "tem-1"]
    assert ws.images["nuc"].space == "fibsem"
    assert ws.images_in("fibsem") == ["fibsem", "nuc"]
    assert list(ws.all_spaces()) == ["fibsem", "xray", "tem-1"]
    assert ws.resolve(ws.images["xray"].path) == str(tmp_path / "xray.zarr")
    assert ws.space_of("nuc") == "fibsem"
    with pytest.raises(WorkspaceError, match="unknown space or image 'lm'.*fibsem, xray, tem-1"):
        ws.space_of("lm")


def test_save_then_load_round_trips_and_stays_readable(tmp_path: Path) -> None:
    ws = _three_space_workspace(tmp_path)
    ws.save()
    back = load_workspace(tmp_path)
    assert back == ws
    assert back.edges[0].provenance == {"command": "x"}
    assert back.edges[1].unit == "micrometer"
    assert back.spaces["tem"].axes == ("y", "x")
    assert back.images["xray"].voxel_size == (750.0, 750.0, 750.0)
    text = (tmp_path / "coframe.yaml").read_text()
    assert "fibsem: {path: fibsem.zarr, modality: fibsem, space: fibsem}" in text
    assert (
        "xray: {path: xray.zarr, modality: xray, space: xray, voxel_size: [750, 750, 750]}" in text
    )
    assert "tem: {axes: [y, x]}" in text
    assert "- {from: tem, to: xray, file: t/tem.zarr, format: ngff, unit: micrometer}" in text


def test_paths_inside_the_workspace_are_relative_others_absolute_urls_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    ws = init_workspace(root)
    monkeypatch.chdir(root)
    assert ws.relative_path("data/a.zarr") == "data/a.zarr"
    assert ws.relative_path(tmp_path / "other.tif") == str(tmp_path / "other.tif")
    assert ws.relative_path("../other.tif") == str(tmp_path / "other.tif")
    url = "s3://janelia-cosem-datasets/jrc_mus-liver/jrc_mus-liver.zarr"
    assert ws.relative_path(url) == url
    assert ws.resolve(url) == url


def test_top_level_keys_of_other_tools_are_kept(tmp_path: Path) -> None:
    ws = load_workspace(_write(tmp_path, DEMO_YAML + "x-reports:\n  last: report.html\n"))
    ws.save()
    assert yaml.safe_load((tmp_path / "coframe.yaml").read_text())["x-reports"] == {
        "last": "report.html"
    }


_IMG = "coframe: 1\nimages:\n  "
_EDGE = "coframe: 1\ntransforms:\n  - "


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_IMG + "xray: {path: x.zarr, space: 3}", r"images\.xray\.space: expected a string"),
        (_IMG + "xray: {path: x.zarr, spcae: x}", r"images\.xray\.spcae: unknown key"),
        (_IMG + "xray: {modality: xray}", r"images\.xray\.path: missing"),
        (_IMG + "xray: x.zarr", r"images\.xray: expected a mapping"),
        (_IMG + "x: {path: x, modality: ct}", r"images\.x\.modality: unknown modality 'ct'"),
        (_IMG + "x: {path: x, voxel_size: [1, -2]}", r"images\.x\.voxel_size: values"),
        (_IMG + "x: {path: x, voxel_size: big}", r"images\.x\.voxel_size: expected a number"),
        ("coframe: 1\nspaces:\n  tem: {axes: y}", r"spaces\.tem\.axes: expected a list"),
        ("coframe: 1\ntransforms: {}", r"transforms: expected a list"),
        (_EDGE + "{from: a, to: b, file: t.tfm}", r"transforms\[0\]\.format: missing"),
        (_EDGE + "{from: a, to: a, file: t.tfm, format: itk}", r"from and to are both 'a'"),
        (_EDGE + "{from: a, to: b, file: t, format: vtk}", r"\[0\]\.format: unknown format 'vtk'"),
        ("images: {}", r"coframe: missing schema version"),
        ("coframe: 2", r"coframe: schema version 2 is not supported"),
        ("- a\n- b", r"expected a mapping"),
    ],
)
def test_wrong_keys_and_types_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(WorkspaceError, match=message) as info:
        load_workspace(_write(tmp_path, text))
    assert str(tmp_path / "coframe.yaml") in str(info.value)
    assert "\n" not in str(info.value)


def test_a_repeated_key_is_an_error_not_silently_dropped(tmp_path: Path) -> None:
    text = "coframe: 1\nimages:\n  xray: {path: a.zarr}\n  xray: {path: b.zarr}\n"
    with pytest.raises(
        WorkspaceError, match=r"coframe\.yaml line 4, column 3: 'xray' appears twice"
    ):
        load_workspace(_write(tmp_path, text))


def test_a_second_edge_between_the_same_spaces_in_the_file_is_an_error(tmp_path: Path) -> None:
    text = (
        "coframe: 1\ntransforms:\n  - {from: a, to: b, file: 1.tfm, format: itk}\n"
        "  - {from: a, to: b, file: 2.tfm, format: itk}\n"
    )
    with pytest.raises(WorkspaceError, match=r"transforms\[1\]: a second edge a -> b"):
        load_workspace(_write(tmp_path, text))


def test_voxel_size_must_match_the_declared_axes(tmp_path: Path) -> None:
    text = "coframe: 1\nspaces:\n  t: {axes: [y, x]}\n"
    text += "images:\n  t: {path: t.tif, voxel_size: [1, 2, 3]}\n"
    with pytest.raises(DimensionError, match=r"images\.t\.voxel_size has 3 values"):
        load_workspace(_write(tmp_path, text))


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    text = "coframe: 1\nimages:\n  xray: {path: x.zarr, space: xray\n  nuc: [\n"
    with pytest.raises(ParseError, match=r"coframe\.yaml line \d+, column \d+: ") as info:
        load_workspace(_write(tmp_path, text))
    assert "\n" not in str(info.value)
    bad_indent = "coframe: 1\nimages:\n  xray: {path: x}\n bad: 2\n"
    with pytest.raises(ParseError, match="line 4, column 2"):
        load_workspace(_write(tmp_path, bad_indent))


def test_units_that_disagree_with_the_workspace_unit(tmp_path: Path) -> None:
    text = "coframe: 1\nunit: nanometer\nspaces:\n  xray: {axes: [z, y, x], unit: micrometer}\n"
    with pytest.raises(
        UnitError, match=r"spaces\.xray\.unit is micrometer.*remove spaces\.xray\.unit"
    ):
        load_workspace(_write(tmp_path, text))
    text = "coframe: 1\nunit: nm\nimages:\n  xray: {path: x.zarr, unit: um}\n"
    with pytest.raises(UnitError, match=r"images\.xray\.unit is micrometer.*input_unit"):
        load_workspace(_write(tmp_path, text))
    text = "coframe: 1\nunit: parsec\n"
    with pytest.raises(UnitError, match="parsec"):
        load_workspace(_write(tmp_path, text))
    agreeing = "coframe: 1\nunit: um\nspaces:\n  x: {unit: micrometer}\n"
    agreeing += "images:\n  x: {path: x, input_unit: nm}\n"
    ws = load_workspace(_write(tmp_path, agreeing))
    assert ws.unit == "micrometer"
    assert ws.images["x"].input_unit == "nanometer"


def test_add_image_refuses_duplicates_without_force(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path).add_image("xray", tmp_path / "a.zarr", "xray")
    with pytest.raises(OverwriteError, match="image 'xray' already exists.*--force"):
        ws.add_image("xray", tmp_path / "b.zarr", "xray")
    replaced = ws.add_image("xray", tmp_path / "b.zarr", "xray", force=True)
    assert replaced.images["xray"].path == "b.zarr"
    with pytest.raises(WorkspaceError, match="unknown modality 'ct'.*--modality"):
        ws.add_image("ct", tmp_path / "c.zarr", "ct")


def test_a_space_keeps_its_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ws = init_workspace(tmp_path).add_image("em", "em.zarr", "fibsem", axes=("z", "y", "x"))
    with pytest.raises(DimensionError, match=r"space 'em' has axes \['z', 'y', 'x'\].*--space"):
        ws.add_image("tem", "t.tif", "tem", space="em", axes=("y", "x"))
    with pytest.raises(DimensionError, match="--voxel-size"):
        ws.add_image("t", "t.tif", "tem", voxel_size=[1, 2, 3], axes=("y", "x"))


def test_add_edge_refuses_a_duplicate_without_force_but_allows_the_reverse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    empty = init_workspace(tmp_path)
    with pytest.raises(
        WorkspaceError, match=r"unknown space 'a' \(FROM_SPACE\).*known spaces \(none\)"
    ):
        empty.add_edge("a", "b", "1.tfm", "itk", None, None)
    ws = empty.with_space("a", None).with_space("b", None).with_space("c", ["z", "y", "x"])
    ws = ws.add_edge("a", "b", "1.tfm", "itk", None, None)
    with pytest.raises(OverwriteError, match="edge a -> b already exists.*--force"):
        ws.add_edge("a", "b", "2.tfm", "itk", None, None)
    replaced = ws.add_edge("a", "b", "2.tfm", "itk", "um", None, force=True)
    assert [(e.file, e.unit) for e in replaced.edges] == [("2.tfm", "micrometer")]
    both = ws.add_edge("b", "a", "3.tfm", "itk", None, None)
    assert [(e.source, e.target) for e in both.edges] == [("a", "b"), ("b", "a")]
    with pytest.raises(WorkspaceError, match="unknown transform format 'vtk'"):
        ws.add_edge("a", "c", "x.vtk", "vtk", None, None)
    with pytest.raises(WorkspaceError, match="to itself"):
        ws.add_edge("a", "a", "x.tfm", "itk", None, None)


def test_save_is_atomic_when_serialisation_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _three_space_workspace(tmp_path)
    ws.save()
    before = (tmp_path / "coframe.yaml").read_bytes()
    unrepresentable = replace(ws, extras={"x-notes": object()})
    with pytest.raises(yaml.representer.RepresenterError):
        unrepresentable.save()

    def broken_dump(*args: object, **kwargs: object) -> str:
        raise yaml.representer.RepresenterError("cannot represent an object")

    monkeypatch.setattr(yaml, "dump", broken_dump)
    with pytest.raises(yaml.YAMLError):
        ws.add_image("more", "more.zarr", "xray").save()
    assert (tmp_path / "coframe.yaml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "coframe.yaml"]


def test_save_is_atomic_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _three_space_workspace(tmp_path)
    ws.save()
    before = (tmp_path / "coframe.yaml").read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OutputError, match="disk full"):
        ws.add_image("more", "more.zarr", "xray").save()
    assert (tmp_path / "coframe.yaml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "coframe.yaml"]


def test_find_workspace_searches_upward_and_explicit_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "a")
    init_workspace(tmp_path / "b")
    nested = tmp_path / "a" / "x" / "y"
    nested.mkdir(parents=True)
    assert find_workspace(nested) == tmp_path / "a"
    monkeypatch.chdir(nested)
    assert find_workspace() == tmp_path / "a"
    assert find_workspace(explicit=tmp_path / "b") == tmp_path / "b"
    assert find_workspace(explicit=tmp_path / "b" / "coframe.yaml") == tmp_path / "b"
    with pytest.raises(WorkspaceError, match=r"no coframe\.yaml in .*--workspace"):
        find_workspace(explicit=tmp_path / "a" / "x")
    with pytest.raises(WorkspaceError, match="coframe init"):
        find_workspace(tmp_path)
    with pytest.raises(InputNotFoundError, match="coframe init"):
        load_workspace(tmp_path / "nowhere")


def test_graph_of_a_workspace_reads_no_file_until_a_path_needs_it(tmp_path: Path) -> None:
    ws = _three_space_workspace(tmp_path)
    graph = ws.graph()
    assert graph.spaces == {"fibsem": ("z", "y", "x"), "tem": ("y", "x"), "xray": None}
    steps = graph.path("xray", "fibsem")
    assert [(s.edge.label, s.inverted) for s in steps] == [("t/fibsem-to-xray.tfm", True)]
    with pytest.raises(InputNotFoundError, match="fibsem-to-xray.tfm"):
        graph.transform("xray", "fibsem")
    with pytest.raises(NoPathError):
        init_workspace(tmp_path / "empty").add_image("a", "a", None).add_image(
            "b", "b", None
        ).graph().path("a", "b")


def test_kind_summaries_tell_linearity() -> None:
    assert kind_is_linear("affine") is True
    assert kind_is_linear("sequence(affine, translation)") is True
    assert kind_is_linear("sequence(affine, displacements)") is False
    assert kind_is_linear("thin-plate-spline") is False
    assert kind_is_linear("bijection(affine)") is None
    assert kind_is_linear(None) is None


def test_provenance_records_command_time_hashes_and_versions(tmp_path: Path) -> None:
    f = tmp_path / "t.tfm"
    f.write_text("abc")
    group = tmp_path / "g.zarr"
    (group / "v").mkdir(parents=True)
    (group / "zarr.json").write_text("{}")
    (group / "v" / "0").write_bytes(b"\x00\x01")
    prov = make_provenance(
        "coframe link a b t.tfm", files={"file": f, "group": group}, parameters={"n": (1, 2)}
    )
    assert prov["command"] == "coframe link a b t.tfm"
    assert prov["created"].endswith("+00:00")
    assert (
        prov["sha256"]["file"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert prov["parameters"] == {"n": [1, 2]}
    assert {"python", "numpy"} <= set(prov["software"])
    digest = sha256_path(group)
    (group / "v" / "0").write_bytes(b"\x00\x02")
    assert sha256_path(group) != digest
    with pytest.raises(InputNotFoundError):
        sha256_path(tmp_path / "missing")


def test_edge_entries_compare_by_value_not_provenance() -> None:
    a = EdgeEntry("a", "b", "t.tfm", "itk", "nanometer", None, {"created": "1"})
    b = EdgeEntry("a", "b", "t.tfm", "itk", "nanometer", None, {"created": "2"})
    assert a == b
    assert os.fspath(Path("t.tfm")) == a.file


# ---------------------------------------------------------------------- transform files and points


def test_transform_files_are_dispatched_by_suffix_and_content(tmp_path: Path) -> None:
    landmarks = tmp_path / "bw.json"
    landmarks.write_text(
        '{"type": "BigWarpLandmarks", "numDimensions": 2, "movingPoints": [], '
        '"fixedPoints": [], "active": [], "names": []}'
    )
    ngff = tmp_path / "scene.json"
    ngff.write_text('{"coordinateSystems": [], "coordinateTransformations": []}')
    group = tmp_path / "t.ome.zarr"
    group.mkdir()
    plain_group = tmp_path / "group"
    plain_group.mkdir()
    (plain_group / "zarr.json").write_text("{}")
    for name in ("a.tfm", "a.txt", "a.h5", "a.mat", "a.csv"):
        (tmp_path / name).write_text("")
    assert [
        detect_transform_format(tmp_path / n)
        for n in ("a.tfm", "a.txt", "a.h5", "a.mat", "a.csv", "bw.json", "scene.json")
    ] == ["itk", "itk", "itk", "itk", "bigwarp-csv", "bigwarp-json", "ngff"]
    assert detect_transform_format(group) == detect_transform_format(plain_group) == "ngff"
    (tmp_path / "t.vtk").write_text("")
    with pytest.raises(FormatError, match=r"suffix '\.vtk'.*\.tfm.*\.csv.*\.zarr"):
        detect_transform_format(tmp_path / "t.vtk")
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "BigWarpLandmarks",\n "names": [}')
    with pytest.raises(ParseError, match=r"bad\.json line 2, column 12"):
        detect_transform_format(bad)
    with pytest.raises(InputNotFoundError, match="missing.tfm does not exist"):
        detect_transform_format(tmp_path / "missing.tfm")


@pytest.mark.parametrize("suffix", [".tfm", ".h5", ".zarr", ".json"])
def test_write_then_read_an_affine_in_every_format(tmp_path: Path, suffix: str) -> None:
    t = Affine(np.array([[1.1, 0.1, 0.0, 5.0], [0.0, 0.9, 0.2, -3.0], [0.05, 0.0, 1.0, 2.0]]))
    path = write_transform(t, tmp_path / f"t{suffix}", unit="nanometer", file_unit="micrometer")
    with pytest.raises(OverwriteError, match="--force"):
        write_transform(t, path)
    back = read_transform(path, file_unit="micrometer", unit="nanometer")
    pts = np.array([[1.0, 2.0, 3.0], [-400.0, 50.0, 1e4]])
    np.testing.assert_allclose(back.apply(pts), t.apply(pts), rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_a_thin_plate_spline_goes_through_bigwarp_files(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(1)
    fixed = rng.uniform(0, 1000, (7, 3))
    tps = ThinPlateSpline(fixed, fixed + rng.normal(0, 5, (7, 3)))
    fmt = "bigwarp-json" if suffix == ".json" else None
    path = write_transform(tps, tmp_path / f"lm{suffix}", format=fmt)
    back = read_transform(path)
    np.testing.assert_allclose(back.apply(fixed), tps.apply(fixed), atol=1e-6)
    with pytest.raises(TransformError, match=r"thin-plate spline, not a Affine.*\.tfm"):
        write_transform(Affine(np.eye(4)), tmp_path / f"affine{suffix}", format=fmt)


def test_point_lists_from_json_and_csv(tmp_path: Path) -> None:
    np.testing.assert_array_equal(read_points("[1, 2, 3]"), [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(read_points(" [[1, 2], [3, 4.5]] "), [[1, 2], [3, 4.5]])
    f = tmp_path / "p.csv"
    f.write_text("# comment\n\n1, 2, 3\n4,5,6\n")
    np.testing.assert_array_equal(read_points(str(f)), [[1, 2, 3], [4, 5, 6]])
    f.write_text("y,x\n1,2\n")
    np.testing.assert_array_equal(read_points(str(f)), [[1, 2]])
    f.write_text("x,z,y\n1,2,3\n")
    np.testing.assert_array_equal(read_points(str(f)), [[2, 3, 1]])
    j = tmp_path / "p.json"
    j.write_text("[[1, 2, 3]]")
    np.testing.assert_array_equal(read_points(str(j)), [[1, 2, 3]])
    text = points_csv_text(np.array([[1.5, 2.0, 3.0]]), ("z", "y", "x"))
    assert text == "z,y,x\n1.5,2.0,3.0\n"
    f.write_text(text)
    np.testing.assert_array_equal(read_points(str(f)), [[1.5, 2.0, 3.0]])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c\n1,2,3\n", r"p\.csv line 1: header \['a', 'b', 'c'\] does not name the axes"),
        ("1,2,3\n4,5\n", r"p\.csv line 2: 2 values but line 1 has 3"),
        ("z,y,x\n1,2,3\n\n4,x,6\n", r"p\.csv line 4: 'x' is not a number"),
        ("z,y,x\n", r"p\.csv: no points found"),
        ("1,nan,3\n", r"coordinates must be finite"),
    ],
)
def test_malformed_point_csv_names_the_line(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "p.csv"
    f.write_text(content)
    with pytest.raises(ParseError, match=message):
        read_points(str(f))


@pytest.mark.parametrize(
    ("coords", "message"),
    [
        ("[[1, 2, 3],\n [4, 5 6]]", r"COORDS line 2, column 8: Expecting ','"),
        ("[]", r"non-empty JSON list"),
        ("[[1, 2], [3]]", r"point 1 has 1 coordinates but point 0 has 2"),
        ("[[1, true]]", r"point 0 is \[1, True\]"),
    ],
)
def test_malformed_point_json_names_line_or_point(coords: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        read_points(coords)
