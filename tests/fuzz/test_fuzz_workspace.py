"""Fuzzing the workspace file ``coframe.yaml`` and the points lists of ``coframe points``.

A workspace example writes a broken ``coframe.yaml`` (a mutated document, a
byte-mutated file, or YAML constructs: aliases, complex keys, tags, deep
nesting), loads it, describes its graph (``coframe graph``) and composes the
transform of its first edge. A points example reads a broken JSON list, JSON
file or CSV file (``coframe points ... COORDS``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import yaml
from fuzz.harness import fuzz_settings, reads_or_refuses
from fuzz.mutations import mutated_document, mutated_text, unreadable_json
from hypothesis import given
from hypothesis import strategies as st

from coframe.app.points import read_points
from coframe.app.workspace import load_workspace
from coframe.transforms.graph import describe_graph, render_graph

WORKSPACE: dict[str, Any] = {
    "coframe": 1,
    "unit": "nanometer",
    "spaces": {"fibsem": {"axes": ["z", "y", "x"]}, "xray": {"axes": ["z", "y", "x"]}},
    "images": {
        "fibsem": {"path": "fibsem.zarr", "modality": "fibsem", "space": "fibsem"},
        "nuc": {"path": "labels.zarr", "modality": "labels", "space": "fibsem"},
        "xray": {
            "path": "xray.tif",
            "modality": "xray",
            "voxel_size": [0.8, 0.8, 0.8],
            "input_unit": "micrometer",
        },
        "tem-1": {"path": "tem.mrc", "modality": "tem"},
    },
    "transforms": [
        {
            "from": "fibsem",
            "to": "xray",
            "file": "transforms/fibsem-to-xray.tfm",
            "format": "itk",
            "unit": "nanometer",
            "kind": "affine",
            "provenance": {
                "command": "register",
                "created": "2025-01-01T00:00:00Z",
                "parameters": {"preset": "xray-to-fibsem", "steps": ["rigid", "affine"]},
                "metric": {"before": -0.1, "after": -0.6},
            },
        },
        {"from": "tem-1", "to": "xray", "file": "transforms/tem.csv", "format": "bigwarp-csv"},
    ],
}


def _workspace_dir(root: Path) -> Path:
    """A workspace directory whose edge files exist (the YAML is written by the caller)."""
    (root / "transforms").mkdir()
    affine = sitk.AffineTransform(3)
    affine.SetTranslation((10.0, 20.0, 30.0))
    sitk.WriteTransform(affine, str(root / "transforms" / "fibsem-to-xray.tfm"))
    rows = [(0, 0), (100, 0), (0, 100), (100, 100), (30, 60)]
    (root / "transforms" / "tem.csv").write_text(
        "".join(
            f'"Pt-{i}","true","{x}","{y}","{x + 2}","{y - 1}"\n' for i, (x, y) in enumerate(rows)
        )
    )
    return root


def _use_workspace(root: Path) -> None:
    ws = load_workspace(root)
    description = describe_graph(ws)
    json.dumps(description, indent=2)
    render_graph(description)
    if ws.edges:
        edge = ws.edges[0]
        t = ws.graph().transform(edge.source, edge.target)
        t.apply(np.zeros((1, t.input_dim)))


def _yaml_text(doc: Any) -> str | None:
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, UnicodeEncodeError):
        return None


@fuzz_settings(ci=60, long=1200)
@given(doc=mutated_document(WORKSPACE, max_mutations=4))
def test_workspace_document(doc: Any) -> None:
    text = _yaml_text(doc)
    if text is None:
        return  # not representable as YAML
    with tempfile.TemporaryDirectory() as tmp:
        root = _workspace_dir(Path(tmp))
        (root / "coframe.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
        reads_or_refuses("workspace coframe.yaml", lambda: _use_workspace(root))


_YAML_SPECIALS = (
    # aliases: a "billion laughs" document (shared references, exponential if walked)
    "coframe: 1\na: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    ),
    "coframe: 1\nimages: &i {x: {path: a.tif, space: *i}}\n",
    "coframe: 1\nspaces:\n  ? [a, b]\n  : {axes: [z, y, x]}\n",
    "coframe: 1\nspaces: {? {a: 1} : {}}\n",
    "coframe: !!python/object:os.system 1\n",
    "coframe: 1\nunit: !!binary aGVsbG8=\n",
    "coframe: 1\nimages: {x: {path: !!timestamp 2001-12-14, space: x}}\n",
    "coframe: 1\ntransforms: " + "[" * 5000 + "]" * 5000 + "\n",
    "coframe: 1\nspaces: {a: {axes: [z, y, x]}, a: {axes: [y, x]}}\n",
    "coframe: 1\n---\ncoframe: 1\n",
    "%YAML 9.9\n---\ncoframe: 1\n",
    "coframe: 1\nimages: {1: {path: a.tif}, null: {path: b.tif}, true: {path: c.tif}}\n",
    "coframe: 1\nimages: {x: {path: a.tif, voxel_size: [.inf, .nan, -.inf]}}\n",
    "coframe: 1\nimages: {x: {path: a.tif, voxel_size: 1" + "0" * 400 + "}}\n",
    "\ufeffcoframe: 1\n",
    "coframe: 1\0\n",
)


@fuzz_settings(ci=40, long=1000)
@given(
    raw=mutated_text(_yaml_text(WORKSPACE) or "") | st.sampled_from(_YAML_SPECIALS).map(str.encode)
)
def test_workspace_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = _workspace_dir(Path(tmp))
        (root / "coframe.yaml").write_bytes(raw)
        reads_or_refuses("workspace coframe.yaml", lambda: _use_workspace(root))


# ---------------------------------------------------------------------- points

POINTS = [[0.0, 10.5, -3.0], [1200.0, 8.0, 8.0], [4.0, 5.0, 6.0]]
POINTS_CSV = "z,y,x\n" + "".join(f"{z},{y},{x}\n" for z, y, x in POINTS)


@fuzz_settings(ci=40, long=1000)
@given(
    doc=mutated_document(POINTS) | mutated_document(POINTS[0]),
    where=st.sampled_from(["argument", "file"]),
)
def test_points_json(doc: Any, where: str) -> None:
    text = json.dumps(doc, allow_nan=True)
    if where == "argument":
        reads_or_refuses("points json/csv", lambda: read_points(text))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "points.json"
        path.write_text(text)
        reads_or_refuses("points json/csv", lambda: read_points(str(path)))


@fuzz_settings(ci=40, long=1000)
@given(
    raw=mutated_text(POINTS_CSV) | mutated_text(json.dumps(POINTS)) | unreadable_json(),
    suffix=st.sampled_from([".csv", ".json", ".txt"]),
)
def test_points_files(raw: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"points{suffix}"
        path.write_bytes(raw)
        reads_or_refuses("points json/csv", lambda: read_points(str(path)))


@fuzz_settings(ci=30, long=800)
@given(coords=st.text(max_size=40) | st.sampled_from(["~nobody-here/p.csv", "[", "~", "[1e999]"]))
def test_points_argument(coords: str) -> None:
    reads_or_refuses("points json/csv", lambda: read_points(coords))


def test_seed_workspace_reads() -> None:
    """The seed workspace loads and its first edge composes: the fuzzers start from valid files."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _workspace_dir(Path(tmp))
        (root / "coframe.yaml").write_text(_yaml_text(WORKSPACE) or "")
        _use_workspace(root)
        (root / "points.csv").write_text(POINTS_CSV)
        np.testing.assert_allclose(read_points(str(root / "points.csv")), POINTS)
        np.testing.assert_allclose(read_points(json.dumps(POINTS)), POINTS)
