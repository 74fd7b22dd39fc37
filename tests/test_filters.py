"""The OpenCV fast paths of focaldepth.filters compute kornia's values."""

import kornia
import pytest
import torch

from focaldepth.filters import box_blur, gaussian_blur


@pytest.mark.parametrize("border", ["reflect", "replicate", "constant"])
def test_gaussian_blur_equals_kornia(border):
    torch.manual_seed(0)
    image = torch.rand(2, 3, 17, 23)
    expected = kornia.filters.gaussian_blur2d(image, (9, 9), (2.0, 2.0), border_type=border)
    assert torch.allclose(gaussian_blur(image, 9, 2.0, border_type=border), expected, atol=1e-6)


@pytest.mark.parametrize("border", ["reflect", "replicate", "constant"])
def test_box_blur_equals_kornia(border):
    torch.manual_seed(0)
    image = torch.rand(2, 1, 17, 23)
    expected = kornia.filters.box_blur(image, (5, 5), border_type=border)
    assert torch.allclose(box_blur(image, 5, border_type=border), expected, atol=1e-6)


def test_gradients_flow_through_the_kornia_path():
    image = torch.rand(1, 1, 12, 12, requires_grad=True)
    gaussian_blur(image, 5, 1.0).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    with torch.no_grad():  # no graph wanted: the fast path, same values
        assert torch.allclose(gaussian_blur(image, 5, 1.0), kornia.filters.gaussian_blur2d(
            image, (5, 5), (1.0, 1.0), border_type="replicate"), atol=1e-6)
