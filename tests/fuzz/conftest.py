"""Fuzz tests: registers the ``ci`` and ``long`` profiles (see :mod:`fuzz.harness`).

``COFRAME_FUZZ=long pytest tests/fuzz`` runs the long profile;
``python tests/fuzz/report.py`` runs it and refreshes docs/reliability.md.
"""

from __future__ import annotations

import fuzz.harness  # noqa: F401  (registers the hypothesis profiles)
