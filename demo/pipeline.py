"""The ``coframe demo`` pipeline: write the sample, run each step on it, end with the report.

:data:`DEMO_PIPELINE` lists the steps in the order they run; each is
``(title, step)`` where ``step(directory, sample)`` gets the demo workspace
directory and the :class:`~coframe.demo.outputs.DemoSample` written there and
returns the text to print (or None). :func:`run_demo` writes the sample, runs
the steps and writes the QC report, yielding the text of each stage as it
finishes so that a caller can print it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from coframe.app.report import write_report
from coframe.app.workspace import load_workspace
from coframe.demo.locate import demo_locate_step
from coframe.demo.outputs import DemoSample
from coframe.demo.progress import rich_reporter
from coframe.demo.register import demo_register_step
from coframe.demo.resample import demo_resample_step
from coframe.demo.sample import make_demo

#: A step of the pipeline: ``step(directory, sample)`` returns text to print, or None.
DemoStep = Callable[[Path, DemoSample], str | None]

#: The steps run after the sample is written, in order, as ``(title, step)``.
DEMO_PIPELINE: tuple[tuple[str, DemoStep], ...] = (
    ("register the X-ray onto the FIB-SEM", demo_register_step),
    ("resample each modality into the other's frame", demo_resample_step),
    ("locate the TEM sections in the X-ray volume", demo_locate_step),
)


def run_demo(
    directory: Path,
    *,
    size: str = "default",
    seed: int = 0,
    force: bool = False,
    steps: tuple[tuple[str, DemoStep], ...] = DEMO_PIPELINE,
) -> Iterator[str]:
    """Write the demo sample into ``directory``, run ``steps`` on it and write the QC report.

    The sample's generation shows a ``rich`` progress display on a terminal
    (stderr). Lazily yields, in order: the sample's summary; for every step
    its heading (``"\\n== title"``) and then its text when it has any; the
    report's heading and path.

    Parameters
    ----------
    directory
        Output directory (the demo workspace).
    size, seed
        Size and seed of the sample (see :func:`coframe.demo.sample.make_demo`).
    force
        Overwrite a previous demo and its report.
    steps
        The steps to run (default :data:`DEMO_PIPELINE`).

    Raises
    ------
    CoframeError
        For a bad size, or existing outputs without ``force``.
    """
    report, display = rich_reporter()
    with display:
        sample = make_demo(directory, size=size, seed=seed, overwrite=force, progress=report)
    yield sample.summary()
    for title, step in steps:
        yield f"\n== {title}"
        text = step(directory, sample)
        if text:
            yield text
    report_path = write_report(load_workspace(directory), force=force)
    yield f"\n== QC report\n{report_path}"
