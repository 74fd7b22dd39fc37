"""2-D outlines of the planar foreground objects.

An object is a planar patch (fronto-parallel or slanted) cut out by an outline. An outline
is a pure function of the patch's local coordinates ``(x, y)``, normalised so that the
shape fits in the unit disc (``|x|, |y| <= 1``), returning a boolean inside-mask. Its
random parameters (number of sides, lobes, aspect ratio ...) are drawn once per object by
:func:`sample_shape`, so the same object has the same outline in every frame.

Shapes are grouped in families (round, polygon, blob, card); the train/test split
(:mod:`focaldepth.scenes.pools`) holds out shapes within each family. "Cards" are
rectangular planes that are given stronger slants (see :data:`CARD_FAMILY`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Params = dict[str, Any]
InsideFn = Callable[[np.ndarray, np.ndarray, Params], np.ndarray]
SampleFn = Callable[[np.random.Generator], Params]


@dataclass(frozen=True)
class Shape:
    """An outline with its parameters; ``inside(x, y)`` works on numpy arrays and tensors."""

    name: str
    params: Params = field(default_factory=dict)

    def inside(self, x, y):
        return SHAPES[self.name][1](x, y, self.params)


def _lib(x):
    """numpy or torch, whichever ``x`` belongs to (outlines are evaluated on torch tensors
    by the rasteriser and on numpy arrays in tests)."""
    if isinstance(x, np.ndarray):
        return np
    import torch

    return torch


def _positive_part(v):
    return (v + abs(v)) * 0.5


def _polar(x, y):
    lib = _lib(x)
    return lib.sqrt(x * x + y * y), lib.arctan2(y, x) if lib is np else lib.atan2(y, x)


# --- family: round ---------------------------------------------------------------------


def _disc(x, y, p):
    return x * x + y * y <= 1.0


def _ellipse_params(rng):
    return {"aspect": float(rng.uniform(0.35, 0.9))}


def _ellipse(x, y, p):
    return x * x + (y / p["aspect"]) ** 2 <= 1.0


def _superellipse_params(rng):
    exponent, aspect = float(rng.uniform(3.0, 8.0)), float(rng.uniform(0.5, 1.0))
    # Its corners stick out of the unit disc: shrink it by its largest boundary radius.
    t = np.linspace(0.0, np.pi / 2, 721)
    radius = np.hypot(np.cos(t) ** (2 / exponent), aspect * np.sin(t) ** (2 / exponent)).max()
    return {"exponent": exponent, "aspect": aspect, "scale": float(1.0 / radius)}


def _superellipse(x, y, p):
    e, scale = p["exponent"], p["scale"]
    return abs(x / scale) ** e + abs(y / (scale * p["aspect"])) ** e <= 1.0


def _ring_params(rng):
    return {"inner": float(rng.uniform(0.3, 0.7))}


def _ring(x, y, p):
    r2 = x * x + y * y
    return (r2 <= 1.0) & (r2 >= p["inner"] ** 2)


# --- family: polygon -------------------------------------------------------------------


def _regular_polygon_params(rng):
    return {"sides": int(rng.integers(3, 9)), "phase": float(rng.uniform(0, 2 * np.pi))}


def _regular_polygon(x, y, p):
    # Radius of a regular n-gon (circumradius 1) in direction theta:
    # cos(pi/n) / cos((theta - phase) mod (2pi/n) - pi/n).
    r, theta = _polar(x, y)
    sector = 2 * np.pi / p["sides"]
    local = (theta - p["phase"]) % sector - sector / 2  # `%` is floored in numpy and torch
    return r * _lib(x).cos(local) <= np.cos(np.pi / p["sides"])


def _convex_polygon_params(rng):
    # The convex hull of random points on the unit circle: an irregular convex polygon.
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 9))))
    return {"angles": angles.tolist()}


def _convex_polygon(x, y, p):
    angles = np.asarray(p["angles"])
    vertices = np.stack([np.cos(angles), np.sin(angles)], 1)
    inside = None
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0)):
        # Left of every edge of a counter-clockwise polygon.
        edge = (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]) >= 0
        inside = edge if inside is None else inside & edge
    return inside


def _star_params(rng):
    return {"points": int(rng.integers(4, 9)), "inner": float(rng.uniform(0.35, 0.7)),
            "phase": float(rng.uniform(0, 2 * np.pi))}


def _star(x, y, p):
    # Radius alternates linearly (in angle) between 1 at the tips and `inner` between them.
    r, theta = _polar(x, y)
    sector = 2 * np.pi / p["points"]
    t = ((theta - p["phase"]) % sector) / sector  # 0..1 within a sector
    tri = 1.0 - 2.0 * abs(t - 0.5)  # 0 at a tip, 1 half way
    radius = 1.0 + (p["inner"] - 1.0) * tri
    return r <= radius


def _cross_params(rng):
    return {"width": float(rng.uniform(0.25, 0.55)), "phase": float(rng.uniform(0, np.pi / 2))}


def _cross(x, y, p):
    c, s = np.cos(p["phase"]), np.sin(p["phase"])
    u, v = c * x + s * y, -s * x + c * y
    half = p["width"] / 2
    bound = 0.95
    return ((abs(u) <= half) & (abs(v) <= bound)) | ((abs(v) <= half) & (abs(u) <= bound))


# --- family: blob ----------------------------------------------------------------------


def _fourier_blob_params(rng):
    harmonics = int(rng.integers(2, 6))
    amplitudes = (rng.uniform(0.0, 0.35, harmonics) / np.arange(1, harmonics + 1) ** 0.5).tolist()
    return {"amplitudes": amplitudes, "phases": rng.uniform(0, 2 * np.pi, harmonics).tolist()}


def _fourier_blob(x, y, p):
    # r(theta) = (1 + sum_k a_k cos((k+1) theta + phi_k)) / (1 + sum a_k): always <= 1.
    lib = _lib(x)
    r, theta = _polar(x, y)
    radius = 1.0
    for k, (a, phi) in enumerate(zip(p["amplitudes"], p["phases"])):
        radius = radius + a * lib.cos((k + 2) * theta + phi)
    return r <= radius / (1.0 + sum(p["amplitudes"]))


def _metaballs_params(rng):
    count = int(rng.integers(2, 6))
    centres = rng.uniform(-0.45, 0.45, (count, 2))
    return {"centres": centres.tolist(), "sigma": float(rng.uniform(0.2, 0.35))}


def _metaballs(x, y, p):
    lib = _lib(x)
    total = 0.0
    for cx, cy in p["centres"]:
        total = total + lib.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * p["sigma"] ** 2))
    return (total >= 0.5) & (x * x + y * y <= 1.0)


def _crescent_params(rng):
    return {"offset": float(rng.uniform(0.3, 0.7)), "angle": float(rng.uniform(0, 2 * np.pi)),
            "inner": float(rng.uniform(0.6, 0.95))}


def _crescent(x, y, p):
    ox, oy = p["offset"] * np.cos(p["angle"]), p["offset"] * np.sin(p["angle"])
    return (x * x + y * y <= 1.0) & ((x - ox) ** 2 + (y - oy) ** 2 > p["inner"] ** 2)


def _lobes_params(rng):
    return {"lobes": int(rng.integers(3, 7)), "depth": float(rng.uniform(0.2, 0.6)),
            "phase": float(rng.uniform(0, 2 * np.pi))}


def _lobes(x, y, p):
    # A flower: |cos| lobes, radius between 1 - depth and 1.
    lib = _lib(x)
    r, theta = _polar(x, y)
    radius = 1.0 - p["depth"] * (1.0 - abs(lib.cos(p["lobes"] * (theta - p["phase"]) / 2)))
    return r <= radius


# --- family: card (planes seen at a slant) --------------------------------------------


def _rectangle_params(rng):
    return {"aspect": float(rng.uniform(0.3, 1.0))}


def _rectangle(x, y, p):
    # The largest rectangle of this aspect ratio inside the unit disc.
    half_w = 1.0 / np.sqrt(1.0 + p["aspect"] ** 2)
    return (abs(x) <= half_w) & (abs(y) <= half_w * p["aspect"])


def _rounded_rectangle_params(rng):
    return {"aspect": float(rng.uniform(0.4, 1.0)), "corner": float(rng.uniform(0.1, 0.4))}


def _rounded_rectangle(x, y, p):
    half_w = 1.0 / np.sqrt(1.0 + p["aspect"] ** 2)
    half_h = half_w * p["aspect"]
    corner = p["corner"] * half_h
    dx = _positive_part(abs(x) - (half_w - corner))
    dy = _positive_part(abs(y) - (half_h - corner))
    return (abs(x) <= half_w) & (abs(y) <= half_h) & (dx * dx + dy * dy <= corner * corner)


def _parallelogram_params(rng):
    return {"aspect": float(rng.uniform(0.3, 0.8)), "shear": float(rng.uniform(-0.6, 0.6))}


def _parallelogram(x, y, p):
    # Corners at (+-(1 + |shear| aspect), +-aspect) before scaling them onto a radius of 0.98.
    scale = 0.98 / np.hypot(1.0 + abs(p["shear"]) * p["aspect"], p["aspect"])
    half_w, half_h = scale, scale * p["aspect"]
    return (abs(x - p["shear"] * y) <= half_w) & (abs(y) <= half_h)


def _trapezoid_params(rng):
    return {"taper": float(rng.uniform(0.3, 0.9)), "aspect": float(rng.uniform(0.4, 1.0))}


def _trapezoid(x, y, p):
    half_h = 0.7 * p["aspect"]
    # Half-width shrinks linearly from 0.7 at the bottom (y = -half_h) to 0.7*taper at the top.
    t = (y + half_h) / (2 * half_h)
    half_w = 0.7 * (1.0 - (1.0 - p["taper"]) * t)
    return (abs(y) <= half_h) & (abs(x) <= half_w)


def _no_params(rng):
    return {}


CARD_FAMILY = "card"

SHAPE_FAMILIES: dict[str, dict[str, tuple[SampleFn, InsideFn]]] = {
    "round": {"disc": (_no_params, _disc), "ellipse": (_ellipse_params, _ellipse),
              "superellipse": (_superellipse_params, _superellipse), "ring": (_ring_params, _ring)},
    "polygon": {"regular_polygon": (_regular_polygon_params, _regular_polygon),
                "convex_polygon": (_convex_polygon_params, _convex_polygon),
                "star": (_star_params, _star), "cross": (_cross_params, _cross)},
    "blob": {"fourier_blob": (_fourier_blob_params, _fourier_blob),
             "metaballs": (_metaballs_params, _metaballs),
             "crescent": (_crescent_params, _crescent), "lobes": (_lobes_params, _lobes)},
    CARD_FAMILY: {"rectangle": (_rectangle_params, _rectangle),
                  "rounded_rectangle": (_rounded_rectangle_params, _rounded_rectangle),
                  "parallelogram": (_parallelogram_params, _parallelogram),
                  "trapezoid": (_trapezoid_params, _trapezoid)},
}

SHAPES: dict[str, tuple[SampleFn, InsideFn]] = {
    name: entry for family in SHAPE_FAMILIES.values() for name, entry in family.items()}
SHAPE_FAMILY_OF: dict[str, str] = {
    name: family for family, members in SHAPE_FAMILIES.items() for name in members}


def sample_shape(name: str, rng: np.random.Generator) -> Shape:
    """Draw the random parameters of outline ``name``."""
    if name not in SHAPES:
        raise KeyError(f"unknown shape {name!r}; known: {sorted(SHAPES)}")
    return Shape(name, SHAPES[name][0](rng))
