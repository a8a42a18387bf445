"""Bounded retries of remote reads, and the S3 endpoint, from the environment.

Every request to a remote store (a metadata document, a chunk) is tried at
most ``attempts`` times; each attempt is cut after ``timeout`` seconds, and
the waits between attempts grow from ``backoff`` seconds, doubling, to at
most :data:`MAX_DELAY`. So a read that keeps failing ends, after at most
``attempts * timeout + sum(waits)`` seconds, in one :class:`RemoteError`
naming the URL. Only transient failures (HTTP 5xx and 429, refused, dropped
or timed-out connections, truncated bodies) are retried; a missing key or a
refused access is answered at once.

Settings (environment variables):

- ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``: an S3-compatible endpoint
  for ``s3://`` URLs (the standard AWS names); default: AWS.
- ``COFRAME_REMOTE_ATTEMPTS`` (default 5), ``COFRAME_REMOTE_BACKOFF``
  (seconds, default 0.5), ``COFRAME_REMOTE_TIMEOUT`` (seconds, default 20).

No credential is read: ``s3://`` is always read anonymously.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from coframe.core.errors import RemoteError

T = TypeVar("T")

#: Longest wait between two attempts, in seconds.
MAX_DELAY = 8.0
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
#: The way forward named by every "retries ran out" message.
RETRY_HINT = (
    "check the network and the URL, or raise COFRAME_REMOTE_ATTEMPTS / COFRAME_REMOTE_TIMEOUT"
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a remote request is tried.

    Parameters
    ----------
    attempts
        Attempts per request (at least 1).
    backoff
        Wait before the second attempt, in seconds; doubled before each next one.
    timeout
        Connect and read timeout of one attempt, in seconds.
    """

    attempts: int = 5
    backoff: float = 0.5
    timeout: float = 20.0

    def delay(self, attempt: int) -> float:
        """Wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.backoff * 2 ** (attempt - 1), MAX_DELAY)

    def budget(self) -> float:
        """Longest time a request can take before it fails, in seconds."""
        waits = sum(self.delay(i) for i in range(1, self.attempts))
        return self.attempts * self.timeout + waits


def _number(name: str, default: float, low: float, high: float, *, integer: bool) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        kind = "an integer" if integer else "a number of seconds"
        raise RemoteError(f"{name}={text!r}: expected {kind} from {low:g} to {high:g}")
    return value


def retry_policy() -> RetryPolicy:
    """The retry settings from ``COFRAME_REMOTE_ATTEMPTS``, ``_BACKOFF`` and ``_TIMEOUT``."""
    return RetryPolicy(
        attempts=int(_number("COFRAME_REMOTE_ATTEMPTS", 5, 1, 20, integer=True)),
        backoff=_number("COFRAME_REMOTE_BACKOFF", 0.5, 0.0, MAX_DELAY, integer=False),
        timeout=_number("COFRAME_REMOTE_TIMEOUT", 20.0, 0.1, 600.0, integer=False),
    )


def s3_endpoint() -> str | None:
    """The S3 endpoint URL from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, if set."""
    for name in _ENDPOINT_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            if not value.startswith(("http://", "https://")):
                raise RemoteError(f"{name}={value!r}: expected an http:// or https:// URL")
            return value.rstrip("/")
    return None


def _status(error: BaseException) -> int | None:
    """HTTP status carried by a botocore or aiohttp error, if any."""
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return status
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code if isinstance(code, int) else None
    return None


def is_transient(error: BaseException) -> bool:
    """True for a failure that another attempt may not meet (5xx, 429, network, truncation)."""
    if isinstance(error, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return False
    if isinstance(error, PermissionError):
        return False
    status = _status(error)
    if status is not None:
        return status >= 500 or status == 429
    if isinstance(error, TimeoutError | ConnectionError | asyncio.TimeoutError):
        return True
    if isinstance(error, OSError) and error.errno == errno.EBUSY:  # s3fs: 503 SlowDown
        return True
    names = {cls.__name__ for cls in type(error).__mro__}
    transient = {
        "ClientPayloadError",  # aiohttp: truncated body
        "ClientConnectionError",  # aiohttp: refused, dropped
        "ServerDisconnectedError",
        "HTTPClientError",  # botocore: dropped, read timeout
        "ConnectionError",  # botocore's own
        "IncompleteRead",
        "ResponseStreamingError",
        "ResponseParserError",
        "FSTimeoutError",
    }
    return bool(names & transient)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def _give_up(url: str, error: BaseException, attempts: int, started: float) -> RemoteError:
    spent = time.monotonic() - started
    return RemoteError(
        f"cannot read {url}: {_first_line(error)} (after {attempts} attempts in "
        f"{spent:.1f} s): {RETRY_HINT}"
    )


def call_with_retries(call: Callable[[], T], url: str, policy: RetryPolicy | None = None) -> T:
    """``call()``, tried again after transient failures; :class:`RemoteError` when they last.

    Other errors (a missing key, a refused access) are raised unchanged at once.
    """
    policy = policy or retry_policy()
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as e:
            if not is_transient(e):
                raise
            if attempt == policy.attempts:
                raise _give_up(url, e, attempt, started) from e
            time.sleep(policy.delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


async def await_with_retries(
    call: Callable[[], Awaitable[T]], url: str, policy: RetryPolicy | None = None
) -> T:
    """Async :func:`call_with_retries`; each attempt is also cut at the policy's timeout."""
    policy = policy or retry_policy()
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return await asyncio.wait_for(call(), timeout=policy.timeout)
        except Exception as e:
            if not is_transient(e):
                raise
            if attempt == policy.attempts:
                raise _give_up(url, e, attempt, started) from e
            await asyncio.sleep(policy.delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def s3fs_options(policy: RetryPolicy) -> dict[str, Any]:
    """s3fs options: anonymous, the endpoint, one GET per read, one botocore attempt.

    The retries are :func:`call_with_retries`'s, so attempts are not multiplied
    by botocore's own.
    """
    options: dict[str, Any] = {
        "anon": True,
        # a whole-object read is one GET (above 1, s3fs sends a HEAD first to size it)
        "max_concurrency": 1,
        "config_kwargs": {
            "connect_timeout": policy.timeout,
            "read_timeout": policy.timeout,
            "retries": {"total_max_attempts": 1, "mode": "standard"},
        },
    }
    endpoint = s3_endpoint()
    if endpoint is not None:
        options["endpoint_url"] = endpoint
    return options


def tensorstore_context(policy: RetryPolicy) -> dict[str, Any]:
    """tensorstore context resources: its own S3 and HTTP retries set from the policy.

    tensorstore's HTTP transport takes its timeouts from the environment once per
    process; unless the user set them, a transfer slower than 1 byte/s for
    ``timeout`` seconds is cut (the timeout of the first remote N5 read holds).
    """
    seconds = str(max(1, math.ceil(policy.timeout)))
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS", seconds)
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_LIMIT_BYTES", "1")
    os.environ.setdefault("TENSORSTORE_CURL_CONNECT_TIMEOUT_SECONDS", seconds)
    retries = {
        "max_retries": policy.attempts - 1,  # retries after the first attempt
        "initial_delay": f"{max(policy.backoff, 0.001)}s",
        "max_delay": f"{MAX_DELAY}s",
    }
    return {"s3_request_retries": retries, "http_request_retries": retries}


def tensorstore_s3_options() -> dict[str, Any]:
    """Extra tensorstore ``s3`` kvstore options: the endpoint and its region, when one is set."""
    endpoint = s3_endpoint()
    if endpoint is None:
        return {}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return {"endpoint": endpoint, "aws_region": region}
