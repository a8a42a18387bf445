"""Small valid files and documents the fuzzers start from.

Images are written once per session into a temporary directory and copied
for every example (:func:`fresh_copy`), so an example may overwrite any
metadata document of its copy.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

_ROOT = Path(tempfile.mkdtemp(prefix="coframe-fuzz-seeds-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


def fresh_copy(seed: Path, into: Path) -> Path:
    """A copy of a seed file or directory inside ``into``."""
    target = into / seed.name
    if seed.is_dir():
        shutil.copytree(seed, target)
    else:
        shutil.copyfile(seed, target)
    return target


def write_json(path: Path, doc: Any) -> None:
    """Write a document as JSON (NaN and infinities as JavaScript literals, like many writers)."""
    path.write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")


def _data(shape: tuple[int, ...]) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) % 251).astype(np.uint8).reshape(shape)


# ---------------------------------------------------------------------- OME-Zarr


def _ome_datasets(levels: int) -> list[dict[str, Any]]:
    return [
        {
            "path": f"s{i}",
            "coordinateTransformations": [
                {"type": "scale", "scale": [8.0 * 2**i] * 3},
                {"type": "translation", "translation": [4.0 * (2**i - 1)] * 3},
            ],
        }
        for i in range(levels)
    ]


OME_AXES = [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]


@functools.cache
def ome_zarr(zarr_format: int) -> Path:
    """An OME-Zarr 0.4 (Zarr v2) or 0.5 (Zarr v3) image group with two levels."""
    import zarr

    path = _ROOT / f"image-v{zarr_format}.zarr"
    group = zarr.open_group(zarr.storage.LocalStore(path), mode="w", zarr_format=zarr_format)
    for i, shape in enumerate([(4, 4, 4), (2, 2, 2)]):
        array = group.create_array(f"s{i}", shape=shape, chunks=(2, 2, 2), dtype="uint8")
        array[...] = _data(shape)
    multiscale = {
        "name": "fibsem-uint8",
        "axes": OME_AXES,
        "datasets": _ome_datasets(2),
        "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}],
    }
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    return path


# ---------------------------------------------------------------------- N5

N5_GROUP: dict[str, Any] = {
    "axes": ["x", "y", "z"],
    "units": ["nm", "nm", "nm"],
    "scales": [[1, 1, 1], [2, 2, 2]],
    "pixelResolution": {"dimensions": [8.0, 8.0, 8.0], "unit": "nm"},
    "multiscales": [
        {
            "name": None,
            "datasets": [
                {
                    "path": f"s{i}",
                    "transform": {
                        "axes": ["z", "y", "x"],
                        "units": ["nm", "nm", "nm"],
                        "scale": [8.0 * 2**i] * 3,
                        "translate": [4.0 * (2**i - 1)] * 3,
                    },
                }
                for i in range(2)
            ],
        }
    ],
}


@functools.cache
def n5() -> Path:
    """A COSEM-style N5 group with two levels (group and dataset attributes)."""
    import tensorstore as ts

    path = _ROOT / "image.n5"
    for i, shape in enumerate([(4, 4, 4), (2, 2, 2)]):
        level = path / f"s{i}"
        spec = {
            "driver": "n5",
            "kvstore": {"driver": "file", "path": str(level) + "/"},
            "metadata": {
                "dimensions": list(shape),
                "blockSize": [2, 2, 2],
                "dataType": "uint8",
                "compression": {"type": "raw"},
            },
        }
        store = ts.open(spec, create=True, delete_existing=True).result()
        store.write(_data(shape)).result()
        attrs = json.loads((level / "attributes.json").read_text())
        attrs["pixelResolution"] = {"dimensions": [8.0 * 2**i] * 3, "unit": "nm"}
        attrs["transform"] = N5_GROUP["multiscales"][0]["datasets"][i]["transform"]
        write_json(level / "attributes.json", attrs)
    write_json(path / "attributes.json", {"n5": "2.5.0", **N5_GROUP})
    return path


# ---------------------------------------------------------------------- TIFF


@functools.cache
def tiffs() -> dict[str, Path]:
    """Valid TIFFs: ImageJ hyperstack, OME-TIFF, resolution tags only, a pyramid."""
    import tifffile

    out = {}
    data = _data((3, 5, 6))
    path = _ROOT / "imagej.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"unit": "um", "spacing": 0.8, "axes": "ZYX", "xorigin": 2.0, "yorigin": 1.0},
    )
    out["imagej"] = path
    path = _ROOT / "ome.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.5,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": 0.5,
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZ": 0.8,
            "PhysicalSizeZUnit": "µm",
        },
    )
    out["ome"] = path
    path = _ROOT / "resolution.tif"
    tifffile.imwrite(path, data[0], resolution=(2000.0, 2000.0), resolutionunit="CENTIMETER")
    out["resolution"] = path
    path = _ROOT / "pyramid.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(_data((8, 8)), subifds=1, tile=(16, 16), resolution=(1e4, 1e4), resolutionunit=3)
        tif.write(_data((4, 4)), subfiletype=1, tile=(16, 16))
    out["pyramid"] = path
    return out


# ---------------------------------------------------------------------- MRC


@functools.cache
def mrcs() -> dict[str, Path]:
    """Valid MRC files: a volume with voxel size and origin, a single section."""
    import mrcfile

    out = {}
    for name, shape in (("volume", (3, 4, 5)), ("section", (1, 4, 5))):
        path = _ROOT / f"{name}.mrc"
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(_data(shape).astype(np.int16))
            mrc.voxel_size = (12.5, 12.5, 20.0)
            mrc.header.origin = (100.0, 50.0, 0.0)
        out[name] = path
    return out
