"""Estimators: transforms found from images or landmarks, returned as values, never written.

Volume-to-volume registration (``coframe register``):

- :mod:`coframe.registration.presets`: YAML presets of chained steps and their settings;
- :mod:`coframe.registration.inputs`: working levels, overlapping regions, masks;
- :mod:`coframe.registration.metric`: the SimpleITK pair, pyramid and the QC metric;
- :mod:`coframe.registration.intensity`: moments, rigid, similarity, affine, multi-start;
- :mod:`coframe.registration.deformable`: the B-spline step;
- :mod:`coframe.registration.landmarks`: landmark fits and leave-one-out errors;
- :mod:`coframe.registration.qc`: TRE, Jacobian determinants, the store-or-refuse verdict;
- :mod:`coframe.registration.pipeline`: the chained registration of two volumes;
- :mod:`coframe.app.register`: the command in a workspace (inputs, QC, stored edge).
"""
