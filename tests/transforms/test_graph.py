"""Tests of the space graph: chains through inverted edges, ties, laziness, errors."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from coframe.core.errors import (
    AmbiguousPathError,
    DimensionError,
    NoPathError,
    NotInvertibleError,
    WorkspaceError,
)
from coframe.transforms.affine import Affine, Translation
from coframe.transforms.base import Chain
from coframe.transforms.field import DisplacementField
from coframe.transforms.graph import Edge, SpaceGraph, describe_chains, summarize_transform


@dataclass(frozen=True)
class Shift:
    """Stand-in transform: adds an offset; ``linear`` and ``invertible`` are switches."""

    offset: tuple[float, ...]
    linear: bool = True
    invertible: bool = True

    @property
    def input_dim(self) -> int:
        return len(self.offset)

    @property
    def output_dim(self) -> int:
        return len(self.offset)

    def apply(self, points: Any) -> np.ndarray:
        return np.asarray(points, float) + np.asarray(self.offset)

    def inverse(self) -> Shift:
        if not self.invertible:
            raise NotInvertibleError("stand-in has no inverse")
        return Shift(tuple(-v for v in self.offset), self.linear)

    def then(self, other: Any) -> Composed:
        return Composed((self, other))

    def as_affine(self) -> Shift | None:
        return self if self.linear else None


@dataclass(frozen=True)
class Composed:
    """Stand-in composition."""

    parts: tuple[Any, ...]

    @property
    def input_dim(self) -> int:
        return self.parts[0].input_dim

    @property
    def output_dim(self) -> int:
        return self.parts[-1].output_dim

    def apply(self, points: Any) -> np.ndarray:
        for p in self.parts:
            points = p.apply(points)
        return np.asarray(points)

    def then(self, other: Any) -> Composed:
        return Composed((*self.parts, other))


class Loader:
    """Zero-argument loader counting its calls."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.transform


def test_a_direct_edge_and_its_inverse() -> None:
    g = SpaceGraph([Edge("fibsem", "xray", Shift((1.0, 2.0, 3.0)), "f2x")])
    assert g.transform("fibsem", "xray").apply([0, 0, 0]).tolist() == [1, 2, 3]
    steps = g.path("xray", "fibsem")
    assert [(s.start, s.end, s.inverted) for s in steps] == [("xray", "fibsem", True)]
    assert g.transform("xray", "fibsem").apply([1, 2, 3]).tolist() == [0, 0, 0]


def test_real_transforms_through_inverted_edges_match_an_independent_computation() -> None:
    rng = np.random.default_rng(3)
    lin = np.eye(3) + 0.05 * rng.standard_normal((3, 3))
    f2x = Affine.from_linear(lin, [100.0, -50.0, 20.0])
    pose = np.array([[0.1, 0.0], [0.98, 0.2], [-0.2, 0.97]])
    t2x = Affine.from_linear(pose, [5.0, 6.0, 7.0])
    g = SpaceGraph(
        [Edge("fibsem", "xray", f2x, "f2x"), Edge("tem", "xray", t2x, "t2x")],
        spaces={"fibsem": ("z", "y", "x"), "xray": ("z", "y", "x"), "tem": ("y", "x")},
    )
    p3 = rng.uniform(-1000, 1000, (5, 3))
    expected = np.linalg.solve(lin, (p3 - [100.0, -50.0, 20.0]).T).T
    np.testing.assert_allclose(g.transform("xray", "fibsem").apply(p3), expected, atol=1e-9)
    p2 = rng.uniform(-1000, 1000, (4, 2))
    in_xray = p2 @ pose.T + [5.0, 6.0, 7.0]
    expected = np.linalg.solve(lin, (in_xray - [100.0, -50.0, 20.0]).T).T
    tem_to_fibsem = g.transform("tem", "fibsem")
    assert (tem_to_fibsem.input_dim, tem_to_fibsem.output_dim) == (2, 3)
    np.testing.assert_allclose(tem_to_fibsem.apply(p2), expected, atol=1e-9)
    with pytest.raises(NotInvertibleError, match=r"inverse of edge tem -> xray \(t2x\).*section"):
        g.transform("fibsem", "tem")


def test_same_space_is_the_identity() -> None:
    g = SpaceGraph([], spaces={"a": ("z", "y", "x")})
    assert g.path("a", "a") == []
    t = g.transform("a", "a")
    assert (t.input_dim, t.output_dim) == (3, 3)
    np.testing.assert_array_equal(t.apply([[1.0, 2.0, 3.0]]), [[1.0, 2.0, 3.0]])


def test_shortest_chain_wins_over_a_longer_one() -> None:
    g = SpaceGraph(
        [
            Edge("a", "b", Shift((1.0,)), "ab"),
            Edge("b", "c", Shift((1.0,)), "bc"),
            Edge("c", "d", Shift((1.0,)), "cd"),
            Edge("a", "d", Shift((10.0,)), "ad"),
        ]
    )
    assert [s.edge.label for s in g.path("a", "d")] == ["ad"]
    assert g.transform("d", "a").apply([10.0]).tolist() == [0.0]


def test_equally_short_chains_are_ambiguous_and_listed() -> None:
    g = SpaceGraph(
        [
            Edge("fibsem", "xray", Shift((1.0, 0, 0)), "a"),
            Edge("xray", "tem-1", Shift((0, 1.0, 0)), "b"),
            Edge("fibsem", "lm", Shift((0, 0, 1.0)), "c"),
            Edge("lm", "tem-1", Shift((1.0, 1.0, 1.0)), "d"),
        ]
    )
    with pytest.raises(AmbiguousPathError) as info:
        g.path("fibsem", "tem-1")
    message = str(info.value)
    assert "fibsem -> xray -> tem-1 | fibsem -> lm -> tem-1" in message
    assert "--via SPACE" in message and "remove an edge" in message
    assert [s.edge.label for s in g.path("fibsem", "tem-1", via=["lm"])] == ["c", "d"]
    np.testing.assert_array_equal(
        g.transform("tem-1", "fibsem", via=["xray"]).apply([1.0, 1.0, 0.0]), [0.0, 0.0, 0.0]
    )


def test_a_chain_without_inverted_nonlinear_edges_is_preferred() -> None:
    warp = Loader(Shift((1.0,), linear=False))
    g = SpaceGraph(
        [
            Edge("x", "f", warp, "warp"),
            Edge("f", "x", Shift((-1.0,), linear=False), "stored inverse", linear=False),
        ]
    )
    steps = g.path("f", "x")
    assert [(s.edge.label, s.inverted) for s in steps] == [("stored inverse", False)]
    assert warp.calls == 1
    linear = SpaceGraph([Edge("x", "f", Shift((1.0,)), "p"), Edge("f", "x", Shift((-1.0,)), "q")])
    with pytest.raises(AmbiguousPathError, match=r"f \[p\^-1\] -> x \| f \[q\] -> x"):
        linear.path("f", "x")


def test_only_edges_on_the_chosen_chain_are_loaded_once() -> None:
    loaders = {name: Loader(Shift((1.0, 1.0))) for name in ("ab", "bc", "cd", "xy")}
    g = SpaceGraph(
        [
            Edge("a", "b", loaders["ab"], "ab"),
            Edge("b", "c", loaders["bc"], "bc"),
            Edge("c", "d", loaders["cd"], "cd"),
            Edge("x", "y", loaders["xy"], "xy"),
        ]
    )
    g.path("a", "d")
    assert all(loader.calls == 0 for loader in loaders.values())
    for _ in range(2):
        np.testing.assert_array_equal(g.transform("c", "a").apply([2.0, 2.0]), [0.0, 0.0])
    assert {name: loader.calls for name, loader in loaders.items()} == {
        "ab": 1,
        "bc": 1,
        "cd": 0,
        "xy": 0,
    }


def test_no_path_lists_reachable_spaces_and_components() -> None:
    g = SpaceGraph(
        [Edge("fibsem", "xray", Shift((1.0,)), "a"), Edge("tem-1", "tem-2", Shift((1.0,)), "b")],
        spaces=["lm"],
    )
    with pytest.raises(NoPathError) as info:
        g.path("fibsem", "tem-2")
    message = str(info.value)
    assert "reachable from 'fibsem' are fibsem, xray" in message
    assert "{lm} | {fibsem, xray} | {tem-1, tem-2}" in message
    assert "coframe link" in message
    assert g.components() == [["lm"], ["fibsem", "xray"], ["tem-1", "tem-2"]]


def test_unknown_space_lists_the_known_ones() -> None:
    g = SpaceGraph([Edge("fibsem", "xray", Shift((1.0,)), "a")])
    with pytest.raises(WorkspaceError, match="unknown space 'em': known spaces are fibsem, xray"):
        g.path("em", "xray")
    with pytest.raises(WorkspaceError, match="unknown space 'lm'"):
        g.path("fibsem", "xray", via=["lm"])


def test_dimension_mismatch_names_the_edge() -> None:
    g = SpaceGraph(
        [Edge("tem", "xray", Shift((1.0, 2.0, 3.0)), "bad.tfm")],
        spaces={"tem": ("y", "x"), "xray": ("z", "y", "x")},
    )
    with pytest.raises(DimensionError, match=r"edge tem -> xray \(bad.tfm\).*space 'tem'"):
        g.transform("tem", "xray")
    chained = SpaceGraph(
        [Edge("a", "b", Shift((1.0, 2.0)), "ab"), Edge("b", "c", Shift((1.0, 2.0, 3.0)), "bc")]
    )
    with pytest.raises(DimensionError, match=r"edge b -> c \(bc\) takes 3D points.*gives 2D"):
        chained.transform("a", "c")


def test_unknown_dimension_of_an_isolated_space() -> None:
    with pytest.raises(DimensionError, match=r"spaces\.a\.axes"):
        SpaceGraph([], spaces=["a"]).transform("a", "a")


def test_graph_from_a_scene_like_object() -> None:
    axes3 = [SimpleNamespace(name=n, type="space", unit="nanometer") for n in "zyx"]
    scene = SimpleNamespace(
        coordinate_systems={"fibsem": SimpleNamespace(name="fibsem", axes=axes3)},
        transformations=[
            SimpleNamespace(
                input="fibsem", output="xray", transform=Shift((1.0, 1.0, 1.0)), name=None
            )
        ],
    )
    g = SpaceGraph.from_scene(scene)
    assert g.spaces == {"fibsem": ("z", "y", "x"), "xray": None}
    assert g.edges[0].label == "fibsem -> xray"
    np.testing.assert_array_equal(g.transform("xray", "fibsem").apply([1.0, 1.0, 1.0]), [0, 0, 0])


def test_summaries_of_real_transforms() -> None:
    field = DisplacementField(np.zeros((2, 2, 2, 3)), origin=[0, 0, 0], spacing=[1, 1, 1])
    seq = Chain((Affine(np.eye(4)), field))
    assert summarize_transform(seq) == "sequence(affine, displacements)"
    assert summarize_transform(Translation([1.0, 2.0])) == "translation"
    assert summarize_transform(field.inverse()) == "inverse(displacements)"


def test_describe_chains_without_parallel_edges_names_spaces_only() -> None:
    g = SpaceGraph([Edge("a", "b", Shift((1.0,)), "ab")])
    assert describe_chains("a", [g.path("a", "b")]) == ["a -> b"]
