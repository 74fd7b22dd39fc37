"""Train/test pools of textures and shapes, and the object-size pools.

Split. Within every texture family and every shape family, a seeded shuffle puts one
member (a quarter, rounded up) in the *test* pool and the rest in the *train* pool. A test
set therefore contains every kind of texture and shape, but never a generator or an
outline that training saw. The split depends only on ``split_seed`` (default 0): the
training and test configs must use the same one (both shipped configs do), otherwise
the pools could overlap. :func:`split_pools` is the single source of truth and is
checked for disjointness by the tests.

Object pools. The seed paper trained on two variants, "Small Obj" and "Small & Large
Obj". Here a pool fixes the distribution of object sizes, given as the object's diameter
as a fraction of the image width at the depth where it is placed:

* ``small``: diameters in [0.15, 0.5] of the image width;
* ``small_large``: half of the objects as in ``small``, half large, [0.5, 1.0].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from focaldepth.scenes.photos import PHOTO_TEXTURES
from focaldepth.scenes.shapes import SHAPE_FAMILIES
from focaldepth.scenes.textures import TEXTURE_FAMILIES

SPLITS = ("train", "test")
TEST_FRACTION = 0.25


@dataclass(frozen=True)
class Pools:
    """The texture generators and shapes a split may use."""

    split: str
    textures: tuple[str, ...]
    shapes: tuple[str, ...]
    photos: tuple[str, ...] = ()  # photographic textures (scenes.photos), a separate pool


def _split_family(members: list[str], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    order = rng.permutation(len(members))
    num_test = max(1, int(np.ceil(TEST_FRACTION * len(members))))
    test = sorted(members[i] for i in order[:num_test])
    train = sorted(members[i] for i in order[num_test:])
    return train, test


def split_pools(split_seed: int = 0) -> dict[str, Pools]:
    """``{"train": Pools, "test": Pools}`` for ``split_seed``; disjoint by construction."""
    # A separate stream per kind, so adding a texture family never reshuffles the shapes.
    textures = {"train": [], "test": []}
    shapes = {"train": [], "test": []}
    rng = np.random.default_rng([split_seed, 0])
    for family in sorted(TEXTURE_FAMILIES):
        train, test = _split_family(sorted(TEXTURE_FAMILIES[family]), rng)
        textures["train"] += train
        textures["test"] += test
    rng = np.random.default_rng([split_seed, 1])
    for family in sorted(SHAPE_FAMILIES):
        train, test = _split_family(sorted(SHAPE_FAMILIES[family]), rng)
        shapes["train"] += train
        shapes["test"] += test
    # Photos: their own stream too, so the procedural split above is what it always was.
    photos = dict(zip(("train", "test"), _split_family(sorted(PHOTO_TEXTURES), np.random.default_rng([split_seed, 2])),
                      strict=True))
    return {split: Pools(split, tuple(textures[split]), tuple(shapes[split]), tuple(photos[split]))
            for split in SPLITS}


@dataclass(frozen=True)
class SizeRange:
    """Object diameters as fractions of the image width, with the probability of this range."""

    min_fraction: float
    max_fraction: float
    probability: float


OBJECT_POOLS: dict[str, tuple[SizeRange, ...]] = {
    "small": (SizeRange(0.15, 0.5, 1.0),),
    "small_large": (SizeRange(0.15, 0.5, 0.5), SizeRange(0.5, 1.0, 0.5)),
}


def sample_size_fraction(pool: str, rng: np.random.Generator) -> float:
    """An object diameter (fraction of the image width), log-uniform within a range of ``pool``."""
    ranges = OBJECT_POOLS[pool]
    choice = ranges[int(rng.choice(len(ranges), p=[r.probability for r in ranges]))]
    return float(np.exp(rng.uniform(np.log(choice.min_fraction), np.log(choice.max_fraction))))
