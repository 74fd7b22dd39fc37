"""DDFFNet: Hazirbas, Soyer, Staab, Leal-Taixé, Cremers, "Deep Depth From Focus", ACCV 2018.

Each focal slice goes through the same VGG16-BN encoder (13 conv layers, 5 max-pools) and a
mirrored decoder (transposed-convolution up-sampling, 13 conv layers) with one concatenation
skip connection ("CC"); the per-slice outputs are stacked and combined into one map by a
learned 1x1 "scoring" convolution over the S slices, so the stack size is fixed. The VGG
encoder/decoder here is shared with :mod:`focaldepth.models.lstm_ddff` (the seed's LSTM-DDFF).

Parameter count (full size, CC3, S = 4): 39,790,341 -- the paper's "about 40 M" (encoder
14,718,912 = torchvision's VGG16-BN features without conv biases; decoder 25,071,425; scoring 4;
the authors' code has one more: BN instead of a bias on the last conv). Without the skip:
39,200,517; with a CoC decoder: 64,861,766.

Deviations from the paper / the authors' PyTorch code (soyers/ddff-pytorch):

* ``skip="ccN"`` concatenates the encoder's conv block N output into decoder level N, one
  connection, as the authors' released flags ``ccN_enabled`` do; ``"none"`` disables it.
* The last decoder conv is a plain conv with bias (their conv + BN + ReLU) because its output
  is a logit: the scored map goes through a sigmoid and :func:`base.depth_from_unit` to metres
  (the paper regresses disparity directly).
* Random He initialisation: no ImageNet weights are downloaded (the paper starts from VGG16).
* Default stack size S = 4 (this project's protocol); the paper used S = 10. BatchNorm
  ``eps = 1e-3`` and dropout 0.5 after pool3-5 and decoder levels 5-3 as in their code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from focaldepth.errors import UserError
from focaldepth.models.base import ModelInfo
from focaldepth.models.common import (
    ZooModel,
    check_choice,
    check_depth_range,
    coc_px_from_logits,
    conv_bn_act,
    init_weights,
    positive_ints,
)
from focaldepth.models.registry import register_model

DDFF_PAPER = "Hazirbas et al., ACCV 2018"
VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_LAYERS = (2, 2, 3, 3, 3)
VGG_BN_EPS = 1e-3  # DDFF's BatchNorm epsilon
SKIP_CHOICES = ("none", "cc1", "cc2", "cc3", "cc4", "cc5")


def skip_level(skip: str) -> int | None:
    """``"ccN"`` -> N (1 = finest level), ``"none"`` -> None."""
    check_choice("skip", skip, SKIP_CHOICES)
    return None if skip == "none" else int(skip[2:])


class VGGEncoder(nn.Module):
    """VGG16-BN feature extractor: block L = ``layers[L]`` 3x3 conv-BN-ReLU at width
    ``widths[L]``, then 2x2 max-pool; optional dropout after pools 3-5 (DDFF)."""

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = VGG16_WIDTHS,
        layers: Sequence[int] = VGG16_LAYERS,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.widths = tuple(widths)
        blocks = []
        channels = in_channels
        for width, count in zip(self.widths, layers):
            convs = []
            for _ in range(count):
                convs.append(conv_bn_act(channels, width, bn_eps=VGG_BN_EPS))
                channels = width
            blocks.append(nn.Sequential(*convs))
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2, stride=2)
        # DDFF drops out after pool3, pool4 and pool5 only.
        self.dropouts = nn.ModuleList(
            nn.Dropout(dropout if level >= 2 else 0.0) for level in range(len(self.widths))
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the pooled bottleneck ``(N, widths[-1], H/32, W/32)`` and each block's
        pre-pool output (the candidates for skip connections)."""
        skips = []
        for block, dropout in zip(self.blocks, self.dropouts):
            x = block(x)
            skips.append(x)
            x = dropout(self.pool(x))
        return x, skips


class VGGDecoder(nn.Module):
    """DDFF's mirrored decoder: at level L (coarse to fine) a 4x4 stride-2 transposed conv, an
    optional concatenation with encoder block L, then ``layers[L]`` 3x3 conv-BN-ReLU of which
    the last narrows to the next level's width; the very last conv outputs ``out_channels``
    logits (no BN/ReLU)."""

    def __init__(
        self,
        out_channels: int = 1,
        widths: Sequence[int] = VGG16_WIDTHS,
        layers: Sequence[int] = VGG16_LAYERS,
        skip: str = "cc3",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.widths = tuple(widths)
        self.skip_level = skip_level(skip)
        levels = len(self.widths)
        self.upconvs = nn.ModuleList()
        self.levels = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        for level in reversed(range(levels)):  # 0-based level, coarse to fine
            width = self.widths[level]
            next_width = self.widths[level - 1] if level > 0 else None
            self.upconvs.append(
                nn.ConvTranspose2d(width, width, 4, stride=2, padding=1, bias=False)
            )
            in_width = width + (width if self.skip_level == level + 1 else 0)
            convs: list[nn.Module] = []
            for i in range(layers[level]):
                last = i == layers[level] - 1
                if last and next_width is None:
                    convs.append(nn.Conv2d(in_width, out_channels, 3, padding=1))
                else:
                    convs.append(
                        conv_bn_act(in_width, next_width if last else width, bn_eps=VGG_BN_EPS)
                    )
                in_width = width
            self.levels.append(nn.Sequential(*convs))
            self.dropouts.append(nn.Dropout(dropout if level >= 2 else 0.0))

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        levels = len(self.widths)
        for i, (upconv, convs, dropout) in enumerate(zip(self.upconvs, self.levels, self.dropouts)):
            level = levels - 1 - i
            x = upconv(x)
            if self.skip_level == level + 1:
                x = torch.cat([x, skips[level]], dim=1)
            x = dropout(convs(x))
        return x


@register_model("ddffnet_test", widths=(4, 8, 8, 16, 16))
@register_model("ddffnet")
class DDFFNet(ZooModel):
    """DDFFNet (Hazirbas et al., ACCV 2018): shared VGG16-BN encoder-decoder per focal slice, a
    learned 1x1 scoring convolution over the S per-slice maps. Fixed stack size ``num_frames``.
    With ``coc_decoder=True`` a second decoder on the same per-slice features predicts each
    slice's CoC map (``"coc_px"``, the seed's CoC extension). See the module docstring for the
    parameter count and deviations."""

    info = ModelInfo(
        consumes="stack_fixed", uses_focus_distance=False, uses_camera=False, paper=DDFF_PAPER
    )
    size_multiple_px = 32

    def __init__(
        self,
        num_frames: int = 4,
        widths: Sequence[int] = VGG16_WIDTHS,
        skip: str = "cc3",
        dropout: float = 0.5,
        coc_decoder: bool = False,
        depth_range_m: Sequence[float] | None = None,
    ):
        super().__init__()
        if not isinstance(num_frames, int) or num_frames < 1:
            raise UserError(f"num_frames must be a positive integer, got {num_frames!r}")
        widths = positive_ints("widths", widths, length=5)
        self.num_frames = num_frames
        self.depth_range_m = check_depth_range(depth_range_m)
        self.encoder = VGGEncoder(self.in_channels, widths, dropout=dropout)
        self.decoder = VGGDecoder(1, widths, skip=skip, dropout=dropout)
        self.coc_decoder = (
            VGGDecoder(1, widths, skip=skip, dropout=dropout) if coc_decoder else None
        )
        # DDFF's scoring layer: a bias-free 1x1 conv over the stacked per-slice outputs.
        self.scoring = nn.Conv2d(num_frames, 1, kernel_size=1, bias=False)
        init_weights(self)

    def forward(
        self, frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        self.check(frames, focus_distance_m, camera)
        batch, slices, _, height, width = frames.shape
        bottleneck, skips = self.encoder(frames.flatten(0, 1))
        per_slice = self.decoder(bottleneck, skips).view(batch, slices, height, width)
        unit = torch.sigmoid(self.scoring(per_slice))
        out = {"depth_m": self.depth_from_unit(unit, focus_distance_m)}
        if self.coc_decoder is not None:
            coc_logits = self.coc_decoder(bottleneck, skips)
            out["coc_px"] = coc_px_from_logits(coc_logits).view(batch, slices, 1, height, width)
        return out
