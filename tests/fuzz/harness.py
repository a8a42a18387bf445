"""The fuzzing property, its hypothesis profiles and its tally.

The property every reader must keep: given any input, reading either succeeds
or raises a :class:`~coframe.core.errors.CoframeError` (which the CLI prints in
one line and exits 2) whose message is one non-empty line, within
:data:`HANG_SECONDS`. Anything else - ``KeyError``, ``TypeError``,
``ZeroDivisionError``, ``RecursionError``, a hang... - is a bug.

Profiles (``COFRAME_FUZZ`` picks one, default ``ci``):

- ``ci``: few examples per target, derandomized (the same examples every
  run), no deadline; the whole suite stays within tens of seconds.
- ``long``: many examples per target, random each run; for runs by hand
  (``COFRAME_FUZZ=long pytest tests/fuzz``) and for ``tests/fuzz/report.py``.

They are registered as ``coframe-fuzz-ci`` and ``coframe-fuzz-long`` and only
used by these tests' ``@settings``: the session's default hypothesis profile
(and hypothesis's own ``ci`` profile) is left alone.

With ``COFRAME_FUZZ_TALLY=FILE`` every example's outcome is counted per target
and written to FILE (JSON) when the session ends; ``COFRAME_FUZZ_COLLECT=1``
records a bug and goes on instead of failing, so one run finds every distinct
bug (the report script uses both).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import threading
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, Phase, settings

import coframe
from coframe.core.errors import CoframeError

PROFILE_ENV = "COFRAME_FUZZ"
TALLY_ENV = "COFRAME_FUZZ_TALLY"
COLLECT_ENV = "COFRAME_FUZZ_COLLECT"
PROFILES = ("ci", "long")
#: A read longer than this (seconds; ``COFRAME_FUZZ_HANG``) is a bug: it hangs on its input.
HANG_SECONDS = float(os.environ.get("COFRAME_FUZZ_HANG", "30"))

_QUIET = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
    HealthCheck.function_scoped_fixture,
]

settings.register_profile(
    "coframe-fuzz-ci",
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_QUIET,
    print_blob=True,
)
settings.register_profile(
    "coframe-fuzz-long",
    deadline=None,
    derandomize=False,
    database=None,
    suppress_health_check=_QUIET,
    print_blob=True,
)


def profile() -> str:
    """The fuzz profile chosen by ``COFRAME_FUZZ`` (``ci`` or ``long``)."""
    name = os.environ.get(PROFILE_ENV, "ci").strip().lower() or "ci"
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r}: expected one of {', '.join(PROFILES)}")
    return name


def fuzz_settings(*, ci: int, long: int) -> settings:
    """Settings of one fuzz test: ``ci`` examples in CI, ``long`` in the long profile."""
    name = profile()
    base = settings.get_profile(f"coframe-fuzz-{name}")
    examples = ci if name == "ci" else long
    if os.environ.get(COLLECT_ENV):
        # Collecting: no example fails, so there is nothing to shrink.
        return settings(base, max_examples=examples, phases=[Phase.generate])
    return settings(base, max_examples=examples)


class _Tally:
    """Outcomes per target: ``ok``, each project error class, and each distinct bug."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.bugs: dict[str, dict[str, str]] = defaultdict(dict)

    def write(self, path: str) -> None:
        doc = {
            target: {"outcomes": dict(counts), "bugs": self.bugs.get(target, {})}
            for target, counts in sorted(self.outcomes.items())
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)


TALLY = _Tally()
if os.environ.get(TALLY_ENV):
    atexit.register(TALLY.write, os.environ[TALLY_ENV])


_PROJECT = os.path.dirname(os.path.abspath(coframe.__file__))


def _is_project_file(filename: str) -> bool:
    path = os.path.abspath(filename)
    inside = path.startswith(_PROJECT + os.sep)
    rel = path[len(_PROJECT) + 1 :]
    return inside and not rel.startswith(("tests" + os.sep, ".venv" + os.sep))


def _signature(error: BaseException) -> str:
    """Exception type and the innermost coframe frame, e.g. ``KeyError at volumes/n5.py:120``."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if _is_project_file(f.filename)]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return type(error).__name__
    where = os.path.relpath(frame.filename, _PROJECT) if ours else os.path.basename(frame.filename)
    return f"{type(error).__name__} at {where}:{frame.lineno}"


class Hang(BaseException):
    """A read that ran longer than :data:`HANG_SECONDS` (a BaseException: nothing swallows it)."""


@contextmanager
def _watchdog() -> Iterator[None]:
    """Raise :class:`Hang` in the read if it runs longer than :data:`HANG_SECONDS`."""
    in_main = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "setitimer") or not in_main:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"the read ran longer than {HANG_SECONDS:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def reads_or_refuses(target: str, read: Callable[[], Any]) -> Any:
    """Run ``read``; it must return or raise a one-line :class:`CoframeError`.

    Parameters
    ----------
    target
        Name of the fuzz target, for the tally.
    read
        The reading call under test.

    Returns
    -------
    What ``read`` returned, or ``None`` if it raised a project error.
    """
    try:
        with _watchdog():
            result = read()
    except Hang as e:
        return _bug(target, f"hang over {HANG_SECONDS:g} s" + _signature(e)[4:], e, e)
    except CoframeError as e:
        message = str(e)
        if message.strip() and "\n" not in message.strip():
            TALLY.outcomes[target][type(e).__name__] += 1
            return None
        bug: BaseException = AssertionError(
            f"{type(e).__name__} message is not one non-empty line: {message!r}"
        )
        bug.__traceback__ = e.__traceback__
        signature = f"multi-line {type(e).__name__}" + _signature(e)[len(type(e).__name__) :]
        return _bug(target, signature, bug, e)
    except Exception as e:  # noqa: BLE001 - the property: nothing else may escape
        return _bug(target, _signature(e), e, e)
    TALLY.outcomes[target]["ok"] += 1
    return result


def _bug(target: str, signature: str, error: BaseException, cause: BaseException) -> None:
    TALLY.outcomes[target]["bug"] += 1
    if signature not in TALLY.bugs[target]:
        TALLY.bugs[target][signature] = f"{type(cause).__name__}: {str(cause)[:300]}"
    if os.environ.get(COLLECT_ENV):
        return None
    raise AssertionError(
        f"{target}: {signature} instead of a coframe error: {type(cause).__name__}: {cause}"
    ) from cause
