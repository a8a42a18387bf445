"""Fixtures: the CellMap-layout bucket in moto's S3 emulator on 127.0.0.1, behind a fault proxy.

The tests point coframe at the proxy (:mod:`faults`) with the standard
``AWS_ENDPOINT_URL`` and shorten the retry settings (``COFRAME_REMOTE_*``,
:data:`s3_bucket.FAST`) so every fault fails within seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from faults import FaultProxy, start_proxy  # noqa: E402
from s3_bucket import FAST, serve_bucket  # noqa: E402


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 holding the CellMap-layout bucket; its URL."""
    pytest.importorskip("moto", reason="moto[server] is in the test extra")
    with serve_bucket(tmp_path_factory.mktemp("bucket")) as url:
        yield url


@pytest.fixture(scope="session")
def proxy_server(moto_endpoint: str) -> Iterator[FaultProxy]:
    proxy, server = start_proxy(moto_endpoint)
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(proxy_server: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The fault proxy (no fault planned), set as the S3 endpoint with the fast retry settings."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy_server.url)
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    proxy_server.set(None)
    yield proxy_server
    proxy_server.set(None)
