"""Independent pieces of a scan run on a small thread pool, their results taken in order.

The searches score many posed templates (``register``'s 3D search) or many
candidate planes (``locate``) that do not depend on one another. Their work
is FFTs, resampling and large numpy operations, which release the GIL, so
threads (one per usable core) run them side by side without copying the
images. Results come back in the order of the inputs, so a scan gives the
same answer on any number of threads.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

#: Most threads one scan uses (each holds its own working arrays).
MAX_THREADS = 8

_T = TypeVar("_T")
_R = TypeVar("_R")


def threads_for(tasks: int) -> int:
    """Threads for ``tasks`` pieces of work: one per usable core, at most :data:`MAX_THREADS`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_THREADS, tasks))


def ordered_map(work: Callable[[_T], _R], items: Iterable[_T], threads: int) -> Iterator[_R]:
    """``map(work, items)`` on ``threads`` threads, in order, at most ``2 * threads`` in flight.

    With one thread it is the plain ``map``. Bounding the pieces in flight
    bounds the memory their results hold until they are taken.
    """
    if threads <= 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[_R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # taken no further (an error, or the caller stopped): drop what has not started
            for future in pending:
                future.cancel()
