"""Where an image lives: a local path or any fsspec URL, read key by key.

A :class:`Location` hides the difference between a local file or directory
and a remote one (``s3://`` read anonymously, ``https://``, ``http://``,
``gs://``; ``file://`` is turned into a local path). Readers ask it for small
metadata documents by key, for a zarr store, for a tensorstore key-value
store spec, or for a local copy of a single-file image (TIFF, MRC), which is
downloaded once per process into a temporary cache.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from coframe.core.errors import FormatError, InputNotFoundError, ParseError
from coframe.volumes.retry import (
    await_with_retries,
    call_with_retries,
    retry_policy,
    s3fs_options,
    tensorstore_s3_options,
)

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_ANONYMOUS_PROTOCOLS = ("s3", "s3a")


def _remote_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the remote store could not be reached or read"."""
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        pass
    try:
        import botocore.exceptions

        errors.append(botocore.exceptions.BotoCoreError)
    except ImportError:  # pragma: no cover - botocore comes with s3fs
        pass
    return tuple(errors)


_REMOTE_ERRORS = _remote_errors()


def is_url(text: str | os.PathLike[str]) -> bool:
    """True if ``text`` has a URL scheme (``s3://``, ``https://``, ``file://``...)."""
    return isinstance(text, str) and bool(_SCHEME.match(text))


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for a URL: for S3 anonymous access, the endpoint and the timeouts."""
    protocol = url.split("://", 1)[0].lower()
    return s3fs_options(retry_policy()) if protocol in _ANONYMOUS_PROTOCOLS else {}


def _single_attempt(fs: Any) -> Any:
    """``fs`` with s3fs's own retry loop off: :mod:`coframe.volumes.retry` retries instead."""
    if hasattr(fs, "retries"):
        fs.retries = 1
    return fs


def _url_of(fs: Any, path: str) -> str:
    """The URL of an fsspec path (s3fs drops the scheme, the HTTP filesystem keeps it)."""
    if "://" in path:
        return path.rstrip("/")
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    return f"{protocol}://{path.rstrip('/')}"


@functools.cache
def _retrying_store() -> type:
    """A zarr ``FsspecStore`` whose reads retry transient failures (see :mod:`.retry`)."""
    from zarr.storage import FsspecStore

    class RetryingFsspecStore(FsspecStore):
        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            url = f"{_url_of(self.fs, self.path)}/{key}"
            parent = super()
            return await await_with_retries(lambda: parent.get(key, prototype, byte_range), url)

    return RetryingFsspecStore


@dataclass(frozen=True)
class Location:
    """A local path or a remote URL of a file or directory.

    Parameters
    ----------
    target
        Absolute local path, or a URL without trailing slash.
    remote
        True for a URL read through fsspec.
    """

    target: str
    remote: bool

    @classmethod
    def parse(cls, path_or_url: str | os.PathLike[str]) -> Location:
        """Make a location from a path, a ``file://`` URL or a remote URL."""
        if isinstance(path_or_url, str) and is_url(path_or_url):
            parsed = urlparse(path_or_url)
            if parsed.scheme.lower() == "file":
                return cls(str(Path(unquote(parsed.netloc + parsed.path)).resolve()), False)
            return cls(path_or_url.rstrip("/"), True)
        return cls(str(Path(path_or_url).expanduser().resolve()), False)

    def __str__(self) -> str:
        return self.target

    @property
    def protocol(self) -> str:
        """``file`` for local paths, otherwise the URL scheme."""
        return self.target.split("://", 1)[0].lower() if self.remote else "file"

    @property
    def name(self) -> str:
        """Last path component."""
        return self.target.rstrip("/").rsplit("/", 1)[-1]

    @property
    def path(self) -> Path:
        """The local path (only for local locations)."""
        if self.remote:
            raise FormatError(f"{self.target} is remote; it has no local path")
        return Path(self.target)

    def child(self, key: str) -> Location:
        """The location of ``key`` below this one (``/``-separated)."""
        key = key.strip("/")
        if not key:
            return self
        if self.remote:
            return Location(f"{self.target}/{key}", True)
        return Location(str(Path(self.target, *key.split("/"))), False)

    def parent(self) -> Location | None:
        """The enclosing directory, or ``None`` at a root."""
        if self.remote:
            scheme, rest = self.target.split("://", 1)
            if "/" not in rest.strip("/"):
                return None
            return Location(f"{scheme}://{rest.rsplit('/', 1)[0]}", True)
        parent = Path(self.target).parent
        return None if str(parent) == self.target else Location(str(parent), False)

    def relative_to(self, ancestor: Location) -> str:
        """``/``-separated key of this location below ``ancestor``."""
        prefix = ancestor.target.rstrip("/") + ("/" if ancestor.remote else os.sep)
        if not self.target.startswith(prefix):
            raise FormatError(f"{self.target} is not inside {ancestor.target}")
        return self.target[len(prefix) :].replace(os.sep, "/")

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(self.target, **storage_options(self.target))
            return _single_attempt(fs), path
        except (ImportError, ValueError) as e:
            raise FormatError(
                f"cannot open URL {self.target}: protocol {self.protocol!r} is not available ({e})"
            ) from e

    def exists(self) -> bool:
        """True if a file or directory exists here (remote: if the URL answers)."""
        if not self.remote:
            return Path(self.target).exists()
        fs, path = self._fs()
        try:
            return bool(call_with_retries(lambda: fs.exists(path), self.target))
        except _REMOTE_ERRORS as e:
            raise InputNotFoundError(f"cannot reach {self.target}: {e}") from e

    def is_dir(self) -> bool:
        """True for a local directory (remote locations are never listed)."""
        return not self.remote and Path(self.target).is_dir()

    def read_bytes(self, key: str = "", length: int | None = None) -> bytes | None:
        """Bytes of the file at ``key`` below this location, or ``None`` if missing.

        Parameters
        ----------
        key
            Relative key, ``""`` for this location itself.
        length
            Read only the first ``length`` bytes.
        """
        loc = self.child(key)
        if not loc.remote:
            path = Path(loc.target)
            if not path.is_file():
                return None
            try:
                with path.open("rb") as f:
                    return f.read() if length is None else f.read(length)
            except OSError as e:
                raise FormatError(f"cannot read {path}: {e}") from e
        fs, path = loc._fs()
        try:
            if length is None:
                return bytes(call_with_retries(lambda: fs.cat_file(path), loc.target))
            return bytes(
                call_with_retries(lambda: fs.cat_file(path, start=0, end=length), loc.target)
            )
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except _REMOTE_ERRORS as e:
            raise InputNotFoundError(f"cannot reach {loc.target}: {e}") from e

    def read_json(self, key: str = "") -> Any | None:
        """Parsed JSON document at ``key``, or ``None`` if it does not exist.

        Raises
        ------
        ParseError
            If the document is not valid JSON (the message names file, line and column).
        """
        raw = self.read_bytes(key)
        if raw is None:
            return None
        where = self.child(key).target
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ParseError(f"{where} is not UTF-8 text: expected a JSON document ({e})") from e
        except json.JSONDecodeError as e:
            raise ParseError(
                f"invalid JSON in {where} at line {e.lineno} column {e.colno} ({e.msg}): "
                "expected a JSON metadata document"
            ) from e
        except (RecursionError, ValueError) as e:
            raise ParseError(
                f"JSON in {where} nests too deeply or holds a number too long to read: expected "
                "a JSON metadata document"
            ) from e

    def zarr_store(self) -> Any:
        """A read-only zarr-python 3 store rooted here."""
        from zarr.storage import LocalStore

        if not self.remote:
            return LocalStore(self.target, read_only=True)
        try:
            store = _retrying_store().from_url(
                self.target, storage_options=storage_options(self.target), read_only=True
            )
            _single_attempt(store.fs)
            return store
        except (ImportError, ValueError, TypeError) as e:
            raise FormatError(f"cannot open {self.target} as a zarr store: {e}") from e

    def kvstore_spec(self) -> dict[str, Any]:
        """A tensorstore key-value store spec for the directory here."""
        if not self.remote:
            return {"driver": "file", "path": self.target.rstrip("/") + "/"}
        scheme, rest = self.target.split("://", 1)
        scheme = scheme.lower()
        if scheme in ("http", "https"):
            return {"driver": "http", "base_url": self.target.rstrip("/") + "/"}
        bucket, _, key = rest.partition("/")
        key = key.strip("/") + "/" if key.strip("/") else ""
        if scheme in _ANONYMOUS_PROTOCOLS:
            return {
                "driver": "s3",
                "bucket": bucket,
                "path": key,
                "aws_credentials": {"type": "anonymous"},
                **tensorstore_s3_options(),
            }
        if scheme in ("gs", "gcs"):
            return {"driver": "gcs", "bucket": bucket, "path": key}
        raise FormatError(
            f"cannot read N5 over {scheme}:// ({self.target}): expected a local path or an "
            "http(s)://, s3:// or gs:// URL"
        )

    def local_copy(self) -> Path:
        """A local path of this file, downloading a remote file into the temporary cache."""
        if not self.remote:
            return Path(self.target)
        digest = hashlib.sha256(self.target.encode()).hexdigest()[:16]
        dest = _cache_dir() / digest / (self.name or "data")
        if dest.is_file():
            return dest
        data = self.read_bytes()
        if data is None:
            raise InputNotFoundError(f"{self.target} does not exist: check the URL")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise FormatError(f"cannot cache {self.target} in {dest.parent}: {e}") from e
        return dest


_CACHE: list[Path] = []


def _cache_dir() -> Path:
    """The per-process download cache, removed when the process exits."""
    if not _CACHE:
        path = Path(tempfile.mkdtemp(prefix="coframe-cache-"))
        atexit.register(shutil.rmtree, path, True)
        _CACHE.append(path)
    return _CACHE[0]
