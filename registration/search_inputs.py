"""What the global search reads: each image at a spacing, levelled and ready to score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from coframe.core.errors import RegistrationError
from coframe.registration.inputs import padding_mask
from coframe.registration.locate_geometry import GridImage
from coframe.registration.locate_inputs import VolumeReader
from coframe.registration.preset_sections import SearchConfig
from coframe.registration.search_features import FEATURE_SIGMA, bin_edges, edge_scale


@dataclass(frozen=True)
class SearchSource:
    """Reads one image at a spacing, with its valid voxels, ready to score.

    Zero padding at the borders (of FIB-SEM volumes) is masked, and its voxels
    take the value of the nearest valid voxel: the step from padding to data
    would otherwise be the strongest edge of the image. An image whose slices
    drift in brightness has every slice along ``drift_axis`` moved to the
    common median.
    """

    reader: VolumeReader
    exclude_padding: bool
    drift_axis: int | None

    def read(
        self, spacing: float, lo: np.ndarray | None = None, hi: np.ndarray | None = None
    ) -> tuple[GridImage, np.ndarray | None]:
        grid = self.reader.grid(spacing, lo, hi)
        array = grid.array
        mask = padding_mask(array, 1) if self.exclude_padding else None
        if mask is not None and mask.any() and not mask.all():
            nearest = ndimage.distance_transform_edt(
                ~mask, return_distances=False, return_indices=True
            )
            array = array[tuple(nearest)]
        if self.drift_axis is not None:
            array = level_slices(array, mask, self.drift_axis)
        return GridImage(array.astype(np.float32), grid.spacing, grid.origin), mask


def level_slices(array: np.ndarray, mask: np.ndarray | None, axis: int) -> np.ndarray:
    """``array`` with the median of each slice along ``axis`` (inside ``mask``) made equal."""
    moved = np.moveaxis(array, axis, 0).astype(np.float32)
    keep = None if mask is None else np.moveaxis(mask, axis, 0)
    medians = np.array(
        [
            np.median(moved[k] if keep is None or not keep[k].any() else moved[k][keep[k]])
            for k in range(moved.shape[0])
        ]
    )
    moved = moved - (medians - np.median(medians))[:, None, None]
    return np.moveaxis(moved, 0, axis)


def scoring_prep(image: GridImage, mask: np.ndarray | None, config: SearchConfig, name: str) -> Any:
    """What scoring needs of an image: its bin edges (``mi``) or its edge scale (``edges``)."""
    values = image.array if mask is None else image.array[mask]
    if values.size == 0 or float(values.max()) <= float(values.min()):
        raise RegistrationError(
            f"image {name} is constant at the search spacing {image.spacing[0]:.4g} (or empty, "
            "or fully masked): it has no edges to search by; check the image, or give a start "
            "with --landmarks or an edge"
        )
    if config.score == "mi":
        return bin_edges(image.array, mask, config.bins)
    eps = edge_scale(image.array, mask, FEATURE_SIGMA)
    if not eps > 0:
        raise RegistrationError(
            f"image {name} has no edges at the search spacing {image.spacing[0]:.4g} (constant, "
            "empty or fully masked): check the image, or give a start with --landmarks or an edge"
        )
    return eps
