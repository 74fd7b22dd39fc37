"""Permutation-invariant focal-stack networks: PoolNet and DefocusNet.

Both apply one U-Net to every slice with shared weights and let the slices talk only through
a global max-pool across the slice axis, concatenated back to every slice's features at each
level. Max is symmetric and defined for any count, so the depth output does not depend on the
order or the number of slices (any S >= 1): Aittala & Durand, "Burst Image Deblurring Using
Permutation Invariant Convolutional Neural Networks", ECCV 2018.

**PoolNet** (Aittala & Durand's network as modified in the seed). Encoder: a 3x3 conv, then per
level a 1x1 conv mixing [slice features, slice max] and a 4x4 stride-2 conv. Decoder: per level
a 1x1 conv mixing [slice features, slice max, encoder skip], a 3x3 conv and a 4x4 stride-2
transposed conv; after the last level a max over slices and a few 3x3 convs to one map. The
seed's modifications: BatchNorm (eps 1e-4) after every conv, and the focus distance as an extra
input channel per frame (``focus_channel=True``, see :func:`common.focus_unit_channel`).
Widths are the seed's trained configuration: encoder 32, 48, 64, 128, 192; decoder 192, 128,
96, 48, 48; final 32, 32, 32. Parameter count (full size, focus channel on): 3,020,673.
Deviations: the seed's decoder could skip the slice max (``dec_pool_layers=False``); here every
decoder level pools (as Aittala & Durand do) and the output is max-pooled over slices before the
final convs; the final conv is a plain conv (a logit for the sigmoid depth mapping).

**DefocusNet**: Maximov, Galim, Leal-Taixé, "Focus on Defocus: Bridging the Synthetic to Real
Domain Gap for Depth Estimation", CVPR 2020 (authors' code: dvl-tum/defocus-net, ``AENet``).
Two such U-Nets in sequence: the first predicts every frame's defocus (CoC) map from the frame
and its focus distance; the second predicts depth from the frames, the predicted CoC maps and
the focus distances. Each has 4 levels of two 3x3 convs (16, 32, 64, 128 channels), 2x2
max-pool down, bilinear up + 3x3 conv, leaky ReLU (0.2); the second also concatenates the slice
max of its up-sampled features in the decoder and max-pools over slices before its output.
Parameter count (full size): 3,734,546, the paper's "about 3.7 M"; with ``batch_norm=False,
depth_from_frames=False`` exactly the authors' 3,729,186.

Deviations: BatchNorm after every conv (``batch_norm=True``, +4,928 parameters; the authors had
none); the focus channel is inverse focus on the stack's range
(:func:`common.focus_unit_channel`) where the authors used ``focus / max focus``; the second net
also gets the RGB frames (``depth_from_frames=True``, +432 parameters; the authors gave it only
CoC + focus) and takes its skips from its own encoder (the authors' code reused the first
net's), and its finest decoder level is used (the authors' second decoder skipped that layer
although it is built); CoC maps pass through a softplus (non-negative, ``"coc_px"``) and depth
through a sigmoid and the stack's depth range.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from focaldepth.errors import UserError
from focaldepth.models.base import ModelInfo
from focaldepth.models.common import (
    ZooModel,
    check_depth_range,
    coc_px_from_logits,
    conv_bn_act,
    focus_unit_channel,
    init_weights,
    max_over_slices,
    per_slice,
    positive_ints,
    with_slice_max,
)
from focaldepth.models.registry import register_model

POOLNET_PAPER = "Aittala & Durand, ECCV 2018, as modified in the seed"
DEFOCUSNET_PAPER = "Maximov et al., CVPR 2020"
BN_EPS = 1e-4  # the seed's BatchNorm epsilon


def add_focus_channel(frames: torch.Tensor, focus_distance_m: torch.Tensor) -> torch.Tensor:
    """Append :func:`focus_unit_channel` to every frame: ``C -> C + 1`` channels."""
    height, width = frames.shape[-2:]
    return torch.cat(
        [frames, focus_unit_channel(focus_distance_m, height, width).to(frames.dtype)], dim=2
    )


class PoolEncoder(nn.Module):
    """PoolNet's encoder; returns every level's per-slice features ``(B, S, C_l, H_l, W_l)``."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        self.first = conv_bn_act(in_channels, widths[0], 3, bn_eps=BN_EPS)
        self.mix = nn.ModuleList(conv_bn_act(2 * w, w, 1, bn_eps=BN_EPS) for w in widths[:-1])
        self.down = nn.ModuleList(
            conv_bn_act(w_in, w_out, 4, stride=2, padding=1, bn_eps=BN_EPS)
            for w_in, w_out in itertools.pairwise(widths)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [per_slice(self.first, x)]
        for mix, down in zip(self.mix, self.down):
            features.append(per_slice(down, per_slice(mix, with_slice_max(features[-1]))))
        return features


class PoolDecoder(nn.Module):
    """PoolNet's decoder; returns per-slice features ``(B, S, widths[-1], H, W)``."""

    def __init__(self, encoder_widths: Sequence[int], widths: Sequence[int]):
        super().__init__()
        ins = [encoder_widths[-1]] + list(widths[:-1])
        skips = list(reversed(encoder_widths[:-1]))
        last = len(widths) - 1
        self.mix = nn.ModuleList(
            conv_bn_act(2 * w_in + skip, w_in, 1, bn_eps=BN_EPS)
            for w_in, skip in zip(ins[1:], skips)
        )
        self.conv = nn.ModuleList(
            conv_bn_act(w_in, w_in if i < last else w_out, 3, bn_eps=BN_EPS)
            for i, (w_in, w_out) in enumerate(zip(ins, widths))
        )
        self.up = nn.ModuleList(
            conv_bn_act(w_in, w_out, 4, stride=2, padding=1, transpose=True, bn_eps=BN_EPS)
            for w_in, w_out in zip(ins[:-1], widths[:-1])
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for i, conv in enumerate(self.conv):
            if i > 0:
                skip = features[-(i + 1)]
                x = per_slice(self.mix[i - 1], torch.cat([with_slice_max(x), skip], dim=2))
            x = per_slice(conv, x)
            if i < len(self.up):
                x = per_slice(self.up[i], x)
        return x


def final_convs(in_channels: int, widths: Sequence[int], out_channels: int = 1) -> nn.Sequential:
    """3x3 conv-BN-ReLU layers then a plain 3x3 conv to ``out_channels`` logits."""
    layers: list[nn.Module] = []
    for width in widths:
        layers.append(conv_bn_act(in_channels, width, 3, bn_eps=BN_EPS))
        in_channels = width
    layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
    return nn.Sequential(*layers)


@register_model(
    "poolnet_test", enc_channels=(4, 6, 8, 8, 8), dec_channels=(8, 8, 6, 6, 4), final_channels=(4,)
)
@register_model("poolnet")
class PoolNet(ZooModel):
    """PoolNet (Aittala & Durand 2018 as modified in the seed): per-slice U-Net branches with a
    global max over slices at every level; any number of slices in any order. Focus distance as
    an input channel (``focus_channel``); ``coc_decoder=True`` adds a second, per-slice decoder
    predicting CoC maps. See the module docstring for parameter counts and deviations."""

    info = ModelInfo(
        consumes="stack_any", uses_focus_distance=True, uses_camera=False, paper=POOLNET_PAPER
    )

    def __init__(
        self,
        enc_channels: Sequence[int] = (32, 48, 64, 128, 192),
        dec_channels: Sequence[int] = (192, 128, 96, 48, 48),
        final_channels: Sequence[int] = (32, 32, 32),
        focus_channel: bool = True,
        coc_decoder: bool = False,
        depth_range_m: Sequence[float] | None = None,
    ):
        super().__init__()
        enc_channels = positive_ints("enc_channels", enc_channels)
        dec_channels = positive_ints("dec_channels", dec_channels, length=len(enc_channels))
        final_channels = positive_ints("final_channels", final_channels)
        self.focus_channel = bool(focus_channel)
        self.size_multiple_px = 2 ** (len(enc_channels) - 1)
        self.depth_range_m = check_depth_range(depth_range_m)
        self.info = ModelInfo("stack_any", self.focus_channel, False, POOLNET_PAPER)
        self.encoder = PoolEncoder(self.in_channels + self.focus_channel, enc_channels)
        self.decoder = PoolDecoder(enc_channels, dec_channels)
        self.head = final_convs(dec_channels[-1], final_channels)
        self.coc_decoder = PoolDecoder(enc_channels, dec_channels) if coc_decoder else None
        self.coc_head = final_convs(dec_channels[-1], final_channels) if coc_decoder else None
        init_weights(self)

    def forward(
        self, frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        self.check(frames, focus_distance_m, camera)
        x = add_focus_channel(frames, focus_distance_m) if self.focus_channel else frames
        features = self.encoder(x)
        unit = torch.sigmoid(self.head(max_over_slices(self.decoder(features))))
        out = {"depth_m": self.depth_from_unit(unit, focus_distance_m)}
        if self.coc_decoder is not None:
            out["coc_px"] = coc_px_from_logits(per_slice(self.coc_head, self.coc_decoder(features)))
        return out


class DefocusUNet(nn.Module):
    """One of DefocusNet's two networks (the authors' ``AENet``), on ``(B, S, C, H, W)``.

    ``pool_decoder``: concatenate the slice max in every decoder level (the second network).
    ``reduce_output``: max-pool over slices before the output convs -> ``(B, out, H, W)``;
    otherwise one output per slice ``(B, S, out, H, W)``."""

    def __init__(
        self,
        in_channels: int,
        filters: int = 16,
        levels: int = 4,
        pool_decoder: bool = False,
        reduce_output: bool = False,
        batch_norm: bool = True,
        out_channels: int = 1,
    ):
        super().__init__()
        self.pool_decoder, self.reduce_output = pool_decoder, reduce_output

        def conv(c_in: int, c_out: int) -> nn.Sequential:
            return conv_bn_act(c_in, c_out, 3, batch_norm=batch_norm, act="leaky", bias=True)

        widths = [filters * 2**level for level in range(levels)]
        ins = [in_channels] + [2 * w for w in widths[:-1]]
        self.encoder = nn.ModuleList(
            nn.Sequential(conv(c_in, w), conv(w, w)) for c_in, w in zip(ins, widths)
        )
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bridge = conv(2 * widths[-1], 2 * widths[-1])
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), conv(2 * w, w)
            )
            for w in widths
        )
        self.joint = nn.ModuleList(conv((3 if pool_decoder else 2) * w, w) for w in widths)
        self.end = conv(widths[0], widths[0])
        self.out = nn.Conv2d(widths[0], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = per_slice(block, x)
            skips.append(x)
            x = with_slice_max(per_slice(self.pool, x))
        x = per_slice(self.bridge, x)
        for level in reversed(range(len(self.encoder))):
            up = per_slice(self.up[level], x)
            parts = (
                [up, max_over_slices(up).unsqueeze(1).expand_as(up)] if self.pool_decoder else [up]
            )
            x = per_slice(self.joint[level], torch.cat(parts + [skips[level]], dim=2))
        if self.reduce_output:
            return self.out(self.end(max_over_slices(x)))
        return per_slice(lambda y: self.out(self.end(y)), x)


@register_model("defocusnet_test", filters=2)
@register_model("defocusnet")
class DefocusNet(ZooModel):
    """DefocusNet (Maximov et al., CVPR 2020): two permutation-invariant U-Nets in sequence,
    frames -> per-frame CoC maps (``"coc_px"``), then frames + CoC -> depth. Any number of
    slices in any order. See the module docstring for parameter counts and deviations."""

    info = ModelInfo(
        consumes="stack_any", uses_focus_distance=True, uses_camera=False, paper=DEFOCUSNET_PAPER
    )

    def __init__(
        self,
        filters: int = 16,
        levels: int = 4,
        focus_channel: bool = True,
        depth_from_frames: bool = True,
        batch_norm: bool = True,
        depth_range_m: Sequence[float] | None = None,
    ):
        super().__init__()
        if not (
            isinstance(filters, int) and filters > 0 and isinstance(levels, int) and levels > 0
        ):
            raise UserError(
                f"filters and levels must be positive integers, got {filters!r}, {levels!r}"
            )
        self.focus_channel = bool(focus_channel)
        self.depth_from_frames = bool(depth_from_frames)
        self.size_multiple_px = 2**levels
        self.depth_range_m = check_depth_range(depth_range_m)
        self.info = ModelInfo("stack_any", self.focus_channel, False, DEFOCUSNET_PAPER)
        coc_inputs = self.in_channels + self.focus_channel
        depth_inputs = 1 + self.focus_channel + (self.in_channels if self.depth_from_frames else 0)
        self.coc_net = DefocusUNet(coc_inputs, filters, levels, batch_norm=batch_norm)
        self.depth_net = DefocusUNet(
            depth_inputs,
            filters,
            levels,
            pool_decoder=True,
            reduce_output=True,
            batch_norm=batch_norm,
        )
        init_weights(self)

    def forward(
        self, frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        self.check(frames, focus_distance_m, camera)
        height, width = frames.shape[-2:]
        focus = focus_unit_channel(focus_distance_m, height, width).to(frames.dtype)
        coc_px = coc_px_from_logits(
            self.coc_net(torch.cat([frames, focus], 2) if self.focus_channel else frames)
        )
        parts = (
            ([frames] if self.depth_from_frames else [])
            + [coc_px]
            + ([focus] if self.focus_channel else [])
        )
        unit = torch.sigmoid(self.depth_net(torch.cat(parts, dim=2)))
        return {"depth_m": self.depth_from_unit(unit, focus_distance_m), "coc_px": coc_px}
