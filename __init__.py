"""coframe: bring X-ray microCT, TEM sections and FIB-SEM volumes of one sample into one frame.

Packages, each importing only from those listed after it:

- :mod:`coframe.cli`: the Typer command line (parse, call, print);
- :mod:`coframe.demo`: the built-in synthetic sample and its pipeline steps;
- :mod:`coframe.app`: the workspace and the commands that read and write it;
- :mod:`coframe.views`: rendering, overlays and the report's HTML;
- :mod:`coframe.registration`: estimators that return transforms as values;
- :mod:`coframe.resampling`: chunked resampling and the one output writer;
- :mod:`coframe.transforms`: transform values, their file formats, the space graph;
- :mod:`coframe.volumes`: the image model, readers and low-level writers;
- :mod:`coframe.core`: errors, units and atomic writes;
- :mod:`coframe.configs`: the registration presets (YAML).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("coframe")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
