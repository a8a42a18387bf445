"""Figures of docs/reliability.md "Remote faults" (not run by CI).

Serves the tests' CellMap-layout bucket (OME-Zarr 0.4 and N5) from moto's S3
emulator on 127.0.0.1 behind the tests' fault-injecting proxy, and for each
fault and layout measures, with the retry settings in the environment:

- a transient fault (the next 2 chunk requests faulted): time of the box read
  and whether the data is exact;
- a lasting fault on the chunks: time until the read fails, the most requests
  any one key received, and the error the user sees;
- ``coframe info URL`` with every request faulted, in a fresh process: exit
  status, stderr lines and wall time.

Run::

    COFRAME_REMOTE_ATTEMPTS=4 COFRAME_REMOTE_BACKOFF=0.25 COFRAME_REMOTE_TIMEOUT=2 \\
        .venv/bin/python benchmarks/remote_faults.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "remote"), str(ROOT / "tests")]

import s3_bucket as bucket  # noqa: E402
from faults import start_proxy  # noqa: E402

from coframe.core.errors import CoframeError  # noqa: E402
from coframe.volumes.open import open_volume  # noqa: E402
from coframe.volumes.retry import retry_policy  # noqa: E402

BOX = (slice(4, 12), slice(0, 8), slice(8, 16))
CHUNKS = {bucket.ZARR: "/fibsem-uint8/s0/1.", bucket.N5: "/fibsem-uint8/s0/2/"}
NAMES = {bucket.ZARR: "OME-Zarr", bucket.N5: "N5"}


def _most_tries(proxy) -> int:
    tries: dict[str, int] = {}
    for _, path, outcome in proxy.seen:
        if outcome != "ok":
            tries[path] = tries.get(path, 0) + 1
    return max(tries.values(), default=0)


def main() -> None:
    """Print one Markdown row per (fault, layout) and one per CLI run."""
    policy = retry_policy()
    print(f"policy: {policy}, budget {policy.budget():.1f} s per request")
    with tempfile.TemporaryDirectory() as tmp:
        served = bucket.serve_bucket(Path(tmp))
        proxy, server = start_proxy(served.__enter__())
        os.environ["AWS_ENDPOINT_URL"] = proxy.url
        delay = policy.timeout + 1
        try:
            for url in (bucket.ZARR, bucket.N5):
                vol = open_volume(url)
                for fault in ("503", "drop", "truncate", "slow"):
                    proxy.set(fault, count=2, match=CHUNKS[url], delay=delay)
                    t = time.monotonic()
                    exact = np.array_equal(vol.levels[0].read(BOX), bucket.DATA[BOX])
                    recovered = time.monotonic() - t
                    proxy.set(fault, match=CHUNKS[url], delay=delay)
                    t = time.monotonic()
                    try:
                        vol.levels[0].read(BOX)
                        seen = "no error (the read succeeded)"
                    except CoframeError as e:
                        seen = f"{type(e).__name__}: {str(e)[:110]}..."
                    failed = time.monotonic() - t
                    print(
                        f"| {fault} | {NAMES[url]} | transient: exact={exact} in {recovered:.2f} s "
                        f"| lasting: {_most_tries(proxy)} requests/key, failed in {failed:.2f} s "
                        f"| {seen} |"
                    )
            proxy.set(None)
            for url in (bucket.ZARR, bucket.N5):
                proxy.set("503")
                t = time.monotonic()
                run = subprocess.run(
                    [str(Path(sys.executable).parent / "coframe"), "info", url],
                    capture_output=True,
                    text=True,
                    env=dict(os.environ),
                    timeout=600,
                )
                lines = run.stderr.strip().splitlines()
                print(
                    f"| coframe info {NAMES[url]}, every request 503 | exit {run.returncode} | "
                    f"{len(lines)} stderr line(s) | {time.monotonic() - t:.2f} s | "
                    f"{lines[-1][:140] if lines else ''} |"
                )
        finally:
            server.shutdown()
            served.__exit__(None, None, None)


if __name__ == "__main__":
    main()
