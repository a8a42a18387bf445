"""Remote images over a real HTTP server on 127.0.0.1: box reads GET only the chunks they need."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tensorstore as ts
import tifffile
from samples import cellmap_pyramid

from coframe.core.errors import InputNotFoundError
from coframe.volumes.open import detect_format, open_volume
from coframe.volumes.remote import Location

DATA = np.arange(8 * 12 * 16, dtype=np.uint16).reshape(8, 12, 16)


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory and records every GET path."""

    requests: list[str] = []
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:  # noqa: N802
        with self.lock:
            self.requests.append(self.path)
        super().do_GET()


def _n5(path: Path) -> None:
    store = ts.open(
        {
            "driver": "n5",
            "kvstore": {"driver": "file", "path": str(path / "s0")},
            "metadata": {
                "dimensions": list(DATA.shape[::-1]),
                "blockSize": [4, 4, 4],
                "dataType": "uint16",
                "compression": {"type": "gzip"},
            },
        },
        create=True,
    ).result()
    store[...] = DATA.T
    (path / "attributes.json").write_text(
        '{"axes": ["x", "y", "z"], "scales": [[1, 1, 1]], '
        '"pixelResolution": {"dimensions": [4.0, 4.0, 30.0], "unit": "nm"}}'
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    root = tmp_path_factory.mktemp("served")
    cellmap_pyramid(root / "v2.zarr", DATA, levels=2)
    cellmap_pyramid(root / "v3.zarr", DATA, levels=2, zarr_format=3)
    _n5(root / "em.n5")
    tifffile.imwrite(
        root / "stack.tif",
        DATA,
        imagej=True,
        resolution=(0.25, 0.25),
        metadata={"axes": "ZYX", "spacing": 30.0, "unit": "nm"},
    )
    with mrcfile.new(root / "section.mrc") as mrc:
        mrc.set_data(DATA[0].astype(np.int16))
        mrc.voxel_size = 12.0
    handler = functools.partial(_CountingHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", _CountingHandler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("name", "separator"), [("v2.zarr", "."), ("v3.zarr", "/c/")], ids=["0.4", "0.5"]
)
def test_ome_zarr_over_http_reads_only_needed_chunks(
    server: tuple[str, list[str]], name: str, separator: str
) -> None:
    url, requests = server
    assert detect_format(f"{url}/{name}") == "ome-zarr"
    vol = open_volume(f"{url}/{name}")
    assert vol.source == f"{url}/{name}"
    assert [lvl.voxel_size for lvl in vol.levels] == [(8.0,) * 3, (16.0,) * 3]
    assert vol.levels[1].origin == (4.0,) * 3
    requests.clear()
    box = (slice(5, 7), slice(2, 6), slice(8, 12))  # chunks z 1, y 0..1, x 2
    np.testing.assert_array_equal(vol.levels[0].read(box), DATA[box])
    if separator == ".":
        expected = {f"/{name}/s0/1.0.2", f"/{name}/s0/1.1.2"}
    else:
        expected = {f"/{name}/s0/c/1/0/2", f"/{name}/s0/c/1/1/2"}
    assert sorted(requests) == sorted(expected)


def test_single_array_over_http_is_placed_by_its_group(server: tuple[str, list[str]]) -> None:
    url, _ = server
    vol = open_volume(f"{url}/v2.zarr/s1")
    assert vol.levels[0].voxel_size == (16.0,) * 3
    assert vol.levels[0].origin == (4.0,) * 3
    np.testing.assert_array_equal(vol.levels[0].read(), DATA[::2, ::2, ::2])


def test_n5_over_http_reads_only_needed_blocks(server: tuple[str, list[str]]) -> None:
    url, requests = server
    vol = open_volume(f"{url}/em.n5")
    assert vol.format == "n5"
    assert vol.levels[0].voxel_size == (30.0, 4.0, 4.0)
    requests.clear()
    box = (slice(0, 3), slice(4, 8), slice(9, 11))  # blocks z 0, y 1, x 2 (N5 keys are x/y/z)
    np.testing.assert_array_equal(vol.levels[0].read(box), DATA[box])
    assert requests == ["/em.n5/s0/2/1/0"]


def test_tiff_and_mrc_over_http(server: tuple[str, list[str]]) -> None:
    url, _ = server
    tif = open_volume(f"{url}/stack.tif")
    assert tif.levels[0].voxel_size == (30.0, 4.0, 4.0)
    np.testing.assert_array_equal(tif.levels[0].read(), DATA)
    mrc = open_volume(f"{url}/section.mrc")
    assert mrc.axes == ("y", "x")
    assert mrc.levels[0].voxel_size == pytest.approx((1.2, 1.2))
    np.testing.assert_array_equal(mrc.levels[0].read(), DATA[0])


def test_missing_url_is_input_not_found(server: tuple[str, list[str]]) -> None:
    url, _ = server
    with pytest.raises(InputNotFoundError, match="nothing.zarr does not exist"):
        open_volume(f"{url}/nothing.zarr")
    with pytest.raises(InputNotFoundError, match="gone.tif does not exist"):
        open_volume(f"{url}/gone.tif")


def test_s3_locations_are_anonymous() -> None:
    loc = Location.parse("s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.n5/em/fibsem-uint16/")
    assert loc.remote and loc.name == "fibsem-uint16"
    spec = loc.kvstore_spec()
    assert spec["driver"] == "s3"
    assert spec["bucket"] == "janelia-cosem-datasets"
    assert spec["path"] == "jrc_hela-2/jrc_hela-2.n5/em/fibsem-uint16/"
    assert spec["aws_credentials"] == {"type": "anonymous"}
    store = loc.child("s0").zarr_store()
    assert store.fs.anon is True
    assert loc.parent() == Location.parse("s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.n5/em")
