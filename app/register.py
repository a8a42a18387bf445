"""``coframe register`` in a workspace: inputs, estimation, QC, and the stored edge.

:func:`run_register` opens the two images by name, builds the preset with the
command's overrides, finds the start (landmarks, the workspace's current
FIXED -> MOVING path, or the preset's fallback), calls
:func:`coframe.registration.pipeline.register`, measures TRE against held-out
landmarks and any ground truth, and stores the FIXED -> MOVING edge with its
provenance only when QC allows it. The estimators themselves never write.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coframe.app.images import image_location
from coframe.app.nuclei import format_nuclei, open_labels, pairs_path, write_pairs
from coframe.app.provenance import make_provenance
from coframe.app.workspace import Workspace
from coframe.core.errors import (
    InputNotFoundError,
    NoPathError,
    OverwriteError,
    RegistrationError,
    WorkspaceError,
)
from coframe.registration import landmarks as lmk
from coframe.registration.inputs import check_pair
from coframe.registration.pipeline import register
from coframe.registration.presets import load_preset, parse_overrides
from coframe.registration.qc import rounded, tre, verdict
from coframe.registration.result import RegistrationResult
from coframe.resampling.progress import count_progress
from coframe.transforms.base import Transform
from coframe.transforms.formats.dispatch import (
    detect_transform_format,
    read_transform,
    write_transform,
)
from coframe.transforms.formats.ngff import read_ngff_transform, read_scene
from coframe.transforms.graph import SpaceGraph, summarize_transform
from coframe.transforms.point_pairs import Landmarks
from coframe.volumes.open import open_volume

#: Fixed points the ground-truth TRE is measured on.
TRE_POINTS = 3000


@dataclass(frozen=True)
class RegisterRequest:
    """What ``coframe register`` was asked to do.

    Parameters
    ----------
    moving, fixed
        Image names in the workspace.
    preset
        Shipped preset name or YAML path (None: the default preset).
    steps
        Steps replacing the preset's (``--steps``).
    overrides
        ``key=value`` preset overrides (``--set``).
    landmarks
        BigWarp landmark file used to initialise (``--landmarks``).
    eval_landmarks
        BigWarp landmark file held out to measure TRE (``--eval-landmarks``).
    landmarks_unit
        Unit of the landmark files (default: the workspace unit).
    fixed_mask, moving_mask
        Mask images (non-zero = use) in the fixed and moving spaces.
    multi_start
        Try rotated starts.
    init
        Start kind overriding the preset's ``init``.
    init_edge
        Start from the workspace's current FIXED -> MOVING path.
    level_moving, level_fixed
        Pyramid levels to work at.
    ground_truth
        The FIXED -> MOVING map (any transform format) or landmark pairs
        (BigWarp) that TRE is measured against; see :func:`read_truth`.
    near, search_box
        Priors of the global search: where the smaller image's centre lies
        in the larger one (a point, or a box ``z0,y0,x0,z1,y1,x1``), physical.
    axis, max_tilt
        The axis (z, y, x) the images are rotated about and its largest tilt
        in degrees, for the global search.
    moving_labels, fixed_labels
        Nucleus segmentations (workspace image names or paths) in the moving
        and fixed spaces; either one adds the ``nuclei`` step.
    force
        Replace an existing edge/file and store a result whose metric got
        worse or that the trust gate doubts.
    command
        The command line (provenance).
    """

    moving: str
    fixed: str
    preset: str | None = None
    steps: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()
    landmarks: Path | None = None
    eval_landmarks: Path | None = None
    landmarks_unit: str | None = None
    fixed_mask: Path | None = None
    moving_mask: Path | None = None
    multi_start: bool = False
    init: str | None = None
    init_edge: bool = False
    level_moving: str | None = None
    level_fixed: str | None = None
    ground_truth: Path | None = None
    near: tuple[float, ...] | None = None
    search_box: tuple[float, ...] | None = None
    axis: tuple[float, ...] | None = None
    max_tilt: float | None = None
    moving_labels: str | None = None
    fixed_labels: str | None = None
    force: bool = False
    command: str = "coframe register"


@dataclass(frozen=True)
class RegisterOutcome:
    """What ``coframe register`` did.

    Parameters
    ----------
    result
        The registration result.
    fixed_space, moving_space
        The edge's spaces (FIXED -> MOVING).
    tre
        TRE statistics by what they were measured against (``landmarks``,
        ``ground_truth``).
    landmark_fit
        Summary of the landmark fit (with leave-one-out errors), if any.
    stored
        The transform file written, or None.
    refused
        Why nothing was stored (empty when stored).
    nuclei_file
        The BigWarp CSV of the matched nuclei written beside the edge, or None.
    """

    result: RegistrationResult
    fixed_space: str
    moving_space: str
    tre: dict[str, dict[str, float]] = field(default_factory=dict)
    landmark_fit: dict[str, Any] | None = None
    stored: Path | None = None
    refused: str = ""
    nuclei_file: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values: the report printed with ``--json``."""
        r = self.result
        return {
            "edge": {"from": self.fixed_space, "to": self.moving_space},
            "stored": None if self.stored is None else str(self.stored),
            "refused": self.refused or None,
            "diverged": r.diverged or None,
            "initial": r.initial_source,
            "metric": rounded(
                {"name": r.metric_name, "before": r.metric_before, "after": r.metric_after}
            ),
            "steps": [s.to_dict() for s in r.steps],
            "levels": r.levels(),
            "working_voxel": r.working_voxel,
            "seconds": round(r.seconds, 3),
            "tre": {k: rounded(v) for k, v in self.tre.items()},
            "jacobian": None if r.jacobian is None else rounded(r.jacobian),
            "landmark_fit": self.landmark_fit,
            "trust": None if "trust" not in r.extras else r.extras["trust"].to_dict(),
            "search": r.extras.get("search"),
            "nuclei": r.extras.get("nuclei"),
            "nuclei_landmarks": None if self.nuclei_file is None else str(self.nuclei_file),
        }


def _image(ws: Workspace, name: str, role: str) -> str:
    if name not in ws.images:
        raise WorkspaceError(
            f"{role} {name!r} is not an image of {ws.file}: known images "
            f"{', '.join(sorted(ws.images)) or '(none)'} (add it with `coframe add`)"
        )
    return ws.images[name].space


def output_path(ws: Workspace, fixed_space: str, moving_space: str, deformable: bool) -> Path:
    """Where the FIXED -> MOVING transform file goes (under the workspace's ``transforms/``)."""
    suffix = ".h5" if deformable else ".tfm"
    return ws.inside(f"transforms/{fixed_space}-to-{moving_space}{suffix}", "transform file")


def _check_free(ws: Workspace, path: Path, fixed_space: str, moving_space: str) -> None:
    if path.exists():
        raise OverwriteError(f"{path} already exists: pass --force to replace it")
    for edge in ws.edges:
        if (edge.source, edge.target) == (fixed_space, moving_space):
            raise OverwriteError(
                f"an edge {fixed_space} -> {moving_space} already exists in {ws.file} (file "
                f"{edge.file}): pass --force to replace it"
            )


def _workspace_path(ws: Workspace, fixed_space: str, moving_space: str) -> Transform | None:
    try:
        return ws.graph().transform(fixed_space, moving_space)
    except NoPathError:
        return None


def read_truth(
    ws: Workspace, path: Path, spaces: tuple[str, str], file_unit: str | None = None
) -> Transform | Landmarks:
    """The ground truth of ``--ground-truth``: a FIXED -> MOVING map, or landmark pairs.

    Parameters
    ----------
    ws
        The workspace (its unit is the unit of the result).
    path
        A transform file in any format :mod:`coframe.transforms.formats` reads:
        BigWarp CSV/JSON are landmark pairs (TRE is measured at them); ITK
        files hold the FIXED -> MOVING map; an OME-NGFF file or Zarr group
        whose coordinate systems name the FIXED and MOVING spaces is read
        through them (a MOVING -> FIXED transformation is inverted), otherwise
        its one transformation is taken as FIXED -> MOVING.
    spaces
        The FIXED and MOVING space names.
    file_unit
        Unit of unit-less files (ITK, BigWarp) and of NGFF axes that declare
        none; default the workspace unit.
    """
    fmt = detect_transform_format(path)
    if fmt in ("bigwarp-csv", "bigwarp-json"):
        return lmk.load_landmarks(path, unit=ws.unit, file_unit=file_unit)
    if fmt == "ngff":
        graph = SpaceGraph.from_scene(read_scene(path, unit=ws.unit, file_unit=file_unit))
        if set(spaces) <= set(graph.spaces):
            return graph.transform(*spaces)
        return read_ngff_transform(path, unit=ws.unit, file_unit=file_unit)
    return read_transform(path, unit=ws.unit, file_unit=file_unit, format=fmt)


def _truth_tre(
    ws: Workspace, req: RegisterRequest, result: RegistrationResult, spaces: tuple[str, str]
) -> dict[str, float] | None:
    """TRE against ``--ground-truth`` (None without one)."""
    if req.ground_truth is None:
        return None
    truth = read_truth(ws, Path(req.ground_truth), spaces, req.landmarks_unit)
    if isinstance(truth, Landmarks):
        return lmk.landmark_tre(result.transform, truth, result.working_voxel)
    points = result.fixed.masked_points(TRE_POINTS, seed=result.preset.seed + 17)
    return tre(result.transform, points, truth.apply(points), result.working_voxel)


def _mask(ws: Workspace, path: Path | None, flag: str) -> Any:
    if path is None:
        return None
    try:
        return open_volume(image_location(path), unit=ws.unit)
    except InputNotFoundError as e:
        raise InputNotFoundError(f"{e} ({flag})") from e


def run_register(
    ws: Workspace, req: RegisterRequest, *, progress: bool = False
) -> tuple[Workspace, RegisterOutcome]:
    """Register image ``req.moving`` onto ``req.fixed`` and store the edge if QC allows.

    With ``progress`` a global search shows a progress bar on stderr.

    Returns
    -------
    tuple
        The workspace (with the new edge when stored; not saved) and the
        outcome. When ``outcome.refused`` is set nothing was written.

    Raises
    ------
    CoframeError
        For bad input (one-line messages naming the flag to fix).
    """
    moving_space = _image(ws, req.moving, "MOVING")
    fixed_space = _image(ws, req.fixed, "FIXED")
    if moving_space == fixed_space:
        raise WorkspaceError(
            f"MOVING {req.moving!r} and FIXED {req.fixed!r} are both in space {fixed_space!r}: "
            "register images of different spaces"
        )
    overrides = parse_overrides(req.overrides)
    if req.steps:
        overrides["steps"] = list(req.steps)
    if req.multi_start:
        overrides["multi_start.enabled"] = True
    if req.init is not None:
        overrides["init"] = req.init
    if req.init_edge:
        overrides["init"] = "edge"
    for key, value in (
        ("search.near", req.near),
        ("search.box", req.search_box),
        ("search.axis", req.axis),
        ("search.max_tilt", req.max_tilt),
    ):
        if value is not None:
            overrides[key] = list(value) if isinstance(value, tuple) else value
    preset = load_preset(req.preset).with_overrides(overrides)
    labelled = req.moving_labels is not None or req.fixed_labels is not None
    if labelled and "nuclei" not in preset.steps:  # labels given: the nuclei give the start
        at = int(preset.steps[0] == "search")
        steps = [*preset.steps[:at], "nuclei", *preset.steps[at:]]
        preset = preset.with_overrides({"steps": [s for s in steps if s != "moments"]})
    path = output_path(ws, fixed_space, moving_space, "bspline" in preset.steps)
    nuclei_path = pairs_path(ws, fixed_space, moving_space)
    if not req.force:
        _check_free(ws, path, fixed_space, moving_space)
        if "nuclei" in preset.steps and nuclei_path.exists():
            raise OverwriteError(f"{nuclei_path} already exists: pass --force to replace it")

    moving = ws.open_image(req.moving)
    fixed = ws.open_image(req.fixed)
    check_pair(moving, fixed)  # before any edge lookup: a 2D section fails here, clearly
    fixed_mask = _mask(ws, req.fixed_mask, "--fixed-mask")
    moving_mask = _mask(ws, req.moving_mask, "--moving-mask")
    moving_labels = open_labels(ws, req.moving_labels, moving_space, "--moving-labels")
    fixed_labels = open_labels(ws, req.fixed_labels, fixed_space, "--fixed-labels")
    given, source, fit_summary, landmark_fit = None, "edge", None, None
    if req.landmarks is not None:
        lms = lmk.load_landmarks(req.landmarks, unit=ws.unit, file_unit=req.landmarks_unit)
        landmark_fit = lmk.fit(lms, preset.landmark_model, str(req.landmarks))
        given, source = landmark_fit.transform, "landmarks"
    elif preset.init in ("auto", "edge"):
        given = _workspace_path(ws, fixed_space, moving_space)
    eval_lms: Landmarks | None = None
    if req.eval_landmarks is not None:
        eval_lms = lmk.load_landmarks(
            req.eval_landmarks, unit=ws.unit, file_unit=req.landmarks_unit
        )
        lmk.check_count(eval_lms, "rigid", str(req.eval_landmarks), "--eval-landmarks")

    with count_progress("search: orientations", enabled=progress) as update:
        result = register(
            moving,
            fixed,
            preset,
            initial=given,
            initial_source=source,
            fixed_mask=fixed_mask,
            moving_mask=moving_mask,
            level_moving=req.level_moving,
            level_fixed=req.level_fixed,
            names=(req.moving, req.fixed),
            progress=update,
            moving_labels=moving_labels,
            fixed_labels=fixed_labels,
        )
    if landmark_fit is not None:
        fit_summary = landmark_fit.summary(result.working_voxel)
    tres: dict[str, dict[str, float]] = {}
    if eval_lms is not None:
        tres["landmarks"] = lmk.landmark_tre(result.transform, eval_lms, result.working_voxel)
    truth = _truth_tre(ws, req, result, (fixed_space, moving_space))
    if truth is not None:
        tres["ground_truth"] = truth
    ok, reason = verdict(
        result.metric_before,
        result.metric_after,
        result.diverged,
        force=req.force or not preset.refuse_worse,
    )
    outcome = RegisterOutcome(result, fixed_space, moving_space, tres, fit_summary)
    trust = result.extras.get("trust")
    if trust is not None and not trust.trusted and not req.force and not result.diverged:
        ok, reason = False, trust.reason  # the gate's numbers say more than "got worse"
    if not ok:
        return ws, RegisterOutcome(
            result, fixed_space, moving_space, tres, fit_summary, None, reason
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    written = write_transform(result.transform, path, unit=ws.unit, format="itk", force=req.force)
    nuclei = result.extras.get("nuclei_result")
    pairs = None
    if nuclei is not None:
        pairs = write_pairs(ws, nuclei, result.transform, nuclei_path, req.force)
        outcome = dataclasses.replace(outcome, nuclei_file=pairs)
    provenance = _provenance(ws, req, outcome, preset_inputs(req, ws))
    ws = ws.add_edge(
        fixed_space,
        moving_space,
        written,
        "itk",
        None,
        provenance,
        force=req.force,
        kind=summarize_transform(result.transform),
    )
    return ws, RegisterOutcome(
        result, fixed_space, moving_space, tres, fit_summary, Path(written), "", pairs
    )


def preset_inputs(req: RegisterRequest, ws: Workspace) -> dict[str, str]:
    """Input identities recorded in the provenance (image paths and extra files)."""
    out = {
        "moving": f"{req.moving}: {ws.images[req.moving].path}",
        "fixed": f"{req.fixed}: {ws.images[req.fixed].path}",
    }
    for key, value in (
        ("landmarks", req.landmarks),
        ("eval_landmarks", req.eval_landmarks),
        ("fixed_mask", req.fixed_mask),
        ("moving_mask", req.moving_mask),
        ("ground_truth", req.ground_truth),
    ):
        if value is not None:
            out[key] = str(value)
    return out


def _provenance(
    ws: Workspace, req: RegisterRequest, outcome: RegisterOutcome, inputs: dict[str, str]
) -> dict[str, Any]:
    r = outcome.result
    report = outcome.to_dict()
    prov = make_provenance(
        req.command,
        inputs=inputs,
        parameters={"preset": r.preset.name, **r.preset.to_dict()},
        metric={"name": r.metric_name, "before": r.metric_before, "after": r.metric_after},
    )
    prov["method"] = f"coframe register ({', '.join(r.preset.steps)})"
    prov["initial"] = _initial_record(r.initial, r.initial_source)
    prov["levels"] = report["levels"]
    prov["steps"] = report["steps"]
    prov["seconds"] = report["seconds"]
    if outcome.tre:
        prov["tre"] = {k: rounded(v) for k, v in outcome.tre.items()}
    if r.jacobian:
        prov["jacobian"] = rounded(r.jacobian)
    for key in ("trust", "search", "nuclei", "nuclei_landmarks"):
        if report.get(key) is not None:
            prov[key] = report[key]
    if outcome.landmark_fit is not None:
        prov["landmark_fit"] = {
            k: v for k, v in outcome.landmark_fit.items() if k != "loo_per_point"
        }
    return _finite_only(prov)


def _initial_record(t: Transform, source: str) -> dict[str, Any]:
    affine = t.as_affine()
    out: dict[str, Any] = {"source": source}
    if affine is not None:
        out["matrix"] = affine.homogeneous.tolist()
    return out


def _finite_only(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_only(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def refuse(outcome: RegisterOutcome) -> None:
    """Raise the refusal of an outcome as a one-line error.

    Raises
    ------
    RegistrationError
        If nothing was stored.
    """
    if outcome.refused:
        raise RegistrationError(outcome.refused)


def format_report(outcome: RegisterOutcome) -> str:
    """A short text report: levels, steps with metric and time, TRE, Jacobian, storage."""
    r = outcome.result
    lines = [
        f"register {r.moving.name} onto {r.fixed.name}: edge {outcome.fixed_space} -> "
        f"{outcome.moving_space}, start from {r.initial_source}"
    ]
    for role, w in (("fixed", r.fixed), ("moving", r.moving)):
        vs = ", ".join(f"{v:.4g}" for v in w.voxel_size)
        lines.append(
            f"  {role:6} {w.name}: level {w.level_path or w.level} (voxel {vs}), "
            f"region {'x'.join(str(n) for n in w.shape)}"
        )
    lines.append(
        f"  metric {r.metric_name} (lower is better): {r.metric_before:.5g} -> "
        f"{r.metric_after:.5g} in {r.seconds:.2f} s"
    )
    for s in r.steps:
        flag = "" if s.accepted else f"  [{s.note}]"
        extra = f", {s.note}" if s.accepted and s.note else ""
        lines.append(
            f"    {s.name:11} {s.metric_before:10.5g} -> {s.metric_after:10.5g}  "
            f"{s.seconds:6.2f} s  {s.iterations:4d} it{extra}{flag}"
        )
    for what, t in outcome.tre.items():
        lines.append(
            f"  TRE vs {what} ({int(t['n'])} points): mean {t['mean']:.4g} "
            f"({t['mean_vox']:.3f} vox), p95 {t['p95']:.4g} ({t['p95_vox']:.3f} vox), "
            f"max {t['max']:.4g} ({t['max_vox']:.3f} vox)"
        )
    if outcome.landmark_fit is not None:
        f = outcome.landmark_fit
        lines.append(
            f"  landmarks ({f['model']}, {f['pairs']} pairs): leave-one-out mean "
            f"{f['loo_mean']:.4g}, max {f['loo_max']:.4g}"
        )
    if r.jacobian:
        j = r.jacobian
        lines.append(
            f"  Jacobian determinant: min {j['min']:.3f}, mean {j['mean']:.3f}, "
            f"max {j['max']:.3f}, folding {j['folding_fraction']:.3%}"
        )
    if r.diverged:
        lines.append(f"  DIVERGED: {r.diverged}")
    trust = r.extras.get("trust")
    if trust is not None:
        runner = "" if trust.runner_up is None else f", runner-up {trust.runner_up:.4f}"
        verdict_text = "trusted" if trust.trusted else "NOT trusted"
        lines.append(
            f"  trust: {verdict_text} (mutual information {trust.mutual_information:.4f}, "
            f"no-alignment baseline {trust.baseline:.4f}{runner}, overlap {trust.overlap:.0%})"
        )
    if r.extras.get("nuclei") is not None:
        lines.extend(format_nuclei(r.extras["nuclei"], outcome.nuclei_file))
    if outcome.stored is not None:
        lines.append(f"  stored {outcome.stored}")
    return "\n".join(lines)
