"""Shared fixtures for the model-zoo tests: small random inputs in the project's layout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from focaldepth.models.base import camera_tensor
from focaldepth.optics import Camera

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def random_inputs(
    batch: int = 2,
    slices: int = 4,
    size_px: int = 32,
    seed: int = 0,
    near_m: float = 0.4,
    far_m: float = 2.0,
) -> Inputs:
    """Random frames in [0, 1], a focus sweep from far to near (capture order) and a camera."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.rand(batch, slices, 3, size_px, size_px, generator=generator)
    focus_distance_m = torch.linspace(far_m, near_m, slices).repeat(batch, 1)
    camera = camera_tensor(
        [Camera(focal_length_mm=50.0, f_number=2.0, sensor_width_mm=36.0, image_width_px=size_px)]
        * batch
    )
    return frames, focus_distance_m, camera


@pytest.fixture
def make_inputs() -> Callable[..., Inputs]:
    """``make_inputs(batch, slices, size_px, seed)`` -> frames, focus_distance_m, camera."""
    return random_inputs


@pytest.fixture
def slices_for() -> Callable[..., int]:
    """Fixed-stack models take exactly ``model.num_frames`` slices; the others any number."""
    return lambda model, default=4: getattr(model, "num_frames", None) or default
