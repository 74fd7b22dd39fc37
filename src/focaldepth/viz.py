"""Pictures of depth and focus sweeps: colourised depth, a colour bar in metres (or, for
relative depth, a unitless near...far bar), side-by-side panels and contact sheets. All images
are uint8 RGB (H, W, 3).

Depth is coloured by *inverse* depth (near = warm/bright), which matches how defocus blur
and most depth networks behave (both are linear in dioptres) and spends colours on the
near range where detail is. A clip is coloured with ONE fixed range for all its frames
(:func:`depth_display_range` over the whole clip): per-frame normalisation makes a static
scene flicker and hides real depth changes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from focaldepth.io.atomic import atomic_path

DEFAULT_CMAP = "turbo"
INVALID_RGB = (0, 0, 0)


def _as_numpy(depth_m: Any) -> np.ndarray:
    if hasattr(depth_m, "detach"):  # a torch tensor
        depth_m = depth_m.detach().cpu().numpy()
    return np.asarray(depth_m, dtype=np.float64)


def _valid(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def depth_display_range(
    depth_m: Any, percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float]:
    """One (near_m, far_m) range for a whole clip (any shape), from percentiles of the valid
    inverse depth so a few outliers do not squash the colours."""
    depth = _as_numpy(depth_m)
    valid = _valid(depth)
    if not valid.any():
        raise ValueError("depth_display_range: no valid (finite, positive) depth")
    inverse_depth = 1.0 / depth[valid]
    low_dpt, high_dpt = np.percentile(inverse_depth, [percentiles[0], percentiles[1]])
    if not high_dpt > low_dpt:  # a flat scene: widen by ±5 % so it still gets a colour
        low_dpt, high_dpt = low_dpt * 0.95, high_dpt * 1.05
    return float(1.0 / high_dpt), float(1.0 / low_dpt)


def _colormap_lut(cmap: str) -> np.ndarray:
    import matplotlib

    colormap = matplotlib.colormaps[cmap]
    return (colormap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def colorize_depth(
    depth_m: Any, near_m: float, far_m: float, cmap: str = DEFAULT_CMAP
) -> np.ndarray:
    """Colour a depth map or clip (..., H, W) in metres → uint8 (..., H, W, 3).

    Inverse depth is mapped linearly from 1/far_m (colour-map start) to 1/near_m (end) and
    clipped outside; invalid pixels (non-finite, ≤ 0) are black. Pass the same near/far for
    every frame of a clip.
    """
    if not (0 < near_m < far_m):
        raise ValueError(f"colorize_depth: need 0 < near_m < far_m, got {near_m}, {far_m}")
    depth = _as_numpy(depth_m)
    valid = _valid(depth)
    inverse_depth = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
    t = (inverse_depth - 1.0 / far_m) / (1.0 / near_m - 1.0 / far_m)
    index = np.clip(np.rint(t * 255.0), 0, 255).astype(np.uint8)
    rgb = _colormap_lut(cmap)[index]
    rgb[~valid] = INVALID_RGB
    return rgb


def _round_significant(value: float, low: float, high: float, digits: int = 2) -> float:
    """``value`` to ``digits`` significant figures, rounded towards the inside of [low, high]
    when plain rounding would leave it (the bar's end labels must lie on the bar)."""
    scale = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    rounded = round(value / scale) * scale
    if rounded < low:
        rounded = math.ceil(value / scale - 1e-9) * scale
    if rounded > high:
        rounded = math.floor(value / scale + 1e-9) * scale
    return float(f"{min(max(rounded, low), high):.{digits + 1}g}")


def _nice_ticks_m(near_m: float, far_m: float, max_ticks: int = 6, min_gap: float = 0.08) -> list[float]:
    """Metre values for colour-bar labels, spread evenly along the bar. The colours are linear in
    inverse depth, so evenly spaced round metre values would crowd at the far end (1, 2, 3, 4 m
    squeezed into the bottom fifth); instead the ticks sit at evenly spaced inverse depths,
    rounded to two significant figures, dropping any closer than ``min_gap`` of the bar."""
    near_dpt, far_dpt = 1.0 / near_m, 1.0 / far_m
    ticks: list[float] = []
    for k in range(max_ticks):
        value = _round_significant(1.0 / (far_dpt + k / (max_ticks - 1) * (near_dpt - far_dpt)), near_m, far_m)
        position = (1.0 / value - far_dpt) / (near_dpt - far_dpt)
        if all(abs(position - (1.0 / t - far_dpt) / (near_dpt - far_dpt)) >= min_gap for t in ticks):
            ticks.append(value)
    return ticks


@dataclass(frozen=True)
class ColorbarTick:
    """One labelled tick of a vertical colour bar: ``position`` along the colour map, 0 at the
    far end (bottom, colour-map start) and 1 at the near end (top)."""

    position: float
    label: str


def colorbar_ticks(near_m: float, far_m: float) -> list[ColorbarTick]:
    """Ticks of a metric colour bar for :func:`colorize_depth` with the same range: round metre
    values, each at its inverse-depth place (the colours are linear in inverse depth)."""
    if not (0 < near_m < far_m):
        raise ValueError(f"colorbar_ticks: need 0 < near_m < far_m, got {near_m}, {far_m}")
    return [ColorbarTick((1.0 / t - 1.0 / far_m) / (1.0 / near_m - 1.0 / far_m), f"{t:g}")
            for t in _nice_ticks_m(near_m, far_m)]


#: Values of relative inverse depth labelled on the relative colour bar (the ends get words).
RELATIVE_TICK_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)


def relative_colorbar_ticks() -> list[ColorbarTick]:
    """Ticks of the colour bar for *relative* inverse depth in [0, 1] (1 = nearest focus of the
    sweep, 0 = farthest; what ``focaldepth predict`` writes when focus distances are unknown).

    The scale has no unit, so the labels are its own values with the ends named "far" and
    "near": any metre value here would invent a scale the data do not have. The value sits at
    its own place on the bar because the relative map is coloured linearly in it."""
    words = {0.0: "far", 1.0: "near"}
    return [ColorbarTick(value, words.get(value, f"{value:g}")) for value in RELATIVE_TICK_VALUES]


def colorbar_image(
    near_m: float,
    far_m: float,
    height_px: int,
    *,
    width_px: int = 90,
    cmap: str = DEFAULT_CMAP,
    label: str = "depth (m)",
) -> np.ndarray:
    """A vertical colour bar (uint8 (height_px, width_px, 3)) for :func:`colorize_depth` with
    the same range: near at the top, ticks labelled in metres at their inverse-depth place
    (:func:`colorbar_ticks`)."""
    return draw_colorbar(colorbar_ticks(near_m, far_m), height_px, width_px=width_px, cmap=cmap,
                         label=label)


def relative_colorbar_image(
    height_px: int,
    *,
    width_px: int = 90,
    cmap: str = DEFAULT_CMAP,
    label: str = "relative depth",
) -> np.ndarray:
    """The colour bar of relative inverse depth in [0, 1] coloured linearly (1 = near at the
    top): unitless ticks from "far" to "near" (:func:`relative_colorbar_ticks`), no metres."""
    return draw_colorbar(relative_colorbar_ticks(), height_px, width_px=width_px, cmap=cmap,
                         label=label)


def draw_colorbar(
    ticks: Sequence[ColorbarTick],
    height_px: int,
    *,
    width_px: int = 90,
    cmap: str = DEFAULT_CMAP,
    label: str = "",
) -> np.ndarray:
    """A vertical colour bar, uint8 (height_px, width_px, 3): the colour map from its start
    (bottom, position 0) to its end (top, position 1), with ``ticks`` labelled on the right
    and ``label`` as the axis title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0.08, 0.04, 0.22, 0.92))
    # Rows run from near (top) to far (bottom), linear in inverse depth like the colours.
    gradient = np.linspace(1.0, 0.0, 256)[:, None]
    axes.imshow(gradient, aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, extent=(0, 1, 0, 1))
    axes.set_xticks([])
    axes.yaxis.tick_right()
    axes.set_yticks([tick.position for tick in ticks])
    axes.set_yticklabels([tick.label for tick in ticks], fontsize=8)
    axes.yaxis.set_label_position("right")
    axes.set_ylabel(label, fontsize=8)
    axes.set_ylim(0.0, 1.0)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _resize_to_height(image: np.ndarray, height_px: int) -> np.ndarray:
    if image.shape[0] == height_px:
        return image
    width_px = max(1, round(image.shape[1] * height_px / image.shape[0]))
    return np.asarray(
        Image.fromarray(image).resize((width_px, height_px), Image.Resampling.LANCZOS)
    )


def _to_rgb8(image: Any) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected uint8 images (H, W[, 3]), got {array.dtype} {array.shape}")
    return array


def label_image(image: np.ndarray, text: str, *, font_px: int = 14) -> np.ndarray:
    """The image with a white caption strip above it."""
    image = _to_rgb8(image)
    font = _font(font_px)
    strip_px = font_px + 8
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + strip_px), (255, 255, 255))
    canvas.paste(Image.fromarray(image), (0, strip_px))
    ImageDraw.Draw(canvas).text((4, 3), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def side_by_side(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    height_px: int | None = None,
    gap_px: int = 4,
) -> np.ndarray:
    """Panels in one row, scaled to a common height (the first image's unless given), each
    captioned when ``labels`` is given, separated by white gaps."""
    if not images:
        raise ValueError("side_by_side: no images")
    panels = [_to_rgb8(image) for image in images]
    target_px = height_px or panels[0].shape[0]
    panels = [_resize_to_height(panel, target_px) for panel in panels]
    if labels is not None:
        if len(labels) != len(panels):
            raise ValueError(f"side_by_side: {len(panels)} images but {len(labels)} labels")
        panels = [label_image(panel, text) for panel, text in zip(panels, labels)]
    gap = np.full((panels[0].shape[0], gap_px, 3), 255, dtype=np.uint8)
    row: list[np.ndarray] = []
    for i, panel in enumerate(panels):
        row.extend([gap, panel] if i else [panel])
    return np.concatenate(row, axis=1)


def contact_sheet(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    tile_width_px: int | None = None,
    title: str | None = None,
    gap_px: int = 4,
) -> np.ndarray:
    """A grid of captioned tiles (all scaled to one tile size), row by row, with an optional
    title line; ``columns`` defaults to a near-square grid."""
    if not images:
        raise ValueError("contact_sheet: no images")
    tiles = [_to_rgb8(image) for image in images]
    if labels is not None and len(labels) != len(tiles):
        raise ValueError(f"contact_sheet: {len(tiles)} images but {len(labels)} labels")
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    width_px = tile_width_px or tiles[0].shape[1]
    height_px = max(1, round(tiles[0].shape[0] * width_px / tiles[0].shape[1]))
    resized = [
        np.asarray(Image.fromarray(t).resize((width_px, height_px), Image.Resampling.LANCZOS))
        if t.shape[:2] != (height_px, width_px)
        else t
        for t in tiles
    ]
    if labels is not None:
        resized = [label_image(t, text) for t, text in zip(resized, labels)]
    tile_h, tile_w = resized[0].shape[:2]
    rows = math.ceil(len(resized) / columns)
    title_px = 26 if title else 0
    sheet = np.full(
        (
            title_px + rows * tile_h + (rows + 1) * gap_px,
            columns * tile_w + (columns + 1) * gap_px,
            3,
        ),
        255,
        dtype=np.uint8,
    )
    for i, tile in enumerate(resized):
        top = title_px + gap_px + (i // columns) * (tile_h + gap_px)
        left = gap_px + (i % columns) * (tile_w + gap_px)
        sheet[top : top + tile_h, left : left + tile_w] = tile
    if title:
        canvas = Image.fromarray(sheet)
        ImageDraw.Draw(canvas).text((gap_px + 2, 4), title, fill=(0, 0, 0), font=_font(18))
        sheet = np.asarray(canvas)
    return sheet


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write a uint8 image as PNG atomically."""
    out = Path(path)
    with atomic_path(out) as tmp:
        Image.fromarray(_to_rgb8(image)).save(tmp, format="PNG", compress_level=6)
    return out


def write_contact_sheet(
    path: str | os.PathLike[str],
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    **kwargs: Any,
) -> Path:
    """:func:`contact_sheet` written as a PNG (atomically)."""
    return write_png(path, contact_sheet(images, labels, **kwargs))
