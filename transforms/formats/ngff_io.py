"""Storage for OME-NGFF transform metadata: Zarr groups (v2 and v3), plain JSON, atomic writes.

RFC-5 keeps ``coordinateSystems`` and ``coordinateTransformations`` in the
attributes of a Zarr group (under ``"ome"`` for Zarr v3, at the top of
``.zattrs`` for Zarr v2, possibly inside a ``"scene"`` object) and parameter
arrays (displacement fields, matrices) in arrays of the same container,
conventionally below ``coordinateTransformations/``. The same metadata may
also come as a plain ``.json`` file.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from coframe.core.atomic import atomic_output, refuse_existing, write_text_atomic
from coframe.core.errors import FormatError, InputNotFoundError, ParseError

#: The OME-NGFF version written.
NGFF_VERSION = "0.6"

#: Largest number of elements per chunk of a written parameter array.
CHUNK_ELEMENTS = 1 << 20


def load_json(text: str, source: str) -> Any:
    """Decode JSON text.

    Raises
    ------
    ParseError
        Naming ``source``, the line and the column of the error.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(
            f"{source}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e
    except (RecursionError, ValueError) as e:
        raise ParseError(
            f"{source}: JSON nests too deeply or holds a number too long to read; fix the JSON"
        ) from e


def _is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def _local(location: str) -> str:
    return location[len("file://") :] if location.startswith("file://") else location


def _join(base: str, relative: str) -> str:
    relative = relative.strip("/")
    if _is_url(base):
        return base.rstrip("/") + "/" + relative
    return str(Path(_local(base)) / relative)


def _read_text(location: str) -> str | None:
    """Text of a file at a local path or fsspec URL, or None if it does not exist."""
    if _is_url(location):
        import fsspec

        try:
            with fsspec.open(location, "rt", encoding="utf-8") as handle:
                return str(handle.read())
        except FileNotFoundError:
            return None
        except OSError as e:
            raise FormatError(f"cannot read {location!r}: {e}") from e
    path = Path(_local(location))
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"cannot read {str(path)!r}: {e}") from e


def ome_metadata(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The OME part of a node's attributes (under ``"ome"`` for Zarr v3, else the attributes)."""
    ome = attributes.get("ome")
    return dict(ome) if isinstance(ome, Mapping) else dict(attributes)


@dataclass(frozen=True)
class NgffSource:
    """An NGFF container to read metadata and parameter arrays from.

    Parameters
    ----------
    location
        The group (or JSON file) path or URL, for messages.
    root
        Directory or URL that relative array paths start from.
    attributes
        The attributes of the group (or the JSON document).
    """

    location: str
    root: str
    attributes: dict[str, Any]

    @classmethod
    def open(cls, location: str | os.PathLike[str]) -> NgffSource:
        """Open a Zarr group (v2 ``.zattrs`` or v3 ``zarr.json``) or a ``.json`` file.

        Raises
        ------
        InputNotFoundError
            If nothing exists at ``location``.
        ParseError
            If the metadata is malformed JSON (line and column).
        FormatError
            If the location is neither a Zarr group nor a JSON file.
        """
        text_location = os.fspath(location)
        local = not _is_url(text_location)
        if local and not Path(_local(text_location)).exists():
            raise InputNotFoundError(
                f"NGFF transform {text_location!r} does not exist: expected a Zarr group or a "
                ".json file"
            )
        if text_location.rstrip("/").lower().endswith(".json"):
            text = _read_text(text_location)
            if text is None:
                raise InputNotFoundError(f"NGFF metadata file {text_location!r} does not exist")
            document = load_json(text, text_location)
            if not isinstance(document, dict):
                raise FormatError(f"{text_location}: expected a JSON object at the top level")
            root = (
                str(Path(_local(text_location)).parent)
                if local
                else text_location.rsplit("/", 1)[0]
            )
            if "zarr_format" in document and isinstance(document.get("attributes"), dict):
                document = document["attributes"]
            return cls(text_location, root, document)
        for name in ("zarr.json", ".zattrs"):
            text = _read_text(_join(text_location, name))
            if text is None:
                continue
            document = load_json(text, _join(text_location, name))
            if not isinstance(document, dict):
                raise FormatError(f"{_join(text_location, name)}: expected a JSON object")
            if name == "zarr.json":
                attributes = document.get("attributes", {})
                if not isinstance(attributes, dict):
                    raise ParseError(
                        f"{_join(text_location, name)}: 'attributes' must be an object"
                    )
                return cls(text_location, text_location, attributes)
            return cls(text_location, text_location, document)
        if (
            local
            and Path(_local(text_location)).is_dir()
            and (Path(_local(text_location)) / ".zgroup").is_file()
        ):
            return cls(text_location, text_location, {})
        raise FormatError(
            f"{text_location!r} is not an NGFF container: expected a Zarr group (zarr.json or "
            ".zattrs) or a .json file"
        )

    @property
    def ome(self) -> dict[str, Any]:
        """The OME metadata of the group."""
        return ome_metadata(self.attributes)

    def node(self, path: str, *, key: str) -> zarr.Array | zarr.Group:
        """Open the array or group at ``path`` (relative to the container).

        Raises
        ------
        InputNotFoundError
            If nothing exists there (naming ``key`` and the path).
        FormatError
            If it cannot be opened as Zarr.
        """
        if not isinstance(path, str) or not path:
            raise ParseError(f"{key}: expected a non-empty path string, got {path!r}")
        location = _join(self.root, path)
        try:
            return zarr.open(location, mode="r")
        except FileNotFoundError as e:
            raise InputNotFoundError(
                f"{key}: array {path!r} not found at {location!r}; the transform's parameters "
                "must be stored in the same container"
            ) from e
        except (ValueError, OSError, KeyError) as e:
            raise FormatError(f"{key}: cannot open {location!r} as a Zarr array: {e}") from e

    def array(self, path: str, *, key: str) -> zarr.Array:
        """Open the array at ``path``.

        Raises
        ------
        FormatError
            If ``path`` names a group.
        """
        node = self.node(path, key=key)
        if not isinstance(node, zarr.Array):
            raise FormatError(f"{key}: {path!r} is a group, expected an array")
        return node


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk shape keeping the last axis whole and about :data:`CHUNK_ELEMENTS` elements."""
    chunks = list(shape)
    while int(np.prod(chunks)) > CHUNK_ELEMENTS:
        k = int(np.argmax(chunks[:-1])) if len(chunks) > 1 else 0
        if chunks[k] <= 1:
            break
        chunks[k] = (chunks[k] + 1) // 2
    return tuple(max(1, c) for c in chunks)


def _copy_blocks(source: Any, target: zarr.Array) -> None:
    """Copy ``source`` into ``target`` chunk by chunk (``source`` may be lazy)."""
    shape, chunks = target.shape, target.chunks
    ranges = [range(0, n, c) for n, c in zip(shape, chunks, strict=True)]
    for corner in itertools.product(*ranges):
        box = tuple(
            slice(start, min(start + c, n))
            for start, c, n in zip(corner, chunks, shape, strict=True)
        )
        target[box] = np.asarray(source[box], dtype=np.float64)


@dataclass(frozen=True)
class ArrayToWrite:
    """A parameter array to store in a written container.

    Parameters
    ----------
    path
        Path inside the container (e.g. ``coordinateTransformations/field``).
    data
        The values (numpy or any array-like supporting basic slicing).
    attributes
        The OME metadata of the array.
    """

    path: str
    data: Any
    attributes: dict[str, Any]


def _dimension_names(attributes: dict[str, Any], ndim: int) -> tuple[str, ...] | None:
    """Zarr v3 ``dimension_names`` of an array: the axis names of its coordinate system."""
    systems = attributes.get("coordinateSystems") or [{}]
    names = tuple(a.get("name") for a in systems[0].get("axes", []))
    return names if len(names) == ndim and all(isinstance(n, str) for n in names) else None


def write_container(
    path: str | os.PathLike[str],
    metadata: dict[str, Any],
    arrays: tuple[ArrayToWrite, ...] = (),
    *,
    zarr_format: int = 3,
    force: bool = False,
) -> Path:
    """Write NGFF metadata as a Zarr group (or a ``.json`` file), atomically.

    The group is built in a temporary directory next to ``path`` and renamed
    into place. Zarr v3 keeps the metadata under ``attributes.ome``; Zarr v2
    keeps it at the top of ``.zattrs``.

    Parameters
    ----------
    path
        Output group directory, or a ``.json`` file (metadata only).
    metadata
        The OME metadata (``version``, ``coordinateSystems``...).
    arrays
        Parameter arrays to store inside the group.
    zarr_format
        2 or 3.
    force
        Replace an existing output.

    Raises
    ------
    OverwriteError
        If ``path`` exists and ``force`` is false.
    FormatError
        If arrays must be written into a ``.json`` file, or the format is unknown.
    """
    target = Path(path)
    refuse_existing(target, force)
    if target.suffix.lower() == ".json":
        if arrays:
            raise FormatError(
                f"{str(target)!r}: this transform stores arrays ({arrays[0].path}); write it to a "
                "Zarr group (a .zarr directory) instead of a .json file"
            )
        return write_text_atomic(target, json.dumps(metadata, indent=2) + "\n", force=force)
    if zarr_format not in (2, 3):
        raise FormatError(f"unknown Zarr format {zarr_format!r}: expected 2 or 3")
    with atomic_output(target, force=force) as staging:
        group = zarr.open_group(str(staging), mode="w", zarr_format=zarr_format)
        group.attrs.put({"ome": metadata} if zarr_format == 3 else metadata)
        for item in arrays:
            shape = tuple(int(n) for n in item.data.shape)
            names = _dimension_names(item.attributes, len(shape)) if zarr_format == 3 else None
            array = group.create_array(
                item.path,
                shape=shape,
                dtype="float64",
                chunks=_chunks(shape),
                fill_value=0.0,
                dimension_names=names,
            )
            _copy_blocks(item.data, array)
            array.attrs.put({"ome": item.attributes} if zarr_format == 3 else item.attributes)
    return target
