"""Progress of the demo's generation steps: timings and an optional ``rich`` display."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: Progress callback ``(step, done, total)``.
ProgressCallback = Callable[[str, int, int], None]


class StepTimer:
    """Named steps with a number of work units, reported through an optional callback."""

    def __init__(self, report: ProgressCallback | None) -> None:
        self.report = report
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, total: int) -> Iterator[Callable[[], None]]:
        done = [0]

        def advance() -> None:
            done[0] += 1
            if self.report is not None:
                self.report(name, done[0], total)

        if self.report is not None:
            self.report(name, 0, total)
        t0 = time.perf_counter()
        yield advance
        self.timings[name] = time.perf_counter() - t0
        if self.report is not None:
            self.report(name, total, total)


def rich_reporter(console: Any = None) -> tuple[ProgressCallback, Any]:
    """A progress callback drawing one ``rich`` bar per step, and the progress display.

    Enter the returned display (a context manager) around :func:`make_demo`;
    it stays silent when the console is not a terminal.
    """
    con = console or Console(stderr=True)
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    display = Progress(*columns, console=con, disable=not con.is_terminal)
    tasks: dict[str, Any] = {}

    def report(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = display.add_task(name, total=total)
        display.update(tasks[name], completed=done, total=total)

    return report, display
