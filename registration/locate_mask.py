"""Which pixels of a TEM section show tissue: grid bars, empty film and the user's mask.

TEM sections lie on grids whose bars hide parts of the image (large, flat,
dark regions) and may show empty film or holes (large, flat, bright or
saturated regions). Neither matches anything in the volume: they are masked
out of every score. :func:`auto_section_mask` finds them on the section at
the working spacing; :func:`section_with_mask` combines that with a user's
mask and refuses a section with too little left to match.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from coframe.core.errors import RegistrationError
from coframe.registration.locate_geometry import MASK_KEEP, GridImage, resample_grid
from coframe.registration.search_features import fill_from_nearest

#: Values within this fraction of the robust range of the darkest (or brightest) count as extreme.
EXTREME = 0.08
#: Regions flatter than this fraction of the section's median local deviation count as flat.
FLAT = 0.35
#: Smallest region masked automatically, as a fraction of the section area.
MIN_REGION = 0.005
#: Pixels across the section's longer side where grid bars and film are looked for.
MASK_PIXELS = 1024
#: Smallest fraction of the section that must stay usable.
MIN_USABLE = 0.25


def auto_section_mask(image: np.ndarray, *, window: int = 3) -> np.ndarray:
    """Pixels that are not grid bar or empty film (True = usable).

        A pixel is masked when it lies in a connected region, at least
        :data:`MIN_REGION` of the image, of pixels that are both extreme (within
        :data:`EXTREME` of the robust range of the darkest or brightest values)
        and flat (local standard deviation below :data:`FLAT` times the image's
        median). The masked regions are widened by half the window and one
    pixel more (the window straddles their edges, which are blurred).

        Parameters
        ----------
        image
            The section (2D), at the working spacing.
        window
            Side (pixels) of the local standard deviation window.
    """
    a = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(a, [1.0, 99.0])
    span = float(hi - lo)
    if span <= 0:
        return np.ones(a.shape, dtype=bool)
    mean = ndimage.uniform_filter(a, window, mode="reflect")
    var = ndimage.uniform_filter(a * a, window, mode="reflect") - mean * mean
    local = np.sqrt(np.maximum(var, 0.0))
    texture = float(np.median(local))
    flat = local <= FLAT * texture + 1e-12 * span
    extreme = (a <= lo + EXTREME * span) | (a >= hi - EXTREME * span)
    candidate = flat & extreme
    labels, count = ndimage.label(candidate)
    if count == 0:
        return np.ones(a.shape, dtype=bool)
    areas = ndimage.sum_labels(candidate, labels, index=np.arange(1, count + 1))
    big = np.zeros(count + 1, dtype=bool)
    big[1:] = areas >= MIN_REGION * a.size
    # the local deviation window straddles a region's edge: widen it back, and a pixel more
    masked = ndimage.binary_dilation(big[labels], np.ones((3, 3), bool), iterations=window // 2 + 1)
    return ~masked


def mask_on(grid: GridImage, fractions: GridImage) -> np.ndarray:
    """Pixels of ``grid`` that count, given a mask as usable fractions on another grid.

    ``fractions`` is resampled to the spacing of ``grid`` (the fraction of
    each new pixel's support that is usable), then sampled at its pixels; a
    pixel counts when at least :data:`MASK_KEEP` of it is usable (0 outside
    ``fractions``).
    """
    coarse = resample_grid(fractions, float(np.mean(grid.spacing)))
    idx = coarse.to_index(grid.points()).T
    kept = ndimage.map_coordinates(coarse.array, idx, order=1, mode="constant", cval=0.0)
    return kept.reshape(grid.shape) >= MASK_KEEP


def with_mask(grid: GridImage, fractions: GridImage | None) -> GridImage:
    """``grid`` with the mask given by ``fractions`` (see :func:`mask_on`); None keeps all."""
    if fractions is None:
        return grid
    return GridImage(grid.array, grid.spacing, grid.origin, mask_on(grid, fractions))


def masked_coarser(section: GridImage, spacing: float) -> GridImage:
    """A masked section at a coarser spacing, its masked pixels filled before averaging.

    Averaged down with its grid bars in, the section would darken the usable
    pixels beside them and draw edges along every bar, edges the volume does
    not have. Each masked pixel first takes its nearest usable value, so the
    bars vanish from the image and only the mask says where they were.
    """
    if section.mask is None:
        return resample_grid(section, spacing)
    filled = GridImage(
        fill_from_nearest(section.array, section.usable), section.spacing, section.origin
    )
    usable = GridImage(section.usable.astype(np.float32), section.spacing, section.origin)
    return with_mask(resample_grid(filled, spacing), usable)


def section_with_mask(
    section: GridImage,
    user_mask: GridImage | None,
    fine: GridImage | None,
    *,
    name: str = "section",
) -> GridImage:
    """The section with its mask set: grid bars and empty film, and the user's mask.

    Where grid bars or film were found, the working values come from the fine
    image with them filled (:func:`masked_coarser`), so that no bar is
    averaged into the tissue beside it.

    Parameters
    ----------
    section
        The section at the working spacing.
    user_mask
        The user's mask (fraction of nonzero pixels, any placement in the
        section's physical (y, x)), or None.
    fine
        The section at a finer spacing, where grid bars and empty film are
        found (:func:`auto_section_mask`); None for no automatic mask.
    name
        Name used in error messages.

    Raises
    ------
    RegistrationError
        If the section is all one value, or less than :data:`MIN_USABLE` of it
        is left usable.
    """
    values = section.array
    if not np.all(np.isfinite(values)) or float(np.ptp(values)) <= 0:
        value = float(values.flat[0]) if values.size else float("nan")
        raise RegistrationError(
            f"section {name!r} is all one value ({value:g}) at the working spacing: expected an "
            f"image with contrast; check the file (coframe info) or the channel chosen (--select)"
        )
    usable = np.ones(section.shape, dtype=bool)
    if user_mask is not None:
        usable &= mask_on(section, user_mask)
    if fine is not None:
        auto = auto_section_mask(fine.array)
        usable &= mask_on(section, GridImage(auto.astype(np.float32), fine.spacing, fine.origin))
        if not auto.all():  # the tissue beside the bars, averaged from the fine image without them
            smooth = masked_coarser(
                GridImage(fine.array, fine.spacing, fine.origin, auto),
                float(np.mean(section.spacing)),
            )
            idx = smooth.to_index(section.points()).T
            values = ndimage.map_coordinates(smooth.array, idx, order=1, mode="nearest")
            values = values.reshape(section.shape).astype(np.float32)
    fraction = float(usable.mean())
    if fraction < MIN_USABLE:
        raise RegistrationError(
            f"only {fraction:.0%} of section {name!r} is usable after masking (grid bars and "
            f"empty film{' and --section-mask' if user_mask is not None else ''}): expected at "
            f"least {MIN_USABLE:.0%}; give a mask that keeps more tissue (--section-mask) or "
            f"turn the automatic mask off (--no-auto-mask)"
        )
    if float(np.ptp(values[usable])) <= 0:
        raise RegistrationError(
            f"the usable part of section {name!r} is all one value: expected tissue with "
            f"contrast; check the mask (--section-mask, --no-auto-mask)"
        )
    mask = None if usable.all() else usable
    return GridImage(values, section.spacing, section.origin, mask)
