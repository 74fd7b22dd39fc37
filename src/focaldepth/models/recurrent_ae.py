"""Recurrent autoencoder: Chaitanya, Kaplanyan, Schied, Salvi, Lefohn, Nowrouzezahrai, Aila,
"Interactive Reconstruction of Monte Carlo Image Sequences using a Recurrent Denoising
Autoencoder", SIGGRAPH 2017 -- as modified in the seed for depth from a focus sweep.

A fully convolutional U-Net whose encoder blocks are recurrent: block k computes
``conv(x) -> conv(concat(., h_k)) -> conv(.)`` where ``h_k`` is the block's own output at the
previous frame (zero before the first frame). The decoder up-samples with transposed
convolutions and concatenates the encoder's (current) hidden states as skips. It consumes a
stream: :meth:`RecurrentAE.step` takes one frame and the state and returns that frame's depth
map and the new state; :meth:`RecurrentAE.forward` runs the steps over a stack and returns the
depth after the last frame (``"depth_m"``) and after every frame (``"depth_m_per_frame"``).

The seed's modifications over Chaitanya et al. are kept: BatchNorm after every conv, more
channels (32, 48, 64, 128, 192 + a 192 bottleneck, vs 32, 43, 57, 76, 101), transposed
convolutions (2x2, stride 2) instead of nearest-neighbour up-sampling, ReLU instead of leaky
ReLU. Parameter count (full size): 4,456,033 (1,609,873 with Chaitanya et al.'s widths).

Output depth mapping: the normalised output is mapped to metres over the dioptric range of the
focus distances seen *so far* (a running min/max carried in the state, so streaming is causal
and, after the last frame of a stack, equal to :func:`base.depth_from_unit` over the stack), or
over a fixed ``depth_range_m``.

Deviations: the last decoder block ends in conv(32 -> 32)-BN-ReLU then a plain conv to one
logit (the seed's code narrowed to one channel before its last conv); no temporal loss here
(losses live in training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from focaldepth.models.base import ModelInfo, depth_from_unit
from focaldepth.models.common import (
    ZooModel,
    check_depth_range,
    coc_px_from_logits,
    conv_bn_act,
    depth_from_unit_fixed,
    init_weights,
    positive_ints,
)
from focaldepth.models.registry import register_model

RECURRENT_AE_PAPER = "Chaitanya et al., SIGGRAPH 2017, as modified in the seed"
SEED_WIDTHS = (32, 48, 64, 128, 192)
BN_EPS = 1e-4  # the seed's BatchNorm epsilon


@dataclass
class RecurrentState:
    """What the recurrent autoencoder carries from frame to frame.

    ``hidden[k]``: output of encoder block k at the previous frame ``(B, C_k, H/2^k, W/2^k)``;
    ``focus_dpt_min`` / ``focus_dpt_max``: ``(B,)`` extreme inverse focus distances seen so far
    (they define the output depth range)."""

    hidden: list[torch.Tensor]
    focus_dpt_min: torch.Tensor
    focus_dpt_max: torch.Tensor

    def detach(self) -> RecurrentState:
        """Cut the graph (truncated back-propagation through time on long videos)."""
        return RecurrentState(
            [h.detach() for h in self.hidden],
            self.focus_dpt_min.detach(),
            self.focus_dpt_max.detach(),
        )


class RecurrentEncoderBlock(nn.Module):
    """[2x2 max-pool] -> conv -> conv over concat(features, own previous output) -> conv."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.pool = nn.MaxPool2d(2) if downsample else nn.Identity()
        self.enter = conv_bn_act(in_channels, out_channels, bn_eps=BN_EPS)
        self.recur = conv_bn_act(2 * out_channels, out_channels, bn_eps=BN_EPS)
        self.leave = conv_bn_act(out_channels, out_channels, bn_eps=BN_EPS)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        x = self.enter(self.pool(x))
        return self.leave(self.recur(torch.cat([x, hidden], dim=1)))


class DecoderBlock(nn.Module):
    """2x2 stride-2 transposed conv to the skip's width, concat with the skip, two convs;
    ``final`` blocks end in a plain conv to ``out_channels`` logits."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, final: bool):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, skip_channels, 2, stride=2, bias=False)
        if final:
            self.convs = nn.Sequential(
                conv_bn_act(2 * skip_channels, skip_channels, bn_eps=BN_EPS),
                nn.Conv2d(skip_channels, out_channels, 3, padding=1),
            )
        else:
            self.convs = nn.Sequential(
                conv_bn_act(2 * skip_channels, out_channels, bn_eps=BN_EPS),
                conv_bn_act(out_channels, out_channels, bn_eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


class RecurrentDecoder(nn.Module):
    """Mirrors the encoder; block i up-samples to encoder block (L-2-i)'s resolution."""

    def __init__(self, block_widths: Sequence[int], out_channels: int = 1):
        super().__init__()
        skips = list(reversed(block_widths[:-1]))  # skip widths, coarse to fine
        ins = [block_widths[-1]] + list(reversed(block_widths[:-2]))
        self.blocks = nn.ModuleList(
            DecoderBlock(in_width, skip_width, out_width, final=i == len(skips) - 1)
            for i, (in_width, skip_width, out_width) in enumerate(
                zip(ins, skips, list(reversed(block_widths[:-2])) + [out_channels])
            )
        )

    def forward(self, hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        x = hidden[-1]
        for block, skip in zip(self.blocks, reversed(hidden[:-1])):
            x = block(x, skip)
        return x


@register_model("recurrent_ae_test", widths=(4, 4, 8, 8, 8))
@register_model("recurrent_ae")
class RecurrentAE(ZooModel):
    """Recurrent autoencoder (Chaitanya et al. 2017 as modified in the seed): recurrent
    encoder blocks, streams frames one at a time via :meth:`init_state` / :meth:`step`.
    ``coc_decoder=True`` adds a second decoder on the same hidden states predicting the CoC of
    the current frame. See the module docstring for details and deviations."""

    info = ModelInfo(
        consumes="stream", uses_focus_distance=False, uses_camera=False, paper=RECURRENT_AE_PAPER
    )

    def __init__(
        self,
        widths: Sequence[int] = SEED_WIDTHS,
        coc_decoder: bool = False,
        depth_range_m: Sequence[float] | None = None,
    ):
        super().__init__()
        widths = positive_ints("widths", widths)
        # The encoder has one more block than widths: a bottleneck at the coarsest width.
        self.block_widths = widths + (widths[-1],)
        self.size_multiple_px = 2 ** (len(self.block_widths) - 1)
        self.depth_range_m = check_depth_range(depth_range_m)
        ins = (self.in_channels,) + self.block_widths[:-1]
        self.encoder = nn.ModuleList(
            RecurrentEncoderBlock(c_in, c_out, downsample=k > 0)
            for k, (c_in, c_out) in enumerate(zip(ins, self.block_widths))
        )
        self.decoder = RecurrentDecoder(self.block_widths)
        self.coc_decoder = RecurrentDecoder(self.block_widths) if coc_decoder else None
        init_weights(self)

    def init_state(
        self,
        batch_size: int,
        height_px: int,
        width_px: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> RecurrentState:
        """The state before the first frame: zero hidden states, an empty focus range."""
        if height_px % self.size_multiple_px or width_px % self.size_multiple_px:
            raise ValueError(
                f"frames: H and W must be multiples of {self.size_multiple_px} px "
                f"for this model, got {height_px} x {width_px}"
            )
        reference = next(self.parameters())
        device = reference.device if device is None else device
        dtype = reference.dtype if dtype is None else dtype
        hidden = [
            torch.zeros(
                batch_size, width, height_px >> k, width_px >> k, device=device, dtype=dtype
            )
            for k, width in enumerate(self.block_widths)
        ]
        return RecurrentState(
            hidden,
            torch.full((batch_size,), float("inf"), device=device, dtype=dtype),
            torch.full((batch_size,), float("-inf"), device=device, dtype=dtype),
        )

    def step(
        self,
        frame: torch.Tensor,
        focus_distance_m: torch.Tensor,
        camera: torch.Tensor,
        state: RecurrentState | None = None,
    ) -> tuple[dict[str, torch.Tensor], RecurrentState]:
        """One frame ``(B, C, H, W)`` with its focus distance ``(B,)`` and camera ``(B, 3)``:
        returns ``{"depth_m": (B, 1, H, W)[, "coc_px": (B, 1, H, W)]}`` and the new state.
        ``state=None`` starts a new stream."""
        if frame.ndim != 4:
            raise ValueError(
                f"frame: expected one frame (B, C, H, W), got shape {tuple(frame.shape)}"
            )
        if focus_distance_m.shape != frame.shape[:1]:
            raise ValueError(
                f"focus_distance_m: expected (B,) = {tuple(frame.shape[:1])}, "
                f"got {tuple(focus_distance_m.shape)}"
            )
        self.check(frame.unsqueeze(1), focus_distance_m.unsqueeze(1), camera)
        if state is None:
            state = self.init_state(
                frame.shape[0], frame.shape[2], frame.shape[3], frame.device, frame.dtype
            )
        hidden, x = [], frame
        for block, previous in zip(self.encoder, state.hidden):
            x = block(x, previous)
            hidden.append(x)
        focus_dpt = 1.0 / focus_distance_m
        new_state = RecurrentState(
            hidden,
            torch.minimum(state.focus_dpt_min, focus_dpt),
            torch.maximum(state.focus_dpt_max, focus_dpt),
        )
        unit = torch.sigmoid(self.decoder(hidden))
        out = {"depth_m": self._depth_m(unit, new_state)}
        if self.coc_decoder is not None:
            out["coc_px"] = coc_px_from_logits(self.coc_decoder(hidden))
        return out, new_state

    def _depth_m(self, unit: torch.Tensor, state: RecurrentState) -> torch.Tensor:
        if self.depth_range_m is not None:
            return depth_from_unit_fixed(unit, self.depth_range_m)
        # The nearest and farthest focus seen so far span the same range as all of them.
        seen_focus_m = 1.0 / torch.stack([state.focus_dpt_min, state.focus_dpt_max], dim=1)
        return depth_from_unit(unit, seen_focus_m)

    def forward(
        self, frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Run :meth:`step` over the S frames from a fresh state. Returns ``"depth_m"`` after
        the last frame, ``"depth_m_per_frame"`` ``(B, S, 1, H, W)`` and, with a CoC decoder,
        ``"coc_px"`` ``(B, S, 1, H, W)``."""
        self.check(frames, focus_distance_m, camera)
        state = None
        outputs = []
        for s in range(frames.shape[1]):
            out, state = self.step(frames[:, s], focus_distance_m[:, s], camera, state)
            outputs.append(out)
        result = {
            "depth_m": outputs[-1]["depth_m"],
            "depth_m_per_frame": torch.stack([o["depth_m"] for o in outputs], dim=1),
        }
        if self.coc_decoder is not None:
            result["coc_px"] = torch.stack([o["coc_px"] for o in outputs], dim=1)
        return result

    def depth_output_convention(self) -> dict:
        convention = super().depth_output_convention()
        if self.depth_range_m is None:
            convention["range"] = (
                "focus distances seen so far in the stream (running min/max "
                "of 1/focus), widened on each side"
            )
        return convention
