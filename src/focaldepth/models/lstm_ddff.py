"""LSTM-DDFF: the seed's recurrent variant of DDFFNet.

DDFF's VGG16-BN encoder runs on every focal slice (shared weights); an LSTM then reads the S
slice encodings in capture order, and DDFF's decoder turns the LSTM's output after the last
slice into one depth map. Two recurrent modules, as in the seed:

* ``variant="fc"`` ("fully connected"): each slice's bottleneck ``C x h x w`` is flattened, a
  linear layer maps it to the LSTM dimension (2048), a 1-layer LSTM runs over the S slices,
  and a linear layer maps its last output back to ``C x h x w``.
* ``variant="stacking"``: each of the S*C bottleneck feature maps is flattened (``h*w``) and
  the S*C maps form one long sequence read by a 2-layer LSTM of width ``h*w``; the outputs
  belonging to the last slice are reshaped back to ``C x h x w``.

Skip connections ("convolutional skip module on the last encoder only"): DDFF's CC
concatenation is fed from the encoder of the last slice (``skip_source="last"``, the seed's
``ccx_last``); ``skip_source="conv"`` instead reduces the skip features of all S slices with a
1x1 convolution (the seed's ``ccx_conv``, which fixes S).

Both variants fix the input size (the LSTM dimensions depend on ``h = H/32, w = W/32``):
``image_size_px``, default 256 x 256 (this project's training crops; the seed used 224 x 224).

Parameter counts (full size, 256 x 256, CC3, skip from the last encoder): ``fc`` 207,613,697,
of which the recurrent module is 167,823,360 (two linear layers 134.2 M, LSTM 33.6 M); at the
seed's 224 x 224, 176,148,737. ``stacking``: 39,856,897 (a 2-layer LSTM of width 64: 66,560).

Deviations: the decoder's last conv is a plain conv (a logit, then sigmoid and
:func:`base.depth_from_unit`) where DDFF has conv-BN-ReLU; random initialisation instead of
ImageNet VGG weights; no dropout by default (the seed trained with dropout 0).
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
    init_weights,
    positive_ints,
)
from focaldepth.models.ddff import VGG16_WIDTHS, VGGDecoder, VGGEncoder, skip_level
from focaldepth.models.registry import register_model

LSTM_DDFF_PAPER = "the seed's LSTM-DDFF, after Hazirbas et al., ACCV 2018"
VARIANTS = ("fc", "stacking")
SKIP_SOURCES = ("last", "conv")
DOWNSAMPLING = 32  # five 2x2 max-pools in the VGG encoder


class FCRecurrence(nn.Module):
    """Flatten -> linear -> LSTM over slices -> linear -> unflatten (the seed's "fc" module)."""

    def __init__(self, feature_shape: tuple[int, int, int], hidden_size: int, num_layers: int):
        super().__init__()
        self.feature_shape = feature_shape
        flat = feature_shape[0] * feature_shape[1] * feature_shape[2]
        self.embed = nn.Linear(flat, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.unembed = nn.Linear(hidden_size, flat)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, S, C, h, w)`` -> ``(B, C, h, w)``: the LSTM's output after the last slice."""
        batch, slices = features.shape[:2]
        sequence = self.embed(features.reshape(batch, slices, -1))
        outputs, _ = self.lstm(sequence)
        return self.unembed(outputs[:, -1]).view(batch, *self.feature_shape)


class StackingRecurrence(nn.Module):
    """Every feature map of every slice is one step of a long sequence (the seed's "stack")."""

    def __init__(self, feature_shape: tuple[int, int, int], num_layers: int):
        super().__init__()
        self.feature_shape = feature_shape
        map_size = feature_shape[1] * feature_shape[2]
        self.lstm = nn.LSTM(map_size, map_size, num_layers=num_layers, batch_first=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, S, C, h, w)`` -> the outputs of the last slice's C steps, ``(B, C, h, w)``."""
        batch, slices, channels = features.shape[:3]
        outputs, _ = self.lstm(features.reshape(batch, slices * channels, -1))
        return outputs[:, -channels:].reshape(batch, *self.feature_shape)


@register_model("lstm_ddff_test", widths=(4, 8, 8, 16, 16), image_size_px=(32, 32), lstm_hidden=32)
@register_model("lstm_ddff")
class LSTMDDFF(ZooModel):
    """LSTM-DDFF (the seed): DDFF's per-slice VGG16-BN encoder, an LSTM over the slices
    (``variant`` "fc" or "stacking"), DDFF's decoder with its CC skip fed from the last slice.
    ``coc_decoder=True`` adds a second decoder predicting each slice's CoC from that slice's
    encoding. See the module docstring for parameter counts and deviations."""

    info = ModelInfo(
        consumes="stack_any", uses_focus_distance=False, uses_camera=False, paper=LSTM_DDFF_PAPER
    )
    size_multiple_px = DOWNSAMPLING

    def __init__(
        self,
        variant: str = "fc",
        image_size_px: Sequence[int] = (256, 256),
        widths: Sequence[int] = VGG16_WIDTHS,
        lstm_hidden: int = 2048,
        lstm_layers: int | None = None,
        skip: str = "cc3",
        skip_source: str = "last",
        num_frames: int | None = None,
        dropout: float = 0.0,
        coc_decoder: bool = False,
        depth_range_m: Sequence[float] | None = None,
    ):
        super().__init__()
        check_choice("variant", variant, VARIANTS)
        check_choice("skip_source", skip_source, SKIP_SOURCES)
        widths = positive_ints("widths", widths, length=5)
        height, width = positive_ints("image_size_px", image_size_px, length=2)
        if height % DOWNSAMPLING or width % DOWNSAMPLING:
            raise UserError(
                f"image_size_px must be multiples of {DOWNSAMPLING}, got {image_size_px!r}"
            )
        if skip_source == "conv" and not (isinstance(num_frames, int) and num_frames > 0):
            raise UserError(
                "skip_source='conv' reduces the skips of a fixed number of slices: set num_frames"
            )
        if skip_source == "last" and num_frames is not None:
            raise UserError(
                "num_frames only applies to skip_source='conv' (with 'last' any "
                "number of slices works)"
            )
        self.variant, self.skip_source = variant, skip_source
        self.image_size_px = (height, width)
        self.num_frames = num_frames
        self.depth_range_m = check_depth_range(depth_range_m)
        if skip_source == "conv":
            self.info = ModelInfo("stack_fixed", False, False, LSTM_DDFF_PAPER)

        feature_shape = (widths[-1], height // DOWNSAMPLING, width // DOWNSAMPLING)
        layers = lstm_layers if lstm_layers is not None else (1 if variant == "fc" else 2)
        self.encoder = VGGEncoder(self.in_channels, widths, dropout=dropout)
        if variant == "fc":
            self.recurrence: nn.Module = FCRecurrence(feature_shape, lstm_hidden, layers)
        else:
            self.recurrence = StackingRecurrence(feature_shape, layers)
        self.skip_level = skip_level(skip)
        self.skip_reduce = None
        if skip_source == "conv" and self.skip_level is not None:
            skip_channels = widths[self.skip_level - 1]
            self.skip_reduce = nn.Conv2d(num_frames * skip_channels, skip_channels, 1, bias=False)
        self.decoder = VGGDecoder(1, widths, skip=skip, dropout=dropout)
        self.coc_decoder = (
            VGGDecoder(1, widths, skip=skip, dropout=dropout) if coc_decoder else None
        )
        init_weights(self)

    def _decoder_skips(
        self, skips: list[torch.Tensor], batch: int, slices: int
    ) -> list[torch.Tensor]:
        """Per-level skip inputs of the depth decoder: the last slice's features, or a 1x1 conv
        over all slices' features (only the level the decoder uses is reduced)."""
        reduced = []
        for level, features in enumerate(skips):
            per_slice = features.view(batch, slices, *features.shape[1:])
            if self.skip_reduce is not None and level + 1 == self.skip_level:
                reduced.append(self.skip_reduce(per_slice.flatten(1, 2)))
            else:
                reduced.append(per_slice[:, -1])
        return reduced

    def forward(
        self, frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        self.check(frames, focus_distance_m, camera)
        batch, slices, _, height, width = frames.shape
        bottleneck, skips = self.encoder(frames.flatten(0, 1))
        encoded = self.recurrence(bottleneck.view(batch, slices, *bottleneck.shape[1:]))
        logits = self.decoder(encoded, self._decoder_skips(skips, batch, slices))
        out = {"depth_m": self.depth_from_unit(torch.sigmoid(logits), focus_distance_m)}
        if self.coc_decoder is not None:
            coc_logits = self.coc_decoder(bottleneck, skips)
            out["coc_px"] = coc_px_from_logits(coc_logits).view(batch, slices, 1, height, width)
        return out

    def conventions(self) -> dict:
        conventions = super().conventions()
        conventions["frame_order"] = "capture order; the LSTM reads slices first to last"
        return conventions
