"""Estimators: transforms found from images or landmarks, returned as values, never written.

May import :mod:`coframe.resampling`, :mod:`coframe.transforms`,
:mod:`coframe.volumes`, :mod:`coframe.core` and :mod:`coframe.configs`; the
workspace commands built on it live in :mod:`coframe.app`.

Volume-to-volume registration (``coframe register``):

- :mod:`~coframe.registration.presets`: YAML presets of chained steps and their settings
  (:mod:`~coframe.registration.preset_sections`: the sections' fields);
- :mod:`~coframe.registration.inputs`: working levels, overlapping regions, masks;
- :mod:`~coframe.registration.metric`: the SimpleITK pair, pyramid and the QC metric;
- :mod:`~coframe.registration.mutual_information`: the mutual information of paired samples;
- :mod:`~coframe.registration.intensity`: moments, rigid, similarity, affine, multi-start;
- :mod:`~coframe.registration.drift`: slice-by-slice drift of a FIB-SEM stack;
- :mod:`~coframe.registration.deformable`: the B-spline step;
- :mod:`~coframe.registration.landmarks`: landmark fits and leave-one-out errors;
- :mod:`~coframe.registration.qc`: TRE, Jacobian determinants, the store-or-refuse verdict;
- :mod:`~coframe.registration.search`: the global search of a small volume in a large one
  (:mod:`~coframe.registration.search_features`: scores and orientations;
  :mod:`~coframe.registration.search_inputs`: the images it reads);
- :mod:`~coframe.registration.trust`: whether a result is believed enough to store;
- :mod:`~coframe.registration.result`: what a registration returns;
- :mod:`~coframe.registration.nuclei_points`: nuclei as points, from labels or blobs;
- :mod:`~coframe.registration.nuclei_match`: matching two point sets with no start;
- :mod:`~coframe.registration.nuclei`: the ``nuclei`` step and its trust gate;
- :mod:`~coframe.registration.chain`: one chain of steps run from one start;
- :mod:`~coframe.registration.pipeline`: the chained registration of two volumes.

Slice-to-volume registration (``coframe locate``):

- :mod:`~coframe.registration.locate_geometry`: images, poses, orientations, pose errors;
- :mod:`~coframe.registration.locate_inputs`: the section and volume read at a spacing;
- :mod:`~coframe.registration.locate_mask`: grid bars, empty film and the user's section mask;
- :mod:`~coframe.registration.locate_search`: the FFT search of poses;
- :mod:`~coframe.registration.locate_refine`: SimpleITK refinement and the pose score;
- :mod:`~coframe.registration.locate_symmetry`: mirror-symmetric volumes and mirror twins;
- :mod:`~coframe.registration.locate_result`: options and result;
- :mod:`~coframe.registration.locate`: the search from global to refined.
"""

from __future__ import annotations

from coframe.registration.landmarks import LandmarkFit, landmark_tre, load_landmarks
from coframe.registration.landmarks import fit as fit_landmarks
from coframe.registration.locate import locate_section
from coframe.registration.locate_result import LocateOptions, LocateResult
from coframe.registration.nuclei import NucleiResult, find_nuclei, nuclei_step
from coframe.registration.nuclei_match import PointMatch, match_points
from coframe.registration.nuclei_points import (
    NucleusPoints,
    points_from_intensity,
    points_from_labels,
)
from coframe.registration.pipeline import register
from coframe.registration.presets import Preset, load_preset, preset_from_dict
from coframe.registration.qc import jacobian_stats, tre, verdict
from coframe.registration.result import RegistrationResult

__all__ = [
    "LandmarkFit",
    "LocateOptions",
    "LocateResult",
    "NucleiResult",
    "NucleusPoints",
    "PointMatch",
    "Preset",
    "RegistrationResult",
    "find_nuclei",
    "fit_landmarks",
    "jacobian_stats",
    "landmark_tre",
    "load_landmarks",
    "load_preset",
    "locate_section",
    "match_points",
    "nuclei_step",
    "points_from_intensity",
    "points_from_labels",
    "preset_from_dict",
    "register",
    "tre",
    "verdict",
]
