"""Cycles of linear edges: agreeing chains pass, a disagreeing edge is found with its chain."""

from __future__ import annotations

import numpy as np
from samples import rotation

from coframe.transforms.affine import Affine, Scale, Translation
from coframe.transforms.cycles import conflicting_cycle
from coframe.transforms.field import DisplacementField

AB = Affine.from_linear(rotation(0, 0.3) @ np.diag([1.1, 0.9, 1.0]), [10.0, -5.0, 2.0])
BC = Translation([100.0, 0.0, -40.0])


def test_agreeing_cycles_and_alternatives_pass() -> None:
    edges = [("a", "b", AB), ("b", "c", BC), ("a", "c", AB.then(BC).as_affine())]
    assert conflicting_cycle(edges) is None
    # the inverse edge, rounded to three decimals, closes a cycle that agrees within rounding
    back = AB.inverse().as_affine()
    rounded = Affine(np.round(back.homogeneous, 3))
    assert conflicting_cycle([*edges, ("b", "a", rounded)]) is None
    # two edges a -> b are alternatives (chosen by name), not a cycle
    assert conflicting_cycle([("a", "b", AB), ("a", "b", Scale([2.0, 2.0, 2.0]))]) is None
    # an edge from a space to itself is no cycle between spaces
    assert conflicting_cycle([("a", "a", BC)]) is None
    # separate components and a nonlinear edge leave nothing to compare
    field = DisplacementField(np.ones((3, 3, 3, 3)), [0.0] * 3, [1.0] * 3)
    assert conflicting_cycle([("x", "y", BC), ("a", "b", AB), ("b", "c", field)]) is None


def test_a_disagreeing_edge_is_found_with_its_chain() -> None:
    wrong = AB.then(Translation([0.0, 3.0, 0.0])).as_affine()  # 3 units off in y
    edges = [("c", "b", BC.inverse()), ("a", "b", AB), ("d", "c", Scale([2.0] * 3))]
    conflict = conflicting_cycle([*edges, ("a", "c", wrong.then(BC).as_affine())])
    assert conflict is not None
    assert conflict.edge == 3
    # a -> b (forward), then b -> c (edge 0 walked backwards)
    assert conflict.chain == ((1, False), (0, True))
    assert conflict.linear < 1e-12 and abs(conflict.translation - 3.0) < 1e-9
    # B -> A that is not the inverse of A -> B
    assert conflicting_cycle([("a", "b", AB), ("b", "a", AB)]) is not None
