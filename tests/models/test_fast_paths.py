"""The speed rewrites compute the same functions as the plain forms they replace: the
concatenation-free slice mixer, the shifted-sum box filter, the plane sweep's FFT sizes and
the vote / plane sweep run side by side (session 10); the stem as a 6x6 stride-2 conv, the
BatchNorm folded into the convs and the one-channel heads as shifted sums (session 11)."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

from focaldepth import models
from focaldepth.classical import box_filter, window_mean
from focaldepth.defocus_volume import defocus_volume_depth
from focaldepth.models.base import Beside
from focaldepth.models.sweepnet import (
    SLICE_CODE_CHANNELS,
    ConvBnReLU,
    SliceMixer,
    code_for_scale,
    conv3x3_to_one,
    unshuffled_kernel,
)
from focaldepth.render import fast_fft_size


def concatenated_mixer(mixer: SliceMixer, parts, num_slices, code, scale):
    """The mixer as first written: one 1x1 conv over [features, code planes], plus the
    pooled terms, on explicitly concatenated tensors."""
    features = torch.cat(parts, dim=1)
    height, width = features.shape[-2:]
    planes = code_for_scale(code, scale).reshape(-1, SLICE_CODE_CHANNELS, 1, 1).expand(-1, -1, height, width)
    own = mixer.own(torch.cat([features, planes], dim=1))
    stacked = features.unflatten(0, (-1, num_slices))
    pooled = mixer.pooled_max(stacked.amax(dim=1)) + mixer.pooled_mean(stacked.mean(dim=1))
    return (own.unflatten(0, (-1, num_slices)) + pooled.unsqueeze(1)).flatten(0, 1)


@pytest.mark.parametrize("split", [(6,), (4, 2)])
def test_the_mixer_equals_its_concatenated_form(split):
    torch.manual_seed(0)
    batch, slices, height, width = 2, 3, 5, 7
    mixer = SliceMixer(sum(split), 4)
    parts = [torch.randn(batch * slices, c, height, width) for c in split]
    code = torch.randn(batch, slices, SLICE_CODE_CHANNELS)
    expected = concatenated_mixer(mixer, parts, slices, code, 4.0)
    assert torch.allclose(mixer(parts, slices, code, 4.0), expected, atol=1e-5)


def test_the_unshuffled_kernel_is_a_conv_after_pixel_unshuffle():
    torch.manual_seed(0)
    image, weight = torch.randn(2, 3, 8, 10), torch.randn(5, 12, 3, 3)
    expected = F.conv2d(F.pixel_unshuffle(image, 2), weight, padding=1)
    assert torch.allclose(F.conv2d(image, unshuffled_kernel(weight), stride=2, padding=2), expected, atol=1e-4)


def plain_stem(net, frames):
    """The stem as trained: a conv block over the pixel-unshuffled [frames, frames - mean]."""
    relative = frames - frames.mean(dim=1, keepdim=True)
    x = F.pixel_unshuffle(torch.cat([frames, relative], dim=2).flatten(0, 1), 2)
    return torch.nn.Sequential.forward(net.stem[0], x)


@pytest.mark.parametrize("training", [False, True])
def test_the_stem_equals_its_plain_form(training):
    torch.manual_seed(0)
    net = models.create("sweepnet_test")
    for norm in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-0.5, 0.5), norm.running_var.uniform_(0.5, 2.0)
        norm.weight.data.uniform_(0.5, 1.5), norm.bias.data.uniform_(-0.2, 0.2)
    net.train(training)
    frames = torch.rand(2, 4, 3, 16, 32)
    assert torch.allclose(net.stem_input(frames), plain_stem(net, frames), atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_the_folded_batchnorm_equals_the_module_sequence(stride):
    torch.manual_seed(0)
    block = ConvBnReLU(4, 6, stride)
    block[1].running_mean.uniform_(-1, 1), block[1].running_var.uniform_(0.5, 2.0)
    block[1].weight.data.uniform_(0.5, 1.5), block[1].bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(3, 4, 9, 11)
    for training in (False, True):
        block.train(training)
        plain = torch.nn.Sequential.forward(block, x.clone())
        assert torch.allclose(block(x), plain, atol=1e-5)
    assert list(block.state_dict()) == ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                        "1.num_batches_tracked"]


@pytest.mark.parametrize("bias", [True, False])
def test_the_one_channel_head_equals_its_conv(bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 1, 3, padding=1, bias=bias)
    x = torch.randn(2, 5, 7, 9, requires_grad=True)
    assert torch.allclose(conv3x3_to_one(x, conv), conv(x), atol=1e-5)
    conv3x3_to_one(x, conv).sum().backward()  # trainable through it
    assert conv.weight.grad is not None and x.grad is not None


@pytest.mark.parametrize("window", [1, 3, 7])
def test_the_box_filter_is_the_replicate_padded_mean(window):
    torch.manual_seed(0)
    image = torch.rand(2, 3, 9, 13)
    radius = window // 2
    expected = F.avg_pool2d(F.pad(image, (radius,) * 4, mode="replicate"), window, stride=1)
    assert torch.allclose(window_mean(image, window), expected, atol=1e-6)
    # any leading shape, and unequal sides
    volume = torch.rand(4, 9, 13)
    padded = F.pad(volume[:, None], (2, 2, 1, 1), mode="replicate")
    assert torch.allclose(box_filter(volume, 3, 5), F.avg_pool2d(padded, (3, 5), stride=1)[:, 0], atol=1e-6)


def test_fft_lengths_have_only_small_prime_factors():
    assert [fast_fft_size(n) for n in (1, 7, 97, 124, 194, 200)] == [1, 8, 100, 125, 200, 200]
    for n in range(1, 300):
        m = fast_fft_size(n)
        rest = m
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        assert rest == 1 and m >= n
        assert all(fast_fft_size(k) != k for k in range(n, m))  # the smallest such


def test_the_plane_sweep_still_finds_a_plane(make_inputs):
    # A textured plane at 1.5 m under a sweep 1.0-3.0 m: the answer must not depend on the
    # FFT grid's extra padding (which is only ever on the far side, outside the crop).
    from focaldepth.optics import dioptric_ramp
    from focaldepth.render import render_focal_stack

    torch.manual_seed(0)
    image = torch.rand(1, 3, 61, 77)
    depth = torch.full((1, 1, 61, 77), 1.5)
    focus = torch.tensor([list(dioptric_ramp(1.0, 3.0, 5))], dtype=torch.float32)
    camera = torch.tensor([[0.05, 1.4, 23.6e-3 / 320]])
    stack = render_focal_stack(image, depth, focus, camera)
    out = defocus_volume_depth(stack, focus, camera, smooth=False)
    centre = out["depth_m"][..., 10:-10, 10:-10]
    assert (centre.median() - 1.5).abs() < 0.08


def test_beside_runs_on_another_thread_only_for_single_thread_cpu_inference():
    names = []

    def work(x):
        names.append(threading.current_thread().name)
        return x * 2

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            assert Beside(work, torch.ones(2)).result().tolist() == [2.0, 2.0]
        assert names[-1].startswith("focaldepth-beside")
        assert Beside(work, torch.ones(2)).result().tolist() == [2.0, 2.0]  # autograd on: inline
        assert names[-1] == threading.current_thread().name
        torch.set_num_threads(2)
        with torch.inference_mode():
            Beside(work, torch.ones(2)).result()
        assert names[-1] == threading.current_thread().name
    finally:
        torch.set_num_threads(threads)


def test_beside_hands_errors_to_the_caller():
    def broken():
        raise ValueError("no")

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode(), pytest.raises(ValueError, match="no"):
            Beside(broken).result()
    finally:
        torch.set_num_threads(threads)


def test_the_hybrid_gives_the_same_depth_side_by_side_and_inline(make_inputs):
    model = models.create("sweepnet_physics_test").eval()
    inputs = make_inputs(slices=4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            beside = model(*inputs)
        with torch.no_grad():
            torch.set_num_threads(2)  # inline
            inline = model(*inputs)
    finally:
        torch.set_num_threads(threads)
    for key in ("depth_m", "confidence"):
        assert torch.allclose(beside[key], inline[key], atol=1e-6)


def test_a_nested_beside_runs_inline_instead_of_waiting_for_itself():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            outer = Beside(lambda: Beside(lambda: threading.current_thread().name).result())
            assert outer.result().startswith("focaldepth-beside")  # the inner one ran on the same worker
    finally:
        torch.set_num_threads(threads)


def test_the_fusion_cell_in_channels_last_equals_the_plain_layout():
    from focaldepth.models.temporal import INPUT_CHANNELS, FusionCell

    torch.manual_seed(0)
    cell = FusionCell(features=8, hidden=16)
    torch.nn.init.normal_(cell.decode[-1].weight, std=0.1)  # not the zero init: a real output
    cues, hidden = torch.rand(1, INPUT_CHANNELS, 18, 32), torch.rand(1, 16, 9, 16)
    out, new_hidden = cell(cues, hidden)
    plain_out, plain_hidden = cell._step(cues, hidden)
    assert out.is_contiguous() and new_hidden.is_contiguous()
    assert torch.allclose(out, plain_out, atol=1e-5) and torch.allclose(new_hidden, plain_hidden, atol=1e-5)
