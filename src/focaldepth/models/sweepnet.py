"""SweepNet: focaldepth's own camera-aware focus-volume network (the default model).

Design, and why:

* **Depth is a weighted vote over the focus distances.** The network scores, per pixel, how
  in-focus each slice is; a softmax over slices gives weights ``w_s`` and the inverse depth
  is ``sum_s w_s / F_s``. Metric scale therefore comes from the lens metadata, never from a
  learned constant, so the same weights serve a phone at 0.1 m and a DSLR at 5 m (the idea of
  differential focus volumes, Yang et al. CVPR 2022, and AiFDepthNet, Wang et al. ICCV 2021).
* **Any number of slices in any order.** Shared per-slice encoder/decoder; at each scale the
  slices exchange information by max- and mean-pooling across slices (as in PoolNet /
  DefocusNet, Maximov et al. CVPR 2020), which keeps the network permutation-equivariant.
* **Told its camera.** Each slice gets three numbers as extra channels: its position in the
  sweep (normalised inverse focus, -1 near ... +1 far), and the blur in pixels that one step
  of the sweep and the whole sweep produce for this camera (thin lens, ``Camera.coc_px_per_dpt``).
  So the network knows whether a 2 px or a 30 px blur difference is to be expected.
* **Depth beyond the sweep** (``extrapolate=True``): a vote can only return depths between
  the nearest and farthest focus, but real sweeps rarely bracket a scene. Beyond either end
  the blur keeps growing with the dioptric distance from the end, so defocus still says how
  far: a second head predicts an offset of at most ``EXTRAPOLATION_SWEEPS`` sweep widths
  (tanh-bounded, zero-initialised so a warm start from a vote-only model is unchanged).
* **Confidence** is read off the vote: a sharp, single-peaked distribution over slices is
  trustworthy; a flat one (textureless regions, depth outside the swept range) is not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from focaldepth.models.base import DepthModel, ModelInfo, check_inputs
from focaldepth.models.registry import register_model

SLICE_CODE_CHANNELS = 3
EXTRAPOLATION_SWEEPS = 0.5  # largest offset of the inverse depth, in sweep widths
FARTHEST_FRACTION = 0.25  # inverse depth never below this fraction of the farthest focus's


class ConvBnReLU(nn.Sequential):
    """3x3 conv, BatchNorm, ReLU. In eval mode the BatchNorm is folded into the conv's weights
    and bias (computed per call: a few hundred numbers), which saves a pass over the feature
    map; in training mode it is the plain sequence (BatchNorm needs the batch statistics).
    A ``Sequential`` so that the state-dict keys stay ``N.0.weight``, ``N.1.running_mean``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conv's ``(weight, bias)`` with the eval-mode BatchNorm folded in (training mode:
        the conv's own weight and no bias; the BatchNorm then runs as a module)."""
        conv, norm = self[0], self[1]
        if self.training:
            return conv.weight, None
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        return conv.weight * scale[:, None, None, None], norm.bias - norm.running_mean * scale

    def finish(self, convolved: torch.Tensor) -> torch.Tensor:
        """BatchNorm (training mode only; folded otherwise) and ReLU after the conv."""
        # In place: the conv's output is fresh and nothing else reads it (autograd included:
        # neither conv nor BatchNorm needs its output for the backward pass).
        return F.relu(self[1](convolved) if self.training else convolved, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.folded()
        return self.finish(F.conv2d(x, weight, bias, stride=self[0].stride, padding=1))


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> ConvBnReLU:
    return ConvBnReLU(in_channels, out_channels, stride)


class SliceMixer(nn.Module):
    """A 1x1 conv over ``[own features, max over slices, mean over slices, slice code]``.

    Computed without building that concatenation, since a 1x1 conv is linear in its input
    channels: the pooled terms are mixed once per stack rather than once per slice (S times
    less work), the slice code (constant over the image) becomes a per-slice bias, and an
    input given in parts (an upsampled map and its skip connection) is mixed part by part.
    Same parameters and the same function as the concatenated form; at 320x180 the vote is
    about a fifth faster on a CPU without the copies."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.own = nn.Conv2d(in_channels + SLICE_CODE_CHANNELS, out_channels, 1)
        self.pooled_max = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pooled_mean = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, parts: list[torch.Tensor], num_slices: int, code: torch.Tensor, scale: float) -> torch.Tensor:
        """``parts``: ``(B*S, C_i, H, W)`` maps whose channels, in order, make the input;
        ``code``: ``(B, S, 3)`` slice codes of a map ``scale`` times smaller than the frames."""
        own_weight = self.own.weight[:, :, 0, 0]
        own, pooled, start = None, None, 0
        for part in parts:
            count = int(part.shape[1])
            channels = slice(start, start + count)
            start += count
            term = F.conv2d(part, self.own.weight[:, channels])
            stacked = part.unflatten(0, (-1, num_slices))
            mixed = F.conv2d(stacked.amax(dim=1), self.pooled_max.weight[:, channels]) \
                + F.conv2d(stacked.mean(dim=1), self.pooled_mean.weight[:, channels])
            # Accumulated in place: every term is a fresh conv output, so no copy is needed.
            own = term if own is None else own.add_(term)
            pooled = mixed if pooled is None else pooled.add_(mixed)
        bias = code_for_scale(code, scale).reshape(-1, SLICE_CODE_CHANNELS) @ own_weight[:, start:].T + self.own.bias
        own.add_(bias[:, :, None, None])
        own.unflatten(0, (-1, num_slices)).add_(pooled.unsqueeze(1))
        return own


def slice_code(focus_distance_m: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """``(B, S, 3)``: per slice, [position in the sweep in [-1, 1] (inverse focus), log2 of
    the blur in pixels of one sweep step, log2 of the blur over the whole sweep]."""
    focus_dpt = 1.0 / focus_distance_m
    near_dpt = focus_dpt.amax(dim=1, keepdim=True)
    far_dpt = focus_dpt.amin(dim=1, keepdim=True)
    sweep_dpt = (near_dpt - far_dpt).clamp_min(1e-6)
    position = 1.0 - 2.0 * (focus_dpt - far_dpt) / sweep_dpt
    focal_length_m, f_number, pixel_pitch_m = camera.unbind(dim=1)
    blur_px_per_dpt = (focal_length_m**2 / (f_number * pixel_pitch_m)).unsqueeze(1)
    num_steps = max(focus_distance_m.shape[1] - 1, 1)
    step_blur_px = blur_px_per_dpt * sweep_dpt / num_steps
    sweep_blur_px = blur_px_per_dpt * sweep_dpt
    return torch.stack([position, torch.log2(step_blur_px + 1e-3).expand_as(position),
                        torch.log2(sweep_blur_px + 1e-3).expand_as(position)], dim=2)


def code_for_scale(code: torch.Tensor, scale: float) -> torch.Tensor:
    """``(B, S, 3)`` slice codes for a feature map ``scale`` times smaller than the frames:
    its blur codes are shifted by ``log2(scale)`` (it sees that much less blur)."""
    shift = torch.tensor([0.0, math.log2(scale), math.log2(scale)], device=code.device, dtype=code.dtype)
    return code - shift


class FusionBlock(nn.Module):
    """Per-slice conv block preceded by cross-slice pooling and the slice code."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.mix = SliceMixer(in_channels, out_channels)
        self.convs = nn.Sequential(conv_bn_relu(out_channels, out_channels, stride),
                                   conv_bn_relu(out_channels, out_channels))

    def forward(self, features, num_slices, code, scale):
        parts = features if isinstance(features, list) else [features]
        return self.convs(F.relu(self.mix(parts, num_slices, code, scale), inplace=True))


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.fuse = FusionBlock(in_channels + skip_channels, out_channels)

    def forward(self, features, skip, num_slices, code, scale):
        upsampled = F.interpolate(features, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse([upsampled, skip], num_slices, code, scale)


@register_model("sweepnet_test", widths=(4, 6, 8, 8))
@register_model("sweepnet")
class SweepNet(DepthModel):
    """Camera-aware focus-volume network; see the module docstring.

    Args:
        widths: channels at 1/2, 1/4, 1/8 and 1/16 resolution.
        coc_decoder: also predict each slice's CoC map in pixels (``"coc_px"``) for supervision.
        temperature: initial softmax temperature of the vote over slices (learned).
        extrapolate: add the offset head that reaches depths beyond the swept range.
    """

    info = ModelInfo(consumes="stack_any", uses_focus_distance=True, uses_camera=True,
                     paper="focaldepth SweepNet (this project): focus-volume vote with camera code")
    #: Frames interact only through max and mean over frames (models.base.order_equivariant).
    frame_order_equivariant = True

    def __init__(self, widths: tuple[int, ...] = (12, 16, 24, 32), coc_decoder: bool = False,
                 temperature: float = 1.0, extrapolate: bool = False):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths: expected 4 channel counts, got {widths}")
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(conv_bn_relu(24, w0), conv_bn_relu(w0, w0))
        self.down1 = FusionBlock(w0, w1, stride=2)
        self.down2 = FusionBlock(w1, w2, stride=2)
        self.down3 = FusionBlock(w2, w3, stride=2)
        self.up2 = UpBlock(w3, w2, w2)
        self.up1 = UpBlock(w2, w1, w1)
        self.up0 = UpBlock(w1, w0, w0)
        self.focus_head = nn.Conv2d(w0, 1, 3, padding=1)
        self.coc_head = nn.Conv2d(w0, 1, 3, padding=1) if coc_decoder else None
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.offset_head = None
        if extrapolate:
            # Sees the slices' mean and max features; zero init = the pure vote at the start.
            self.offset_head = nn.Conv2d(2 * w0, 1, 3, padding=1)
            nn.init.zeros_(self.offset_head.weight)
            nn.init.zeros_(self.offset_head.bias)

    def slice_features(self, frames: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """``(B, S, 3, H, W)`` -> per-slice features ``(B*S, w0, H/2, W/2)``.

        The stem folds 2x2 pixel blocks into channels (pixel unshuffle) instead of convolving
        at full resolution: no fine-scale blur cue is lost, at a quarter of the cost."""
        num_slices = frames.shape[1]
        s0 = self.stem[1](self.stem_input(frames))
        s1 = self.down1(s0, num_slices, code, 2.0)
        s2 = self.down2(s1, num_slices, code, 4.0)
        s3 = self.down3(s2, num_slices, code, 8.0)
        u2 = self.up2(s3, s2, num_slices, code, 8.0)
        u1 = self.up1(u2, s1, num_slices, code, 4.0)
        return self.up0(u1, s0, num_slices, code, 2.0)

    def stem_input(self, frames: torch.Tensor) -> torch.Tensor:
        """The stem's first layer: ``(B, S, 3, H, W)`` -> ``(B*S, w0, H/2, W/2)``.

        As trained, a 3x3 conv over the pixel-unshuffled ``[frames, frames - stack mean]``
        (each slice's difference from the stack mean is where focus cues live). Computed as
        the same linear map without building that input: a 3x3 conv after a 2x2 unshuffle is a
        6x6 stride-2 conv on the frames (:func:`unshuffled_kernel`), and the conv of
        ``frames - mean`` is the conv of the frames minus the conv of the mean, which is done
        once per stack. Same function; 3x less time at 5 x 320x192 on one core."""
        first = self.stem[0]
        weight, bias = first.folded()
        kernel = unshuffled_kernel(weight)
        channels = frames.shape[2]
        own, relative = kernel[:, :channels], kernel[:, channels:]
        per_slice = F.conv2d(frames.flatten(0, 1), own + relative, bias, stride=2, padding=2)
        of_mean = F.conv2d(frames.mean(dim=1), relative, stride=2, padding=2)
        per_slice.unflatten(0, frames.shape[:2]).sub_(of_mean.unsqueeze(1))
        return first.finish(per_slice)

    def forward(self, frames, focus_distance_m, camera):
        check_inputs(frames, focus_distance_m, camera)
        batch, num_slices, _, height, width = frames.shape
        code = slice_code(focus_distance_m, camera)
        features = self.slice_features(pad_to_multiple(frames, 16), code)
        logits = conv3x3_to_one(features, self.focus_head)
        logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
        logits = logits[..., :height, :width].view(batch, num_slices, height, width)
        weights = torch.softmax(logits / self.log_temperature.exp(), dim=1)
        focus_dpt = (1.0 / focus_distance_m).view(batch, num_slices, 1, 1)
        inverse_depth = (weights * focus_dpt).sum(dim=1, keepdim=True)
        if self.offset_head is not None:
            inverse_depth = self.extrapolated(inverse_depth, features, focus_dpt, (height, width))
        outputs = {"depth_m": 1.0 / inverse_depth, "focus_weights": weights,
                   "confidence": vote_confidence(weights, focus_dpt)}
        if self.coc_head is not None:
            coc = F.interpolate(F.softplus(conv3x3_to_one(features, self.coc_head)), scale_factor=2.0, mode="bilinear",
                                align_corners=False)
            outputs["coc_px"] = coc[..., :height, :width].reshape(batch, num_slices, 1, height, width)
        return outputs


    def extrapolated(self, vote_dpt: torch.Tensor, features: torch.Tensor, focus_dpt: torch.Tensor,
                     size: tuple[int, int]) -> torch.Tensor:
        """The vote's inverse depth plus the offset head's bounded correction (module doc)."""
        num_slices = focus_dpt.shape[1]
        stacked = features.unflatten(0, (-1, num_slices))
        pooled = torch.cat([stacked.mean(dim=1), stacked.amax(dim=1)], dim=1)
        offset = F.interpolate(conv3x3_to_one(pooled, self.offset_head), scale_factor=2.0, mode="bilinear", align_corners=False)
        offset = torch.tanh(offset[..., :size[0], :size[1]])
        near_dpt, far_dpt = focus_dpt.amax(dim=1, keepdim=True), focus_dpt.amin(dim=1, keepdim=True)
        inverse_depth = vote_dpt + EXTRAPOLATION_SWEEPS * (near_dpt - far_dpt) * offset
        # Stay in front of infinity: a smooth floor at a fraction of the farthest focus
        # (identity to float precision from twice the floor up, so the vote range is exact).
        floor_dpt = FARTHEST_FRACTION * far_dpt
        sharpness = 8.0
        return floor_dpt + floor_dpt / sharpness * F.softplus(sharpness * (inverse_depth / floor_dpt - 1.0))


def unshuffled_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``(O, 4C, 3, 3)`` weights of a 3x3 conv (padding 1) applied after a 2x2 pixel unshuffle
    -> ``(O, C, 6, 6)`` weights of the same map as a stride-2, padding-2 conv on the image.
    Unshuffled channel ``4c + 2dy + dx`` at kernel tap ``(ky, kx)`` reads image row
    ``2y - 2 + (2ky + dy)``, column ``2x - 2 + (2kx + dx)``."""
    out_channels, in_channels = weight.shape[0], weight.shape[1] // 4
    taps = weight.view(out_channels, in_channels, 2, 2, 3, 3)  # (o, c, dy, dx, ky, kx)
    return taps.permute(0, 1, 4, 2, 5, 3).reshape(out_channels, in_channels, 6, 6)


def conv3x3_to_one(features: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(features)`` for a 3x3, padding-1 conv with one output channel, as a 1x1 conv to
    nine tap maps and a sum of their shifted views: the same map, but CPU conv kernels are
    slow for a single output channel (4.9 vs 1.4 ms at 5 x 12 x 96x160)."""
    height, width = features.shape[-2:]
    # (A 1x1 conv rather than a matmul: torch.matmul with a weight that requires grad copies
    # the broadcast batch, 4 vs 0.5 ms, even under no_grad.)
    taps = F.conv2d(features, conv.weight[0].permute(1, 2, 0).reshape(9, -1, 1, 1))
    taps = F.pad(taps, (1, 1, 1, 1))
    out = taps[:, 0, :height, :width].clone()
    for tap in range(1, 9):
        ky, kx = divmod(tap, 3)
        out.add_(taps[:, tap, ky:ky + height, kx:kx + width])
    if conv.bias is not None:
        out.add_(conv.bias.view(1, 1, 1))
    return out.unsqueeze(1)


def pad_to_multiple(frames: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad H and W of ``(B, S, C, H, W)`` up to a multiple of ``multiple``."""
    height, width = frames.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return frames
    padded = F.pad(frames.flatten(0, 1), (0, pad_w, 0, pad_h), mode="replicate")
    return padded.unflatten(0, frames.shape[:2])


def vote_confidence(weights: torch.Tensor, focus_dpt: torch.Tensor) -> torch.Tensor:
    """Confidence in [0, 1] from the spread of the vote: 1 when all weight sits within one
    sweep step, falling as the weighted standard deviation (in sweep steps) grows."""
    num_slices = weights.shape[1]
    mean_dpt = (weights * focus_dpt).sum(dim=1, keepdim=True)
    spread_dpt = ((weights * (focus_dpt - mean_dpt) ** 2).sum(dim=1, keepdim=True)).sqrt()
    step_dpt = (focus_dpt.amax(dim=1, keepdim=True) - focus_dpt.amin(dim=1, keepdim=True)).clamp_min(1e-6)
    step_dpt = step_dpt / max(num_slices - 1, 1)
    return torch.exp(-spread_dpt / step_dpt).clamp(0.0, 1.0)


# --- widening a trained SweepNet (Net2WiderNet, Chen et al. ICLR 2016) -----------------------

def _widening_plan(widths: tuple[int, ...]) -> list[tuple[str, str | None, list[str | int]]]:
    """For every conv of a SweepNet: ``(module path, output space or None, input segments)``.
    A *space* is one set of feature channels (a conv's output, after its BatchNorm and ReLU);
    an input segment is a space or a fixed channel count (the slice code, the stem's width).
    Spaces ``s1*``/``u1*`` are ``widths[1]`` wide, ``s2*``/``u2*`` ``widths[2]``, ``s3*``
    ``widths[3]``; ``widths[0]`` (the half-resolution features, most of the cost) is kept."""
    w0 = widths[0]
    plan: list[tuple[str, str | None, list[str | int]]] = []

    def block(prefix: str, name: str, parts: list[str | int], out: str | None) -> None:
        plan.append((f"{prefix}.mix.own", f"{name}m" if out else None, [*parts, SLICE_CODE_CHANNELS]))
        for pooled in ("pooled_max", "pooled_mean"):
            plan.append((f"{prefix}.mix.{pooled}", f"{name}m" if out else None, list(parts)))
        plan.append((f"{prefix}.convs.0", f"{name}c" if out else None, [f"{name}m" if out else w0]))
        plan.append((f"{prefix}.convs.1", out, [f"{name}c" if out else w0]))

    block("down1", "s1", [w0], "s1")
    block("down2", "s2", ["s1"], "s2")
    block("down3", "s3", ["s2"], "s3")
    block("up2.fuse", "u2", ["s3", "s2"], "u2")
    block("up1.fuse", "u1", ["u2", "s1"], "u1")
    block("up0.fuse", "u0", ["u1", w0], None)
    return plan


def _space_width(space: str, widths: tuple[int, ...]) -> int:
    return widths[int(space[1])]


@torch.no_grad()
def widened(model: SweepNet, widths: tuple[int, ...], seed: int = 0) -> SweepNet:
    """A SweepNet with ``widths`` (only the 1/4, 1/8 and 1/16 levels may grow) that computes
    the same function as ``model`` (to float rounding), for continuing its training with more
    capacity where it is cheap: at 5 x 320x180 on one core widths (12, 24, 48, 64) cost 86 ms
    against 68 ms for (12, 16, 24, 32), with 3.3x the parameters.

    Net2WiderNet: every new channel copies a random old channel of the same space (its conv
    rows, BatchNorm parameters and statistics); each consumer's weights on the copies of a
    channel are split between them by random positive fractions summing to one, so the sum is
    unchanged but the copies get different gradients (an even split would keep them identical
    forever)."""
    old_widths = (int(model.stem[0][0].weight.shape[0]), int(model.down1.convs[1][0].weight.shape[0]),
                  int(model.down2.convs[1][0].weight.shape[0]), int(model.down3.convs[1][0].weight.shape[0]))
    widths = tuple(int(w) for w in widths)
    if len(widths) != 4 or widths[0] != old_widths[0] or any(n < o for n, o in zip(widths, old_widths)):
        raise ValueError(f"widths {widths}: expected 4 widths, the first {old_widths[0]}, none below {old_widths}")
    if model.coc_head is not None or model.offset_head is not None:
        raise ValueError("widening supports the vote-only SweepNet (no coc or offset head)")
    generator = torch.Generator().manual_seed(seed)
    mapping: dict[str, torch.Tensor] = {}   # space -> old channel of every new channel
    share: dict[str, torch.Tensor] = {}     # space -> each new channel's fraction of its old one
    for space in ("s1m", "s1c", "s1", "s2m", "s2c", "s2", "s3m", "s3c", "s3", "u2m", "u2c", "u2",
                  "u1m", "u1c", "u1"):
        old, new = _space_width(space, old_widths), _space_width(space, widths)
        index = torch.cat([torch.arange(old), torch.randint(old, (new - old,), generator=generator)])
        weight = torch.rand(new, generator=generator) + 0.5
        total = torch.zeros(old).index_add_(0, index, weight)
        mapping[space], share[space] = index, weight / total[index]
    from focaldepth.models.registry import create  # (the registry imports this module)

    wide = create("sweepnet", widths=list(widths))  # via the registry: it can be saved
    wide.log_temperature.copy_(model.log_temperature)
    old_modules, new_modules = dict(model.named_modules()), dict(wide.named_modules())
    for path, out_space, segments in _widening_plan(old_widths):
        source, target = old_modules[path], new_modules[path]
        old_conv, new_conv = (source[0], target[0]) if isinstance(source, ConvBnReLU) else (source, target)
        weight = old_conv.weight
        if out_space is not None:
            weight = weight[mapping[out_space]]
        columns, start = [], 0
        for segment in segments:
            count = segment if isinstance(segment, int) else _space_width(segment, old_widths)
            part = weight[:, start:start + count]
            start += count
            if not isinstance(segment, int):
                part = part[:, mapping[segment]] * share[segment].view(1, -1, 1, 1)
            columns.append(part)
        new_conv.weight.copy_(torch.cat(columns, dim=1))
        if old_conv.bias is not None:
            new_conv.bias.copy_(old_conv.bias if out_space is None else old_conv.bias[mapping[out_space]])
        if isinstance(source, ConvBnReLU):
            for name in ("weight", "bias", "running_mean", "running_var"):
                value = getattr(source[1], name)
                getattr(target[1], name).copy_(value if out_space is None else value[mapping[out_space]])
            target[1].num_batches_tracked.copy_(source[1].num_batches_tracked)
    wide.stem.load_state_dict(model.stem.state_dict())
    wide.focus_head.load_state_dict(model.focus_head.state_dict())
    return wide.train(model.training)
