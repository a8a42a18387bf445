"""Turning two sampled channels into pictures: contrast, colour modes, scale bars, grids.

Channel A is shown in magenta and channel B in green, so where both agree the
composite is grey to white. Every mode takes channels already normalised to
[0, 1] (see :func:`normalize`) and returns an RGB ``uint8`` image.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageDraw, ImageFont

from coframe.core.atomic import atomic_output
from coframe.core.errors import DimensionError, MetadataError
from coframe.core.units import canonical_unit, unit_factor

#: Default robust contrast percentiles (low, high).
PERCENTILES = (0.5, 99.5)
#: Panel background (outside both images).
BACKGROUND = (24, 24, 24)


def robust_limits(
    values: np.ndarray | Sequence[np.ndarray],
    valid: np.ndarray | Sequence[np.ndarray] | None = None,
    percentiles: tuple[float, float] = PERCENTILES,
) -> tuple[float, float]:
    """Contrast limits from percentiles of the non-zero, valid values.

    Zero is the fill value of padding and of pixels outside an image, so it
    is ignored; if nothing else remains the limits fall back to the full
    range (or ``(0, 1)``).

    Parameters
    ----------
    values
        One array or several (e.g. the same channel on several views).
    valid
        Matching boolean masks of pixels inside the image, or ``None``.
    percentiles
        Low and high percentiles.
    """
    arrays = [np.asarray(values)] if isinstance(values, np.ndarray) else list(values)
    if valid is None:
        masks = [np.ones(a.shape, bool) for a in arrays]
    else:
        masks = [np.asarray(valid)] if isinstance(valid, np.ndarray) else list(valid)
    picked = [
        a[m & (a != 0) & np.isfinite(a)] for a, m in zip(arrays, masks, strict=True) if a.size
    ]
    data = np.concatenate(picked) if picked else np.zeros(0)
    if data.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(data, percentiles))
    if hi <= lo:
        lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return (lo - 1.0, hi) if lo > 0 else (lo, lo + 1.0)
    return lo, hi


def parse_limits(text: str | None, *, flag: str) -> tuple[float, float] | None:
    """Parse ``"lo,hi"`` contrast limits; ``"hi,lo"`` (first above second) inverts the display.

    Raises
    ------
    MetadataError
        If the text is not two different numbers.
    """
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError as e:
        raise MetadataError(f"{flag} {text!r}: expected two numbers lo,hi such as 10,240") from e
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi == lo:
        raise MetadataError(
            f"{flag} {text!r}: expected two different finite numbers lo,hi (hi,lo inverts)"
        )
    return lo, hi


def normalize(values: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """Values mapped linearly from ``limits`` to [0, 1] (clipped), float32.

    Limits given high first, ``(hi, lo)``, invert the picture.
    """
    lo, hi = limits
    out = (np.asarray(values, dtype=np.float64) - lo) / (hi - lo)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).astype(np.float32)


def label_display(ids: np.ndarray) -> np.ndarray:
    """A [0, 1] picture of an instance-label image: objects 0.6, their boundaries 1."""
    ids = np.asarray(ids)
    fg = ids != 0
    edge = np.zeros(ids.shape, dtype=bool)
    for axis in range(ids.ndim):
        diff = np.diff(ids, axis=axis) != 0
        lead = [slice(None)] * ids.ndim
        lead[axis] = slice(0, -1)
        trail = [slice(None)] * ids.ndim
        trail[axis] = slice(1, None)
        edge[tuple(lead)] |= diff
        edge[tuple(trail)] |= diff
    return np.where(edge & fg, 1.0, np.where(fg, 0.6, 0.0)).astype(np.float32)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise DimensionError(
            f"channels of shapes {a.shape} and {b.shape}: expected equal 2D shapes"
        )


def composite(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A in magenta (red + blue), B in green: equal channels give grey to white."""
    _check_pair(a, b)
    return _to_uint8(np.stack([a, b, a], axis=-1))


def checkerboard(a: np.ndarray, b: np.ndarray, tile: float) -> np.ndarray:
    """Alternating square tiles of A and B (grey), ``tile`` pixels wide, from pixel (0, 0).

    Tile ``(i, j)`` shows A when ``i + j`` is even, else B; edges fall at
    multiples of ``tile`` along rows and columns.
    """
    _check_pair(a, b)
    if not tile > 0:
        raise MetadataError(f"checkerboard tile {tile}: expected a positive size (--tile)")
    rows = np.floor(np.arange(a.shape[0]) / tile).astype(int)
    cols = np.floor(np.arange(a.shape[1]) / tile).astype(int)
    use_a = ((rows[:, None] + cols[None, :]) % 2) == 0
    grey = np.where(use_a, a, b)
    return _to_uint8(np.repeat(grey[..., None], 3, axis=-1))


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed difference: magenta where A is brighter, green where B is, black where equal."""
    _check_pair(a, b)
    d = np.asarray(a, np.float32) - np.asarray(b, np.float32)
    pos, neg = np.clip(d, 0, 1), np.clip(-d, 0, 1)
    return _to_uint8(np.stack([pos, neg, pos], axis=-1))


def blend(a: np.ndarray, b: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Alpha blend ``(1 - alpha) * A + alpha * B`` in grey."""
    _check_pair(a, b)
    if not 0.0 <= alpha <= 1.0:
        raise MetadataError(f"alpha {alpha}: expected a value in [0, 1] (--alpha)")
    grey = (1.0 - alpha) * np.asarray(a, np.float32) + alpha * np.asarray(b, np.float32)
    return _to_uint8(np.repeat(grey[..., None], 3, axis=-1))


#: Rendering modes by name.
MODES: dict[str, Callable[..., np.ndarray]] = {
    "composite": composite,
    "checkerboard": checkerboard,
    "difference": difference,
    "blend": blend,
}


def render_mode(
    mode: str, a: np.ndarray, b: np.ndarray, *, tile: float = 32.0, alpha: float = 0.5
) -> np.ndarray:
    """Render two normalised channels in one of :data:`MODES`."""
    if mode == "checkerboard":
        return checkerboard(a, b, tile)
    if mode == "blend":
        return blend(a, b, alpha)
    if mode not in MODES:
        raise MetadataError(f"mode {mode!r}: expected one of {', '.join(MODES)} (--modes)")
    return MODES[mode](a, b)


def parse_tile(text: str, unit: str) -> tuple[float, bool]:
    """Parse a checkerboard tile size: ``"32"`` (pixels) or ``"2um"`` (physical).

    Returns
    -------
    The size and whether it is physical (in ``unit``) rather than in pixels.

    Raises
    ------
    MetadataError
        If the number or unit cannot be read.
    """
    s = text.strip()
    split = len(s)
    while split > 0 and not (s[split - 1].isdigit() or s[split - 1] == "."):
        split -= 1
    number, suffix = s[:split], s[split:].strip()
    try:
        value = float(number)
    except ValueError as e:
        raise MetadataError(f"--tile {text!r}: expected pixels (32) or a length (2um)") from e
    if not value > 0:
        raise MetadataError(f"--tile {text!r}: expected a positive size")
    if suffix in ("", "px", "pixel", "pixels"):
        return value, False
    return value * unit_factor(canonical_unit(suffix, key="--tile"), unit), True


# --------------------------------------------------------------------------- scale bar


@dataclass(frozen=True)
class ScaleBar:
    """A scale bar: its physical length, its length in pixels and its label.

    Parameters
    ----------
    length
        Physical length in the image unit.
    pixels
        Length in output pixels (rounded).
    label
        Text such as ``"5 µm"``.
    """

    length: float
    pixels: int
    label: str


def nice_length(target: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``target``."""
    if not target > 0:
        raise DimensionError(f"scale bar target length {target}: expected a positive length")
    power = 10.0 ** math.floor(math.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * power <= target * (1 + 1e-9):
            return m * power
    return power


def scale_bar(width_px: int, pixel_size: float, unit: str, fraction: float = 0.25) -> ScaleBar:
    """A round-length scale bar about ``fraction`` of an image ``width_px`` wide.

    Parameters
    ----------
    width_px
        Image width in pixels.
    pixel_size
        Physical size of one pixel, in ``unit``.
    unit
        Length unit of ``pixel_size``.
    fraction
        Largest share of the width the bar may take.
    """
    nm_per_px = pixel_size * unit_factor(unit, "nanometer")
    nm = nice_length(max(width_px * fraction, 1.0) * nm_per_px)
    if nm >= 1e6:
        label = f"{nm / 1e6:g} mm"
    elif nm >= 1e3:
        label = f"{nm / 1e3:g} µm"
    else:
        label = f"{nm:g} nm"
    length = nm / unit_factor(unit, "nanometer")
    return ScaleBar(length, max(1, round(nm / nm_per_px)), label)


#: Fonts tried first (found by Pillow in the system font folders), for their µ glyph.
FONT_FILES = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "Helvetica.ttc")


@functools.lru_cache(maxsize=32)
def font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """A sans-serif system font at ``size`` pixels, else Pillow's bundled one."""
    for name in FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def drawable(text: str, f: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """``text`` with ``µ`` spelled ``u`` when the font has no glyph for it."""
    if "µ" not in text:
        return text
    missing = np.asarray(f.getmask("\uffff")).tobytes(), f.getmask("\uffff").size
    mu = np.asarray(f.getmask("µ")).tobytes(), f.getmask("µ").size
    return text.replace("µ", "u") if mu == missing else text


def draw_scale_bar(rgb: np.ndarray, bar: ScaleBar, margin: int = 8) -> np.ndarray:
    """A copy of ``rgb`` with a white, black-edged bar and its label at the lower right."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    h, w = rgb.shape[:2]
    thick = max(2, h // 100)
    x1 = w - margin
    x0 = x1 - bar.pixels
    y1 = h - margin
    y0 = y1 - thick
    draw.rectangle([x0 - 1, y0 - 1, x1, y1], fill=(0, 0, 0))
    draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=(255, 255, 255))
    f = font(max(10, min(16, h // 20)))
    label = drawable(bar.label, f)
    box = draw.textbbox((0, 0), label, font=f)
    tx = x1 - (box[2] - box[0])
    ty = y0 - 3 - (box[3] - box[1]) - box[1]
    draw.text((tx, ty), label, font=f, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(img)


def zoom_factor(shape: Sequence[int], min_side: int) -> int:
    """Integer magnification that brings the longest side of ``shape`` to ``min_side``."""
    longest = max(int(shape[0]), int(shape[1]), 1)
    return max(1, math.ceil(min_side / longest)) if longest < min_side else 1


def upscale(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour magnification by an integer factor (pixels stay square)."""
    if factor <= 1:
        return rgb
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


# --------------------------------------------------------------------------- panels and files


@dataclass(frozen=True)
class Panel:
    """One picture of a grid with its caption.

    Parameters
    ----------
    rgb
        ``(h, w, 3)`` uint8 picture.
    caption
        Text drawn above it.
    """

    rgb: np.ndarray
    caption: str


def panel_grid(rows: Sequence[Sequence[Panel]], title: str = "", gap: int = 6) -> np.ndarray:
    """Pictures laid out in rows and columns with captions, on a dark background.

    Every column is as wide as its widest picture and every row as tall as
    its tallest one; pictures sit at the top left of their cell.
    """
    if not rows or not any(rows):
        raise DimensionError("a panel grid needs at least one picture")
    ncols = max(len(r) for r in rows)
    f = font(13)
    caption_h = 18
    col_w = [0] * ncols
    row_h = []
    for r in rows:
        row_h.append(max(p.rgb.shape[0] for p in r) + caption_h)
        for j, p in enumerate(r):
            text_w = int(f.getlength(p.caption)) + 4
            col_w[j] = max(col_w[j], p.rgb.shape[1], text_w)
    title_h = 24 if title else 0
    width = sum(col_w) + gap * (ncols + 1)
    if title:
        width = max(width, int(font(15).getlength(title)) + 2 * gap)
    height = title_h + sum(row_h) + gap * (len(rows) + 1)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 4), drawable(title, font(15)), font=font(15), fill=(235, 235, 235))
    y = title_h + gap
    for r, h in zip(rows, row_h, strict=True):
        x = gap
        for j, p in enumerate(r):
            draw.text((x, y + 2), drawable(p.caption, f), font=f, fill=(220, 220, 220))
            canvas.paste(Image.fromarray(p.rgb), (x, y + caption_h))
            x += col_w[j] + gap
        y += h + gap
    return np.asarray(canvas)


def save_png(path: str | os.PathLike[str], rgb: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write an RGB picture as PNG, atomically (refuses to overwrite without ``overwrite``)."""
    with atomic_output(path, force=overwrite) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
    return Path(path)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB picture encoded as PNG bytes (for embedding)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def save_channels_tiff(
    path: str | os.PathLike[str],
    channels: np.ndarray,
    pixel_size: float,
    unit: str,
    *,
    names: Sequence[str] = ("A", "B"),
    overwrite: bool = False,
) -> Path:
    """Write ``(c, y, x)`` channels as an ImageJ hyperstack TIFF with its pixel size.

    float32, uint8 and uint16 keep their type; other types are written as
    float32. The unit goes into the ImageJ description and the resolution
    tags hold pixels per unit.
    """
    arr = np.asarray(channels)
    if arr.ndim != 3:
        raise DimensionError(f"channels of shape {arr.shape}: expected (c, y, x)")
    if arr.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)):
        arr = arr.astype(np.float32)
    short = {"nanometer": "nm", "micrometer": "micron", "millimeter": "mm"}
    unit = canonical_unit(unit, key="unit")
    size, name = (
        (pixel_size, short[unit])
        if unit in short
        else (
            pixel_size * unit_factor(unit, "nanometer"),
            "nm",
        )
    )
    meta = {"axes": "CYX", "unit": name, "Labels": list(names)}
    with atomic_output(path, force=overwrite) as tmp:
        tifffile.imwrite(tmp, arr, imagej=True, resolution=(1.0 / size, 1.0 / size), metadata=meta)
    return Path(path)
