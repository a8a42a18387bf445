"""Compiling numerical kernels with numba, keeping the compiled code on disk where possible."""

from __future__ import annotations

from typing import Any

import numba


def cached_jit(**options: Any) -> Any:
    """``numba.njit`` keeping compiled code on disk, or not where no cache directory is writable."""

    def decorate(fn: Any) -> Any:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # numba found no writable cache location (read-only install)
            return numba.njit(**options)(fn)

    return decorate
