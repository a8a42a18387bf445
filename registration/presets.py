"""Registration presets: named YAML files of steps and optimiser settings, with overrides.

A preset is a YAML mapping whose sections mirror :class:`Preset`::

    description: X-ray microCT (moving) onto FIB-SEM (fixed)
    steps: [moments, rigid, similarity, affine]
    metric: {name: mattes, bins: 32}
    sampling: {strategy: random, points: 3000}
    pyramid: {shrink_factors: [4, 2, 1], smoothing_sigmas: [2.0, 1.0, 0.0]}
    optimizer: {iterations: 200, learning_rate: 1.0, min_step: 0.001, relaxation: 0.6}

Missing keys take the defaults of the dataclasses below. Shipped presets live
in ``configs/`` and are chosen by name (``--preset xray-to-fibsem``); any other
YAML file is chosen by path. ``--set key=value`` overrides one key, dotted for
nested ones (``--set sampling.points=5000``, ``--set steps=[rigid,affine]``);
the value is read as YAML.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coframe.configs import CONFIG_DIR, preset_path
from coframe.core.errors import InputNotFoundError, ParseError
from coframe.registration.preset_sections import (
    BSplineConfig,
    DriftConfig,
    MaskConfig,
    MetricConfig,
    MultiStartConfig,
    NucleiConfig,
    OptimizerConfig,
    PyramidConfig,
    SamplingConfig,
    SearchConfig,
    WorkingConfig,
)
from coframe.volumes.volume import MODALITIES

#: Step names, in the order a chain may use them.
STEP_NAMES: tuple[str, ...] = (
    "search",
    "nuclei",
    "moments",
    "rigid",
    "similarity",
    "affine",
    "bspline",
)
#: Steps that estimate a linear map.
LINEAR_STEPS: tuple[str, ...] = ("rigid", "similarity", "affine")
#: Image similarity metrics.
METRICS: tuple[str, ...] = ("mattes", "correlation", "meansquares")
#: How the first transform is found.
INITS: tuple[str, ...] = ("auto", "identity", "geometry", "moments", "edge", "landmarks")
#: Preset used when none is named.
DEFAULT_PRESET = "xray-to-fibsem"


@dataclass(frozen=True)
class Preset:
    """A complete registration recipe.

    Parameters
    ----------
    name
        Preset name (file stem or ``user``).
    description
        One line saying what the preset is for.
    steps
        Chained steps from :data:`STEP_NAMES`, each starting from the last.
    init
        First transform: ``auto`` (an existing workspace path, else landmarks
        when given, else ``auto_start``), ``identity``, ``geometry`` (image
        centres aligned), ``moments`` (identity, then a moments step),
        ``edge`` or ``landmarks``.
    auto_start
        ``identity`` or ``geometry``: what ``init: auto`` falls back to.
    landmark_model
        Model fitted to ``--landmarks`` (``rigid``, ``similarity``,
        ``affine``, ``tps``).
    threads
        Worker threads of SimpleITK.
    seed
        Seed of every random sample.
    refuse_worse
        Refuse to store a result whose metric is worse than before.
    """

    name: str = "user"
    description: str = ""
    steps: tuple[str, ...] = ("moments", "rigid", "similarity", "affine")
    init: str = "auto"
    auto_start: str = "geometry"
    landmark_model: str = "affine"
    metric: MetricConfig = field(default_factory=MetricConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    pyramid: PyramidConfig = field(default_factory=PyramidConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    working: WorkingConfig = field(default_factory=WorkingConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    multi_start: MultiStartConfig = field(default_factory=MultiStartConfig)
    bspline: BSplineConfig = field(default_factory=BSplineConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    nuclei: NucleiConfig = field(default_factory=NucleiConfig)
    threads: int = 2
    seed: int = 1
    refuse_worse: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The preset as plain YAML-ready values."""
        return _plain(dataclasses.asdict(self))

    def with_overrides(self, overrides: Mapping[str, Any]) -> Preset:
        """The preset with dotted keys replaced (``{"sampling.points": 5000}``).

        Raises
        ------
        ParseError
            If a key is unknown or a value has the wrong type.
        """
        doc = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(doc, key, value)
        return preset_from_dict(doc, name=self.name, source="--set")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _set_dotted(doc: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = doc
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            raise ParseError(
                f"unknown preset key {'.'.join(parts[: i + 1])!r} in --set {key}=...: expected "
                f"one of {', '.join(sorted(node))}"
            )
        node = node[part]
    if parts[-1] not in node:
        raise ParseError(
            f"unknown preset key {key!r} in --set: expected one of "
            f"{', '.join(sorted(node)) if isinstance(node, dict) else 'none'}"
        )
    node[parts[-1]] = value


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; each value is read as YAML.

    Raises
    ------
    ParseError
        If an item has no ``=`` or its value is not valid YAML.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ParseError(f"--set {item!r}: expected key=value, e.g. sampling.points=5000")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise ParseError(f"--set {item!r}: the value is not valid YAML ({e})") from e
    return out


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check and convert one value against a field annotation."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin is tuple:
        inner = typing.get_args(annotation)[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and inner is not str:
            value = [value]
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            if isinstance(value, str) and inner is str:
                value = [v.strip() for v in value.split(",") if v.strip()]
            else:
                raise ParseError(f"{key} in {source} is {value!r}: expected a list")
        return tuple(_coerce(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ParseError(f"{key} in {source} is {value!r}: expected true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParseError(f"{key} in {source} is {value!r}: expected an integer")
        return value
    if annotation is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParseError(f"{key} in {source} is {value!r}: expected a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ParseError(f"{key} in {source} is {value!r}: expected text")
        return value
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ParseError(f"{key} in {source} is {value!r}: expected a mapping")
        return _build(annotation, value, key, source)
    if isinstance(annotation, types.UnionType):  # pragma: no cover - no such fields yet
        return value
    raise ParseError(f"{key} in {source}: unsupported field type {annotation!r}")


def _build(cls: type, doc: Mapping[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in doc if k not in names]
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ParseError(
            f"unknown preset key {where!r} in {source}: expected one of {', '.join(names)}"
        )
    values = {
        k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k, source) for k, v in doc.items()
    }
    return cls(**values)


def _validate(preset: Preset, source: str) -> Preset:
    for step in preset.steps:
        if step not in STEP_NAMES:
            raise ParseError(
                f"unknown step {step!r} in steps of {source}: expected some of "
                f"{', '.join(STEP_NAMES)} (--steps)"
            )
    if not preset.steps:
        raise ParseError(
            f"steps of {source} is empty: name at least one of {', '.join(STEP_NAMES)}"
        )
    if "search" in preset.steps[1:]:
        raise ParseError(f"steps {list(preset.steps)} in {source}: search must come first")
    if "nuclei" in preset.steps and preset.steps.index("nuclei") > ("search" in preset.steps):
        raise ParseError(
            f"steps {list(preset.steps)} in {source}: nuclei gives the start, it comes first "
            "(after search, if both run)"
        )
    if preset.steps.count("bspline") > 1 or (
        "bspline" in preset.steps and preset.steps[-1] != "bspline"
    ):
        raise ParseError(f"steps {list(preset.steps)} in {source}: bspline must come last, once")
    checks: list[tuple[bool, str]] = [
        (
            preset.metric.name in METRICS,
            f"metric.name {preset.metric.name!r}: expected one of {', '.join(METRICS)}",
        ),
        (preset.init in INITS, f"init {preset.init!r}: expected one of {', '.join(INITS)}"),
        (
            preset.auto_start in ("identity", "geometry"),
            f"auto_start {preset.auto_start!r}: expected identity or geometry",
        ),
        (
            preset.landmark_model in ("rigid", "similarity", "affine", "tps"),
            f"landmark_model {preset.landmark_model!r}: expected rigid, similarity, affine or tps",
        ),
        (
            preset.sampling.strategy in ("random", "regular"),
            f"sampling.strategy {preset.sampling.strategy!r}: expected random or regular",
        ),
        (
            bool(preset.sampling.points) and min(preset.sampling.points) >= 100,
            f"sampling.points {list(preset.sampling.points)}: expected numbers >= 100",
        ),
        (preset.bspline.points >= 100, f"bspline.points {preset.bspline.points}: expected >= 100"),
        (
            len(preset.pyramid.shrink_factors) == len(preset.pyramid.smoothing_sigmas)
            and len(preset.pyramid.shrink_factors) > 0,
            f"pyramid.shrink_factors {list(preset.pyramid.shrink_factors)} and smoothing_sigmas "
            f"{list(preset.pyramid.smoothing_sigmas)}: expected lists of the same, non-zero length",
        ),
        (
            len(preset.bspline.shrink_factors) == len(preset.bspline.smoothing_sigmas)
            and len(preset.bspline.shrink_factors) > 0,
            f"bspline.shrink_factors {list(preset.bspline.shrink_factors)} and smoothing_sigmas "
            f"{list(preset.bspline.smoothing_sigmas)}: expected lists of the same, non-zero length",
        ),
        (
            all(f >= 1 for f in preset.pyramid.shrink_factors + preset.bspline.shrink_factors),
            "shrink factors must be >= 1",
        ),
        (preset.optimizer.iterations >= 1, "optimizer.iterations must be >= 1"),
        (
            preset.optimizer.learning_rate > 0 and preset.optimizer.min_step > 0,
            "optimizer.learning_rate and optimizer.min_step must be positive",
        ),
        (0 < preset.optimizer.relaxation < 1, "optimizer.relaxation must be in (0, 1)"),
        (preset.bspline.grid_spacing >= 2, "bspline.grid_spacing must be >= 2 working voxels"),
        (
            preset.bspline.iterations >= 1,
            "bspline.iterations must be >= 1",
        ),
        (preset.bspline.learning_rate > 0, "bspline.learning_rate must be positive"),
        (preset.bspline.update_smoothing >= 0, "bspline.update_smoothing must be >= 0"),
        (preset.working.margin >= 0, f"working.margin {preset.working.margin}: expected >= 0"),
        (preset.working.max_voxels >= 1000, "working.max_voxels must be >= 1000"),
        (preset.mask.erode >= 0, f"mask.erode {preset.mask.erode}: expected >= 0"),
        (preset.threads >= 1, f"threads {preset.threads}: expected >= 1"),
        (2 <= preset.metric.bins <= 512, f"metric.bins {preset.metric.bins}: expected 2..512"),
        (
            preset.drift.image in ("none", "fixed", "moving", *MODALITIES),
            f"drift.image {preset.drift.image!r}: expected none, fixed, moving or a modality "
            f"({', '.join(MODALITIES)})",
        ),
        (
            preset.drift.axis in ("z", "y", "x"),
            f"drift.axis {preset.drift.axis!r}: expected z, y or x",
        ),
        (2 <= preset.drift.bins <= 512, f"drift.bins {preset.drift.bins}: expected 2..512"),
        *_search_checks(preset.search),
        *_nuclei_checks(preset.nuclei),
    ]
    for ok, message in checks:
        if not ok:
            raise ParseError(f"{message} (in {source}; fix it or override with --set)")
    vs = preset.working.voxel_size
    if not (vs == "auto" or (isinstance(vs, (int, float)) and not isinstance(vs, bool) and vs > 0)):
        raise ParseError(
            f"working.voxel_size {vs!r} in {source}: expected auto or a positive number in the "
            "workspace unit (--set working.voxel_size=...)"
        )
    return preset


def _nuclei_checks(cfg: NucleiConfig) -> list[tuple[bool, str]]:
    d = cfg.diameter
    return [
        (
            len(d) == 2 and 0 < d[0] <= d[1],
            f"nuclei.diameter {list(d)}: expected the smallest and largest diameter in "
            "micrometres, 0 < min <= max",
        ),
        (
            cfg.polarity in ("auto", "bright", "dark", "both"),
            f"nuclei.polarity {cfg.polarity!r}: expected auto, bright, dark or both",
        ),
        (
            cfg.model in ("similarity", "affine"),
            f"nuclei.model {cfg.model!r}: expected similarity or affine",
        ),
        (cfg.tolerance > 0, f"nuclei.tolerance {cfg.tolerance}: expected > 0 micrometres"),
        (cfg.min_inliers >= 4, f"nuclei.min_inliers {cfg.min_inliers}: expected >= 4"),
        (
            0 < cfg.runner_up_ratio <= 1,
            f"nuclei.runner_up_ratio {cfg.runner_up_ratio}: expected 0..1",
        ),
        (cfg.max_points >= 10, f"nuclei.max_points {cfg.max_points}: expected >= 10"),
    ]


def _search_checks(cfg: SearchConfig) -> list[tuple[bool, str]]:
    return [
        (0 < cfg.auto_ratio <= 1, f"search.auto_ratio {cfg.auto_ratio}: expected 0..1"),
        (1 <= cfg.angle_step <= 90, f"search.angle_step {cfg.angle_step}: expected 1..90 degrees"),
        (
            len(cfg.axis) in (0, 3) and (not cfg.axis or any(v != 0 for v in cfg.axis)),
            f"search.axis {list(cfg.axis)}: expected three numbers z,y,x, not all 0 (--axis)",
        ),
        (0 <= cfg.max_tilt <= 180, f"search.max_tilt {cfg.max_tilt}: expected 0..180 (--max-tilt)"),
        (
            0 <= cfg.scale_range < 0.5,
            f"search.scale_range {cfg.scale_range}: expected 0 (no scale) to 0.5",
        ),
        (6 <= cfg.voxels <= 64, f"search.voxels {cfg.voxels}: expected 6..64"),
        (1 <= cfg.keep <= 10, f"search.keep {cfg.keep}: expected 1..10"),
        (cfg.score in ("mi", "edges"), f"search.score {cfg.score!r}: expected mi or edges"),
        (2 <= cfg.bins <= 16, f"search.bins {cfg.bins}: expected 2..16"),
        (len(cfg.near) in (0, 3), f"search.near {list(cfg.near)}: expected z,y,x (--near)"),
        (cfg.near_radius >= 0, f"search.near_radius {cfg.near_radius}: expected >= 0"),
        (
            len(cfg.box) in (0, 6),
            f"search.box {list(cfg.box)}: expected z0,y0,x0,z1,y1,x1 (--search-box)",
        ),
    ]


def preset_from_dict(
    doc: Mapping[str, Any], *, name: str = "user", source: str = "preset"
) -> Preset:
    """Build and validate a preset from a YAML mapping.

    Raises
    ------
    ParseError
        If a key is unknown, a value has the wrong type or a setting is out of range.
    """
    if not isinstance(doc, Mapping):
        raise ParseError(f"{source} holds {type(doc).__name__}: expected a YAML mapping")
    body = {k: v for k, v in doc.items() if k != "name"}
    preset = _build(Preset, body, "", source)
    return _validate(dataclasses.replace(preset, name=str(doc.get("name", name))), source)


def shipped_presets() -> list[str]:
    """Names of the presets shipped in ``configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("example"))


def load_preset(name_or_path: str | Path | None = None) -> Preset:
    """Load a shipped preset by name, or a user preset by path.

    Parameters
    ----------
    name_or_path
        A shipped preset name (``xray-to-fibsem``), a YAML path, or None for
        :data:`DEFAULT_PRESET`.

    Raises
    ------
    InputNotFoundError
        If no shipped preset has that name and no file has that path.
    ParseError
        If the file is not valid YAML.
    ParseError
        If the preset is invalid.
    """
    text = DEFAULT_PRESET if name_or_path is None else str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.suffix.lower() in (".yaml", ".yml") and candidate.is_file():
        path, name = candidate, "user"
    else:
        path, name = preset_path(text), Path(text).stem
        if not path.is_file():
            raise InputNotFoundError(
                f"preset {text!r} is neither a shipped preset ({', '.join(shipped_presets())}) nor "
                "a YAML file: check --preset"
            )
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ParseError(f"preset {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if doc is None:
        doc = {}
    return preset_from_dict(doc, name=name, source=str(path))
