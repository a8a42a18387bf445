"""A progress bar for chunked writes: chunks done, the rate, elapsed and remaining time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    """Chunks written per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} chunks/s")


@contextmanager
def chunk_progress(
    label: str, total: int, done: int = 0, *, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """Show a progress bar on stderr; yields ``advance(n_chunks)``.

    Parameters
    ----------
    label
        What is being written (``"resample s0"``).
    total
        Chunks to write in all.
    done
        Chunks already written (a resumed run).
    enabled
        False to show nothing.
    """
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )
    with progress:
        task = progress.add_task(label, total=total, completed=done)

        def advance(n: int) -> None:
            progress.advance(task, n)

        yield advance


@contextmanager
def count_progress(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """Show a progress bar of work counted in steps on stderr; yields ``update(done, total)``.

    Parameters
    ----------
    label
        What is being done (``"search: orientations"``).
    enabled
        False to show nothing (``update`` still works).
    """
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
