"""Estimators: transforms found from images or landmarks, returned as values, never written.

Volume-to-volume registration (``coframe register``):

- :mod:`registration.presets`: YAML presets of chained steps and their settings;
- :mod:`registration.inputs`: working levels, overlapping regions, masks;
- :mod:`registration.metric`: the SimpleITK pair, pyramid and the QC metric;
- :mod:`registration.intensity`: moments, rigid, similarity, affine, multi-start;
- :mod:`registration.deformable`: the B-spline step;
- :mod:`registration.landmarks`: landmark fits and leave-one-out errors;
- :mod:`registration.qc`: TRE, Jacobian determinants, the store-or-refuse verdict;
- :mod:`registration.pipeline`: the chained registration of two volumes;
- :mod:`registration.command`: the command in a workspace (inputs, QC, stored edge).
"""
