"""Reads of a CellMap-layout S3 bucket (OME-Zarr 0.4 and N5) through injected network faults.

A transient fault is retried and the data comes back exact; a fault that
lasts ends in one :class:`RemoteError` naming the URL, after the configured
number of attempts and within the policy's time budget.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from faults import FaultProxy
from s3_bucket import DATA, N5, ZARR

from coframe.core.errors import RemoteError
from coframe.volumes.open import open_volume
from coframe.volumes.retry import retry_policy

BOX = (slice(4, 12), slice(0, 8), slice(8, 16))
LAYOUTS = pytest.mark.parametrize("url", [ZARR, N5], ids=["ome-zarr", "n5"])
#: Part of the s0 chunk keys the box covers, under each layout (faults are aimed at them).
CHUNKS = {ZARR: "/fibsem-uint8/s0/1.", N5: "/fibsem-uint8/s0/2/"}


@LAYOUTS
def test_both_layouts_read_anonymously_from_the_emulator(proxy: FaultProxy, url: str) -> None:
    vol = open_volume(url)
    assert vol.axes == ("z", "y", "x")
    assert [lvl.voxel_size for lvl in vol.levels] == [(8.0,) * 3, (16.0,) * 3]
    assert vol.levels[1].origin == (4.0,) * 3
    np.testing.assert_array_equal(vol.levels[0].read(BOX), DATA[BOX])
    assert proxy.seen and all(outcome == "ok" for *_, outcome in proxy.seen)
    assert not any("authorization" in h.lower() for h in proxy.headers_seen)


@LAYOUTS
@pytest.mark.parametrize("fault", ["503", "drop", "truncate", "slow"])
def test_transient_chunk_faults_are_retried_and_the_data_is_exact(
    proxy: FaultProxy, url: str, fault: str
) -> None:
    vol = open_volume(url)
    proxy.set(fault, count=2, match=CHUNKS[url], delay=1.5)
    np.testing.assert_array_equal(vol.levels[0].read(BOX), DATA[BOX])
    assert proxy.faulted() == 2


@LAYOUTS
@pytest.mark.parametrize("fault", ["503", "drop", "truncate"])
def test_lasting_chunk_faults_fail_in_one_line_naming_the_url(
    proxy: FaultProxy, url: str, fault: str
) -> None:
    vol = open_volume(url)
    proxy.set(fault, match=CHUNKS[url])
    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        vol.levels[0].read(BOX)
    spent = time.monotonic() - started
    message = str(info.value)
    assert "\n" not in message
    assert url in message and "COFRAME_REMOTE_ATTEMPTS" in message
    assert spent < retry_policy().budget() + 1
    # no key is asked for more than the configured attempts (a dropped connection is
    # reopened once by the HTTP client within an attempt of the S3 reader)
    tries: dict[str, int] = {}
    for _, path, outcome in proxy.seen:
        if outcome != "ok":
            tries[path] = tries.get(path, 0) + 1
    per_attempt = 2 if (fault, url) == ("drop", ZARR) else 1
    assert tries and max(tries.values()) == per_attempt * retry_policy().attempts


def test_lasting_slow_responses_are_cut_at_the_timeout(proxy: FaultProxy) -> None:
    vol = open_volume(ZARR)
    policy = retry_policy()
    proxy.set("slow", match=CHUNKS[ZARR], delay=policy.timeout + 2)
    started = time.monotonic()
    with pytest.raises(RemoteError, match="after 3 attempts"):
        vol.levels[0].read(BOX)
    assert time.monotonic() - started < policy.budget() + 1


def test_metadata_faults_fail_naming_the_document(proxy: FaultProxy) -> None:
    proxy.set("503", match=".zattrs")
    with pytest.raises(RemoteError, match=r"cannot read s3://\S+/fibsem-uint8/\.zattrs: "):
        open_volume(ZARR)


def test_a_bad_retry_setting_is_one_line_naming_the_variable(
    proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COFRAME_REMOTE_ATTEMPTS", "many")
    with pytest.raises(RemoteError, match="COFRAME_REMOTE_ATTEMPTS='many': expected an integer"):
        open_volume(ZARR)


def test_a_chunk_read_is_one_get_and_no_head(proxy: FaultProxy) -> None:
    vol = open_volume(ZARR)
    proxy.set(None)
    vol.levels[0].read(BOX)
    chunks = [(method, path) for method, path, _ in proxy.seen if CHUNKS[ZARR] in path]
    assert sorted(chunks) == sorted({("GET", path) for _, path in chunks})
    assert len(chunks) == 4  # z 1, y 0..1, x 2..3 in 4^3 chunks
