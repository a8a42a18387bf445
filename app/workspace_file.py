"""``coframe.yaml`` on disk: its entries, the validation of a parsed document, readable YAML.

:class:`SpaceEntry`, :class:`ImageEntry` and :class:`EdgeEntry` are the
entries of the file; :func:`parse_document` checks a parsed document (every
message names the file and the key to fix) and :func:`workspace_document`
and :func:`dump_yaml` write one back, one line per space, image and edge.
The workspace itself (:class:`coframe.app.workspace.Workspace`) is built from
these parts.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from coframe.app.provenance import plain_values
from coframe.core.errors import DimensionError, ParseError, UnitError, WorkspaceError
from coframe.core.units import canonical_unit
from coframe.transforms.formats.dispatch import FORMATS as EDGE_FORMATS
from coframe.volumes.volume import MODALITIES

#: Name of the workspace file inside a workspace directory.
WORKSPACE_FILE = "coframe.yaml"
#: Schema version written into (and accepted from) ``coframe.yaml``.
SCHEMA_VERSION = 1

#: Longest image or space name (names become file names).
MAX_NAME_LENGTH = 64
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

#: Words of an edge's ``kind``, a type summary such as ``sequence(affine, displacements)``
#: (see :func:`coframe.transforms.graph.summarize_transform`): linear ones, nonlinear ones.
LINEAR_KINDS = frozenset(
    {"identity", "translation", "scale", "affine", "rotation", "sequence", "mapaxis"}
)
NONLINEAR_KINDS = frozenset({"displacements", "coordinates", "bspline", "thin-plate-spline"})
#: Every word a ``kind`` may hold (wrappers such as ``inverse(...)`` included).
KIND_WORDS = LINEAR_KINDS | NONLINEAR_KINDS | {"bijection", "inverse", "unitscaled", "bydimension"}
#: Prefix of top-level keys other tools may add (kept on save); any other unknown key is an error.
EXTENSION_PREFIX = "x-"

_TOP_KEYS = ("coframe", "unit", "spaces", "images", "transforms")
_SPACE_KEYS = ("axes", "unit")
_IMAGE_KEYS = ("path", "modality", "space", "voxel_size", "input_unit", "unit")
_EDGE_KEYS = ("from", "to", "file", "format", "unit", "kind", "provenance")


@dataclass(frozen=True)
class SpaceEntry:
    """A physical space: a named coordinate frame.

    Parameters
    ----------
    name
        Space name, used by edges and images.
    axes
        Axis names in numpy order (``("z", "y", "x")`` or ``("y", "x")``), or
        ``None`` while unknown.
    explicit
        True when declared under ``spaces`` (False when only implied).
    """

    name: str
    axes: tuple[str, ...] | None = None
    explicit: bool = True


@dataclass(frozen=True)
class ImageEntry:
    """An image of the workspace.

    Parameters
    ----------
    name
        Image name (CLI argument).
    path
        Path as written in the file: relative to the workspace directory,
        absolute, or a URL.
    space
        Space the image's physical coordinates live in.
    modality
        ``xray``, ``fibsem``, ``tem``, ``labels`` or ``None``.
    voxel_size
        Voxel size override in numpy axis order (or one value), in ``input_unit``.
    input_unit
        Unit of ``voxel_size`` and of unit-less metadata; ``None`` means the
        workspace unit.
    """

    name: str
    path: str
    space: str
    modality: str | None = None
    voxel_size: tuple[float, ...] | None = None
    input_unit: str | None = None


@dataclass(frozen=True)
class EdgeEntry:
    """A stored transform: an edge that maps points of ``source`` into ``target``.

    Parameters
    ----------
    source, target
        Space names (``from`` and ``to`` in the file).
    file
        Transform file path as written (workspace-relative or absolute).
    format
        One of :data:`EDGE_FORMATS`.
    unit
        Unit the file is written in (ITK and BigWarp files carry none).
    kind
        Type summary such as ``"sequence(affine, displacements)"``, or ``None``.
    provenance
        How the transform was made (command, created, parameters, inputs,
        metric, software...).
    """

    source: str
    target: str
    file: str
    format: str
    unit: str
    kind: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict, compare=False)


class WorkspaceParts(NamedTuple):
    """The validated contents of a ``coframe.yaml``, in the order of :class:`Workspace`'s fields."""

    unit: str
    spaces: dict[str, SpaceEntry]
    images: dict[str, ImageEntry]
    edges: tuple[EdgeEntry, ...]
    extras: dict[str, Any]


def read_yaml(file: Path) -> Any:
    """The parsed YAML of a workspace file; a key repeated in one mapping is an error.

    Raises
    ------
    ParseError
        If the file is not valid YAML (the message names line and column).
    WorkspaceError
        If the file cannot be read or repeats a key.
    """
    try:
        with file.open(encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_UniqueKeyLoader)
    except (OSError, UnicodeDecodeError) as e:
        raise WorkspaceError(f"cannot read {file}: {e}") from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ParseError(f"{file}{where}: {e.problem or e.context}; fix the YAML syntax") from e
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())
        raise ParseError(f"{file}: invalid YAML ({detail}); fix the YAML syntax") from e
    except (RecursionError, ValueError) as e:
        raise ParseError(
            f"{file}: YAML nests too deeply or holds a number too long to read; fix the YAML"
        ) from e


def parse_document(doc: Any, *, source: str = WORKSPACE_FILE) -> WorkspaceParts:
    """Validate a parsed ``coframe.yaml`` document and return its parts.

    Parameters
    ----------
    doc
        The parsed YAML document.
    source
        File name used in error messages.

    Raises
    ------
    WorkspaceError
        If a key is missing, unknown or of the wrong type, or entries disagree.
    UnitError
        If a unit is unknown or a space's or image's unit disagrees with the
        workspace unit.
    """
    v = _Validator(source)
    if not isinstance(doc, dict):
        raise v.error("(top level)", f"expected a mapping with keys {', '.join(_TOP_KEYS)}")
    for k in doc:
        if k not in _TOP_KEYS and not (isinstance(k, str) and k.startswith(EXTENSION_PREFIX)):
            raise v.error(
                str(k),
                f"unknown top-level key; expected one of {', '.join(_TOP_KEYS)} (correct or "
                f"remove it; a section another tool adds must start with {EXTENSION_PREFIX!r})",
            )
    version = doc.get("coframe")
    if version is None:
        raise v.error("coframe", f"missing schema version; add `coframe: {SCHEMA_VERSION}`")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise v.error("coframe", f"schema version {version!r} is not supported; expected 1")
    unit = v.unit(doc, "unit", "") or "nanometer"

    spaces: dict[str, SpaceEntry] = {}
    for name, value in v.mapping(doc, "spaces").items():
        key = v.entry(name, value, "spaces", _SPACE_KEYS, empty_ok=True)
        value = value or {}
        axes = (
            None if value.get("axes") is None else check_axes(value["axes"], key + ".axes", source)
        )
        space_unit = v.unit(value, "unit", key)
        if space_unit is not None and space_unit != unit:
            raise UnitError(
                f"{source}: {key}.unit is {space_unit} but the workspace unit is {unit}: every "
                f"space is in the workspace unit; remove {key}.unit (image metadata is converted "
                f"on load; an image's input_unit gives the unit of its voxel_size)"
            )
        spaces[name] = SpaceEntry(name, axes)

    images: dict[str, ImageEntry] = {}
    for name, value in v.mapping(doc, "images").items():
        key = v.entry(name, value, "images", _IMAGE_KEYS)
        path = v.string(value, "path", key, required=True)
        space = check_name(v.string(value, "space", key) or name, key + ".space", source)
        modality = v.string(value, "modality", key)
        if modality is not None and modality not in MODALITIES:
            raise v.error(
                f"{key}.modality",
                f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}",
            )
        vs = None
        if value.get("voxel_size") is not None:
            raw = value["voxel_size"]
            vs = check_numbers(raw if isinstance(raw, list) else [raw], f"{key}.voxel_size", source)
            axes = spaces[space].axes if space in spaces else None
            if axes is not None and len(vs) not in (1, len(axes)):
                raise DimensionError(
                    f"{source}: {key}.voxel_size has {len(vs)} values but space {space!r} has "
                    f"axes {list(axes)}: give one value or one per axis"
                )
        declared = v.unit(value, "unit", key)
        if declared is not None and declared != unit:
            raise UnitError(
                f"{source}: {key}.unit is {declared} but space {space!r} is in the workspace unit "
                f"{unit}: remove {key}.unit; image metadata is converted on load, and "
                f"{key}.input_unit gives the unit of {key}.voxel_size"
            )
        input_unit = v.unit(value, "input_unit", key)
        images[name] = ImageEntry(name, path, space, modality, vs, input_unit)

    raw_edges = [] if doc.get("transforms") is None else doc["transforms"]
    if not isinstance(raw_edges, list):
        raise v.error("transforms", "expected a list of edges (or [])")
    edges: list[EdgeEntry] = []
    seen: dict[tuple[str, str], str] = {}
    for i, value in enumerate(raw_edges):
        key = v.entry(i, value, "transforms", _EDGE_KEYS)
        src = check_name(v.string(value, "from", key, required=True), key + ".from", source)
        dst = check_name(v.string(value, "to", key, required=True), key + ".to", source)
        if src == dst:
            raise v.error(key, f"from and to are both {src!r}; an edge joins two spaces")
        file = v.string(value, "file", key, required=True)
        fmt = v.string(value, "format", key, required=True)
        if fmt not in EDGE_FORMATS:
            raise v.error(
                f"{key}.format",
                f"unknown format {fmt!r}; expected one of {', '.join(EDGE_FORMATS)}",
            )
        edge_unit = v.unit(value, "unit", key) or unit
        prov = value.get("provenance") or {}
        if not isinstance(prov, dict):
            raise v.error(f"{key}.provenance", "expected a mapping")
        if (src, dst) in seen:
            raise v.error(
                key, f"a second edge {src} -> {dst} (first is {seen[src, dst]}); remove one"
            )
        seen[src, dst] = key
        kind = v.string(value, "kind", key)
        if kind is not None:
            check_kind(kind, f"{key}.kind", source)
        edges.append(EdgeEntry(src, dst, file, fmt, edge_unit, kind, prov))

    _check_spaces_known(spaces, images, edges, source)
    extras = {k: val for k, val in doc.items() if k not in _TOP_KEYS}
    return WorkspaceParts(unit, spaces, images, tuple(edges), extras)


def _check_spaces_known(
    spaces: Mapping[str, SpaceEntry],
    images: Mapping[str, ImageEntry],
    edges: Sequence[EdgeEntry],
    source: str,
) -> None:
    """Every space an image or edge names is declared under ``spaces`` or is an image's own.

    An image's own space is the one named like it (the default of ``coframe
    add``); any other space must be declared, so that a misspelt space is an
    error and not a new, unconnected space.
    """
    known = [*spaces, *(n for n, img in images.items() if img.space == n and n not in spaces)]
    used = [(f"images.{n}.space", img.space) for n, img in images.items()]
    for i, e in enumerate(edges):
        used += [(f"transforms[{i}].from", e.source), (f"transforms[{i}].to", e.target)]
    for key, space in used:
        if space not in known:
            raise WorkspaceError(
                f"{source}: {key}: space {space!r} is not declared: use a known space "
                f"({listing(known)}) or declare it under spaces, e.g. "
                f"`{space}: {{axes: [z, y, x]}}`"
            )


def check_kind(kind: str, key: str, source: str | None = None) -> str:
    """``kind`` if it is a type summary made of :data:`KIND_WORDS`, else a one-line error.

    Raises
    ------
    WorkspaceError
        If a word is unknown or the parentheses do not pair.
    """
    where = f"{source}: " if source else ""
    words = [w for w in re.split(r"[(),\s]+", kind) if w]
    unknown = [w for w in words if w.lower() not in KIND_WORDS]
    depth = 0
    for c in kind:
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth < 0:
            break
    if unknown or not words or depth != 0:
        what = f"unknown word {unknown[0]!r}" if unknown else "unpaired parentheses"
        raise WorkspaceError(
            f"{where}{key}: {kind!r} is not a transform kind ({what}): expected a summary such "
            f"as affine or sequence(affine, displacements) made of {', '.join(sorted(KIND_WORDS))}"
            f"; correct it or remove the key"
        )
    return kind


def workspace_document(
    unit: str,
    spaces: Mapping[str, SpaceEntry],
    images: Mapping[str, ImageEntry],
    edges: Sequence[EdgeEntry],
    extras: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``coframe.yaml`` document (plain Python values) of a workspace's parts."""
    spaces_doc = {n: {"axes": list(s.axes)} if s.axes else {} for n, s in spaces.items()}
    images_doc: dict[str, Any] = {}
    for name, img in images.items():
        entry: dict[str, Any] = {"path": img.path, "modality": img.modality, "space": img.space}
        if img.voxel_size is not None:
            entry["voxel_size"] = [_plain_number(v) for v in img.voxel_size]
        entry["input_unit"] = img.input_unit
        images_doc[name] = {k: v for k, v in entry.items() if v is not None}
    edges_doc = []
    for e in edges:
        entry = {"from": e.source, "to": e.target, "file": e.file, "format": e.format}
        entry.update(unit=e.unit, kind=e.kind, provenance=plain_values(e.provenance) or None)
        edges_doc.append({k: v for k, v in entry.items() if v is not None})
    doc = {"coframe": SCHEMA_VERSION, "unit": unit, "spaces": spaces_doc, "images": images_doc}
    return {**doc, "transforms": edges_doc, **extras}


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses a key repeated in one mapping (e.g. two images ``xray``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                break  # SafeLoader refuses the unhashable key, naming its line
            if key in seen:
                mark = key_node.start_mark
                raise WorkspaceError(
                    f"{mark.name} line {mark.line + 1}, column {mark.column + 1}: {key!r} appears "
                    f"twice in the same mapping; rename or remove one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Flow(dict):
    """A mapping written on one line (an entry of ``spaces``, ``images`` or ``transforms``)."""


class _Dumper(yaml.SafeDumper):
    """Safe YAML dumper that writes :class:`_Flow` mappings in flow style."""


_Dumper.add_representer(
    _Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)


def dump_yaml(doc: Mapping[str, Any]) -> str:
    """Readable YAML text: one line per space, image and edge (edges with provenance in blocks)."""
    out = dict(doc)
    for section in ("spaces", "images"):
        if isinstance(out.get(section), dict):
            out[section] = {
                k: _Flow(v) if isinstance(v, dict) else v for k, v in out[section].items()
            }
    if isinstance(out.get("transforms"), list):
        out["transforms"] = [
            _Flow(e) if isinstance(e, dict) and "provenance" not in e else e
            for e in out["transforms"]
        ]
    return yaml.dump(
        out, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True
    )


class _Validator:
    """Type checks of ``coframe.yaml`` values; errors name the file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> WorkspaceError:
        return WorkspaceError(f"{self.source}: {key}: {message}")

    def mapping(self, doc: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = doc.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, "expected a mapping of names to entries")
        return value

    def entry(
        self, name: Any, value: Any, section: str, allowed: Sequence[str], *, empty_ok: bool = False
    ) -> str:
        if not isinstance(name, int):
            check_name(name, f"{section} key", self.source)
        key = f"{section}[{name}]" if isinstance(name, int) else f"{section}.{name}"
        if not isinstance(value, dict) and not (empty_ok and value is None):
            raise self.error(key, f"expected a mapping with keys {', '.join(allowed)}")
        for k in value or {}:
            if k not in allowed:
                raise self.error(f"{key}.{k}", f"unknown key; expected one of {', '.join(allowed)}")
        return key

    def string(
        self, value: Mapping[str, Any], name: str, key: str, *, required: bool = False
    ) -> Any:
        if value.get(name) is None:
            if required:
                raise self.error(f"{key}.{name}", "missing; expected a string")
            return None
        if not isinstance(value[name], str) or not value[name]:
            raise self.error(f"{key}.{name}", f"expected a string, got {value[name]!r}")
        return value[name]

    def unit(self, value: Mapping[str, Any], name: str, key: str) -> str | None:
        full = f"{key}.{name}" if key else name
        text = self.string(value, name, key) if key else value.get(name)
        if text is not None and not isinstance(text, str):
            raise self.error(full, f"expected a unit name such as nanometer, got {text!r}")
        return None if text is None else canonical_unit(text, key=f"{self.source}: {full}")


def listing(names: Iterable[str]) -> str:
    items = list(names)
    return ", ".join(items) if items else "(none)"


def check_name(name: Any, key: str, source: str | None = None) -> str:
    """``name`` if it is a safe image or space name, else a one-line error naming ``key``.

    A safe name is at most :data:`MAX_NAME_LENGTH` letters, digits, ``_``,
    ``-`` and ``.``, starts with a letter, digit or ``_`` and holds no ``..``:
    names become file names (transform files, outputs), so none may leave a
    directory, hide a file or break a line.

    Raises
    ------
    WorkspaceError
        If the name is not safe (the message suggests a safe one).
    """
    if (
        isinstance(name, str)
        and len(name) <= MAX_NAME_LENGTH
        and _SAFE_NAME.fullmatch(name)
        and ".." not in name
    ):
        return name
    where = f"{source}: " if source else ""
    text = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
    hint = _safe_name(name) if isinstance(name, str) else ""
    instead = f"; e.g. {hint!r}" if hint else ""
    raise WorkspaceError(
        f"{where}{key}: name {text} is not allowed: use up to {MAX_NAME_LENGTH} letters, digits, "
        f"'_', '-' and '.', starting with a letter, digit or '_', without '..'{instead}"
    )


def _safe_name(name: str) -> str:
    """A safe name close to ``name`` (empty if none is left)."""
    text = re.sub(r"[^A-Za-z0-9_.-]+|\.\.+", "_", name)
    text = re.sub(r"_+", "_", text).lstrip("._-")[:MAX_NAME_LENGTH]
    return text if _SAFE_NAME.fullmatch(text) and ".." not in text else ""


def check_axes(value: Any, key: str, source: str | None = None) -> tuple[str, ...]:
    where = f"{source}: " if source else ""
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        raise WorkspaceError(f"{where}{key}: expected a list of axis names such as [z, y, x]")
    if len(value) not in (2, 3):
        raise DimensionError(
            f"{where}{key}: {value} has {len(value)} axes; expected 2 or 3 spatial axes"
        )
    if len(set(value)) != len(value):
        raise WorkspaceError(f"{where}{key}: axis names {value} repeat")
    return tuple(value)


def check_numbers(value: list[Any], key: str, source: str | None = None) -> tuple[float, ...]:
    where = f"{source}: " if source else ""
    if not value or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        raise WorkspaceError(f"{where}{key}: expected a number or a list of numbers, got {value!r}")
    out = tuple(float(x) if abs(x) < 2**1024 else float("inf") for x in value)
    if not all(0 < x < float("inf") for x in out):
        raise WorkspaceError(f"{where}{key}: values {list(out)} must be positive and finite")
    return out


def _plain_number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)
