"""Photographic textures: random crops of the natural images that ship inside scikit-image.

Why: procedural textures have statistics no real surface has (perfect periodicity, one
spatial scale, saturated palettes), and a depth-from-focus network meets real photographs at
test time. The images in ``skimage.data`` (astronaut, coffee, bricks, grass, text pages,
micrographs, ...) are inside the wheel, so nothing is downloaded. Each image is a texture
"generator" like the procedural ones: a pure function ``(rng, height_px, width_px) ->
(H, W, 3) float32`` in [0, 1] that takes a random crop at a random zoom (0.5-2 texels per
image pixel), a random rotation by a multiple of 90 degrees and a random mirror. Grey images
get a random two-colour palette or a random tint, so they do not all look grey.

Photos have their own train/test split in :mod:`focaldepth.scenes.pools` (a quarter of the
images held out for test), and are used only when a config asks for them
(``appearance.photo_fraction``), so older configs generate exactly what they did.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np

from focaldepth.scenes.colour import colourise, random_colour

# skimage.data loaders that read files inside the wheel (no pooch download). Motorcycle is
# left out on purpose: it is our real RGB-D evaluation scene.
PHOTO_SOURCES = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass",
                 "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
                 "text")
ZOOM_RANGE = (0.5, 2.0)  # texture pixels per source pixel (log-uniform)


@lru_cache(maxsize=None)
def load_photo(source: str) -> np.ndarray:
    """``skimage.data.<source>()`` as float32 in [0, 1], (H, W) for grey or (H, W, 3)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, source)())
    if image.ndim == 3:
        image = image[..., :3]
    image = image.astype(np.float32) / (255.0 if image.dtype != bool else 1.0)
    image.setflags(write=False)
    return image


def _random_crop(rng: np.random.Generator, image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A ``height`` x ``width`` crop at a random zoom; mirrored tiling if the source is too small."""
    zoom = float(np.exp(rng.uniform(*np.log(ZOOM_RANGE))))
    src_h, src_w = max(2, int(np.ceil(height / zoom))), max(2, int(np.ceil(width / zoom)))
    reps_y, reps_x = -(-src_h // image.shape[0]), -(-src_w // image.shape[1])
    if reps_y > 1 or reps_x > 1:  # reflect-tile so any crop size exists
        image = np.pad(image, [(0, (reps_y - 1) * image.shape[0]), (0, (reps_x - 1) * image.shape[1])]
                       + [(0, 0)] * (image.ndim - 2), mode="symmetric")
    top = int(rng.integers(0, image.shape[0] - src_h + 1))
    left = int(rng.integers(0, image.shape[1] - src_w + 1))
    crop = np.ascontiguousarray(image[top:top + src_h, left:left + src_w])
    interpolation = cv2.INTER_AREA if zoom < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interpolation)


def _orient(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    image = np.rot90(image, int(rng.integers(4)))
    return image[:, ::-1] if rng.uniform() < 0.5 else image


def _colour_grey(rng: np.random.Generator, grey: np.ndarray) -> np.ndarray:
    if rng.uniform() < 0.5:
        return colourise(rng, grey)
    tint = 0.5 + 0.5 * random_colour(rng)
    return grey[..., None] * tint[None, None, :]


def photo_texture(source: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random ``(height, width, 3)`` float32 crop of ``skimage.data.<source>`` (module doc)."""
    image = _orient(rng, load_photo(source))
    # Rotation by 90 degrees swaps the axes: crop in the rotated frame directly.
    crop = _random_crop(rng, np.ascontiguousarray(image), height, width)
    if crop.ndim == 2:
        crop = _colour_grey(rng, crop)
    return np.clip(crop, 0.0, 1.0).astype(np.float32)


def _generator(source: str) -> Callable[[np.random.Generator, int, int], np.ndarray]:
    def generate(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        return photo_texture(source, rng, height, width)

    generate.__name__ = f"photo_{source}"
    return generate


PHOTO_TEXTURES: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    f"photo_{source}": _generator(source) for source in PHOTO_SOURCES}
