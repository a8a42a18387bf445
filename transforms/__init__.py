"""Transforms as immutable values, the space graph, and conversions to other libraries.

May import :mod:`coframe.volumes` and :mod:`coframe.core` only. Points are in
numpy axis order (z, y, x) and physical units; ``a.then(b)`` applies ``a``
first.

- :mod:`~coframe.transforms.base`: :class:`Transform`, :class:`Chain`, numerical inverses;
- :mod:`~coframe.transforms.affine`: identity, translation, scale, rotation, affine;
- :mod:`~coframe.transforms.field`, :mod:`~coframe.transforms.bspline`,
  :mod:`~coframe.transforms.tps`, :mod:`~coframe.transforms.bijection`: nonlinear maps;
- :mod:`~coframe.transforms.point_pairs`: landmark pairs and the transforms they define;
- :mod:`~coframe.transforms.graph`: spaces joined by transform edges, paths between them;
- :mod:`~coframe.transforms.sitk_bridge`: the one conversion to and from SimpleITK;
- :mod:`~coframe.transforms.formats`: transform files (ITK, OME-NGFF, BigWarp).
"""

from __future__ import annotations

from coframe.transforms.affine import Affine, Identity, Rotation, Scale, Translation
from coframe.transforms.base import Chain, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.bspline import BSpline
from coframe.transforms.field import DisplacementField, sample_to_field
from coframe.transforms.formats.dispatch import read_transform, write_transform
from coframe.transforms.graph import Edge, SpaceGraph
from coframe.transforms.point_pairs import Landmarks, landmarks_from_pairs, landmarks_transform
from coframe.transforms.sitk_bridge import from_sitk, to_sitk
from coframe.transforms.tps import ThinPlateSpline

__all__ = [
    "Affine",
    "BSpline",
    "Bijection",
    "Chain",
    "DisplacementField",
    "Edge",
    "Identity",
    "Landmarks",
    "Rotation",
    "Scale",
    "SpaceGraph",
    "ThinPlateSpline",
    "Transform",
    "Translation",
    "from_sitk",
    "landmarks_from_pairs",
    "landmarks_transform",
    "read_transform",
    "sample_to_field",
    "to_sitk",
    "write_transform",
]
