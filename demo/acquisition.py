"""The demo's FIB-SEM acquisition: the tissue rendered as ``uint8`` EM, block by block.

Slice-wise gain and offset drift, noise and the irregular zero padding at the
block edges; :class:`FibsemAcquisition` is picklable so that worker processes
can render blocks of a large level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coframe.demo.outputs import DemoSize
from coframe.demo.render import em_from_stain, render_stain
from coframe.demo.tissue import Tissue


@dataclass(frozen=True)
class FibsemAcquisition:
    """What a FIB-SEM render needs (picklable, for worker processes)."""

    seed: int
    size: DemoSize
    tissue: Tissue
    block_lo: np.ndarray
    block_hi: np.ndarray

    @property
    def length(self) -> float:
        return float(self.block_hi[0] - self.block_lo[0])

    def valid(self, lo: np.ndarray, voxel: float, shape: tuple[int, ...]) -> np.ndarray:
        """Where the FIB-SEM holds data: False in the irregular zero padding at the block edges."""
        length, phase = self.length, (self.seed % 97) / 97 * 2 * np.pi
        rel = [(np.arange(n) + 0.5) * voxel + lo[k] - self.block_lo[k] for k, n in enumerate(shape)]

        def margin(k: int) -> np.ndarray:  # trimmed a little differently on every slice
            wave = np.sin(2 * np.pi * rel[0] / (0.7 * length) + phase * (k + 1))
            wave += np.sin(2 * np.pi * rel[0] / (0.23 * length) + 1.7 * k)
            return length * (0.0525 + 0.00875 * wave)[:, None]

        ok_y = (rel[1][None] >= margin(0)) & (length - rel[1][None] >= margin(1))
        ok_x = (rel[2][None] >= margin(2)) & (length - rel[2][None] >= margin(3))
        ok_z = (rel[0] >= 0.02 * length) & (rel[0] <= 0.985 * length)
        return ok_z[:, None, None] & ok_y[:, :, None] & ok_x[:, None, :]

    def em(self, stain: np.ndarray, lo: np.ndarray, voxel: float) -> np.ndarray:
        """FIB-SEM uint8 from stain: slice-wise gain/offset drift, noise, zero padding."""
        length, phase = self.length, (self.seed % 89) / 89 * 2 * np.pi
        z = lo[0] + (np.arange(stain.shape[0]) + 0.5) * voxel
        zi = np.floor((z - self.block_lo[0]) / voxel).astype(np.int64)
        n_slices = math.ceil(length / voxel) + 1
        jitter = np.random.default_rng([self.seed, 31, int(voxel)]).uniform(-1, 1, (2, n_slices))[
            :, zi
        ]
        avg = math.sqrt(
            self.size.em_voxel / voxel
        )  # per-slice jitter averages down at coarse levels
        gain = (
            1
            + 0.06 * np.sin(2 * np.pi * z / (0.6 * length) + phase)
            + 0.03 * np.sin(2 * np.pi * z / (0.13 * length))
        )
        gain += 0.02 * avg * jitter[0]
        offset = 6 * np.sin(2 * np.pi * z / (0.4 * length) + 2 * phase) + 2.0 * avg * jitter[1]
        em = em_from_stain(stain) * gain[:, None, None].astype(np.float32) + offset[
            :, None, None
        ].astype(np.float32)
        sigma = self.size.em_noise * (self.size.em_voxel / voxel) ** 1.5
        where = [int(round(x)) + (1 << 30) for x in (lo - self.block_lo) / voxel]
        em += (
            np.random.default_rng([self.seed, int(voxel), *where])
            .normal(0.0, sigma, em.shape)
            .astype(np.float32)
        )
        out = np.clip(np.rint(em), 1, 255).astype(np.uint8)
        out[~self.valid(lo, voxel, stain.shape)] = 0
        return out

    def block(
        self, a: tuple[int, ...], b: tuple[int, ...], voxel: float
    ) -> tuple[tuple[int, ...], np.ndarray]:
        """Index box [a, b) of a level of ``voxel`` nm, rendered and acquired."""
        lo, hi = self.block_lo + np.asarray(a) * voxel, self.block_lo + np.asarray(b) * voxel
        return a, self.em(render_stain(self.tissue, lo, hi, voxel), lo, voxel)


_WORKER: dict[str, FibsemAcquisition] = {}


def worker_init(acq: FibsemAcquisition) -> None:
    _WORKER["acq"] = acq


def worker_block(
    job: tuple[tuple[int, ...], tuple[int, ...], float],
) -> tuple[tuple[int, ...], np.ndarray]:
    return _WORKER["acq"].block(*job)


def index_blocks(
    box: tuple[tuple[int, int], ...], step: tuple[int, ...]
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Index blocks [a, b) of at most ``step`` covering ``box`` ((start, stop) per axis)."""
    ranges = [range(lo, hi, s) for (lo, hi), s in zip(box, step, strict=True)]
    return [
        (a, tuple(min(x + s, hi) for x, s, (_, hi) in zip(a, step, box, strict=True)))
        for a in (
            tuple(int(v) for v in c)
            for c in np.array(np.meshgrid(*ranges, indexing="ij")).reshape(len(box), -1).T
        )
    ]
