"""The built-in CellMap-like synthetic sample, its ground truth and the demo pipeline.

May import :mod:`coframe.app` and every package below it (views,
registration, resampling, transforms, volumes, core, configs); never
:mod:`coframe.cli`.

- :mod:`coframe.demo.tissue`, :mod:`coframe.demo.shading`,
  :mod:`coframe.demo.render`, :mod:`coframe.demo.render_grid`,
  :mod:`coframe.demo.noise`: a procedural tissue and how each modality
  (FIB-SEM, labels, X-ray, TEM) sees it at any voxel size;
- :mod:`coframe.demo.geometry`, :mod:`coframe.demo.truth`: where the FIB-SEM
  block sits in the X-ray scan, and the FIB-SEM -> X-ray ground-truth map;
- :mod:`coframe.demo.sample`, :mod:`coframe.demo.acquisition`,
  :mod:`coframe.demo.outputs`, :mod:`coframe.demo.progress`: writing the
  sample, its ground truth and its workspace (:func:`make_demo`);
- :mod:`coframe.demo.pipeline` and its steps :mod:`coframe.demo.register`,
  :mod:`coframe.demo.resample`, :mod:`coframe.demo.locate`: ``coframe demo``
  (:func:`run_demo`).
"""

from __future__ import annotations

from coframe.demo.outputs import SIZES, DemoSample, TemSection
from coframe.demo.pipeline import DEMO_PIPELINE, run_demo
from coframe.demo.render import (
    render_em,
    render_nucleus_labels,
    render_stain,
    render_tem,
    xray_attenuation,
    xray_image,
)
from coframe.demo.render_grid import RenderGrid, section_render_grid
from coframe.demo.sample import make_demo
from coframe.demo.tissue import ResinBlock, Tissue, TissueParams
from coframe.demo.truth import GroundTruth

__all__ = [
    "DEMO_PIPELINE",
    "SIZES",
    "DemoSample",
    "GroundTruth",
    "RenderGrid",
    "ResinBlock",
    "TemSection",
    "Tissue",
    "TissueParams",
    "make_demo",
    "render_em",
    "render_nucleus_labels",
    "render_stain",
    "render_tem",
    "run_demo",
    "section_render_grid",
    "xray_attenuation",
    "xray_image",
]
