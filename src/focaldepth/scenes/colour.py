"""Random colours and palettes shared by the generated textures (:mod:`.textures`) and the
photograph textures (:mod:`.photos`); a module of its own so neither imports the other."""

from __future__ import annotations

import cv2
import numpy as np


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour in [0, 1] with a random saturation and value (HSV sampling)."""
    hue = rng.uniform(0.0, 360.0)
    saturation = rng.uniform(0.0, 1.0) ** 1.5  # many weakly saturated colours, like real scenes
    value = rng.uniform(0.15, 1.0)
    hsv = np.array([[[hue, saturation, value]]], dtype=np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]


def colourise(rng: np.random.Generator, field: np.ndarray) -> np.ndarray:
    """Map a scalar field in [0, 1] through a random 2- or 3-colour palette, with a random
    contrast so that some textures are faint (low-texture surfaces are part of the data)."""
    num_colours = int(rng.integers(2, 4))
    for _ in range(16):  # end colours that differ visibly (faint textures come from `contrast`)
        colours = np.stack([random_colour(rng) for _ in range(num_colours)])  # (K, 3)
        if np.linalg.norm(colours[0] - colours[-1]) >= 0.25:
            break
    contrast = rng.uniform(0.3, 1.0)
    t = 0.5 + contrast * (field.astype(np.float32) - 0.5)
    position = t * (num_colours - 1)
    lower = np.clip(np.floor(position).astype(np.int64), 0, num_colours - 2)
    frac = (position - lower)[..., None]
    image = colours[lower] * (1.0 - frac) + colours[lower + 1] * frac
    return np.clip(image, 0.0, 1.0).astype(np.float32)
