"""The trust gate: whether coframe believes a registration result enough to store it.

A stored edge is a believed edge. A result is doubted, with its numbers, when

- its mutual information is close to the no-alignment baseline: the same
  sample with the moving values shuffled (:data:`MIN_GAIN` times it at least);
- the runner-up pose of a global search, refined the same way (both as
  poses, before any affine or B-spline step) and scored on the same sample,
  is nearly as good (:data:`RUNNER_UP_RATIO` of the gain);
- too little of the sample overlaps the other image to judge
  (:data:`MIN_TRUST_OVERLAP`);
- after a search, its linear part stretches or shrinks some direction well
  beyond the scale range the search allowed (:func:`scale_bounds`): a
  refinement that wandered there fits noise, not the images.

Mutual information is measured in nats on one fixed sample (the smaller
image's, for a search), binned over fixed ranges, so that every number
compares with the others. The gate uses it whatever metric the preset
optimised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from coframe.registration.metric import Evaluator
from coframe.transforms.base import Transform

#: The mutual information must be at least this many times the shuffled baseline.
MIN_GAIN = 10.0
#: A runner-up whose gain over the baseline reaches this share of the winner's is a tie.
RUNNER_UP_RATIO = 0.75
#: Smallest fraction of the sample that must land inside the other image.
MIN_TRUST_OVERLAP = 0.3
#: A searched result may scale a direction by up to this power of the search's own range.
SCALE_SLACK = 1.5
#: Scale range assumed for the bounds when the search searched no scale.
MIN_SCALE_RANGE = 0.05
#: Histogram bins of the trust metric.
TRUST_BINS = 32
#: How to give a registration a better start, named in every refusal.
WAY_FORWARD = (
    "give a start with --near z,y,x, --axis z,y,x --max-tilt DEG or --landmarks FILE, or store "
    "it anyway with --force"
)


@dataclass(frozen=True)
class Trust:
    """The gate's numbers and verdict.

    Parameters
    ----------
    mutual_information
        MI of the result on the trust sample (nats).
    baseline
        MI of the same sample with the other image's values shuffled.
    overlap
        Fraction of the sample inside the other image.
    runner_up
        MI of the search's runner-up on the same sample, if there was one.
    reason
        Why the result is doubted (empty: trusted).
    """

    mutual_information: float
    baseline: float
    overlap: float
    runner_up: float | None = None
    reason: str = ""

    @property
    def trusted(self) -> bool:
        """True when the gate found no reason to doubt the result."""
        return not self.reason

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for the JSON report and the provenance."""
        out: dict[str, Any] = {
            "trusted": self.trusted,
            "mutual_information": _round(self.mutual_information),
            "baseline": _round(self.baseline),
            "overlap": _round(self.overlap),
            "runner_up": None if self.runner_up is None else _round(self.runner_up),
            "reason": self.reason or None,
        }
        return out


def _round(value: float) -> float | str:
    return round(value, 5) if math.isfinite(value) else str(value)


def scale_bounds(scale_range: float) -> tuple[float, float]:
    """The singular values a searched result's linear part may have.

    The search tried isotropic scales ``1 +- scale_range``; the refinement
    may go :data:`SCALE_SLACK` times as far (in log scale) along any
    direction, as an affine step that finds a few percent of anisotropy does.
    """
    reach = SCALE_SLACK * math.log1p(max(scale_range, MIN_SCALE_RANGE))
    return math.exp(-reach), math.exp(reach)


def scale_problem(linear: np.ndarray, scale_range: float) -> str:
    """Why a searched result's linear part is implausible (empty: it is not)."""
    values = np.linalg.svd(np.asarray(linear, float), compute_uv=False)
    lo, hi = scale_bounds(scale_range)
    if values.min() >= lo and values.max() <= hi:
        return ""
    return (
        f"it scales directions by {values.min():.3f} to {values.max():.3f}, outside the "
        f"{lo:.3f} to {hi:.3f} that the search's scale range (search.scale_range "
        f"{scale_range:g}) allows"
    )


def judge(
    evaluate: Evaluator,
    transform: Transform,
    runner_up: float | None = None,
    implausible: str = "",
) -> Trust:
    """Measure a result (and a search's runner-up) on one sample and decide.

    Parameters
    ----------
    evaluate
        A mutual-information evaluator (its fixed sample is the trust sample;
        ``transform`` maps it into the other image).
    transform
        The result, mapping the sample's image into the other one.
    runner_up
        Mutual information of a search's refined runner-up on the same sample.
    implausible
        Why the result's geometry cannot be right (:func:`scale_problem`).
    """
    mi = -evaluate(transform)
    base = -evaluate.shuffled(transform)
    overlap = evaluate.overlap(transform)
    second = runner_up
    reason = ""
    if overlap < MIN_TRUST_OVERLAP or not math.isfinite(mi):
        reason = (
            f"only {overlap:.0%} of the sampled points overlap the other image (need "
            f"{MIN_TRUST_OVERLAP:.0%}): too little to judge the result"
        )
    elif implausible:
        reason = implausible
    elif mi < MIN_GAIN * base:
        reason = (
            f"mutual information {mi:.4f} is close to the no-alignment baseline {base:.4f} "
            f"(shuffled sample; need {MIN_GAIN:g}x): the images do not look aligned"
        )
    elif second is not None and math.isfinite(second):
        if second - base >= RUNNER_UP_RATIO * (mi - base):
            reason = (
                f"the search's runner-up pose is nearly as good (mutual information {second:.4f} "
                f"against {mi:.4f}, baseline {base:.4f}): the answer is ambiguous"
            )
    if reason:
        reason = f"not trusted: {reason}; {WAY_FORWARD}"
    return Trust(mi, base, overlap, second, reason)
