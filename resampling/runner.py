"""Running block tasks with dask: the local threaded scheduler or a distributed one.

The same task list runs either way. Locally, tasks share this process (and
its per-process caches of opened sources, prepared maps and output handles);
on a ``dask.distributed`` cluster each worker opens the source from its spec
and writes its chunks straight into the output store. A progress bar
advances by output chunks as tasks finish.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.threaded
from dask.callbacks import Callback

from coframe.core.errors import CoframeError
from coframe.resampling.plan import Block
from coframe.resampling.progress import chunk_progress


class _Advance(Callback):  # type: ignore[misc]
    """Advances a progress bar by the chunk count each finished local task returns."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        super().__init__()
        self.advance = advance

    def _posttask(self, key: Any, result: Any, *args: Any) -> None:
        if isinstance(result, tuple) and result and isinstance(result[0], int):
            self.advance(result[0])


class DaskRunner:
    """Runs block tasks with dask: local threads, or a distributed scheduler at an address.

    Parameters
    ----------
    scheduler
        Address of a ``dask.distributed`` scheduler, or ``None`` for local threads.
    progress
        Show a progress bar on stderr.
    """

    def __init__(self, scheduler: str | None, progress: bool) -> None:
        self.client: Any = None
        self.progress = progress
        self.cores = os.cpu_count() or 1
        if scheduler:
            # imported here: dask.distributed adds ~0.1 s to every start-up (measured) and a
            # local run never needs it
            from distributed import Client

            try:
                self.client = Client(scheduler, timeout="15s")
            except (OSError, TimeoutError, ValueError) as e:
                raise CoframeError(
                    f"cannot reach the dask scheduler at {scheduler}: {e}; check --scheduler"
                ) from e
            self.workers = max(1, sum(self.client.nthreads().values()))
        else:
            self.workers = self.cores

    def close(self) -> None:
        """Close the connection to a distributed scheduler."""
        if self.client is not None:
            self.client.close()

    def threads_per_task(self) -> int:
        """Threads SimpleITK or the compiled kernel may use inside one task.

        Local tasks ask for every core through ITK's own threads or the
        kernel's (both release the GIL while they resample, so tasks overlap
        inside them and in their reads and writes). Distributed workers ask
        for one thread per task; since SimpleITK's default (platform)
        threader follows only the process-wide thread count, a worker lowers
        that count to one (:func:`coframe.resampling.block.run_block`).
        """
        return 1 if self.client is not None else self.cores

    def run(
        self,
        fn: Callable[[Any, Block], tuple[Any, ...]],
        job: Any,
        blocks: Sequence[Block],
        *,
        label: str,
        total_chunks: int,
        done_chunks: int,
    ) -> list[tuple[Any, ...]]:
        """Run ``fn(job, block)`` for every block, advancing a progress bar by chunks.

        ``fn`` returns a tuple whose first item is the number of output chunks done.
        """
        if not blocks:
            return []
        job_d = dask.delayed(job, traverse=False)
        tasks = [dask.delayed(fn, pure=False)(job_d, b) for b in blocks]
        with chunk_progress(label, total_chunks, done_chunks, enabled=self.progress) as advance:
            if self.client is None:
                # the scheduler function itself: naming it would import dask.distributed
                with _Advance(advance):
                    results = dask.compute(
                        *tasks,
                        scheduler=dask.threaded.get,
                        num_workers=min(self.workers, len(tasks)),
                    )
                return list(results)
            return self._run_distributed(tasks, advance)

    def _run_distributed(
        self, tasks: list[Any], advance: Callable[[int], None]
    ) -> list[tuple[Any, ...]]:
        from distributed import as_completed  # loaded with Client above

        futures = self.client.compute(tasks)
        order = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        try:
            for future in as_completed(futures):
                value = future.result()
                advance(int(value[0]))
                results[order[future.key]] = value
        except BaseException:
            self.client.cancel(futures)
            raise
        return results
