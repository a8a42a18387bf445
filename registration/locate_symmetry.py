"""Mirror symmetry of a volume, and the mirror twin of a section pose.

A section cut from a volume that is mirror-symmetric about a plane (a brain
template about its mid-sagittal plane, a phantom built symmetric) matches its
pose and the reflection of that pose through the plane equally well: no score
can tell the two apart. :func:`detect_symmetry` finds such planes, so that
:func:`coframe.registration.locate.locate_section` can score the mirror pose as a
rival and report the tie instead of trusting one of the twins.

Only planes perpendicular to the volume's axes (z, y or x) are searched, each
by a 1D search of the plane's position: the volume ``f`` is correlated with
its flip along the axis, ``f(2 p - t) ~ f(t)``, for every plane position ``p``
at half-voxel steps (FFT), refined to a fraction of a voxel by a parabola
through the peak. The similarity is the normalised cross-correlation (NCC)
of the high-passed volume (minus a Gaussian blur of :data:`HIGHPASS_SIGMA`
voxels) over the pairs of voxels that both hold the object. Both choices keep
the outline out of the decision: a head on a zero background or a resin block
in air is often symmetric in shape while its content is not, and an NCC of
the raw values over the whole box is then high (0.86 to 0.88 for the
``coframe demo`` X-ray volume and a hemisphere of a brain template).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from coframe.registration.locate_geometry import GridImage, Pose
from coframe.transforms.affine import Affine

#: Smallest NCC of a volume with its mirror image for the volume to count as
#: symmetric about the plane. Measured at the coarse search level of
#: ``locate_section`` (5 mm voxels for an 80 mm section): nilearn's ICBM152
#: 2009 symmetric templates (T1, GM, WM) score 0.99 about their mid-sagittal
#: plane, and 0.23 to 0.40 about planes across their other axes or across any
#: axis of their left hemisphere; the ``coframe demo`` X-ray volume scores at
#: most 0.28, random blob phantoms at most 0.30.
SYMMETRY_NCC = 0.7
#: Sigma (voxels of the searched grid) of the blur subtracted before comparing.
HIGHPASS_SIGMA = 2.0
#: Smallest fraction of the object (and of the axis) that must overlap its
#: mirror image: planes near the faces compare too little.
MIN_OVERLAP = 0.5
#: Fraction of the face voxels that must share one value for it to be a background.
BACKGROUND_FACES = 0.5
#: Tolerance of a background value, relative to the 1-99 percentile range.
BACKGROUND_TOLERANCE = 0.02
#: Names of the axes, in numpy order.
AXIS_NAMES = ("z", "y", "x")


@dataclass(frozen=True)
class MirrorPlane:
    """A plane perpendicular to a volume axis, with how well the volume mirrors about it.

    Parameters
    ----------
    axis
        Index of the axis perpendicular to the plane (0 z, 1 y, 2 x).
    position
        Physical coordinate of the plane along that axis.
    ncc
        Normalised cross-correlation of the volume with its mirror image
        about the plane (over the voxels that hold the object).
    """

    axis: int
    position: float
    ncc: float

    @property
    def axis_name(self) -> str:
        """``z``, ``y`` or ``x``."""
        return AXIS_NAMES[self.axis]

    def summary(self) -> dict[str, Any]:
        """Plain values: axis name, plane position and NCC."""
        return {"axis": self.axis_name, "plane": round(self.position, 6), "ncc": round(self.ncc, 6)}


def foreground(array: np.ndarray) -> np.ndarray:
    """Voxels that hold the object: all, unless the faces share one background value.

    When at least :data:`BACKGROUND_FACES` of the voxels on the six faces lie
    within :data:`BACKGROUND_TOLERANCE` of the range of their median, that
    median is the background and the voxels away from it are the object.

    Returns
    -------
    A float32 array of 0 and 1, the shape of ``array``.
    """
    faces = np.concatenate(
        [np.ravel(np.take(array, i, axis=k)) for k in range(array.ndim) for i in (0, -1)]
    )
    lo, hi = np.percentile(array, [1.0, 99.0])
    tol = BACKGROUND_TOLERANCE * float(hi - lo)
    value = float(np.median(faces))
    if tol <= 0 or np.mean(np.abs(faces - value) <= tol) < BACKGROUND_FACES:
        return np.ones(array.shape, np.float32)
    return (np.abs(array - value) > tol).astype(np.float32)


def mirror_profile(
    grid: GridImage,
    axis: int,
    *,
    min_overlap: float = MIN_OVERLAP,
    highpass: float = HIGHPASS_SIGMA,
) -> tuple[np.ndarray, np.ndarray]:
    """NCC of the volume with its mirror image about every plane across one axis.

    Parameters
    ----------
    grid
        The volume.
    axis
        Axis perpendicular to the planes (0 z, 1 y, 2 x).
    min_overlap
        Smallest overlap (fraction of the object) compared; planes with less
        get NCC 0.
    highpass
        Sigma (voxels) of the Gaussian blur subtracted first (0: none).

    Returns
    -------
    tuple
        ``(positions, ncc)``: the physical plane positions (half-voxel steps)
        and the NCC about each.
    """
    f = np.asarray(grid.array, dtype=np.float64)
    if highpass > 0:
        f = f - ndimage.gaussian_filter(f, highpass, mode="nearest")
    f = np.moveaxis(f, axis, -1)
    w = np.moveaxis(foreground(np.asarray(grid.array)), axis, -1).astype(np.float64)
    f = f - float(np.sum(f * w) / max(float(np.sum(w)), 1.0))
    n = f.shape[-1]
    length = sfft.next_fast_len(2 * n - 1, real=True)
    lines = (-1, n)

    def spectrum(a: np.ndarray) -> np.ndarray:
        return sfft.rfft(a.reshape(lines), n=length, axis=-1, workers=-1)

    wf, wff = w * f, w * f * f
    fw, fwf, fwff = spectrum(w), spectrum(wf), spectrum(wff)
    # the flipped array's spectra are those of the originals read backwards
    gw, gwf, gwff = (spectrum(a[..., ::-1]) for a in (w, wf, wff))

    def corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # sum over lines of sum_i a[i] b[i + s], s = -(n - 1) .. n - 1
        c = sfft.irfft(np.sum(np.conj(a) * b, axis=0), n=length)
        return np.concatenate([c[length - (n - 1) :], c[:n]])

    count = corr(fw, gw)
    s_f, s_g = corr(fwf, gw), corr(fw, gwf)
    s_ff, s_gg, s_fg = corr(fwff, gw), corr(fw, gwff), corr(fwf, gwf)
    shifts = np.arange(-(n - 1), n)
    ok = (count >= min_overlap * float(np.sum(w))) & (np.abs(shifts) <= (1 - min_overlap) * n)
    safe = np.where(count > 0.5, count, 1.0)
    var_f = s_ff - s_f * s_f / safe
    var_g = s_gg - s_g * s_g / safe
    cov = s_fg - s_f * s_g / safe
    den = np.sqrt(np.clip(var_f, 0.0, None) * np.clip(var_g, 0.0, None))
    ok &= den > 1e-12 * max(float(np.sum(wff)), 1e-30)
    ncc = np.where(ok, cov / np.where(ok, den, 1.0), 0.0)
    index = (n - 1 - shifts) / 2.0
    positions = grid.origin[axis] + index * grid.spacing[axis]
    order = np.argsort(positions)
    return positions[order], ncc[order]


def best_plane(
    grid: GridImage,
    axis: int,
    *,
    min_overlap: float = MIN_OVERLAP,
    highpass: float = HIGHPASS_SIGMA,
) -> MirrorPlane:
    """The plane across ``axis`` about which the volume mirrors best (NCC peak, sub-voxel)."""
    positions, ncc = mirror_profile(grid, axis, min_overlap=min_overlap, highpass=highpass)
    k = int(np.argmax(ncc))
    position, peak = float(positions[k]), float(ncc[k])
    if 0 < k < len(ncc) - 1 and ncc[k - 1] > 0 and ncc[k + 1] > 0:
        a, b, c = (float(v) for v in ncc[k - 1 : k + 2])
        curve = a - 2 * b + c
        if curve < 0:
            delta = 0.5 * (a - c) / curve
            position += delta * float(positions[k + 1] - positions[k])
            peak = b - 0.25 * (a - c) * delta
    return MirrorPlane(axis, position, min(peak, 1.0))


def detect_symmetry(
    grid: GridImage, *, threshold: float = SYMMETRY_NCC, min_overlap: float = MIN_OVERLAP
) -> tuple[MirrorPlane, ...]:
    """Planes perpendicular to the volume's axes about which it is mirror-symmetric.

    Parameters
    ----------
    grid
        The volume (a coarse copy is enough: the search level of
        ``locate_section``).
    threshold
        Smallest NCC of the volume with its mirror image (see :data:`SYMMETRY_NCC`).
    min_overlap
        Smallest overlap of the object with its mirror image (fraction).

    Returns
    -------
    The planes (at most one per axis) whose NCC reaches ``threshold``, best first.
    """
    planes = [best_plane(grid, k, min_overlap=min_overlap) for k in range(grid.array.ndim)]
    return tuple(sorted((p for p in planes if p.ncc >= threshold), key=lambda p: -p.ncc))


def reflection(axis: int, position: float) -> tuple[np.ndarray, np.ndarray]:
    """The reflection ``X -> R X + t`` through the plane ``X[axis] = position``."""
    r = np.eye(3)
    r[axis, axis] = -1.0
    t = np.zeros(3)
    t[axis] = 2.0 * position
    return r, t


def mirror_pose(pose: Pose, axis: int, position: float) -> Pose:
    """The pose reflected through the plane ``X[axis] = position``.

    Every section point lands at the mirror image of where ``pose`` puts it:
    ``mirror_pose(pose).apply(p) == R pose.apply(p) + t``. The reflection
    reverses the handedness of the in-plane frame (the normal
    ``cross(column_y, column_x)`` becomes ``-R n``): the section is seen from
    its other face, which the search considers as well.

    Parameters
    ----------
    pose
        The pose.
    axis
        Axis perpendicular to the plane (0 z, 1 y, 2 x).
    position
        Physical coordinate of the plane along ``axis``.
    """
    r, t = reflection(axis, position)
    return Pose(r @ pose.center + t, r @ pose.linear, np.asarray(pose.section_center, float))


def within_priors(
    pose: Pose,
    near: np.ndarray | None,
    near_radius: float,
    axis: np.ndarray,
    tilt: float,
) -> bool:
    """Whether a pose keeps to the search's priors (a mirror twin may not).

    Parameters
    ----------
    pose
        The pose.
    near, near_radius
        The centre must lie within ``near_radius`` of ``near`` (if given).
    axis, tilt
        The normal (either sign) must lie within ``tilt`` degrees of the unit ``axis``.
    """
    if near is not None and np.linalg.norm(pose.center - np.asarray(near)) > near_radius:
        return False
    cos = abs(float(np.dot(pose.normal, axis)))
    return float(np.degrees(np.arccos(min(cos, 1.0)))) <= tilt + 1e-9


@dataclass(frozen=True)
class MirrorTwin:
    """The reflection of a located pose through a symmetry plane of the volume, scored.

    Parameters
    ----------
    plane
        The symmetry plane.
    pose
        The twin pose (refined at the working level like the other candidates).
    score
        Its final score (same measure as the located pose's).
    refined
        Whether SimpleITK optimised it.
    """

    plane: MirrorPlane
    pose: Pose
    score: float
    refined: bool

    @property
    def affine(self) -> Affine:
        """The twin as a 2D -> 3D affine (section (y, x) -> volume (z, y, x))."""
        return Affine(self.pose.matrix)

    def summary(self) -> dict[str, Any]:
        """Plain numbers: axis, plane position, plane NCC, score, centre, normal, matrix."""
        return {
            "axis": self.plane.axis_name,
            "plane": round(self.plane.position, 6),
            "plane_ncc": round(self.plane.ncc, 6),
            "score": round(self.score, 6),
            "center": [round(float(v), 3) for v in self.pose.center],
            "normal": [round(float(v), 6) for v in self.pose.normal],
            "matrix": np.round(self.pose.matrix, 9).tolist(),
        }
