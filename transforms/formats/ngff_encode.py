"""Writing coframe transforms as OME-NGFF (RFC-5) ``coordinateTransformations``.

The inverse of :mod:`coframe.transforms.formats.ngff_decode`: a transform in coframe's
axis order and workspace unit is re-expressed in the order and units of its
input and output coordinate systems and written as JSON. Displacement fields
become Zarr arrays (vector axis last) with their own coordinate system (the
input axes plus one ``displacement`` axis) and their grid as a scale and
translation; they are listed as :class:`~coframe.transforms.formats.ngff_io.ArrayToWrite`
for the container writer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coframe.core.errors import TransformError
from coframe.transforms.affine import Affine, Identity, Rotation, Scale, Translation
from coframe.transforms.base import Chain, NumericalInverse, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.field import DisplacementField
from coframe.transforms.formats.ngff_axes import Axis, CoordinateSystem, Frame
from coframe.transforms.formats.ngff_bydimension import ByDimension
from coframe.transforms.formats.ngff_decode import pick_frame
from coframe.transforms.formats.ngff_frames import change_frames
from coframe.transforms.formats.ngff_io import NGFF_VERSION, ArrayToWrite

#: Group that holds the parameter arrays of written transformations.
ARRAY_GROUP = "coordinateTransformations"


def _numbers(values: np.ndarray) -> list[Any]:
    return np.asarray(values, dtype=np.float64).tolist()


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return name or "field"


@dataclass
class Encoder:
    """Encode coframe transforms for one NGFF container.

    Parameters
    ----------
    arrays
        Parameter arrays collected while encoding.
    """

    arrays: list[ArrayToWrite] = field(default_factory=list)

    def _array_path(self, stem: str) -> str:
        taken = {a.path for a in self.arrays}
        base = f"{ARRAY_GROUP}/{_safe_name(stem)}"
        path, k = base, 1
        while path in taken:
            path, k = f"{base}-{k}", k + 1
        return path

    def encode(self, t: Transform, fin: Frame, fout: Frame, *, stem: str) -> dict[str, Any]:
        """The NGFF JSON object of ``t`` between two frames (no ``input``/``output`` keys).

        Parameters
        ----------
        t
            The transform, coframe order and workspace unit.
        fin
            Frame of its input coordinate system.
        fout
            Frame of its output coordinate system.
        stem
            Base name for parameter arrays.

        Raises
        ------
        TransformError
            If the transform has no NGFF representation.
        """
        if isinstance(t, Chain):
            steps = []
            before = fin
            for k, step in enumerate(t.transforms):
                last = k == len(t.transforms) - 1
                after = fout if last else pick_frame(step.output_dim, fout, before)
                steps.append(self.encode(step, before, after, stem=f"{stem}-{k}"))
                before = after
            return {"type": "sequence", "transformations": steps}
        if isinstance(t, Bijection):
            return {
                "type": "bijection",
                "forward": self.encode(t.forward, fin, fout, stem=f"{stem}-forward"),
                "inverse": self.encode(t.inverse_transform, fout, fin, stem=f"{stem}-inverse"),
            }
        if isinstance(t, NumericalInverse):  # InverseDisplacementField included
            return {
                "type": "inverseOf",
                "transformation": self.encode(t.forward, fout, fin, stem=stem),
            }
        if isinstance(t, (ByDimension, DisplacementField)) or t.as_affine() is not None:
            raw = change_frames(t, fin.to_coframe, fout.to_coframe.inverse())
            return self._raw(raw, fin, stem)
        raise TransformError(
            f"a {type(t).__name__} cannot be stored in OME-NGFF: sample it into a displacement "
            "field first (coframe.transforms.field.sample_to_field)"
        )

    def _raw(self, t: Transform, fin: Frame, stem: str) -> dict[str, Any]:
        """JSON of a transform already expressed in NGFF coordinates."""
        if isinstance(t, Chain):
            anonymous = [Frame.anonymous(s.input_dim) for s in t.transforms]
            anonymous.append(Frame.anonymous(t.output_dim))
            return {
                "type": "sequence",
                "transformations": [
                    self._raw(s, anonymous[k] if k else fin, f"{stem}-{k}")
                    for k, s in enumerate(t.transforms)
                ],
            }
        if isinstance(t, Identity):
            return {"type": "identity"}
        if isinstance(t, Translation):
            return {"type": "translation", "translation": _numbers(t.offset)}
        if isinstance(t, Scale):
            return {"type": "scale", "scale": _numbers(t.factors)}
        if isinstance(t, Rotation):
            return {"type": "rotation", "rotation": _numbers(t.matrix)}
        if isinstance(t, DisplacementField):
            return self._field(t, fin, stem)
        if isinstance(t, ByDimension):
            return {
                "type": "byDimension",
                "transformations": [
                    {
                        "input_axes": list(i),
                        "output_axes": list(o),
                        "transformation": self._raw(p, Frame.anonymous(p.input_dim), f"{stem}-{k}"),
                    }
                    for k, (p, i, o) in enumerate(
                        zip(t.parts, t.input_axes, t.output_axes, strict=True)
                    )
                ],
            }
        affine = t.as_affine()
        if affine is None:
            raise TransformError(
                f"a {type(t).__name__} cannot be stored in OME-NGFF: sample it into a "
                "displacement field first (coframe.transforms.field.sample_to_field)"
            )
        return {"type": "affine", "affine": _numbers(Affine(affine.matrix).matrix)}

    def _field(self, t: DisplacementField, fin: Frame, stem: str) -> dict[str, Any]:
        path = self._array_path(stem)
        name = path.rsplit("/", 1)[-1]
        names = set(fin.system.axis_names)
        vector = next(n for n in ("d", "displacement", "vector", "v_") if n not in names)
        axes = (*fin.system.axes, Axis(vector, "displacement", discrete=True))
        system = CoordinateSystem(name, axes)
        d = t.input_dim
        grid = {
            "type": "sequence",
            "input": path,
            "output": name,
            "transformations": [
                {"type": "scale", "scale": [*_numbers(t.spacing), 1.0]},
                {"type": "translation", "translation": [*_numbers(t.origin), 0.0]},
            ],
        }
        attributes = {
            "version": NGFF_VERSION,
            "coordinateSystems": [system.to_json()],
            "coordinateTransformations": [grid],
        }
        if len(t.vectors.shape) != d + 1:
            raise TransformError(f"displacement field {stem!r} has a malformed vector array")
        self.arrays.append(ArrayToWrite(path, t.vectors, attributes))
        return {"type": "displacements", "path": path, "interpolation": t.interpolation}
