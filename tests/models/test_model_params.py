"""Full-size parameter counts: the documented numbers, the papers' figures, and independent
layer-by-layer counts of the reference architectures (VGG16-BN, DenseNet-121, the authors'
DefocusNet). Counted on the meta device: no memory is allocated."""

from __future__ import annotations

import pytest
import torch

from focaldepth import models

#: The counts stated in the architectures' docstrings and the report.
DOCUMENTED = {
    ("ddffnet", ()): 39_790_341,
    ("ddffnet", (("skip", "none"),)): 39_200_517,
    ("lstm_ddff", ()): 207_613_697,
    ("lstm_ddff", (("image_size_px", (224, 224)),)): 176_148_737,
    ("lstm_ddff", (("variant", "stacking"),)): 39_856_897,
    ("recurrent_ae", ()): 4_456_033,
    ("poolnet", ()): 3_020_673,
    ("defocusnet", ()): 3_734_546,
    ("d3net", ()): 24_220_224,
}


def part_count(name: str, attribute: str, **kwargs) -> int:
    with torch.device("meta"):
        model = models.create(name, **kwargs)
    return sum(p.numel() for p in getattr(model, attribute).parameters())


@pytest.mark.parametrize("name, kwargs", list(DOCUMENTED))
def test_documented_counts(name, kwargs):
    assert models.parameter_count(name, **dict(kwargs)) == DOCUMENTED[(name, kwargs)]


def test_papers_figures():
    # DDFFNet with the CC3 skip "about 40 M" (Hazirbas et al.); DefocusNet "about 3.7 M".
    assert models.parameter_count("ddffnet") == pytest.approx(40e6, rel=0.01)
    assert models.parameter_count("defocusnet") == pytest.approx(3.7e6, rel=0.01)


def vgg16_bn_features_without_conv_bias() -> int:
    """torchvision's vgg16_bn().features minus the 13 conv biases DDFF does not use."""
    config = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    total, channels = 0, 3
    for width in config:
        total += 9 * channels * width + 2 * width  # 3x3 conv + BatchNorm
        channels = width
    return total


def test_ddff_encoder_is_vgg16_bn():
    assert vgg16_bn_features_without_conv_bias() == 14_718_912
    assert part_count("ddffnet", "encoder") == vgg16_bn_features_without_conv_bias()


@pytest.mark.parametrize("level, width", [(1, 64), (2, 128), (3, 256)])
def test_each_cc_skip_widens_one_decoder_conv(level, width):
    """CC-N concatenates encoder block N (width w) into decoder level N: one 3x3 conv gains w
    input channels, i.e. 9 w^2 parameters."""
    extra = models.parameter_count("ddffnet", skip=f"cc{level}") - models.parameter_count(
        "ddffnet", skip="none"
    )
    assert extra == 9 * width * width


def densenet121_features() -> int:
    """torchvision's densenet121().features, layer by layer (growth 32, bn_size 4)."""
    total = 3 * 64 * 49 + 2 * 64  # conv0 7x7 + norm0
    channels = 64
    for i, layers in enumerate((6, 12, 24, 16)):
        for _ in range(layers):
            total += 2 * channels + channels * 128 + 2 * 128 + 128 * 32 * 9
            channels += 32
        if i < 3:
            total += 2 * channels + channels * (channels // 2)
            channels //= 2
    return total + 2 * channels  # norm5


def test_d3net_encoder_is_densenet121_with_a_strided_stem():
    assert densenet121_features() == 6_953_856
    stem_down = 64 * 64 * 16 + 2 * 64  # 4x4 stride-2 conv replacing the max-pool, + BatchNorm
    assert part_count("d3net", "encoder") == densenet121_features() + stem_down


def defocusnet_authors() -> int:
    """The authors' AENet (dvl-tum/defocus-net, arch 1, 16 filters, 3 blocks, two steps, RGB +
    focus in, CoC + focus into step two), from its layer list: 3x3 convs with biases."""

    def conv(c_in, c_out):
        return 9 * c_in * c_out + c_out

    def step(in_channels, joint_factor):
        f = 16
        total = conv(in_channels, f) + conv(f, f)
        for i in range(3):
            total += 2 * conv(f * 2**i * 2, f * 2**i * 2)
        total += conv(f * 16, f * 16)  # bridge
        for i in range(4):
            width = f * 2 ** (3 - i)
            total += conv(2 * width, width) + conv(joint_factor * width, width)
        return total + conv(f, f) + conv(f, 1)

    return step(4, 2) + step(2, 3)


def test_defocusnet_reduces_to_the_authors_network():
    assert defocusnet_authors() == 3_729_186
    assert (
        models.parameter_count("defocusnet", batch_norm=False, depth_from_frames=False)
        == defocusnet_authors()
    )


@pytest.mark.parametrize("size_px", [224, 256])
def test_lstm_ddff_fc_recurrence(size_px):
    flat, hidden = 512 * (size_px // 32) ** 2, 2048
    linear = (flat * hidden + hidden) + (hidden * flat + flat)
    lstm = 4 * hidden * (hidden + hidden) + 2 * 4 * hidden
    assert part_count("lstm_ddff", "recurrence", image_size_px=(size_px, size_px)) == linear + lstm


def test_lstm_ddff_stacking_reads_feature_maps():
    with torch.device("meta"):
        model = models.create("lstm_ddff", variant="stacking")
    lstm = model.recurrence.lstm
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (8 * 8, 8 * 8, 2)
