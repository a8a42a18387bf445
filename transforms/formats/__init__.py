"""Transform files: ITK (through SimpleITK), OME-NGFF (RFC-5) scenes, BigWarp landmarks.

May import :mod:`coframe.transforms`' model modules, :mod:`coframe.volumes` and
:mod:`coframe.core`. Every reader returns transforms in numpy axis order
(z, y, x) and the workspace unit; x-first files (ITK, BigWarp) are converted
at their reader and writer. :func:`read_transform` and
:func:`write_transform` choose the format by suffix and content.
"""

from __future__ import annotations

from coframe.transforms.formats.bigwarp import (
    read_bigwarp_json,
    read_bigwarp_landmarks,
    write_bigwarp_json,
    write_bigwarp_landmarks,
)
from coframe.transforms.formats.bigwarp_json import BigWarpJson
from coframe.transforms.formats.dispatch import (
    FORMATS,
    detect_transform_format,
    read_transform,
    write_transform,
)
from coframe.transforms.formats.itk import read_itk, write_itk
from coframe.transforms.formats.ngff import (
    Scene,
    SceneTransformation,
    read_ngff_transform,
    read_scene,
    write_ngff_transform,
    write_scene,
)
from coframe.transforms.formats.ngff_axes import Axis, CoordinateSystem

__all__ = [
    "FORMATS",
    "Axis",
    "BigWarpJson",
    "CoordinateSystem",
    "Scene",
    "SceneTransformation",
    "detect_transform_format",
    "read_bigwarp_json",
    "read_bigwarp_landmarks",
    "read_itk",
    "read_ngff_transform",
    "read_scene",
    "read_transform",
    "write_bigwarp_json",
    "write_bigwarp_landmarks",
    "write_itk",
    "write_ngff_transform",
    "write_scene",
    "write_transform",
]
