"""The space graph: spaces joined by transform edges, and chains between them.

An edge ``A -> B`` maps points of space A into space B. To go from one space
to another the graph takes the shortest chain of edges (by number of edges),
walking an edge backwards by inverting its transform. Among equally short
chains it prefers those that invert no non-linear edge (linear inverses are
exact, field inverses are iterative); if several chains remain, the choice is
the user's: :class:`~coframe.core.errors.AmbiguousPathError` lists them all.

Edges hold a transform or a zero-argument loader; a loader runs only when its
edge is on the chosen chain (or needed to break a tie), once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coframe.core.errors import (
    AmbiguousPathError,
    CoframeError,
    DimensionError,
    NoPathError,
    NotInvertibleError,
    WorkspaceError,
)
from coframe.transforms.affine import Identity
from coframe.transforms.base import Transform

#: Type summary names of transform classes (see :func:`summarize_transform`).
KIND_NAMES: dict[str, str] = {
    "Identity": "identity",
    "Translation": "translation",
    "Scale": "scale",
    "Affine": "affine",
    "Rotation": "rotation",
    "Chain": "sequence",
    "DisplacementField": "displacements",
    "InverseDisplacementField": "inverse(displacements)",
    "BSpline": "bspline",
    "ThinPlateSpline": "thin-plate-spline",
    "Bijection": "bijection",
    "NumericalInverse": "inverse",
}


@dataclass(frozen=True, eq=False)
class Edge:
    """A stored transform between two spaces.

    Parameters
    ----------
    source, target
        Space names: the transform maps points of ``source`` into ``target``.
    transform
        The transform, or a zero-argument callable returning it (read lazily).
    label
        Short name of the edge in messages (its file, usually).
    linear
        Whether the transform is linear, if known without loading it;
        ``None`` loads it when a tie between chains must be broken.
    """

    source: str
    target: str
    transform: Transform | Callable[[], Transform]
    label: str = ""
    linear: bool | None = None

    def describe(self) -> str:
        """``source -> target`` with the label, for messages."""
        suffix = f" ({self.label})" if self.label else ""
        return f"{self.source} -> {self.target}{suffix}"


@dataclass(frozen=True)
class Step:
    """One edge of a chain, walked forwards or (``inverted``) backwards.

    Parameters
    ----------
    edge
        The edge.
    index
        Position of the edge in the graph's edge list.
    inverted
        True when the chain walks the edge from its target to its source.
    """

    edge: Edge
    index: int
    inverted: bool

    @property
    def start(self) -> str:
        """Space the step leaves."""
        return self.edge.target if self.inverted else self.edge.source

    @property
    def end(self) -> str:
        """Space the step reaches."""
        return self.edge.source if self.inverted else self.edge.target


class SpaceGraph:
    """Spaces and the edges joining them.

    Parameters
    ----------
    edges
        The edges; several may join the same two spaces.
    spaces
        Every space name, mapped to its axis names in numpy order (or
        ``None`` while unknown). Spaces named only by edges are added.
    """

    def __init__(
        self,
        edges: Iterable[Edge],
        spaces: Mapping[str, Sequence[str] | None] | Iterable[str] = (),
    ) -> None:
        self._edges: tuple[Edge, ...] = tuple(edges)
        if isinstance(spaces, Mapping):
            axes = {name: None if a is None else tuple(a) for name, a in spaces.items()}
        else:
            axes = {name: None for name in spaces}
        for e in self._edges:
            axes.setdefault(e.source, None)
            axes.setdefault(e.target, None)
        self._axes: dict[str, tuple[str, ...] | None] = axes
        self._loaded: dict[int, Transform] = {}
        self._adjacent: dict[str, list[Step]] = {name: [] for name in axes}
        for i, e in enumerate(self._edges):
            self._adjacent[e.source].append(Step(e, i, inverted=False))
            self._adjacent[e.target].append(Step(e, i, inverted=True))

    @classmethod
    def from_scene(cls, scene: Any) -> SpaceGraph:
        """A graph from an OME-NGFF scene (coordinate systems as spaces).

        Parameters
        ----------
        scene
            An object with ``coordinate_systems`` (a mapping of names to
            systems whose ``axes`` have a ``name``, or a sequence of named
            systems) and ``transformations`` (items with ``input``, ``output``,
            ``transform`` and ``name``); its ``coframe_axes(name)``, when
            present, gives a system's axes in numpy order.
        """
        systems = scene.coordinate_systems
        items = systems.items() if isinstance(systems, Mapping) else ((s.name, s) for s in systems)
        ordered = getattr(scene, "coframe_axes", None)
        spaces: dict[str, tuple[str, ...] | None] = {}
        for name, cs in items:
            axes = getattr(cs, "axes", None)
            spaces[name] = None if axes is None else tuple(getattr(a, "name", a) for a in axes)
            if ordered is not None and axes is not None:
                try:
                    spaces[name] = tuple(ordered(name))
                except CoframeError:
                    spaces[name] = None
        edges = []
        for t in scene.transformations:
            label = getattr(t, "name", None) or f"{t.input} -> {t.output}"
            edges.append(Edge(str(t.input), str(t.output), t.transform, label=label))
        return cls(edges, spaces=spaces)

    @property
    def edges(self) -> tuple[Edge, ...]:
        """The edges, in the order given."""
        return self._edges

    @property
    def spaces(self) -> dict[str, tuple[str, ...] | None]:
        """Space names mapped to their axes (``None`` while unknown)."""
        return dict(self._axes)

    def load(self, index: int) -> Transform:
        """The transform of edge ``index`` (read once, then cached)."""
        if index not in self._loaded:
            edge = self._edges[index]
            t = edge.transform
            self._loaded[index] = t if hasattr(t, "apply") else t()  # type: ignore[operator]
        return self._loaded[index]

    def reachable(self, space: str) -> list[str]:
        """Spaces joined to ``space`` by some chain (itself included), in graph order."""
        self._check_space(space)
        seen = {space}
        queue = deque([space])
        while queue:
            here = queue.popleft()
            for step in self._adjacent[here]:
                if step.end not in seen:
                    seen.add(step.end)
                    queue.append(step.end)
        return [name for name in self._axes if name in seen]

    def components(self) -> list[list[str]]:
        """Connected components, each a list of space names."""
        out: list[list[str]] = []
        done: set[str] = set()
        for name in self._axes:
            if name not in done:
                comp = self.reachable(name)
                done.update(comp)
                out.append(comp)
        return out

    def path(self, a: str, b: str, via: Sequence[str] = ()) -> list[Step]:
        """The chain of steps from space ``a`` to space ``b``.

        Parameters
        ----------
        a, b
            Space names.
        via
            Spaces the chain must pass through, in order (``--via``).

        Raises
        ------
        WorkspaceError
            If a space is unknown (the message lists the known ones).
        NoPathError
            If no chain joins the spaces (the message lists the components).
        AmbiguousPathError
            If several equally good chains remain (the message lists them).
        """
        stops = [a, *via, b]
        for name in stops:
            self._check_space(name)
        steps: list[Step] = []
        for start, end in zip(stops[:-1], stops[1:], strict=True):
            steps.extend(self._segment(start, end))
        return steps

    def transform(self, a: str, b: str, via: Sequence[str] = ()) -> Transform:
        """The transform mapping points of space ``a`` into space ``b``.

        Edges on the chain are loaded, inverted where walked backwards, and
        composed with ``then`` in chain order.

        Raises
        ------
        NotInvertibleError
            If a backwards edge cannot be inverted (the message names the edge).
        DimensionError
            If dimensions disagree along the chain (the message names the edge).
        """
        steps = self.path(a, b, via)
        if not steps:
            return Identity(self._dim(a))
        result: Transform | None = None
        for step in steps:
            t = self.load(step.index)
            expected_in = self._dim_known(step.start)
            if expected_in is not None:
                have = t.output_dim if step.inverted else t.input_dim
                if have != expected_in:
                    raise DimensionError(
                        f"edge {step.edge.describe()} maps {t.input_dim}D points to "
                        f"{t.output_dim}D but space {step.start!r} has axes "
                        f"{list(self._axes[step.start] or ())}: fix the edge or the space's axes"
                    )
            if step.inverted:
                try:
                    t = t.inverse()
                except NotInvertibleError as e:
                    if t.input_dim < t.output_dim:  # a section placed in a volume
                        raise NotInvertibleError(
                            f"going {step.start} -> {step.end} needs the inverse of edge "
                            f"{step.edge.describe()}, a {t.input_dim}D -> {t.output_dim}D map "
                            f"placing a section, which has none (a point off the section's plane "
                            f"has no place in it): work in {step.end}'s frame (coframe resample "
                            f"IMAGE --into a {step.end} image) or store an edge {step.start} -> "
                            f"{step.end}"
                        ) from e
                    raise NotInvertibleError(
                        f"going {step.start} -> {step.end} needs the inverse of edge "
                        f"{step.edge.describe()}, which has none: {e}; store an edge "
                        f"{step.start} -> {step.end} or pass --via another space"
                    ) from e
            if result is None:
                result = t
                continue
            if result.output_dim != t.input_dim:
                raise DimensionError(
                    f"edge {step.edge.describe()} takes {t.input_dim}D points but the chain "
                    f"reaching {step.start!r} gives {result.output_dim}D: fix the edge"
                )
            result = result.then(t)
        assert result is not None
        return result

    # ------------------------------------------------------------------ internals

    def _check_space(self, name: str) -> None:
        if name not in self._axes:
            known = ", ".join(self._axes) or "(none)"
            raise WorkspaceError(
                f"unknown space {name!r}: known spaces are {known} (add an image with "
                f"`coframe add` or an edge with `coframe link`)"
            )

    def _dim_known(self, space: str) -> int | None:
        axes = self._axes.get(space)
        return None if axes is None else len(axes)

    def _dim(self, space: str) -> int:
        dim = self._dim_known(space)
        if dim is not None:
            return dim
        for step in self._adjacent[space]:
            t = self.load(step.index)
            return t.output_dim if step.inverted else t.input_dim
        raise DimensionError(
            f"the number of axes of space {space!r} is unknown: declare spaces.{space}.axes "
            f"in coframe.yaml"
        )

    def _segment(self, a: str, b: str) -> list[Step]:
        if a == b:
            return []
        chains = self._shortest_chains(a, b)
        if not chains:
            comps = " | ".join("{" + ", ".join(c) + "}" for c in self.components())
            raise NoPathError(
                f"no chain of transforms joins {a!r} to {b!r}: spaces reachable from {a!r} are "
                f"{', '.join(self.reachable(a))}; connected components {comps}; add an edge "
                f"with `coframe link`"
            )
        if len(chains) > 1:
            scores = [self._inverted_nonlinear(c) for c in chains]
            best = min(scores)
            chains = [c for c, s in zip(chains, scores, strict=True) if s == best]
        if len(chains) > 1:
            names = describe_chains(a, chains)
            raise AmbiguousPathError(
                f"{len(chains)} equally short chains join {a!r} to {b!r}: {' | '.join(names)}; "
                f"remove an edge from the workspace or pass --via SPACE"
            )
        return chains[0]

    def _shortest_chains(self, a: str, b: str) -> list[list[Step]]:
        dist = {b: 0}
        queue = deque([b])
        while queue:
            here = queue.popleft()
            for step in self._adjacent[here]:
                if step.end not in dist:
                    dist[step.end] = dist[here] + 1
                    queue.append(step.end)
        if a not in dist:
            return []
        chains: list[list[Step]] = []

        def walk(here: str, chain: list[Step]) -> None:
            if here == b:
                chains.append(list(chain))
                return
            for step in self._adjacent[here]:
                if step.edge.source == step.edge.target:
                    continue
                if dist.get(step.end, -1) == dist[here] - 1:
                    chain.append(step)
                    walk(step.end, chain)
                    chain.pop()

        walk(a, [])
        return chains

    def _inverted_nonlinear(self, chain: list[Step]) -> int:
        count = 0
        for step in chain:
            if not step.inverted:
                continue
            linear = step.edge.linear
            if linear is None:
                linear = self.load(step.index).as_affine() is not None
            count += 0 if linear else 1
        return count


def describe_chains(a: str, chains: Sequence[Sequence[Step]]) -> list[str]:
    """Human names of chains starting at ``a``: ``"fibsem -> xray -> tem-1"``.

    When two chains pass through the same spaces (parallel edges), each step
    also names its edge, with ``^-1`` for an edge walked backwards.
    """
    plain = [" -> ".join([a, *(s.end for s in chain)]) for chain in chains]
    if len(set(plain)) == len(plain):
        return plain
    out = []
    for chain in chains:
        parts = [a]
        for s in chain:
            mark = "^-1" if s.inverted else ""
            parts.append(f"[{s.edge.label or s.index}{mark}] -> {s.end}")
        out.append(" ".join(parts))
    return out


def summarize_transform(t: Any) -> str:
    """A short type summary such as ``"sequence(affine, displacements)"``."""
    cls = type(t).__name__
    name = KIND_NAMES.get(cls, cls.lower())
    if cls == "Chain":
        parts = getattr(t, "transforms", ())
        return f"{name}({', '.join(summarize_transform(p) for p in parts)})"
    if cls in ("Bijection", "NumericalInverse"):
        forward = getattr(t, "forward", None)
        return name if forward is None else f"{name}({summarize_transform(forward)})"
    return name


def map_points(
    graph: SpaceGraph,
    source: str,
    target: str,
    points: Any,
    via: Sequence[str] = (),
    *,
    scale: float = 1.0,
) -> np.ndarray:
    """Map physical points of space ``source`` into space ``target``.

    Parameters
    ----------
    graph
        The space graph.
    source, target
        Space names.
    points
        ``(N, d)`` or ``(d,)`` points in numpy axis order, in the graph's unit.
    via
        Spaces the chain must pass through (``--via``).
    scale
        Length of one unit of ``points`` in the graph's unit (e.g. 1000 for
        micrometre points in a nanometre workspace); results are returned in
        the points' unit.

    Returns
    -------
    ``(N, d_target)`` mapped points (always two-dimensional).

    Raises
    ------
    DimensionError
        If the points do not have the source space's number of coordinates.
    TransformError
        If a transform cannot be applied (e.g. an inverse that does not converge).
    """
    arr = np.atleast_2d(np.asarray(points, dtype=float))
    transform = graph.transform(source, target, via)
    if arr.shape[1] != transform.input_dim:
        axes = graph.spaces.get(source)
        names = f" {list(axes)}" if axes else ""
        order = ", ".join(axes) if axes else ("z, y, x" if transform.input_dim == 3 else "y, x")
        raise DimensionError(
            f"points have {arr.shape[1]} coordinates but space {source!r} has "
            f"{transform.input_dim} axes{names}: give points in ({order}) order of {source!r}"
        )
    return np.atleast_2d(transform.apply(arr * scale)) / scale


def describe_graph(workspace: Any) -> dict[str, Any]:
    """A JSON-ready description of a workspace's spaces, images and edges.

    An edge whose type summary was not recorded is read to describe it; an
    edge that cannot be read is reported with its ``error``.

    Parameters
    ----------
    workspace
        A :class:`~coframe.app.workspace.Workspace`.
    """
    graph = workspace.graph()
    spaces = []
    for name, space in workspace.all_spaces().items():
        images = [
            {"name": n, "modality": workspace.images[n].modality, "path": workspace.images[n].path}
            for n in workspace.images_in(name)
        ]
        axes = None if space.axes is None else list(space.axes)
        spaces.append({"name": name, "axes": axes, "declared": space.explicit, "images": images})
    edges = []
    for i, e in enumerate(workspace.edges):
        entry: dict[str, Any] = {"from": e.source, "to": e.target, "kind": e.kind}
        entry.update(file=e.file, format=e.format, unit=e.unit)
        if e.kind is None:
            try:
                entry["kind"] = summarize_transform(graph.load(i))
            except CoframeError as err:
                entry["error"] = str(err)
        prov = e.provenance
        entry["provenance"] = {k: prov[k] for k in ("command", "created") if k in prov}
        edges.append(entry)
    return {
        "workspace": str(workspace.root),
        "unit": workspace.unit,
        "spaces": spaces,
        "edges": edges,
        "components": graph.components(),
    }


def render_graph(description: Mapping[str, Any]) -> str:
    """Human-readable text of :func:`describe_graph`'s description."""
    lines = [f"workspace {description['workspace']} (unit {description['unit']})", "spaces:"]
    width = max((len(s["name"]) for s in description["spaces"]), default=0)
    for s in description["spaces"]:
        axes = "[" + ", ".join(s["axes"]) + "]" if s["axes"] else "axes unknown"
        images = ", ".join(f"{i['name']} ({i['modality'] or '?'})" for i in s["images"])
        lines.append(f"  {s['name']:<{width}}  {axes:<13}  images: {images or '-'}")
    lines.append("edges:" if description["edges"] else "edges: none (add one with `coframe link`)")
    for e in description["edges"]:
        kind = e.get("kind") or f"unreadable: {e.get('error', '?')}"
        prov = e["provenance"]
        made = f"  [{prov.get('created', '')}] {prov.get('command', '')}".rstrip() if prov else ""
        lines.append(f"  {e['from']} -> {e['to']}  {kind}  {e['file']} ({e['format']}){made}")
    comps = " | ".join("{" + ", ".join(c) + "}" for c in description["components"])
    lines.append(f"connected: {comps or '-'}")
    return "\n".join(lines)
