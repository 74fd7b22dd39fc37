"""D3-Net: Carvalho, Le Saux, Trouvé-Peloux, Almansa, Champagnat, "Deep Depth from Defocus:
how can defocus blur improve 3D estimation using dense neural networks?", 3DRW ECCV Workshop
2018 (architecture from their "On regression losses for deep depth estimation", ICIP 2018;
authors' code: marcelampc/d3net_depth_estimation, ``DenseUNet`` with ``BasicBlock`` decoder).

Single defocused image in (the last frame of the stack), depth out. Encoder: DenseNet-121
(growth 32, blocks 6-12-24-16, bottleneck x4, compression 0.5) whose stem replaces the 3x3
max-pool with a 4x4 stride-2 conv (as in the authors' code). Decoder: five up-sampling blocks
(4x4 stride-2 transposed conv, BN, ReLU, 3x3 conv, BN, ReLU), each fed the concatenation of the
previous block and the encoder features at its scale (stem, transitions 1-3), then a 3x3 conv.
Monte-Carlo dropout (``mc_dropout=True``): dropout p = 0.5 after both convs of the two coarsest
decoder blocks (where the authors' ``use_dropout`` puts it); :meth:`D3Net.predict_with_uncertainty`
keeps it active at inference and returns the mean and standard deviation of N samples.

Parameter count (full size): 24,220,224 (encoder 7,019,520 = torchvision's DenseNet-121 features
6,953,856 + the 65,664 of the stride-2 stem conv and its BatchNorm; decoder 17,200,704). The
authors' class also builds an unused 1000-class output conv (576,000 more).

Output: a sigmoid mapped to metres linearly in inverse depth over a fixed range,
``depth_range_m`` = (0.3, 10.0) m by default (the DFD indoor data span 0.3-9.8 m; the authors
clip at 10 m), because one image at one focus distance carries no depth range of its own;
``depth_range_m=None`` maps over the stack's focus range like the other models.

Deviations: random initialisation (the authors start from ImageNet DenseNet-121 weights); the
sigmoid output mapping (the authors regress depth linearly); the stem uses a 7x7 conv (their
ICIP model; their multitask variant uses 3x3).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from focaldepth.errors import UserError
from focaldepth.models.base import ModelInfo, check_frame_f_number
from focaldepth.models.common import (
    ZooModel,
    check_depth_range,
    coc_px_from_logits,
    init_weights,
    positive_ints,
)
from focaldepth.models.registry import register_model

D3NET_PAPER = "Carvalho et al., ECCV Workshops 2018"
LEAKY_SLOPE = 0.2  # the authors' stem activation


class DenseLayer(nn.Module):
    """DenseNet-BC layer: BN-ReLU-1x1 conv (bn_size * growth) - BN-ReLU-3x3 conv (growth);
    its output is concatenated to its input."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False),
            nn.BatchNorm2d(bn_size * growth_rate),
            nn.ReLU(inplace=True),
            nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


def dense_block(in_channels: int, num_layers: int, growth_rate: int, bn_size: int) -> nn.Sequential:
    return nn.Sequential(
        *(
            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
            for i in range(num_layers)
        )
    )


def transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """DenseNet transition without its pooling (the pooled output feeds the next block, the
    un-pooled one is the decoder's skip)."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
    )


class DenseNetEncoder(nn.Module):
    """DenseNet-121-style encoder. ``forward`` returns the bottleneck (H/32) and the skips
    [stem (H/2), transition 1 (H/4), 2 (H/8), 3 (H/16)]."""

    def __init__(
        self,
        in_channels: int = 3,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(num_init_features),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )
        self.stem_down = nn.Sequential(
            nn.Conv2d(num_init_features, num_init_features, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(num_init_features),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        self.skip_channels = [num_init_features]
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            self.blocks.append(dense_block(channels, num_layers, growth_rate, bn_size))
            channels += num_layers * growth_rate
            if i < len(block_config) - 1:
                self.transitions.append(transition(channels, channels // 2))
                channels //= 2
                self.skip_channels.append(channels)
        self.norm = nn.BatchNorm2d(channels)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stem = self.stem(x)
        skips = [stem]
        x = self.stem_down(stem)
        for block, trans in zip(self.blocks, self.transitions):
            skip = trans(block(x))
            skips.append(skip)
            x = F.avg_pool2d(skip, 2)
        x = self.blocks[-1](x)
        return F.leaky_relu(self.norm(x), LEAKY_SLOPE), skips


class UpBlock(nn.Module):
    """D3-Net decoder block: 4x4 stride-2 transposed conv, BN, [dropout], ReLU, 3x3 conv, BN,
    [dropout], ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.drop1 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.drop2 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.drop1(self.bn1(self.up(x))))
        return F.relu(self.drop2(self.bn2(self.conv(x))))


class D3Decoder(nn.Module):
    """Five up-sampling blocks with skip concatenation, then a 3x3 conv to one logit."""

    def __init__(
        self,
        bottleneck_channels: int,
        skip_channels: Sequence[int],
        widths: Sequence[int],
        dropout: float,
    ):
        super().__init__()
        ins = [bottleneck_channels] + [w + s for w, s in zip(widths[:-1], reversed(skip_channels))]
        # Dropout in the two coarsest blocks, as the authors' use_dropout.
        self.blocks = nn.ModuleList(
            UpBlock(c_in, w, dropout if i < 2 else 0.0)
            for i, (c_in, w) in enumerate(zip(ins, widths))
        )
        self.last = nn.Conv2d(widths[-1], 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.blocks[0](x)
        for block, skip in zip(self.blocks[1:], reversed(skips)):
            x = block(torch.cat([skip, x], dim=1))
        return self.last(x)


@register_model(
    "d3net_test",
    growth_rate=8,
    block_config=(2, 2, 2, 2),
    num_init_features=16,
    decoder_channels=(16, 16, 8, 8, 8),
)
@register_model("d3net")
class D3Net(ZooModel):
    """D3-Net (Carvalho et al. 2018): DenseNet-121 encoder, up-sampling decoder with skips,
    one defocused image (the last frame) in; optional Monte-Carlo dropout uncertainty.
    ``coc_decoder=True`` adds a second decoder predicting the CoC map of that frame
    (``"coc_px"`` of shape (B, 1, 1, H, W)). See the module docstring for details."""

    info = ModelInfo(
        consumes="single", uses_focus_distance=False, uses_camera=False, paper=D3NET_PAPER
    )
    size_multiple_px = 32

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        decoder_channels: Sequence[int] | None = None,
        mc_dropout: bool = False,
        dropout_p: float = 0.5,
        coc_decoder: bool = False,
        depth_range_m: Sequence[float] | None = (0.3, 10.0),
        working_max_pixels: int | None = None,
    ):
        super().__init__()
        block_config = positive_ints("block_config", block_config, length=4)
        # The pixel budget this network was trained at (its blur in pixels), stored in its
        # weight file and used by StreamingPredictor unless the user sets --max-pixels.
        # None: predict's default. A defocus network trained on full-resolution crops must
        # not be fed frames shrunk 2x: its blur cue would shrink with them.
        if working_max_pixels is not None and not (
            isinstance(working_max_pixels, int) and working_max_pixels >= 1024
        ):
            raise UserError(f"working_max_pixels must be an integer >= 1024 or None, got "
                            f"{working_max_pixels!r}")
        self.working_max_pixels = working_max_pixels
        if not 0.0 < dropout_p < 1.0:
            raise UserError(f"dropout_p must be in (0, 1), got {dropout_p!r}")
        self.mc_dropout = bool(mc_dropout)
        self.depth_range_m = check_depth_range(depth_range_m)
        self.encoder = DenseNetEncoder(
            self.encoder_in_channels(), growth_rate, block_config, num_init_features, bn_size
        )
        bottleneck = self.encoder.out_channels
        if decoder_channels is None:  # the authors' halving widths: 512, 256, 128, 64, 64
            decoder_channels = tuple(max(bottleneck >> k, 1) for k in (1, 2, 3, 4, 4))
        decoder_channels = positive_ints("decoder_channels", decoder_channels, length=5)
        dropout = dropout_p if self.mc_dropout else 0.0
        self.decoder = D3Decoder(bottleneck, self.encoder.skip_channels, decoder_channels, dropout)
        self.coc_decoder = (
            D3Decoder(bottleneck, self.encoder.skip_channels, decoder_channels, dropout)
            if coc_decoder
            else None
        )
        init_weights(self)

    def encoder_in_channels(self) -> int:
        """Channels of the encoder's input image (one RGB frame here)."""
        return self.in_channels

    def forward(
        self, frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        self.check(frames, focus_distance_m, camera)
        return self._decode(frames[:, -1], focus_distance_m)

    def _decode(self, image: torch.Tensor, focus_distance_m: torch.Tensor) -> dict[str, torch.Tensor]:
        bottleneck, skips = self.encoder(image)
        unit = torch.sigmoid(self.decoder(bottleneck, skips))
        out = {"depth_m": self.depth_from_unit(unit, focus_distance_m)}
        if self.coc_decoder is not None:
            out["coc_px"] = coc_px_from_logits(self.coc_decoder(bottleneck, skips)).unsqueeze(1)
        return out

    @contextmanager
    def _dropout_active(self) -> Iterator[None]:
        """BatchNorm in inference mode, dropout sampling; restores every module's mode."""
        modes = {m: m.training for m in self.modules()}
        self.eval()
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.train()
        try:
            yield
        finally:
            for m, mode in modes.items():
                m.training = mode

    @torch.no_grad()
    def predict_with_uncertainty(
        self,
        frames: torch.Tensor,
        focus_distance_m: torch.Tensor,
        camera: torch.Tensor,
        samples: int = 16,
    ) -> dict[str, torch.Tensor]:
        """Monte-Carlo dropout (Gal & Ghahramani 2016; the paper's Bayesian variant): ``samples``
        stochastic passes with dropout on and BatchNorm frozen. Returns ``"depth_m"`` (mean,
        (B, 1, H, W)) and ``"depth_std_m"`` (per-pixel standard deviation in metres)."""
        if not self.mc_dropout:
            raise UserError("predict_with_uncertainty needs a D3Net built with mc_dropout=True")
        if not (isinstance(samples, int) and samples >= 2):
            raise UserError(f"samples must be an integer >= 2, got {samples!r}")
        with self._dropout_active():
            depths = torch.stack(
                [self(frames, focus_distance_m, camera)["depth_m"] for _ in range(samples)]
            )
        return {"depth_m": depths.mean(dim=0), "depth_std_m": depths.std(dim=0)}

    def conventions(self) -> dict:
        conventions = super().conventions()
        conventions["frame_used"] = "last frame of the stack only"
        return conventions


#: The blur-scale channel of :class:`D3NetAperturePair` is f^2 / (N p) in pixels per dioptre
#: divided by this: the DFD rig at predict's working width (293 px) gives 5.4 (f/2.8) and
#: 1.9 (f/8) px/dpt, so the channel sits near 0.2-0.5 instead of swamping the [0, 1] colours.
BLUR_SCALE_NORM_PX_PER_DPT = 10.0


def blur_scale_channels(
    f_number: torch.Tensor, camera: torch.Tensor, height_px: int, width_px: int
) -> torch.Tensor:
    """``(B, S, 1, H, W)``: each frame's thin-lens blur per dioptre of defocus, f^2 / (N_s p)
    in pixels (``camera`` = [focal_length_m, -, pixel_pitch_m], ``f_number`` (B, S)), over
    :data:`BLUR_SCALE_NORM_PX_PER_DPT`. It tells the network how strongly each frame blurs,
    so the ratio of the two frames' blur is a function of depth it can learn for any lens."""
    focal_length_m, pixel_pitch_m = camera[:, 0:1], camera[:, 2:3]
    scale = focal_length_m**2 / (f_number * pixel_pitch_m) / BLUR_SCALE_NORM_PX_PER_DPT
    batch, slices = f_number.shape
    return scale.view(batch, slices, 1, 1, 1).expand(batch, slices, 1, height_px, width_px)


#: Pre-smoothing (Gaussian sigma, px; 0 = none) of the scales at which
#: :func:`relative_sharpness_channels` compares the two frames' gradient energy: the finest
#: scale sees a blur difference of a pixel, the coarser ones larger differences.
SHARPNESS_PRESMOOTH_PX = (0.0, 1.0, 2.0)
SHARPNESS_WINDOW_PX = 3.0  # Gaussian sigma of the local average of the gradient energy
SHARPNESS_EPS = 1e-4  # gradient energy floor (colours in [0, 1]): flat areas give ratio 0


def _gaussian_blur(image: torch.Tensor, sigma_px: float) -> torch.Tensor:
    import kornia

    if sigma_px <= 0:
        return image
    size = 2 * math.ceil(3.0 * sigma_px) + 1
    return kornia.filters.gaussian_blur2d(image, (size, size), (sigma_px, sigma_px),
                                          border_type="reflect")


def relative_sharpness_channels(frames: torch.Tensor, f_number: torch.Tensor) -> torch.Tensor:
    """``(B, K + 1, H, W)``: the classical two-aperture cue, computed at full resolution before
    the network's stride-2 stem can discard it. For each pre-smoothing scale of
    :data:`SHARPNESS_PRESMOOTH_PX`: log of the local gradient energy of the wider-aperture
    frame over that of the narrower one (0 where both are equally sharp, i.e. in focus or
    textureless; more negative the farther a surface is from the focus plane in dioptres, on
    either side); plus the log texture energy of the sharper frame (where the ratio can be
    trusted). Halved so the channels sit near [-2, 1]. Frames are ordered by f-number
    per item, so the cue does not depend on the order they were given in."""
    import kornia

    gray = frames.mean(dim=2)  # (B, S, H, W)
    # Each frame over its own mean brightness: two apertures are rarely exposed identically.
    gray = gray / gray.mean(dim=(2, 3), keepdim=True).clamp_min(1e-3)
    wide_first = (f_number[:, 0] < f_number[:, -1]).view(-1, 1, 1)
    sharp = torch.where(wide_first, gray[:, -1], gray[:, 0]).unsqueeze(1)
    wide = torch.where(wide_first, gray[:, 0], gray[:, -1]).unsqueeze(1)
    channels = []
    for sigma in SHARPNESS_PRESMOOTH_PX:
        energies = []
        for image in (wide, sharp):
            gradient = kornia.filters.spatial_gradient(_gaussian_blur(image, sigma))
            energy = gradient.square().sum(dim=2)
            energies.append(_gaussian_blur(energy, SHARPNESS_WINDOW_PX) + SHARPNESS_EPS)
        channels.append(0.5 * torch.log(energies[0] / energies[1]))
    channels.append(0.5 * torch.log10(energies[1]) + 1.0)  # texture of the sharp frame, coarsest scale
    return torch.cat(channels, dim=1)


@register_model(
    "d3net_aperture_pair_test",
    growth_rate=8,
    block_config=(2, 2, 2, 2),
    num_init_features=16,
    decoder_channels=(16, 16, 8, 8, 8),
)
@register_model("d3net_aperture_pair")
class D3NetAperturePair(D3Net):
    """Two-aperture depth from defocus on the D3-Net body: the same scene at two f-numbers and
    one focus (e.g. f/8 then f/2.8), each frame's RGB plus its blur-scale channel
    (:func:`blur_scale_channels`) concatenated into one 8-channel image; depth of the last
    frame's view. Reads the per-frame f-number (``f_number`` (B, S), see
    :func:`focaldepth.models.base.run_model`); the camera gives focal length and pixel pitch."""

    info = ModelInfo(
        consumes="stack_fixed", uses_focus_distance=False, uses_camera=True, paper=D3NET_PAPER
    )
    num_frames = 2
    frame_f_number_input = True

    def __init__(self, *args, sharpness_cue: bool = False, **kwargs):
        # Set before the body is built: encoder_in_channels() reads it.
        self.sharpness_cue = bool(sharpness_cue)
        super().__init__(*args, **kwargs)

    def encoder_in_channels(self) -> int:
        cue = len(SHARPNESS_PRESMOOTH_PX) + 1 if self.sharpness_cue else 0
        return self.num_frames * (self.in_channels + 1) + cue

    def forward(
        self,
        frames: torch.Tensor,
        focus_distance_m: torch.Tensor,
        camera: torch.Tensor,
        f_number: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        self.check(frames, focus_distance_m, camera)
        f_number = check_frame_f_number(f_number, frames)
        height, width = frames.shape[-2:]
        blur = blur_scale_channels(f_number, camera.to(frames.dtype), height, width)
        image = torch.cat([frames, blur], dim=2).flatten(1, 2)
        if self.sharpness_cue:
            image = torch.cat([image, relative_sharpness_channels(frames, f_number)], dim=1)
        return self._decode(image, focus_distance_m)

    def predict_with_uncertainty(self, *args, **kwargs):  # noqa: D102 - single-image API only
        raise UserError("predict_with_uncertainty is implemented for the single-image D3Net only")

    def conventions(self) -> dict:
        conventions = super().conventions()
        conventions["frame_used"] = "both frames, stacked as channels (last = reference view)"
        conventions["f_number_input"] = (
            "(B, S) f-number of each frame, keyword f_number (focaldepth.models.base.run_model)"
        )
        if self.sharpness_cue:
            conventions["sharpness_cue"] = (
                f"log local gradient energy wide / sharp at presmoothing {SHARPNESS_PRESMOOTH_PX} px, "
                f"window {SHARPNESS_WINDOW_PX} px, + sharp-frame texture (relative_sharpness_channels)"
            )
        conventions["blur_scale_channel"] = (
            f"focal_length_m^2 / (f_number * pixel_pitch_m) / {BLUR_SCALE_NORM_PX_PER_DPT} "
            "px per dioptre, one constant channel per frame"
        )
        return conventions
