"""Backward warping along optical flow: the one warp that metrics, losses and models share.

It sits at the bottom of the package (it imports only torch and kornia) so that models,
losses and metrics can all use it without an upward import; ``focaldepth.metrics`` re-exports
:func:`warp_to_current` for existing callers.
"""

from __future__ import annotations

import kornia
import torch


def warp_to_current(
    image_prev: torch.Tensor, flow_t_to_prev_px: torch.Tensor, mode: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-warp ``image_prev`` ``(B, C, H, W)`` into frame t: output(x) = prev(x + flow(x)),
    with ``flow_t_to_prev_px`` ``(B, 2, H, W)`` = (dx, dy) in pixels (OpenCV convention).
    Returns the warped image and a ``(B, 1, H, W)`` mask of samples inside the frame."""
    batch, _, height, width = image_prev.shape
    if flow_t_to_prev_px.shape != (batch, 2, height, width):
        raise ValueError(
            f"flow_t_to_prev: expected (B, 2, H, W) = {(batch, 2, height, width)}, "
            f"got {tuple(flow_t_to_prev_px.shape)}"
        )
    grid = kornia.utils.create_meshgrid(
        height,
        width,
        normalized_coordinates=False,
        device=image_prev.device,
        dtype=flow_t_to_prev_px.dtype,
    )
    map_x = grid[..., 0] + flow_t_to_prev_px[:, 0]
    map_y = grid[..., 1] + flow_t_to_prev_px[:, 1]
    warped = kornia.geometry.transform.remap(
        image_prev, map_x, map_y, mode=mode, padding_mode="border", align_corners=True
    )
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return warped, inside[:, None]
