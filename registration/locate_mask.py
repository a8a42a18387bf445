"""Which pixels of a TEM section show tissue: grid bars, empty film and the user's mask.

TEM sections lie on grids whose bars hide parts of the image (large, flat,
dark regions) and may show empty film or holes (large, flat, bright or
saturated regions). A section may also fold: a straight band where it lies
doubled, darker than the tissue beside it along its whole length
(:func:`fold_mask`). None of these matches anything in the volume: they are
masked out of every score. :func:`auto_section_mask` finds them on the
section at a fine spacing; :func:`section_with_mask` combines that with a user's
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
#: A fold is darker than the tissue beside it by at least this fraction of the section's range.
FOLD_DEPTH = 0.24
#: ... and at least this share of its pixels are darker than the tissue beside it.
FOLD_CONSISTENCY = 0.85
#: ... and its mean darkness stands this many robust deviations out of its direction's profile.
FOLD_CONTRAST = 6.0
#: Widest fold looked for, as a fraction of the section's longer side.
FOLD_WIDTH = 0.15
#: Folds looked for per section.
MAX_FOLDS = 2
#: Pixels across the longer side where folds are looked for.
FOLD_PIXELS = 256
#: Pixels (at that size) added to a fold's mask on either side.
FOLD_MARGIN = 2


def bars_and_film(image: np.ndarray, *, window: int = 3) -> np.ndarray:
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


def auto_section_mask(image: np.ndarray, *, window: int = 3) -> np.ndarray:
    """Pixels that show tissue (True): not grid bar, empty film (:func:`bars_and_film`) or fold
    (:func:`fold_mask`)."""
    usable = bars_and_film(image, window=window)
    return usable & fold_mask(image, usable)


def _binned(image: np.ndarray, usable: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of the usable pixels in ``factor``-square blocks, and the fully usable blocks."""
    if factor == 1:
        return image, usable.copy()
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    weights = usable[:h, :w].astype(np.float64)
    shape = (h // factor, factor, w // factor, factor)
    sums = (image[:h, :w] * weights).reshape(shape).sum(axis=(1, 3))
    counts = weights.reshape(shape).sum(axis=(1, 3))
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), 0.0), counts >= factor * factor


def _line_sums(values: np.ndarray, along: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and sums of ``values`` in unit bins of ``along`` (each split between two bins)."""
    k = np.floor(along).astype(np.int64)
    frac = along - k
    counts = np.bincount(k, 1.0 - frac, length + 2) + np.bincount(k + 1, frac, length + 2)
    sums = np.bincount(k, values * (1.0 - frac), length + 2)
    sums += np.bincount(k + 1, values * frac, length + 2)
    return counts, sums


def _darkest_band(
    small: np.ndarray, keep: np.ndarray, yy: np.ndarray, xx: np.ndarray, length: int
) -> tuple[float, float, float, float] | None:
    """The straight band, over every direction, whose mean is furthest below its neighbours'.

    Returns ``(angle, lo, hi, depth)``: the band's normal angle (radians,
    ``y cos + x sin``), its extent along that normal (pixels from the
    centre) and how much darker it is than the median line beside it; None
    when no direction has a band that stands out (:data:`FOLD_CONTRAST`).
    """
    values, py, px = small[keep], yy[keep], xx[keep]
    best: tuple[float, float, float, float] | None = None
    for angle in np.deg2rad(np.arange(0.0, 180.0, 1.0)):
        counts, sums = _line_sums(
            values, py * np.cos(angle) + px * np.sin(angle) + length / 2, length
        )
        rows = np.flatnonzero(counts >= 0.3 * counts.max())
        if rows.size < 20:
            continue
        profile = sums[rows] / counts[rows]
        beside = ndimage.median_filter(profile, size=max(9, rows.size // 5) | 1, mode="nearest")
        dark = beside - profile
        spread = 1.4826 * float(np.median(np.abs(dark - np.median(dark)))) + 1e-12
        j = int(np.argmax(dark))
        depth = float(dark[j])
        if depth < FOLD_CONTRAST * spread or (best is not None and depth <= best[3]):
            continue
        lo = hi = j  # the contiguous lines at least half as dark
        while lo > 0 and dark[lo - 1] > 0.5 * depth and rows[lo - 1] == rows[lo] - 1:
            lo -= 1
        while hi < rows.size - 1 and dark[hi + 1] > 0.5 * depth and rows[hi + 1] == rows[hi] + 1:
            hi += 1
        best = (float(angle), rows[lo] - length / 2, rows[hi] - length / 2, depth)
    return best


def fold_mask(image: np.ndarray, usable: np.ndarray | None = None) -> np.ndarray:
    """Pixels outside the section's folds (True), found as straight dark bands.

    Where a section folds it lies doubled: a straight band across it, a few
    per cent of its side wide, that stops more electrons than the tissue
    beside it along its whole length, and whose content (two layers on top of
    each other) matches nothing in the volume. For every direction the
    section's usable pixels (away from grid bars) are averaged along lines;
    the band whose lines are darkest against their neighbours is a fold when
    it is at least :data:`FOLD_DEPTH` of the section's range darker, stands
    out of its direction's profile (:data:`FOLD_CONTRAST`), is at most
    :data:`FOLD_WIDTH` of the side wide, and at least
    :data:`FOLD_CONSISTENCY` of its pixels are darker than the tissue beside
    it (a line through one dark structure is not). Up to :data:`MAX_FOLDS`
    are masked, each widened by :data:`FOLD_MARGIN` pixels of that grid on either side.

    Parameters
    ----------
    image
        The section (2D).
    usable
        Pixels that count (grid bars and film left out), or None for all.
    """
    a = np.asarray(image, dtype=np.float64)
    usable = np.ones(a.shape, bool) if usable is None else np.asarray(usable, bool)
    factor = max(1, int(np.ceil(max(a.shape) / FOLD_PIXELS)))
    small, keep = _binned(a, usable, factor)
    if not keep.all():  # away from the blurred edges of grid bars
        keep = ~ndimage.binary_dilation(~keep, iterations=2)
    out = np.ones(a.shape, dtype=bool)
    if keep.sum() < 400:
        return out
    lo, hi = np.percentile(small[keep], [1.0, 99.0])
    span = float(hi - lo)
    if span <= 0:
        return out
    yy, xx = np.indices(small.shape, dtype=np.float64)
    yy -= (small.shape[0] - 1) / 2.0
    xx -= (small.shape[1] - 1) / 2.0
    # the same lines on the full image: pixel centres in the binned grid's coordinates
    big_y, big_x = np.indices(a.shape, dtype=np.float64)
    big_y = (big_y + 0.5) / factor - 0.5 - (small.shape[0] - 1) / 2.0
    big_x = (big_x + 0.5) / factor - 0.5 - (small.shape[1] - 1) / 2.0
    length = int(np.ceil(np.hypot(*small.shape))) + 2
    for _ in range(MAX_FOLDS):
        band = _darkest_band(small, keep, yy, xx, length)
        if band is None:
            break
        angle, b_lo, b_hi, depth = band
        along = yy * np.cos(angle) + xx * np.sin(angle)
        inner = keep & (along >= b_lo) & (along <= b_hi)
        beside = (
            keep
            & (np.abs(along - (b_lo + b_hi) / 2) <= (b_hi - b_lo) / 2 + 7)
            & ~((along >= b_lo - 1) & (along <= b_hi + 1))
        )
        if not inner.any() or not beside.any():
            break
        consistent = float(np.mean(small[inner] < np.median(small[beside])))
        if (
            depth < FOLD_DEPTH * span
            or b_hi - b_lo + 1 > FOLD_WIDTH * max(small.shape)
            or consistent < FOLD_CONSISTENCY
        ):
            break
        # widened: the lines at half the depth leave out the fold's blurred edges
        keep &= ~((along >= b_lo - FOLD_MARGIN) & (along <= b_hi + FOLD_MARGIN))
        along_big = big_y * np.cos(angle) + big_x * np.sin(angle)
        out &= ~((along_big >= b_lo - FOLD_MARGIN) & (along_big <= b_hi + FOLD_MARGIN))
    return out


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
