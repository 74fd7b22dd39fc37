"""Procedural textures for synthetic scenes.

Every generator is a pure function ``(rng, height_px, width_px) -> (H, W, 3) float32`` in
[0, 1], seeded only by the ``numpy.random.Generator`` it is given. Most build a scalar
pattern and colour it with a random palette (:func:`colourise`), so the pattern family and
the colours vary independently.

Generators are grouped in *families* (noise, spectral, stripes, checkers, cells). The
train/test split (:mod:`focaldepth.scenes.pools`) holds out generators *within* each family,
so a test set has every kind of texture but never one that was used in training.

``uniform`` (a constant colour) is deliberately not a generator of either split: textureless
regions are a known failure case of depth from focus that both training and test data must
contain, and a constant colour carries nothing a model could memorise.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from focaldepth.scenes.colour import colourise, random_colour  # also re-exported from here

TextureFn = Callable[[np.random.Generator, int, int], np.ndarray]


# --- helpers ---------------------------------------------------------------------------


def normalise(field: np.ndarray) -> np.ndarray:
    """Rescale a scalar field to [0, 1] by its 1st and 99th percentiles (robust to outliers)."""
    low, high = np.percentile(field, [1.0, 99.0])
    if high - low < 1e-12:
        return np.full_like(field, 0.5, dtype=np.float32)
    return np.clip((field - low) / (high - low), 0.0, 1.0).astype(np.float32)




def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y) in texels, float32."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return x, y


def _rotated(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel coordinates rotated by a random angle: patterns are not axis-aligned."""
    x, y = _grid(height, width)
    angle = rng.uniform(0.0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def _period_px(rng: np.random.Generator, low: float = 3.0, high: float = 40.0) -> float:
    """A pattern period in texels, log-uniform: fine patterns are as common as coarse ones."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _value_noise(rng: np.random.Generator, height: int, width: int, cell_px: float) -> np.ndarray:
    """Smooth random field: a grid of random values every ``cell_px`` texels, bicubic-upsampled."""
    grid_h = max(2, int(np.ceil(height / cell_px)) + 2)
    grid_w = max(2, int(np.ceil(width / cell_px)) + 2)
    grid = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
    up = cv2.resize(grid, (int(grid_w * cell_px), int(grid_h * cell_px)), interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, max(1, up.shape[0] - height + 1)))
    ox = int(rng.integers(0, max(1, up.shape[1] - width + 1)))
    return up[oy:oy + height, ox:ox + width]


def _fbm(rng: np.random.Generator, height: int, width: int, octaves: int | None = None) -> np.ndarray:
    """Fractal Brownian motion: value noise octaves with halving cell size and gain 0.5."""
    octaves = int(rng.integers(3, 7)) if octaves is None else octaves
    base_cell = _period_px(rng, 8.0, 96.0)
    gain = rng.uniform(0.4, 0.7)
    field = np.zeros((height, width), np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        cell = max(1.5, base_cell / 2**octave)
        field += amplitude * _value_noise(rng, height, width, cell)
        amplitude *= gain
    return field


def _spectral_field(rng: np.random.Generator, height: int, width: int, exponent: float,
                    anisotropy: float = 1.0) -> np.ndarray:
    """Gaussian random field with amplitude spectrum 1/f**exponent (natural images: ~1),
    optionally stretched along a random direction by ``anisotropy``."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    angle = rng.uniform(0.0, np.pi)
    u = np.cos(angle) * fx + np.sin(angle) * fy
    v = -np.sin(angle) * fx + np.cos(angle) * fy
    radius = np.sqrt((u * anisotropy) ** 2 + v**2)
    radius[0, 0] = 1.0
    amplitude = radius ** (-exponent)
    amplitude[0, 0] = 0.0
    phase = rng.uniform(0.0, 2 * np.pi, amplitude.shape)
    spectrum = amplitude * np.exp(1j * phase)
    return np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32)


def _points(rng: np.random.Generator, height: int, width: int, cell_px: float) -> np.ndarray:
    count = int(np.clip(height * width / cell_px**2, 4, 400))
    return rng.uniform([0, 0], [width, height], size=(count, 2)).astype(np.float32)


def _nearest_two(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest seed point and the nearest point's index
    (Worley / Voronoi), with the plane wrapped so cells tile without seams."""
    from scipy.spatial import cKDTree

    offsets = np.array([[dx, dy] for dx in (-width, 0, width) for dy in (-height, 0, height)], np.float32)
    tiled = (points[None] + offsets[:, None]).reshape(-1, 2)
    x, y = _grid(height, width)
    distances, indices = cKDTree(tiled).query(np.stack([x.ravel(), y.ravel()], 1), k=2)
    d1 = distances[:, 0].reshape(height, width).astype(np.float32)
    d2 = distances[:, 1].reshape(height, width).astype(np.float32)
    nearest = (indices[:, 0] % len(points)).reshape(height, width)
    return d1, d2, nearest


# --- family: noise ---------------------------------------------------------------------


def fbm_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Multi-octave value noise (clouds, plaster)."""
    return colourise(rng, normalise(_fbm(rng, height, width)))


def ridged_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Ridged multifractal noise: sharp creases (rock, crumpled paper)."""
    field = _fbm(rng, height, width)
    field = 1.0 - np.abs(field / (np.abs(field).max() + 1e-6))
    return colourise(rng, normalise(field**2))


def marble(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Sine bands displaced by turbulence (marble, wood grain)."""
    u, _ = _rotated(rng, height, width)
    period = _period_px(rng, 8.0, 60.0)
    turbulence = _fbm(rng, height, width)
    strength = rng.uniform(0.5, 4.0)
    return colourise(rng, normalise(np.sin(2 * np.pi * u / period + strength * turbulence)))


def speckle(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """White noise blurred by a random Gaussian (granite, sand, sensor-like grain)."""
    sigma = rng.uniform(0.5, 3.0)
    field = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), sigma)
    return colourise(rng, normalise(field))


# --- family: spectral (natural-image-like power spectra) --------------------------------


def pink_spectrum(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Isotropic 1/f^beta amplitude spectrum, beta ~ 1 as in natural images."""
    return colourise(rng, normalise(_spectral_field(rng, height, width, rng.uniform(0.8, 1.3))))


def oriented_spectrum(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Anisotropic 1/f spectrum: streaky, oriented structure (bark, brushed metal)."""
    field = _spectral_field(rng, height, width, rng.uniform(0.8, 1.3), anisotropy=rng.uniform(3.0, 12.0))
    return colourise(rng, normalise(field))


def colour_spectrum(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Independent 1/f fields per colour channel around a random mean colour."""
    exponent = rng.uniform(0.8, 1.3)
    mean = random_colour(rng)
    amplitude = rng.uniform(0.1, 0.35)
    channels = [amplitude * (normalise(_spectral_field(rng, height, width, exponent)) - 0.5)
                for _ in range(3)]
    return np.clip(mean[None, None] + np.stack(channels, -1), 0.0, 1.0).astype(np.float32)


def dead_leaves(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Dead-leaves model: occluding discs with a power-law size distribution, the classic
    model with natural-image statistics (scale invariance, 1/f spectrum, sharp edges)."""
    image = np.zeros((height, width, 3), np.float32)
    covered = np.zeros((height, width), bool)
    r_min, r_max = 2.0, max(4.0, 0.3 * min(height, width))
    x, y = _grid(height, width)
    for _ in range(4000):
        # r ~ r^-3 density between r_min and r_max (inverse transform sampling)
        u = rng.uniform()
        radius = 1.0 / np.sqrt((1 - u) / r_min**2 + u / r_max**2)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        x0, x1 = int(max(0, cx - radius)), int(min(width, cx + radius + 1))
        y0, y1 = int(max(0, cy - radius)), int(min(height, cy + radius + 1))
        colour = random_colour(rng)
        if x0 >= x1 or y0 >= y1:
            continue
        disc = (x[y0:y1, x0:x1] - cx) ** 2 + (y[y0:y1, x0:x1] - cy) ** 2 <= radius**2
        new = disc & ~covered[y0:y1, x0:x1]  # leaves fall behind the ones already there
        image[y0:y1, x0:x1][new] = colour
        covered[y0:y1, x0:x1] |= new
        if covered.all():
            break
    image[~covered] = random_colour(rng)
    return image


# --- family: stripes -------------------------------------------------------------------


def stripes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Square-wave stripes with a random period, duty cycle and orientation."""
    u, _ = _rotated(rng, height, width)
    period = _period_px(rng)
    duty = rng.uniform(0.2, 0.8)
    return colourise(rng, ((u / period) % 1.0 < duty).astype(np.float32))


def sine_grating(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A sinusoidal grating (a single spatial frequency)."""
    u, _ = _rotated(rng, height, width)
    return colourise(rng, 0.5 + 0.5 * np.sin(2 * np.pi * u / _period_px(rng)))


def plaid(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Two crossing gratings at random angles and periods (fabric)."""
    u1, _ = _rotated(rng, height, width)
    u2, _ = _rotated(rng, height, width)
    field = np.sin(2 * np.pi * u1 / _period_px(rng)) + np.sin(2 * np.pi * u2 / _period_px(rng))
    return colourise(rng, normalise(field))


def wavy_stripes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Stripes bent by a sine wave (zig-zag / corrugated patterns)."""
    u, v = _rotated(rng, height, width)
    period = _period_px(rng)
    wave = rng.uniform(0.5, 3.0) * period * np.sin(2 * np.pi * v / _period_px(rng, 10.0, 80.0))
    return colourise(rng, (((u + wave) / period) % 1.0 < 0.5).astype(np.float32))


# --- family: checkers ------------------------------------------------------------------


def checkers(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A rotated checkerboard."""
    u, v = _rotated(rng, height, width)
    period = _period_px(rng)
    return colourise(rng, ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32))


def bricks(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Running-bond bricks with mortar lines."""
    u, v = _rotated(rng, height, width)
    brick_h = _period_px(rng, 4.0, 30.0)
    brick_w = brick_h * rng.uniform(1.5, 3.0)
    row = np.floor(v / brick_h)
    shifted = u + 0.5 * brick_w * (row % 2)
    mortar = rng.uniform(0.06, 0.2)
    in_mortar = ((v / brick_h) % 1.0 < mortar) | ((shifted / brick_w) % 1.0 < mortar * brick_h / brick_w)
    shade = rng.uniform(0.6, 1.0, size=int(row.max() - row.min()) + 2)[(row - row.min()).astype(int)]
    return colourise(rng, np.where(in_mortar, 0.0, shade).astype(np.float32))


def grid_lines(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Thin lines on a square grid (tiles, graph paper)."""
    u, v = _rotated(rng, height, width)
    period = _period_px(rng, 5.0, 40.0)
    thickness = rng.uniform(0.08, 0.3)
    lines = ((u / period) % 1.0 < thickness) | ((v / period) % 1.0 < thickness)
    return colourise(rng, lines.astype(np.float32))


def random_tiles(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Square tiles, each a random grey level (mosaic)."""
    u, v = _rotated(rng, height, width)
    period = _period_px(rng, 4.0, 40.0)
    iu, iv = np.floor(u / period).astype(np.int64), np.floor(v / period).astype(np.int64)
    iu -= iu.min()
    iv -= iv.min()
    values = rng.uniform(0.0, 1.0, size=(iv.max() + 1, iu.max() + 1)).astype(np.float32)
    return colourise(rng, values[iv, iu])


# --- family: cells ---------------------------------------------------------------------


def voronoi_cells(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Voronoi cells, each a flat random colour (cobblestones, crackle)."""
    points = _points(rng, height, width, _period_px(rng, 6.0, 50.0))
    _, _, nearest = _nearest_two(points, height, width)
    colours = np.stack([random_colour(rng) for _ in range(len(points))]).astype(np.float32)
    return colours[nearest]


def worley_edges(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Worley F2 - F1: bright cell interiors with dark borders (cracked mud, scales)."""
    points = _points(rng, height, width, _period_px(rng, 6.0, 50.0))
    d1, d2, _ = _nearest_two(points, height, width)
    return colourise(rng, normalise(d2 - d1))


def polka_dots(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Randomly placed non-overlapping-ish dots of random radii."""
    points = _points(rng, height, width, _period_px(rng, 8.0, 50.0))
    d1, d2, _ = _nearest_two(points, height, width)
    radius = rng.uniform(0.25, 0.5) * np.median(d2)
    return colourise(rng, (d1 < radius).astype(np.float32))


def cellular_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Worley F1 distance: smooth bumps around random seeds (pebbles, foam)."""
    points = _points(rng, height, width, _period_px(rng, 6.0, 50.0))
    d1, _, _ = _nearest_two(points, height, width)
    return colourise(rng, normalise(d1))


# --- the uniform (textureless) surface ------------------------------------------------


def uniform(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A constant random colour: a textureless surface (not part of either split)."""
    return np.broadcast_to(random_colour(rng), (height, width, 3)).astype(np.float32)


TEXTURE_FAMILIES: dict[str, dict[str, TextureFn]] = {
    "noise": {"fbm_noise": fbm_noise, "ridged_noise": ridged_noise, "marble": marble, "speckle": speckle},
    "spectral": {"pink_spectrum": pink_spectrum, "oriented_spectrum": oriented_spectrum,
                 "colour_spectrum": colour_spectrum, "dead_leaves": dead_leaves},
    "stripes": {"stripes": stripes, "sine_grating": sine_grating, "plaid": plaid, "wavy_stripes": wavy_stripes},
    "checkers": {"checkers": checkers, "bricks": bricks, "grid_lines": grid_lines, "random_tiles": random_tiles},
    "cells": {"voronoi_cells": voronoi_cells, "worley_edges": worley_edges, "polka_dots": polka_dots,
              "cellular_noise": cellular_noise},
}

TEXTURES: dict[str, TextureFn] = {name: fn for family in TEXTURE_FAMILIES.values() for name, fn in family.items()}
UNIFORM_TEXTURE = "uniform"


def make_texture(name: str, rng: np.random.Generator, height_px: int, width_px: int) -> np.ndarray:
    """Generate texture ``name`` (a generator, a ``photo_*`` texture or ``"uniform"``) as ``(H, W, 3)`` float32."""
    from focaldepth.scenes.photos import PHOTO_TEXTURES

    if name == UNIFORM_TEXTURE:
        return uniform(rng, height_px, width_px)
    generators = {**TEXTURES, **PHOTO_TEXTURES}
    if name not in generators:
        raise KeyError(f"unknown texture generator {name!r}; known: {sorted(generators)}")
    texture = generators[name](rng, height_px, width_px)
    assert texture.shape == (height_px, width_px, 3), (name, texture.shape)
    return np.ascontiguousarray(texture, dtype=np.float32)
