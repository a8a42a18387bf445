"""The retry policy's numbers, its settings from the environment, and which errors it retries."""

from __future__ import annotations

import errno

import pytest

from coframe.core.errors import RemoteError
from coframe.volumes.retry import (
    RetryPolicy,
    call_with_retries,
    is_transient,
    retry_policy,
    s3_endpoint,
)


def test_waits_double_up_to_the_cap_and_the_budget_adds_them_up() -> None:
    policy = RetryPolicy(attempts=6, backoff=1.0, timeout=10.0)
    assert [policy.delay(i) for i in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.budget() == 6 * 10.0 + 23.0
    assert RetryPolicy().budget() == 107.5


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COFRAME_REMOTE_ATTEMPTS", "2")
    monkeypatch.setenv("COFRAME_REMOTE_BACKOFF", "0.1")
    monkeypatch.setenv("COFRAME_REMOTE_TIMEOUT", "3")
    assert retry_policy() == RetryPolicy(attempts=2, backoff=0.1, timeout=3.0)
    monkeypatch.setenv("COFRAME_REMOTE_TIMEOUT", "0")
    with pytest.raises(RemoteError, match=r"COFRAME_REMOTE_TIMEOUT='0': expected a number"):
        retry_policy()


def test_the_endpoint_is_the_standard_aws_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert s3_endpoint() is None
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/")
    assert s3_endpoint() == "http://127.0.0.1:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "127.0.0.1:9001")
    with pytest.raises(RemoteError, match="AWS_ENDPOINT_URL_S3='127.0.0.1:9001': expected an"):
        s3_endpoint()


def test_only_transient_errors_are_retried() -> None:
    assert is_transient(TimeoutError())
    assert is_transient(ConnectionResetError())
    assert is_transient(OSError(errno.EBUSY, "Service Unavailable"))
    assert not is_transient(FileNotFoundError("gone"))
    assert not is_transient(PermissionError("Forbidden"))
    assert not is_transient(ValueError("bad JSON"))


def test_attempts_are_bounded_and_a_missing_key_is_not_retried() -> None:
    calls: list[int] = []

    def flaky() -> bytes:
        calls.append(1)
        raise TimeoutError("read timed out")

    policy = RetryPolicy(attempts=3, backoff=0.0, timeout=1.0)
    with pytest.raises(RemoteError, match=r"cannot read s3://b/k: read timed out \(after 3 "):
        call_with_retries(flaky, "s3://b/k", policy)
    assert len(calls) == 3

    def missing() -> bytes:
        calls.append(1)
        raise FileNotFoundError("s3://b/k")

    calls.clear()
    with pytest.raises(FileNotFoundError):
        call_with_retries(missing, "s3://b/k", policy)
    assert len(calls) == 1
