"""CLI tests of the workspace commands: init, link, graph, points."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from typer.testing import CliRunner

from coframe.cli import app

# An ITK affine in (x, y, z): q = A p + t (centre 0), written by hand.
A_XYZ = np.array([[1.02, 0.05, 0.0], [-0.04, 0.98, 0.03], [0.01, -0.02, 1.01]])
T_XYZ = np.array([120.0, -40.0, 15.5])

WORKSPACE = """\
coframe: 1
unit: nanometer
spaces:
  fibsem: {axes: [z, y, x]}
  xray: {axes: [z, y, x]}
  tem: {axes: [y, x]}
images:
  fibsem: {path: fibsem.zarr, modality: fibsem, space: fibsem}
  nuc: {path: nuc.zarr, modality: labels, space: fibsem}
  xray: {path: xray.zarr, modality: xray, space: xray}
  tem: {path: tem.tif, modality: tem, space: tem}
transforms: []
"""


def _itk_affine(path: Path, a_xyz: np.ndarray = A_XYZ, t_xyz: np.ndarray = T_XYZ) -> Path:
    params = " ".join(repr(float(v)) for v in [*a_xyz.ravel(), *t_xyz])
    path.write_text(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
        f"Parameters: {params}\nFixedParameters: 0 0 0\n"
    )
    return path


def _fibsem_to_xray_zyx(points_zyx: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """The hand-written ITK affine applied to (z, y, x) points, independently of coframe."""
    xyz = np.asarray(points_zyx, float)[:, ::-1]
    return (xyz @ A_XYZ.T + T_XYZ * factor)[:, ::-1]


def _xray_to_fibsem_zyx(points_zyx: np.ndarray) -> np.ndarray:
    xyz = np.asarray(points_zyx, float)[:, ::-1]
    return np.linalg.solve(A_XYZ, (xyz - T_XYZ).T).T[:, ::-1]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "coframe.yaml").write_text(WORKSPACE)
    (root / "transforms").mkdir()
    return root


def _run(runner: CliRunner, ws: Path, *args: str) -> object:
    return runner.invoke(app, [*args, "-w", str(ws)])


def _points(result: object) -> np.ndarray:
    assert result.exit_code == 0, result.output
    return np.asarray(json.loads(result.stdout)["coordinates"])


def test_init_creates_a_workspace_and_needs_force_to_overwrite(
    runner: CliRunner, tmp_path: Path
) -> None:
    target = tmp_path / "new"
    result = runner.invoke(app, ["init", str(target), "--unit", "um"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((target / "coframe.yaml").read_text())["unit"] == "micrometer"
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 2
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert runner.invoke(app, ["init", str(target), "--force"]).exit_code == 0
    bad = runner.invoke(app, ["init", str(tmp_path / "other"), "--unit", "parsec"])
    assert bad.exit_code == 2 and "parsec" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_link_records_the_edge_with_provenance(runner: CliRunner, ws: Path) -> None:
    tfm = _itk_affine(ws / "transforms" / "fibsem-to-xray.tfm")
    result = _run(runner, ws, "link", "fibsem", "xray", str(tfm))
    assert result.exit_code == 0, result.output
    assert "fibsem -> xray: affine (3D -> 3D)" in result.stdout
    doc = yaml.safe_load((ws / "coframe.yaml").read_text())
    (edge,) = doc["transforms"]
    assert edge["from"] == "fibsem" and edge["to"] == "xray"
    assert edge["file"] == "transforms/fibsem-to-xray.tfm"
    assert (edge["format"], edge["unit"], edge["kind"]) == ("itk", "nanometer", "affine")
    prov = edge["provenance"]
    assert prov["command"].startswith("coframe link fibsem xray ")
    assert prov["sha256"]["file"] == hashlib.sha256(tfm.read_bytes()).hexdigest()
    assert "numpy" in prov["software"] and prov["created"]

    again = _run(runner, ws, "link", "fibsem", "xray", str(tfm))
    assert again.exit_code == 2 and "--force" in again.stderr
    assert _run(runner, ws, "link", "fibsem", "xray", str(tfm), "--force").exit_code == 0
    assert len(yaml.safe_load((ws / "coframe.yaml").read_text())["transforms"]) == 1


def test_points_through_a_stored_and_an_inverted_edge(runner: CliRunner, ws: Path) -> None:
    tfm = _itk_affine(ws / "transforms" / "f2x.tfm")
    assert _run(runner, ws, "link", "fibsem", "xray", str(tfm)).exit_code == 0
    pts = np.array([[100.0, 2000.0, 3000.0], [-50.0, 0.0, 12.5]])
    forward = _points(_run(runner, ws, "points", "fibsem", "xray", json.dumps(pts.tolist())))
    np.testing.assert_allclose(forward, _fibsem_to_xray_zyx(pts), rtol=1e-12, atol=1e-9)
    backward = _points(_run(runner, ws, "points", "xray", "fibsem", json.dumps(pts.tolist())))
    np.testing.assert_allclose(backward, _xray_to_fibsem_zyx(pts), atol=1e-9)
    # image names stand for their spaces; a single point is accepted
    single = _points(_run(runner, ws, "points", "nuc", "xray", "[100, 2000, 3000]"))
    np.testing.assert_allclose(single, _fibsem_to_xray_zyx(pts[:1]), atol=1e-9)


def test_link_in_another_unit_scales_translations(runner: CliRunner, ws: Path) -> None:
    tfm = _itk_affine(ws / "transforms" / "f2x-um.tfm")
    result = _run(runner, ws, "link", "fibsem", "xray", str(tfm), "--unit", "micrometer")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((ws / "coframe.yaml").read_text())["transforms"][0]["unit"] == (
        "micrometer"
    )
    pts = np.array([[1000.0, 2000.0, 3000.0]])
    mapped = _points(_run(runner, ws, "points", "fibsem", "xray", json.dumps(pts.tolist())))
    np.testing.assert_allclose(mapped, _fibsem_to_xray_zyx(pts, factor=1000.0), atol=1e-6)


def test_link_rejects_wrong_dimensions_unknown_spaces_and_formats(
    runner: CliRunner, ws: Path
) -> None:
    tfm = _itk_affine(ws / "transforms" / "f2x.tfm")
    wrong = _run(runner, ws, "link", "tem", "xray", str(tfm))
    assert wrong.exit_code == 2
    assert "maps 3D points to 3D but space 'tem' has axes ['y', 'x']" in wrong.stderr
    unknown = _run(runner, ws, "link", "lm", "xray", str(tfm))
    assert unknown.exit_code == 2
    assert "unknown space or image 'lm'" in unknown.stderr and "fibsem, xray, tem" in unknown.stderr
    odd = ws / "t.vtk"
    odd.write_text("x")
    bad_format = _run(runner, ws, "link", "fibsem", "xray", str(odd))
    assert bad_format.exit_code == 2 and ".tfm" in bad_format.stderr and ".csv" in bad_format.stderr
    missing = _run(runner, ws, "link", "fibsem", "xray", str(ws / "nope.tfm"))
    assert missing.exit_code == 2 and "nope.tfm does not exist" in missing.stderr
    assert yaml.safe_load((ws / "coframe.yaml").read_text())["transforms"] == []


def test_bigwarp_landmarks_link_fixed_to_moving(runner: CliRunner, ws: Path) -> None:
    rng = np.random.default_rng(0)
    fixed = rng.uniform(0, 10_000, (8, 3))
    moving = fixed * 1.01 + rng.normal(0, 30, (8, 3)) + [500.0, -200.0, 50.0]
    rows = [
        ",".join(f'"{v}"' for v in [f"Pt-{i}", "true", *m[::-1], *f[::-1]])
        for i, (m, f) in enumerate(zip(moving, fixed, strict=True))
    ]
    csv_path = ws / "landmarks.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    result = _run(runner, ws, "link", "fibsem", "xray", str(csv_path))
    assert result.exit_code == 0, result.output
    assert "thin-plate-spline" in result.stdout
    mapped = _points(_run(runner, ws, "points", "fibsem", "xray", json.dumps(fixed.tolist())))
    np.testing.assert_allclose(mapped, moving, atol=1e-6)


def test_points_from_csv_with_a_header_and_csv_output(runner: CliRunner, ws: Path) -> None:
    tfm = _itk_affine(ws / "transforms" / "f2x.tfm")
    assert _run(runner, ws, "link", "fibsem", "xray", str(tfm)).exit_code == 0
    pts = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    csv_in = ws / "pts.csv"
    csv_in.write_text("x,y,z\n3,2,1\n6,5,4\n")
    out = ws / "mapped.csv"
    result = _run(runner, ws, "points", "fibsem", "xray", str(csv_in), "--csv-out", str(out))
    np.testing.assert_allclose(_points(result), _fibsem_to_xray_zyx(pts), atol=1e-9)
    lines = out.read_text().splitlines()
    assert lines[0] == "z,y,x"
    np.testing.assert_allclose(
        np.array([[float(v) for v in line.split(",")] for line in lines[1:]]),
        _fibsem_to_xray_zyx(pts),
        atol=1e-9,
    )
    again = _run(runner, ws, "points", "fibsem", "xray", str(csv_in), "--csv-out", str(out))
    assert again.exit_code == 2 and "--force" in again.stderr
    forced = [str(csv_in), "--csv-out", str(out), "--force"]
    assert _run(runner, ws, "points", "fibsem", "xray", *forced).exit_code == 0


@pytest.mark.parametrize(
    ("coords", "expected"),
    [
        ("[[1, 2, 3], [4, 5]", "line 1, column 19"),
        ('[[1, 2, 3], [4, "a", 6]]', "point 1 is [4, 'a', 6]"),
        ("[[1, 2], [3, 4]]", "points have 2 coordinates but space 'fibsem' has 3 axes"),
        ("no-such-file.csv", "neither a JSON list"),
    ],
)
def test_bad_coords_print_a_json_message_and_exit_2(
    runner: CliRunner, ws: Path, coords: str, expected: str
) -> None:
    _itk_affine(ws / "transforms" / "f2x.tfm")
    assert (
        _run(runner, ws, "link", "fibsem", "xray", str(ws / "transforms" / "f2x.tfm")).exit_code
        == 0
    )
    result = _run(runner, ws, "points", "fibsem", "xray", coords)
    assert result.exit_code == 2
    assert expected in json.loads(result.stdout)["message"]
    assert result.stderr.startswith("error: ") and expected in result.stderr


def test_malformed_csv_names_the_line(runner: CliRunner, ws: Path) -> None:
    csv_in = ws / "bad.csv"
    csv_in.write_text("z,y,x\n1,2,3\n4,five,6\n")
    result = _run(runner, ws, "points", "fibsem", "fibsem", str(csv_in))
    assert result.exit_code == 2
    assert "bad.csv line 3: 'five' is not a number" in json.loads(result.stdout)["message"]
    csv_in.write_text("1,2,3\n4,5\n")
    result = _run(runner, ws, "points", "fibsem", "fibsem", str(csv_in))
    assert "line 2: 2 values but line 1 has 3" in result.stderr


def test_no_path_and_ambiguous_paths_list_candidates(runner: CliRunner, ws: Path) -> None:
    no_path = _run(runner, ws, "points", "fibsem", "xray", "[1, 2, 3]")
    assert no_path.exit_code == 2
    message = json.loads(no_path.stdout)["message"]
    assert "no chain of transforms joins 'fibsem' to 'xray'" in message
    assert "{fibsem} | {xray} | {tem}" in message
    # two equally short chains fibsem -> xray -> lm and fibsem -> em2 -> lm
    doc = yaml.safe_load(WORKSPACE)
    doc["spaces"].update({"lm": {"axes": ["z", "y", "x"]}, "em2": {"axes": ["z", "y", "x"]}})
    for name, (a, b) in {"1": ("fibsem", "xray"), "2": ("xray", "lm"), "3": ("fibsem", "em2"),
                         "4": ("em2", "lm")}.items():  # fmt: skip
        _itk_affine(ws / "transforms" / f"{name}.tfm")
        doc["transforms"].append(
            {"from": a, "to": b, "file": f"transforms/{name}.tfm", "format": "itk"}
        )
    (ws / "coframe.yaml").write_text(yaml.safe_dump(doc))
    ambiguous = _run(runner, ws, "points", "fibsem", "lm", "[1, 2, 3]")
    assert ambiguous.exit_code == 2
    message = json.loads(ambiguous.stdout)["message"]
    assert "fibsem -> xray -> lm | fibsem -> em2 -> lm" in message and "--via" in message
    via = _run(runner, ws, "points", "fibsem", "lm", "[1, 2, 3]", "--via", "xray")
    once = _fibsem_to_xray_zyx(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(_points(via), _fibsem_to_xray_zyx(once), atol=1e-9)


def test_graph_shows_spaces_images_and_edges(runner: CliRunner, ws: Path) -> None:
    tfm = _itk_affine(ws / "transforms" / "f2x.tfm")
    assert _run(runner, ws, "link", "fibsem", "xray", str(tfm)).exit_code == 0
    text = _run(runner, ws, "graph")
    assert text.exit_code == 0, text.output
    assert "fibsem (fibsem), nuc (labels)" in text.stdout
    assert "fibsem -> xray  affine  transforms/f2x.tfm (itk)" in text.stdout
    assert "coframe link fibsem xray" in text.stdout
    desc = json.loads(_run(runner, ws, "graph", "--json").stdout)
    assert [s["name"] for s in desc["spaces"]] == ["fibsem", "xray", "tem"]
    assert desc["spaces"][2]["axes"] == ["y", "x"]
    assert desc["edges"][0]["kind"] == "affine"
    assert desc["components"] == [["fibsem", "xray"], ["tem"]]


def test_workspace_discovery_and_malformed_yaml(
    runner: CliRunner, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ws / "transforms")
    assert runner.invoke(app, ["graph"]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    lost = runner.invoke(app, ["graph"])
    assert lost.exit_code == 2 and "coframe init" in lost.stderr
    (ws / "coframe.yaml").write_text("coframe: 1\nimages:\n  a: {path: x\n")
    broken = runner.invoke(app, ["graph", "-w", str(ws)])
    assert broken.exit_code == 2
    assert "coframe.yaml line 4, column 1" in broken.stderr
    (ws / "coframe.yaml").write_text("coframe: 1\nimages:\n  xray: {path: x.zarr, space: 3}\n")
    wrong = runner.invoke(app, ["graph", "-w", str(ws)])
    assert wrong.exit_code == 2 and "images.xray.space: expected a string" in wrong.stderr


def _imagej_stack(path: Path, shape: tuple[int, ...], spacing_um: float) -> Path:
    axes = "ZYX" if len(shape) == 3 else "YX"
    tifffile.imwrite(
        path,
        np.zeros(shape, np.uint8),
        imagej=True,
        resolution=(1 / spacing_um, 1 / spacing_um),
        metadata={"axes": axes, "spacing": spacing_um, "unit": "um"},
    )
    return path


def test_add_opens_the_image_and_records_it(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    stack = _imagej_stack(root / "xray.tif", (4, 5, 6), 0.75)
    result = _run(runner, root, "add", "xray", str(stack), "--modality", "xray")
    assert result.exit_code == 0, result.output
    assert "axes ['z', 'y', 'x']" in result.stdout and "750.0" in result.stdout
    doc = yaml.safe_load((root / "coframe.yaml").read_text())
    assert doc["images"]["xray"] == {"path": "xray.tif", "modality": "xray", "space": "xray"}
    assert doc["spaces"]["xray"] == {"axes": ["z", "y", "x"]}

    again = _run(runner, root, "add", "xray", str(stack))
    assert again.exit_code == 2 and "--force" in again.stderr
    outside = _imagej_stack(tmp_path / "elsewhere.tif", (5, 6), 0.04)
    mixed = _run(runner, root, "add", "tem", str(outside), "--space", "xray")
    assert mixed.exit_code == 2
    assert "space 'xray' has axes ['z', 'y', 'x']" in mixed.stderr and "--space" in mixed.stderr
    ok = _run(runner, root, "add", "tem", str(outside), "--modality", "tem", "--voxel-size", "40")
    assert ok.exit_code == 0, ok.output
    doc = yaml.safe_load((root / "coframe.yaml").read_text())
    assert doc["images"]["tem"]["path"] == str(outside)
    assert doc["images"]["tem"]["voxel_size"] == [40]
    assert doc["spaces"]["tem"] == {"axes": ["y", "x"]}


def test_add_reports_bad_input_in_one_line(runner: CliRunner, ws: Path) -> None:
    missing = _run(runner, ws, "add", "lm", str(ws / "nothing.tif"))
    assert missing.exit_code == 2 and "nothing.tif" in missing.stderr
    stack = _imagej_stack(ws / "s.tif", (3, 4, 5), 1.0)
    bad = _run(runner, ws, "add", "lm", str(stack), "--voxel-size", "40,a,8")
    assert bad.exit_code == 2 and "--voxel-size '40,a,8'" in bad.stderr
    modality = _run(runner, ws, "add", "lm", str(stack), "--modality", "ct")
    assert modality.exit_code == 2 and "ct" in modality.stderr
    for result in (missing, bad, modality):
        assert len(result.stderr.strip().splitlines()) == 1
    assert "lm" not in yaml.safe_load((ws / "coframe.yaml").read_text())["images"]
