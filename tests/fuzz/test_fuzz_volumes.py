"""Fuzzing the image readers: OME-Zarr 0.4/0.5, N5, TIFF and MRC metadata and bytes.

Each example copies a small valid image, breaks one of its metadata
documents (or its bytes), and opens it with :func:`open_volume`; a volume
that opens is then described (``coframe info``) and a corner of every level
is read. Any of these either works or raises a one-line coframe error.
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from fuzz.harness import fuzz_settings, reads_or_refuses
from fuzz.mutations import mutated_bytes, mutated_document, nasty_values, unreadable_json
from fuzz.seeds import fresh_copy, mrcs, n5, ome_zarr, tiffs, write_json
from hypothesis import assume, given
from hypothesis import strategies as st

from coframe.volumes.info import describe, render_text
from coframe.volumes.open import open_volume
from coframe.volumes.volume import Volume


def open_and_use(path: Path, **kwargs: Any) -> Volume:
    """Open an image, describe it and read a corner of every level (what ``info`` and a read do).

    A volume that opens must be placed by finite positive voxel sizes and
    finite origins (in the workspace unit): nothing else may reach a grid.
    """
    volume = open_volume(path, **kwargs)
    for level in volume.levels:
        assert all(math.isfinite(v) and v > 0 for v in level.voxel_size), level.voxel_size
        assert all(math.isfinite(v) for v in level.origin), level.origin
    description = describe(volume)
    json.dumps(description)
    render_text(description)
    for level in volume.levels:
        level.read(tuple(slice(0, min(2, n)) for n in level.shape))
    return volume


# ---------------------------------------------------------------------- OME-Zarr


def _zarr_documents(zarr_format: int) -> dict[str, Path]:
    """The metadata documents of the seed image, by role."""
    if zarr_format == 2:
        return {"group": Path(".zattrs"), "array": Path("s0/.zarray"), "level1": Path("s1/.zarray")}
    return {
        "group": Path("zarr.json"),
        "array": Path("s0/zarr.json"),
        "level1": Path("s1/zarr.json"),
    }


@st.composite
def broken_ome_zarr(draw: st.DrawFn) -> tuple[int, dict[Path, Any], str]:
    """(zarr format, {document: replacement}, which path to open)."""
    zarr_format = draw(st.sampled_from([2, 3]))
    seed = ome_zarr(zarr_format)
    docs = _zarr_documents(zarr_format)
    roles = draw(st.lists(st.sampled_from(sorted(docs)), min_size=1, max_size=2, unique=True))
    changes: dict[Path, Any] = {}
    for role in roles:
        original = json.loads((seed / docs[role]).read_text())
        changes[docs[role]] = draw(mutated_document(original))
    opened = draw(
        st.sampled_from(["", "s0", "s1", "s0/zarr.json" if zarr_format == 3 else ".zattrs"])
    )
    return zarr_format, changes, opened


@fuzz_settings(ci=60, long=1200)
@given(case=broken_ome_zarr())
def test_ome_zarr_metadata(case: tuple[int, dict[Path, Any], str]) -> None:
    zarr_format, changes, opened = case
    with tempfile.TemporaryDirectory() as tmp:
        image = fresh_copy(ome_zarr(zarr_format), Path(tmp))
        for document, doc in changes.items():
            write_json(image / document, doc)
        reads_or_refuses("ome-zarr metadata", lambda: open_and_use(image / opened))


@fuzz_settings(ci=25, long=500)
@given(
    zarr_format=st.sampled_from([2, 3]),
    role=st.sampled_from(["group", "array"]),
    data=st.data(),
)
def test_ome_zarr_metadata_bytes(zarr_format: int, role: str, data: st.DataObject) -> None:
    seed = ome_zarr(zarr_format)
    document = _zarr_documents(zarr_format)[role]
    raw = data.draw(mutated_bytes((seed / document).read_bytes()) | unreadable_json())
    with tempfile.TemporaryDirectory() as tmp:
        image = fresh_copy(seed, Path(tmp))
        (image / document).write_bytes(raw)
        reads_or_refuses("ome-zarr metadata", lambda: open_and_use(image))


# ---------------------------------------------------------------------- N5


@st.composite
def broken_n5(draw: st.DrawFn) -> tuple[dict[Path, Any], str]:
    seed = n5()
    docs = [Path("attributes.json"), Path("s0/attributes.json"), Path("s1/attributes.json")]
    chosen = draw(st.lists(st.sampled_from(docs), min_size=1, max_size=2, unique=True))
    changes = {d: draw(mutated_document(json.loads((seed / d).read_text()))) for d in chosen}
    return changes, draw(st.sampled_from(["", "s0", "s1", "attributes.json"]))


@fuzz_settings(ci=50, long=1000)
@given(case=broken_n5())
def test_n5_attributes(case: tuple[dict[Path, Any], str]) -> None:
    changes, opened = case
    with tempfile.TemporaryDirectory() as tmp:
        image = fresh_copy(n5(), Path(tmp))
        for document, doc in changes.items():
            write_json(image / document, doc)
        reads_or_refuses("n5 attributes", lambda: open_and_use(image / opened))


@fuzz_settings(ci=15, long=400)
@given(document=st.sampled_from(["attributes.json", "s0/attributes.json"]), data=st.data())
def test_n5_attributes_bytes(document: str, data: st.DataObject) -> None:
    raw = data.draw(mutated_bytes((n5() / document).read_bytes()) | unreadable_json())
    with tempfile.TemporaryDirectory() as tmp:
        image = fresh_copy(n5(), Path(tmp))
        (image / document).write_bytes(raw)
        reads_or_refuses("n5 attributes", lambda: open_and_use(image))


# ---------------------------------------------------------------------- TIFF

_BAD_NUMBERS = st.one_of(
    st.sampled_from([0.0, -1.0, 1e-300, 1e300, math.nan, math.inf, 10**400, True]),
    st.floats(min_value=-1e6, max_value=1e6),
    nasty_values(0),
)
_BAD_UNITS = st.sampled_from(["\\u00B5m", "micron", "pixel", "", "parsec", "Å"]) | nasty_values(0)
_TIFF_FIELDS = ("resolution", "unit", "spacing", "origin", "images", "slices", "resolutionunit")


@st.composite
def tiff_metadata(draw: st.DrawFn) -> dict[str, Any]:
    """Arguments of ``tifffile.imwrite``: valid ImageJ, OME or resolution metadata, 0-3 broken."""
    kind = draw(st.sampled_from(["imagej", "ome", "resolution"]))
    shape = draw(st.sampled_from([(3, 5, 6), (5, 6), (2, 3, 5, 6), (1, 5, 6)]))
    if kind == "ome":
        return {"shape": shape, "ome_xml": draw(ome_xml(len(shape)))}
    broken = draw(st.sets(st.sampled_from(_TIFF_FIELDS), max_size=3))

    def pick(field: str, valid: Any, bad: st.SearchStrategy[Any] = _BAD_NUMBERS) -> Any:
        return draw(bad) if field in broken else valid

    resolution = (pick("resolution", 2.0), pick("resolution", 2.0))
    if kind == "resolution":
        unit = pick("resolutionunit", 5, st.sampled_from([1, 2, 3, 4, 0, 7, 65535]))
        return {"shape": shape, "resolution": resolution, "resolutionunit": unit}
    meta: dict[str, Any] = {
        "unit": pick("unit", draw(st.sampled_from(["um", "µm", "nm", "mm"])), _BAD_UNITS),
        "spacing": pick("spacing", 0.8),
        "axes": {2: "YX", 3: "ZYX", 4: "CZYX"}[len(shape)],
    }
    for axis in "xyz":
        meta[f"{axis}origin"] = pick("origin", 1.5)
    for key in ("images", "slices"):
        if key in broken:
            meta[key] = draw(_BAD_NUMBERS)
    return {"shape": shape, "imagej": True, "resolution": resolution, "metadata": meta}


@st.composite
def ome_xml(draw: st.DrawFn, ndim: int) -> str:
    """An OME-XML description: valid sizes, units and plane positions, some of them broken."""
    bad_value = st.one_of(
        st.sampled_from(["0", "-1", "nan", "inf", "1e400", "", "abc", "1,5"]),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
    )
    bad_unit = st.sampled_from(["pixel", "reference frame", "parsec", "", "Å"])
    broken = draw(st.sets(st.sampled_from(["size", "unit", "position", "order", "missing"])))

    def value() -> str:
        return draw(bad_value) if "size" in broken and draw(st.booleans()) else "0.5"

    def unit() -> str:
        return draw(bad_unit) if "unit" in broken and draw(st.booleans()) else "µm"

    attrs = [
        f'PhysicalSize{axis}="{value()}" PhysicalSize{axis}Unit="{unit()}"'
        for axis in "XYZ"
        if "missing" not in broken or draw(st.booleans())
    ]
    size_z = {2: 1, 3: 3, 4: 3}[ndim]
    size_c = 2 if ndim == 4 else 1
    plane = " ".join(
        f'Position{a}="{draw(bad_value) if "position" in broken else "10.0"}" '
        f'Position{a}Unit="{unit()}"'
        for a in "XYZ"
    )
    order = draw(st.sampled_from(["XYCZT", "bogus", "XYZCT"])) if "order" in broken else "XYZCT"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="'
        f'{order}" Type="uint8" SizeX="6" SizeY="5" SizeZ="{size_z}" SizeC="{size_c}" '
        f'SizeT="1" {" ".join(attrs)}>'
        '<Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        f'<TiffData/><Plane TheZ="0" TheC="0" TheT="0" {plane}/></Pixels></Image></OME>'
    )


def _write_tiff(path: Path, args: dict[str, Any]) -> bool:
    """Write a TIFF from fuzzed arguments; False if tifffile itself refuses them."""
    import tifffile

    args = dict(args)
    data = (np.arange(int(np.prod(args["shape"]))) % 251).astype(np.uint8)
    data = data.reshape(args.pop("shape"))
    xml = args.pop("ome_xml", None)
    try:
        if xml is not None:
            tifffile.imwrite(path, data, description=xml, metadata=None, photometric="minisblack")
        else:
            tifffile.imwrite(path, data, photometric="minisblack", **args)
    except Exception:  # noqa: BLE001 - tifffile may refuse what the fuzzer asks to write
        return False
    return True


@fuzz_settings(ci=40, long=800)
@given(args=tiff_metadata())
def test_tiff_tags(args: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.tif"
        assume(_write_tiff(path, args))
        reads_or_refuses("tiff tags", lambda: open_and_use(path))


@fuzz_settings(ci=40, long=1000)
@given(name=st.sampled_from(["imagej", "ome", "resolution", "pyramid"]), data=st.data())
def test_tiff_bytes(name: str, data: st.DataObject) -> None:
    seed = tiffs()[name]
    raw = data.draw(mutated_bytes(seed.read_bytes()))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / seed.name
        path.write_bytes(raw)
        reads_or_refuses("tiff bytes", lambda: open_and_use(path))


# ---------------------------------------------------------------------- MRC

#: MRC2014 header fields: (name, byte offset, struct format).
MRC_FIELDS = (
    ("nx", 0, "<i"),
    ("ny", 4, "<i"),
    ("nz", 8, "<i"),
    ("mode", 12, "<i"),
    ("nxstart", 16, "<i"),
    ("nystart", 20, "<i"),
    ("nzstart", 24, "<i"),
    ("mx", 28, "<i"),
    ("my", 32, "<i"),
    ("mz", 36, "<i"),
    ("cella.x", 40, "<f"),
    ("cella.y", 44, "<f"),
    ("cella.z", 48, "<f"),
    ("mapc", 64, "<i"),
    ("mapr", 68, "<i"),
    ("maps", 72, "<i"),
    ("ispg", 88, "<i"),
    ("nsymbt", 92, "<i"),
    ("nversion", 108, "<i"),
    ("origin.x", 196, "<f"),
    ("origin.y", 200, "<f"),
    ("origin.z", 204, "<f"),
)
_INT_VALUES = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 4, 5, 6, 12, 101, 2**31 - 1, -(2**31)]),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
_FLOAT_VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, -12.5, 1e-38, 3e38, math.nan, math.inf, -math.inf]),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
)


@st.composite
def mrc_header_changes(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    """1 to 3 header fields overwritten with fuzzed values: (offset, packed bytes)."""
    fields = draw(st.lists(st.sampled_from(MRC_FIELDS), min_size=1, max_size=3, unique=True))
    out = []
    for _, offset, fmt in fields:
        value = draw(_INT_VALUES if fmt == "<i" else _FLOAT_VALUES)
        out.append((offset, struct.pack(fmt, value)))
    return out


@fuzz_settings(ci=50, long=1000)
@given(name=st.sampled_from(["volume", "section"]), changes=mrc_header_changes())
def test_mrc_header(name: str, changes: list[tuple[int, bytes]]) -> None:
    raw = bytearray(mrcs()[name].read_bytes())
    for offset, packed in changes:
        raw[offset : offset + len(packed)] = packed
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.mrc"
        path.write_bytes(bytes(raw))
        reads_or_refuses("mrc header", lambda: open_and_use(path))


@fuzz_settings(ci=25, long=600)
@given(name=st.sampled_from(["volume", "section"]), data=st.data())
def test_mrc_bytes(name: str, data: st.DataObject) -> None:
    raw = data.draw(mutated_bytes(mrcs()[name].read_bytes()))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.mrc"
        path.write_bytes(raw)
        reads_or_refuses("mrc header", lambda: open_and_use(path))
