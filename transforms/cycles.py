"""Cycles of linear edges whose maps disagree.

Edges ``A -> B``, ``B -> C`` and ``A -> C`` form a cycle: the chain through B
and the direct edge must give the same map, or which one a path takes
changes the result. :func:`conflicting_cycle` finds the first edge that closes
a cycle of invertible linear edges whose chain disagrees with it. Edges that
repeat an earlier edge's direction between the same two spaces are
alternatives (chosen by name), not a cycle; a nonlinear or non-invertible edge
leaves its cycles unchecked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coframe.transforms.base import Transform

#: Largest disagreement accepted around a cycle: in the linear part (unitless), and in the
#: translation relative to the larger of the two translations (or 1).
CYCLE_TOLERANCE = 2e-3


@dataclass(frozen=True)
class Conflict:
    """An edge whose map disagrees with the chain of other edges between its spaces.

    Parameters
    ----------
    edge
        Index of the closing edge.
    chain
        Indices of the edges of the chain, in order from the edge's source to its
        target, each with True when walked backwards.
    linear, translation
        Largest differences of the linear parts and of the translations.
    """

    edge: int
    chain: tuple[tuple[int, bool], ...]
    linear: float
    translation: float


def _matrix(t: Transform) -> np.ndarray | None:
    """Homogeneous matrix of an invertible square linear transform, else None."""
    affine = t.as_affine()
    if affine is None or t.input_dim != t.output_dim:
        return None
    m = np.asarray(affine.homogeneous, dtype=np.float64)
    if not np.all(np.isfinite(m)) or abs(np.linalg.det(m)) < 1e-12:
        return None
    return m


def _tree_path(
    tree: dict[str, list[tuple[str, int, bool]]], a: str, b: str
) -> list[tuple[int, bool]]:
    """Edges (index, backwards) of the tree path from ``a`` to ``b``."""
    previous: dict[str, tuple[str, int, bool] | None] = {a: None}
    queue = deque([a])
    while queue:
        node = queue.popleft()
        if node == b:
            break
        for nxt, index, backwards in tree.get(node, []):
            if nxt not in previous:
                previous[nxt] = (node, index, backwards)
                queue.append(nxt)
    path: list[tuple[int, bool]] = []
    node = b
    while previous[node] is not None:
        parent, index, backwards = previous[node]  # type: ignore[misc]
        path.append((index, backwards))
        node = parent
    return path[::-1]


def conflicting_cycle(
    edges: Sequence[tuple[str, str, Transform]], tol: float = CYCLE_TOLERANCE
) -> Conflict | None:
    """The first edge closing a cycle of invertible linear edges that disagree, or None.

    Parameters
    ----------
    edges
        ``(source, target, transform)`` triples; the transform maps points of
        ``source`` into ``target``.
    tol
        :data:`CYCLE_TOLERANCE` by default.
    """
    # a spanning forest of the linear edges, with each node's map from its tree's root
    root_map: dict[str, np.ndarray] = {}
    tree: dict[str, list[tuple[str, int, bool]]] = {}
    seen: set[tuple[str, str]] = set()
    matrices = [_matrix(t) for _, _, t in edges]
    pending = [i for i, m in enumerate(matrices) if m is not None]
    while pending:
        progress, later = False, []
        for i in pending:
            a, b, _ = edges[i]
            m = matrices[i]
            assert m is not None
            if (a, b) in seen or a == b:  # an alternative to an earlier edge; a self-map
                continue
            if a not in root_map and b not in root_map:
                if any(root_map):  # join it once a neighbour is placed
                    later.append(i)
                    continue
                root_map[a] = np.eye(m.shape[0])
            if a in root_map and b in root_map:
                if root_map[a].shape != m.shape or root_map[b].shape != m.shape:
                    seen.add((a, b))
                    continue
                predicted = root_map[b] @ np.linalg.inv(root_map[a])
                d = m.shape[0] - 1
                linear = float(np.abs(predicted[:d, :d] - m[:d, :d]).max())
                shift = np.abs(predicted[:d, d] - m[:d, d]).max()
                scale = max(
                    1.0, float(np.abs(predicted[:d, d]).max()), float(np.abs(m[:d, d]).max())
                )
                if linear > tol or shift > tol * scale:
                    return Conflict(i, tuple(_tree_path(tree, a, b)), linear, float(shift))
            elif a in root_map:
                root_map[b] = m @ root_map[a]
            else:
                root_map[a] = np.linalg.inv(m) @ root_map[b]
            tree.setdefault(a, []).append((b, i, False))
            tree.setdefault(b, []).append((a, i, True))
            seen.add((a, b))
            progress = True
        if later and not progress:
            # a new component: restart the forest at its first edge
            first = later[0]
            root_map[edges[first][0]] = np.eye(matrices[first].shape[0])  # type: ignore[union-attr]
        pending = later
    return None
