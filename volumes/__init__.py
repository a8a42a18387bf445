"""The image model and its I/O: OME-Zarr, N5, TIFF and MRC images, local or remote.

Holds :class:`Volume` and :class:`Level` (a multiscale image in numpy axis
order and physical units), the readers behind :func:`open_volume`, the
description behind ``coframe info`` (:func:`describe`), a 2D level read
binned band by band (:mod:`coframe.volumes.binned`: montages), and the low-level
writing pieces (:mod:`coframe.volumes.write`: pyramid geometry, NGFF
metadata, codecs, downsampling, :func:`write_tiff`, :func:`write_mrc`); the
OME-Zarr output writer built on them is :mod:`coframe.resampling.writer`.

May import :mod:`coframe.core` only.
"""

from coframe.volumes.info import describe
from coframe.volumes.open import detect_format, open_volume, parse_box
from coframe.volumes.volume import Level, Volume
from coframe.volumes.write import LevelSpec, downsample, pyramid_specs, write_mrc, write_tiff

__all__ = [
    "Level",
    "LevelSpec",
    "Volume",
    "describe",
    "detect_format",
    "downsample",
    "open_volume",
    "parse_box",
    "pyramid_specs",
    "write_mrc",
    "write_tiff",
]
