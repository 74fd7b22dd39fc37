"""Gaussian and box blurs of ``(B, C, H, W)`` tensors: kornia's, with an OpenCV fast path.

On a CPU tensor that needs no gradient, OpenCV's separable filters compute the same values
(to float rounding) 10-25x faster than kornia's conv-based ones at the sizes ``predict`` uses
(320x180 on one core: a 9x9 Gaussian 7.2 vs 0.3 ms, a 5x5 box 1.4 vs 0.1 ms). Everything else
(CUDA, autograd) goes through kornia, so models stay device-agnostic and trainable.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import kornia
import numpy as np
import torch

# kornia's border names -> OpenCV's (kornia's "reflect" is torch's: the edge pixel not repeated)
_CV2_BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE,
                "constant": cv2.BORDER_CONSTANT}


def _opencv_applies(image: torch.Tensor, border_type: str) -> bool:
    return (image.device.type == "cpu" and image.dtype in (torch.float32, torch.float64)
            and border_type in _CV2_BORDERS and not (image.requires_grad and torch.is_grad_enabled()))


def _per_plane(image: torch.Tensor, filter_plane: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    planes = image.detach().contiguous().numpy()
    out = np.empty_like(planes)
    for b in range(planes.shape[0]):
        for c in range(planes.shape[1]):
            out[b, c] = filter_plane(planes[b, c])
    return torch.from_numpy(out)


def gaussian_blur(image: torch.Tensor, size: int, sigma_px: float, border_type: str = "replicate") -> torch.Tensor:
    """``kornia.filters.gaussian_blur2d(image, (size, size), (sigma, sigma), border_type)``."""
    if not _opencv_applies(image, border_type):
        return kornia.filters.gaussian_blur2d(image, (size, size), (sigma_px, sigma_px), border_type=border_type)
    border = _CV2_BORDERS[border_type]
    return _per_plane(image, lambda plane: cv2.GaussianBlur(plane, (size, size), sigma_px, sigmaY=sigma_px,
                                                            borderType=border))


def box_blur(image: torch.Tensor, size: int, border_type: str = "reflect") -> torch.Tensor:
    """``kornia.filters.box_blur(image, (size, size), border_type)``: the mean over a window."""
    if not _opencv_applies(image, border_type):
        return kornia.filters.box_blur(image, (size, size), border_type=border_type)
    border = _CV2_BORDERS[border_type]
    return _per_plane(image, lambda plane: cv2.boxFilter(plane, -1, (size, size), borderType=border))
