"""The workspace: a directory holding ``coframe.yaml``.

A workspace names the images of one sample, the physical spaces they live in,
and the transform files (edges) that map points of one space into another.
Paths in the file are relative to the workspace directory (absolute paths and
URLs are kept as they are). The file is meant to be read and edited by hand::

    coframe: 1
    unit: nanometer
    spaces:
      fibsem: {axes: [z, y, x]}
      tem-1: {axes: [y, x]}
    images:
      fibsem: {path: fibsem.zarr/recon-1/em/fibsem-uint8, modality: fibsem, space: fibsem}
      xray: {path: xray.zarr, modality: xray, space: xray, voxel_size: [750, 750, 750]}
    transforms:
      - {from: fibsem, to: xray, file: transforms/fibsem-to-xray.zarr, format: ngff,
         unit: nanometer, provenance: {...}}

Image and space names are plain names (letters, digits, ``_``, ``-``, ``.``;
see :func:`coframe.app.workspace_file.check_name`): they name files, so a file
placed by name (:meth:`Workspace.inside`) never leaves the workspace directory.
A space is declared under ``spaces`` or is an image's own space (named like
the image); an image or edge naming any other space is an error, and so is an
image whose axes disagree with its space's (found when the image is opened).
Every length inside a workspace is in its ``unit``; an image's ``voxel_size``
override is in its ``input_unit`` (default: the workspace unit); an edge's
``unit`` is the unit its file is written in (ITK and BigWarp files carry
none). Top-level keys starting with ``x-`` are kept on save, so other tools
may add sections; any other unknown key, at the top level or inside an
entry, is an error (a typo). An edge's ``kind`` is a type summary made of
known words (:data:`coframe.app.workspace_file.KIND_WORDS`).

A :class:`Workspace` is a value: :meth:`Workspace.add_image` and
:meth:`Workspace.add_edge` return a new workspace, and :meth:`Workspace.save`
applies its changes to the file under a lock, keeping what other commands
wrote meanwhile, atomically (temporary file, then ``os.replace``). The file's entries,
its validation and its YAML are in :mod:`coframe.app.workspace_file`.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from coframe.app.workspace_file import (
    EDGE_FORMATS,
    LINEAR_KINDS,
    NONLINEAR_KINDS,
    WORKSPACE_FILE,
    EdgeEntry,
    ImageEntry,
    SpaceEntry,
    WorkspaceParts,
    check_axes,
    check_name,
    check_numbers,
    dump_yaml,
    listing,
    parse_document,
    read_yaml,
    workspace_document,
)
from coframe.app.workspace_sync import merge_changes, workspace_lock
from coframe.core.atomic import make_directory, write_text_atomic
from coframe.core.errors import (
    DimensionError,
    InputNotFoundError,
    OverwriteError,
    WorkspaceError,
)
from coframe.core.units import canonical_unit
from coframe.transforms.base import Transform
from coframe.transforms.formats.dispatch import read_transform
from coframe.transforms.graph import Edge, SpaceGraph
from coframe.volumes.open import open_volume
from coframe.volumes.volume import MODALITIES, Volume

_URL_PREFIXES = ("s3://", "gs://", "http://", "https://", "file://")


@dataclass(frozen=True)
class Workspace:
    """The contents of one ``coframe.yaml``.

    Parameters
    ----------
    root
        Workspace directory (absolute).
    unit
        Canonical workspace length unit.
    spaces
        Explicitly declared spaces by name.
    images
        Images by name.
    edges
        Stored transforms, in file order.
    extras
        Top-level keys of other tools (``x-...``), kept verbatim on save.
    base
        The file's contents when it was read (None: built in memory); what
        :meth:`save` compares with to find this workspace's changes.
    """

    root: Path
    unit: str = "nanometer"
    spaces: Mapping[str, SpaceEntry] = field(default_factory=dict)
    images: Mapping[str, ImageEntry] = field(default_factory=dict)
    edges: tuple[EdgeEntry, ...] = ()
    extras: Mapping[str, Any] = field(default_factory=dict, compare=False)
    base: WorkspaceParts | None = field(default=None, compare=False, repr=False)

    @property
    def file(self) -> Path:
        """Path of ``coframe.yaml``."""
        return self.root / WORKSPACE_FILE

    def all_spaces(self) -> dict[str, SpaceEntry]:
        """Every space: declared ones first, then those implied by images and edges."""
        out: dict[str, SpaceEntry] = dict(self.spaces)
        names = [img.space for img in self.images.values()]
        names += [n for e in self.edges for n in (e.source, e.target)]
        for name in names:
            out.setdefault(name, SpaceEntry(name, None, explicit=False))
        return out

    def space_of(self, name: str) -> str:
        """Space of an image name, or ``name`` itself if it is a space.

        Raises
        ------
        WorkspaceError
            If ``name`` is neither an image nor a space (the message lists both).
        """
        if name in self.images:
            return self.images[name].space
        spaces = self.all_spaces()
        if name in spaces:
            return name
        raise WorkspaceError(
            f"unknown space or image {name!r} in {self.file}: known spaces {listing(spaces)}; "
            f"images {listing(self.images)} (add it with `coframe add`)"
        )

    def images_in(self, space: str) -> list[str]:
        """Names of the images that live in ``space``."""
        return [name for name, img in self.images.items() if img.space == space]

    def with_space(
        self, name: str, axes: Sequence[str] | None, *, force: bool = False
    ) -> Workspace:
        """A workspace in which space ``name`` is declared with ``axes``.

        Raises
        ------
        DimensionError
            If the space is declared with other axes and ``force`` is false.
        """
        check_name(name, "--space")
        new = None if axes is None else check_axes(list(axes), f"spaces.{name}.axes")
        old = self.spaces.get(name)
        if old is not None and old.axes is not None and new != old.axes:
            if new is None:
                return self
            if not force:
                raise DimensionError(
                    f"space {name!r} has axes {list(old.axes)} but {list(new)} were given: "
                    f"use another --space or pass --force to redeclare it"
                )
        return replace(self, spaces={**self.spaces, name: SpaceEntry(name, new)})

    def add_image(
        self,
        name: str,
        path: str | Path,
        modality: str | None,
        space: str | None = None,
        voxel_size: Sequence[float] | None = None,
        input_unit: str | None = None,
        force: bool = False,
        *,
        axes: Sequence[str] | None = None,
    ) -> Workspace:
        """A workspace with one more image (or a replaced one with ``force``).

        Parameters
        ----------
        name
            Image name.
        path
            Local path (stored relative to the workspace directory when inside
            it; a relative path is taken from the current directory) or URL.
        modality
            ``xray``, ``fibsem``, ``tem``, ``labels`` or ``None``.
        space
            Space name (default: the image name).
        voxel_size
            Voxel size override in numpy axis order (or one value), in ``input_unit``.
        input_unit
            Unit of ``voxel_size``; ``None`` means the workspace unit.
        force
            Replace an image of the same name (and redeclare its space's axes).
        axes
            Axis names of the opened image; declares (or checks) the space axes.

        Raises
        ------
        OverwriteError
            If the image exists and ``force`` is false.
        """
        check_name(name, "NAME")
        space = name if space is None else check_name(space, "--space")
        if name in self.images and not force:
            raise OverwriteError(
                f"image {name!r} already exists in {self.file} (path {self.images[name].path}): "
                f"pass --force to replace it"
            )
        if modality is not None and modality not in MODALITIES:
            raise WorkspaceError(
                f"unknown modality {modality!r} for image {name!r}: expected one of "
                f"{', '.join(MODALITIES)} (--modality)"
            )
        unit = None if input_unit is None else canonical_unit(input_unit, key="--input-unit")
        vs = None
        if voxel_size is not None:
            vs = check_numbers(list(voxel_size), "--voxel-size")
            if axes is not None and len(vs) not in (1, len(axes)):
                raise DimensionError(
                    f"--voxel-size {list(vs)} has {len(vs)} values but image {name!r} has axes "
                    f"{list(axes)}: give one value or one per axis"
                )
        entry = ImageEntry(name, self.relative_path(path), space, modality, vs, unit)
        declare = axes is not None or (space != name and space not in self.spaces)
        ws = self.with_space(space, axes, force=force) if declare else self
        return replace(ws, images={**ws.images, name: entry})

    def open_image(self, name: str, **kwargs: Any) -> Volume:
        """Open an image with its overrides, in the workspace unit.

        The image's axes must be its space's declared axes (a hand edit may
        have changed either).

        Parameters
        ----------
        name
            Image name.
        **kwargs
            Extra keyword arguments for :func:`coframe.volumes.open.open_volume`.
        """

        if name not in self.images:
            raise WorkspaceError(
                f"unknown image {name!r} in {self.file}: known images {listing(self.images)}"
            )
        img = self.images[name]
        volume = open_volume(
            self.resolve(img.path),
            unit=self.unit,
            voxel_size=img.voxel_size,
            input_unit=img.input_unit,
            modality=img.modality,
            **kwargs,
        )
        axes = self.all_spaces()[img.space].axes
        if axes is not None and tuple(volume.axes) != tuple(axes):
            raise DimensionError(
                f"{self.file}: spaces.{img.space}.axes is {list(axes)} but image {name!r} "
                f"({img.path}) has axes {list(volume.axes)}: set spaces.{img.space}.axes to "
                f"{list(volume.axes)}, or put the image in a space with those axes "
                f"(images.{name}.space)"
            )
        return volume

    def add_edge(
        self,
        source_space: str,
        target_space: str,
        file: str | Path,
        format: str,
        file_unit: str | None,
        provenance: Mapping[str, Any] | None,
        force: bool = False,
        *,
        kind: str | None = None,
    ) -> Workspace:
        """A workspace with one more edge ``source_space -> target_space``.

        Parameters
        ----------
        source_space, target_space
            Space names; the transform maps points of the first into the second.
        file
            Transform file (stored relative to the workspace directory when inside it).
        format
            One of :data:`EDGE_FORMATS`.
        file_unit
            Unit the file is written in; ``None`` means the workspace unit.
        provenance
            How the transform was made (see :func:`make_provenance`).
        force
            Replace an existing edge with the same source and target.
        kind
            Type summary of the transform, shown by ``coframe graph``.

        Raises
        ------
        OverwriteError
            If an edge with the same source and target exists and ``force`` is false.
        """
        known = self.all_spaces()
        for name, flag in ((source_space, "FROM_SPACE"), (target_space, "TO_SPACE")):
            if check_name(name, flag) not in known:
                raise WorkspaceError(
                    f"unknown space {name!r} ({flag}) in {self.file}: known spaces "
                    f"{listing(known)}; add an image in it with `coframe add` or declare it "
                    f"under spaces"
                )
        if source_space == target_space:
            raise WorkspaceError(
                f"edge from {source_space!r} to itself: FROM_SPACE and TO_SPACE must differ"
            )
        if format not in EDGE_FORMATS:
            raise WorkspaceError(
                f"unknown transform format {format!r}: expected one of {', '.join(EDGE_FORMATS)}"
            )
        unit = self.unit if file_unit is None else canonical_unit(file_unit, key="--unit")
        prov = dict(provenance or {})
        edge = EdgeEntry(
            source_space, target_space, self.relative_path(file), format, unit, kind, prov
        )
        edges = list(self.edges)
        for i, old in enumerate(edges):
            if (old.source, old.target) == (source_space, target_space):
                if not force:
                    raise OverwriteError(
                        f"an edge {source_space} -> {target_space} already exists in {self.file} "
                        f"(file {old.file}): pass --force to replace it"
                    )
                edges[i] = edge
                return replace(self, edges=tuple(edges))
        return replace(self, edges=(*edges, edge))

    def load_edge(self, edge: EdgeEntry) -> Transform:
        """Read an edge's transform, in the workspace unit."""

        path = self.resolve(edge.file)
        return read_transform(path, format=edge.format, file_unit=edge.unit, unit=self.unit)

    def graph(self) -> SpaceGraph:
        """The space graph of this workspace; transform files are read lazily."""

        edges = [
            Edge(
                e.source,
                e.target,
                functools.partial(self.load_edge, e),
                label=e.file,
                linear=kind_is_linear(e.kind),
            )
            for e in self.edges
        ]
        return SpaceGraph(edges, spaces={n: s.axes for n, s in self.all_spaces().items()})

    def resolve(self, path: str | Path) -> str:
        """Absolute path (or URL) of a path as written in the workspace file."""
        text = str(path)
        if text.startswith(_URL_PREFIXES):
            return text
        p = Path(text).expanduser()
        return str(p if p.is_absolute() else self.root / p)

    def relative_path(self, path: str | Path) -> str:
        """How a path is written in the workspace file.

        URLs are kept; local paths (relative ones taken from the current
        directory) under the workspace directory become relative with POSIX
        separators; others become absolute.
        """
        text = str(path)
        if text.startswith(_URL_PREFIXES):
            return text
        p = Path(os.path.abspath(Path(text).expanduser()))
        try:
            return p.relative_to(os.path.abspath(self.root)).as_posix()
        except ValueError:
            return str(p)

    def inside(self, path: str | Path, what: str) -> Path:
        """Absolute path of a file the workspace places by name, checked to lie inside it.

        Parameters
        ----------
        path
            Path relative to the workspace directory (or absolute).
        what
            What the file is, for the message (``"transform file"``).

        Raises
        ------
        WorkspaceError
            If the normalised path leaves the workspace directory.
        """
        root = os.path.normpath(os.path.abspath(self.root))
        full = os.path.normpath(os.path.join(root, os.fspath(path)))
        if os.path.commonpath([root, full]) != root or full == root:
            raise WorkspaceError(
                f"{what} {full} would lie outside the workspace {root}: image and space names "
                f"must be plain names (letters, digits, '_', '-', '.'); rename them in {self.file}"
            )
        return Path(full)

    def to_dict(self) -> dict[str, Any]:
        """The YAML document (plain Python values) of this workspace."""
        return workspace_document(self.unit, self.spaces, self.images, self.edges, self.extras)

    def parts(self) -> WorkspaceParts:
        """The contents of this workspace (what :meth:`to_dict` writes)."""
        spaces, images = dict(self.spaces), dict(self.images)
        return WorkspaceParts(self.unit, spaces, images, self.edges, dict(self.extras))

    def save(self, *, timeout: float | None = None) -> Workspace:
        """Apply this workspace's changes to ``coframe.yaml``; return the workspace as stored.

        Under the workspace lock (:func:`coframe.app.workspace_sync.workspace_lock`)
        the file is read again and the spaces, images, edges and keys this
        workspace changed since :attr:`base` are applied to what it holds now
        (:func:`coframe.app.workspace_sync.merge_changes`), so that commands
        running at once all keep their changes. The document is serialised in
        memory first, written to a temporary file in the workspace directory
        and renamed over the old file: a failure at any step leaves the
        previous file intact.

        Parameters
        ----------
        timeout
            Seconds to wait for another command's write (default
            :data:`coframe.app.workspace_sync.LOCK_TIMEOUT`).

        Raises
        ------
        WorkspaceError
            If the lock cannot be had in time, the file on disk is invalid, or
            an entry changed here was changed differently meanwhile.
        """
        with workspace_lock(self.root, timeout):
            parts = self.parts()
            if self.file.is_file():
                theirs = parse_document(read_yaml(self.file), source=str(self.file))
                parts = merge_changes(self.base, parts, theirs, self.file)
            doc = workspace_document(*parts)
            parse_document(doc, source=str(self.file))  # never write what cannot be read back
            write_text_atomic(self.file, dump_yaml(doc), force=True)
        return Workspace(self.root, *parts, base=parts)


def find_workspace(start: Path | None = None, explicit: Path | None = None) -> Path:
    """Directory of the workspace to use.

    Parameters
    ----------
    start
        Directory to search from, upward (default: the current directory).
    explicit
        A workspace directory or ``coframe.yaml`` path given with
        ``--workspace/-w``; it wins over the search.

    Raises
    ------
    WorkspaceError
        If no ``coframe.yaml`` is found.
    """
    if explicit is not None:
        p = Path(explicit).expanduser().absolute()
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            return p.parent
        if (p / WORKSPACE_FILE).is_file():
            return p
        raise WorkspaceError(
            f"no {WORKSPACE_FILE} in {p} (--workspace): run `coframe init {p}` or point "
            f"--workspace at a workspace directory"
        )
    here = (Path.cwd() if start is None else Path(start)).expanduser().absolute()
    for d in (here, *here.parents):
        if (d / WORKSPACE_FILE).is_file():
            return d
    raise WorkspaceError(
        f"no {WORKSPACE_FILE} in {here} or any parent directory: run `coframe init` "
        f"or pass --workspace PATH"
    )


def init_workspace(dir: str | Path, unit: str = "nanometer", force: bool = False) -> Workspace:
    """Create an empty workspace (``coframe.yaml``) in ``dir``.

    Raises
    ------
    OverwriteError
        If ``coframe.yaml`` exists and ``force`` is false.
    OutputError
        If ``dir`` cannot be created or written (read-only, permissions).
    """
    root = Path(dir).expanduser().absolute()
    unit = canonical_unit(unit, key="--unit")
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} is a file, not a directory: choose another DIR")
    make_directory(root, "choose a writable DIR or fix its permissions")
    ws = Workspace(root=root, unit=unit)
    with workspace_lock(root):
        if (root / WORKSPACE_FILE).exists() and not force:
            raise OverwriteError(
                f"{root / WORKSPACE_FILE} already exists: pass --force to overwrite it"
            )
        write_text_atomic(ws.file, dump_yaml(ws.to_dict()), force=True)
    return replace(ws, base=ws.parts())


def load_workspace(dir: str | Path) -> Workspace:
    """Read and validate the workspace in ``dir`` (or the ``coframe.yaml`` path itself).

    Raises
    ------
    InputNotFoundError
        If there is no ``coframe.yaml``.
    ParseError
        If the file is not valid YAML (the message names line and column).
    WorkspaceError
        If a key is missing, unknown or of the wrong type, or entries disagree.
    UnitError
        If a unit is unknown or a space's or image's unit disagrees with the
        workspace unit.
    """
    p = Path(dir).expanduser().absolute()
    file = p if p.is_file() else p / WORKSPACE_FILE
    if not file.is_file():
        raise InputNotFoundError(f"no {WORKSPACE_FILE} in {p}: run `coframe init {p}`")
    doc = read_yaml(file)
    return workspace_from_dict(doc, file.parent, source=str(file))


def workspace_from_dict(doc: Any, root: str | Path, *, source: str = WORKSPACE_FILE) -> Workspace:
    """Validate a parsed ``coframe.yaml`` document and build a :class:`Workspace`.

    Parameters
    ----------
    doc
        The parsed YAML document.
    root
        Workspace directory (relative paths are resolved against it).
    source
        File name used in error messages.
    """
    parts = parse_document(doc, source=source)
    return Workspace(Path(root).expanduser().absolute(), *parts, base=parts)


def kind_is_linear(kind: str | None) -> bool | None:
    """Linearity told by a type summary (``"sequence(affine, displacements)"``), else None."""
    if kind is None:
        return None
    words = {w.lower() for w in re.split(r"[(),\s]+", kind) if w}
    if words & NONLINEAR_KINDS:
        return False
    return True if words and words <= LINEAR_KINDS else None
