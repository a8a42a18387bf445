"""A CellMap-layout bucket (OME-Zarr 0.4 and N5) served by moto's S3 emulator on 127.0.0.1.

Used by the tests' fixtures (``conftest.py``) and by ``benchmarks/remote_faults.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tensorstore as ts
from samples import cellmap_pyramid

BUCKET = "cellmap-test"
DATA = (np.arange(16 * 16 * 16, dtype=np.uint32) % 251).astype(np.uint8).reshape(16, 16, 16)
ZARR = f"s3://{BUCKET}/jrc_test.zarr/recon-1/em/fibsem-uint8"
N5 = f"s3://{BUCKET}/jrc_test.n5/em/fibsem-uint8"

#: Retry settings for the tests: 3 attempts, 50 ms first back-off, 1 s per request.
FAST = {
    "COFRAME_REMOTE_ATTEMPTS": "3",
    "COFRAME_REMOTE_BACKOFF": "0.05",
    "COFRAME_REMOTE_TIMEOUT": "1",
}


def _n5_group(root: Path) -> None:
    """An N5 container with the COSEM attributes: em/fibsem-uint8/s0, s1."""
    (root / "attributes.json").parent.mkdir(parents=True)
    (root / "attributes.json").write_text(json.dumps({"n5": "2.3.0"}))
    group = root / "em" / "fibsem-uint8"
    datasets = []
    for i in range(2):
        f = 2**i
        level = np.ascontiguousarray(DATA[::f, ::f, ::f])
        store = ts.open(
            {
                "driver": "n5",
                "kvstore": {"driver": "file", "path": str(group / f"s{i}")},
                "metadata": {
                    "dimensions": list(level.shape[::-1]),
                    "blockSize": [4, 4, 4],
                    "dataType": "uint8",
                    "compression": {"type": "gzip"},
                },
            },
            create=True,
        ).result()
        store[...] = level.T
        transform = {
            "axes": ["z", "y", "x"],
            "units": ["nm"] * 3,
            "scale": [8.0 * f] * 3,
            "translate": [4.0 * (f - 1)] * 3,
        }
        datasets.append({"path": f"s{i}", "transform": transform})
        attrs_file = group / f"s{i}" / "attributes.json"
        attrs = json.loads(attrs_file.read_text())
        attrs["transform"] = transform
        attrs_file.write_text(json.dumps(attrs))
    (group / "attributes.json").write_text(
        json.dumps(
            {
                "axes": ["x", "y", "z"],
                "units": ["nm"] * 3,
                "scales": [[1, 1, 1], [2, 2, 2]],
                "pixelResolution": {"dimensions": [8.0] * 3, "unit": "nm"},
                "multiscales": [{"name": None, "datasets": datasets}],
            }
        )
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_bucket(root: Path) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 holding the bucket (written under ``root``); its URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    cellmap_pyramid(root / "jrc_test.zarr" / "recon-1" / "em" / "fibsem-uint8", DATA, levels=2)
    _n5_group(root / "jrc_test.n5")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # the upload alone is signed, with dummy keys given to this client only (never the env)
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET, ACL="public-read")  # a public bucket, read anonymously
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.put_object(
                Bucket=BUCKET,
                Key=str(path.relative_to(root)),
                Body=path.read_bytes(),
                ACL="public-read",
            )
    try:
        yield url
    finally:
        server.stop()
