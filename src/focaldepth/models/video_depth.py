"""A small monocular video depth network (Monodepth2-style depth + pose), with and without the
defocus module: the project proposal's comparison of a video depth model "modified by the
depth-from-defocus module".

* **Depth net** (both variants): a compact residual encoder (four scales) and a U-Net decoder
  with nearest-neighbour up-sampling and skips (Godard et al., "Digging Into Self-Supervised
  Monocular Depth Estimation", ICCV 2019), sized for CPU training at 64-128 px. It sees the
  *reference* (last) frame of the window only: a monocular per-frame network.
* **Pose net** (both variants): Monodepth2's separate pose network on the concatenated
  previous and reference frames, global average pooling, 6 numbers scaled by 0.01
  (axis-angle in radians, translation in metres). ``"pose_t_to_prev"`` ``(B, 6)`` is the
  rigid motion that takes a point from the reference camera's frame into the previous
  frame's camera (:func:`pose_matrix` makes the 4x4 matrix); photometric self-supervision
  warps the previous frame into the reference view with it.
* **Defocus module** (``defocus=True``), extra input channels of the depth net computed
  without parameters from the whole window and the lens:

  - the reference frame's focus position on the output scale, ``u_F`` (0 far ... 1 near, the
    same units as the network's normalised depth, :func:`base.unit_from_depth`), and the
    camera's blur scale over that scale, ``log2(g)`` with ``g = f^2 / (N p) * (1/d_near -
    1/d_far)`` pixels: the thin-lens signed CoC of the reference frame at a pixel of normalised
    depth ``u`` is ``g * (u_F - u)`` pixels (``optics.coc_px_dioptric`` with ``F >> f``), so
    the two channels are that signed CoC-per-dioptre map in the network's own units;
  - focus-volume features over the window's frames at two scales: the sharpness-weighted
    focus position (a depth-from-focus vote, soft-argmax of the log local Laplacian energy
    over the frames), the vote's peak contrast (a confidence: max minus mean log sharpness),
    and the reference frame's log sharpness relative to the sharpest frame.

  These are functions of the whole set of frames, so any window length works; frames are
  *not* motion-compensated (the window is fed as captured, as the RGB variant's training is).

Metric depth, both variants: the sigmoid output is mapped over the window's swept inverse-depth
range (:func:`base.depth_from_unit`), as every zoo model does, so the RGB-only variant gets
the same metric scale from the focus metadata and the comparison isolates what the defocus
*inputs* add. Deviations from Monodepth2: no ImageNet ResNet-18 (a small random-initialised
residual encoder), one output scale instead of four, BatchNorm + ReLU instead of ELU.
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from focaldepth.models.base import ModelInfo, depth_range_dpt, unit_from_depth
from focaldepth.models.common import ZooModel, conv_bn_act, init_weights, positive_ints
from focaldepth.models.registry import register_model

VIDEO_DEPTH_PAPER = "Godard et al., ICCV 2019 (Monodepth2), small CPU variant; defocus module: this project"
#: Box sizes (px) of the local sharpness (focus measure) of the defocus module.
SHARPNESS_WINDOWS_PX = (5, 11)
#: Temperature of the soft-argmax over frames, per nat of log sharpness.
VOTE_SHARPNESS = 4.0
#: Monodepth2 scales the pose net's raw output by 0.01 (small motions between frames).
POSE_SCALE = 0.01
DEFOCUS_CHANNELS = 2 + 3 * len(SHARPNESS_WINDOWS_PX)


# --- functional core: the defocus module's features ------------------------------------------


def _box_mean(x: torch.Tensor, size_px: int) -> torch.Tensor:
    pad = size_px // 2
    return F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), size_px, stride=1)


def log_sharpness(frames: torch.Tensor, window_px: int) -> torch.Tensor:
    """Focus measure ``(B, S, 1, H, W)``: log of the local energy of the Laplacian of each
    frame's grey image, averaged over a ``window_px`` box (the sum-modified-Laplacian family
    of depth-from-focus measures). Log, so it is invariant to the image's contrast up to an
    additive constant that the comparisons across frames below cancel."""
    batch, slices = frames.shape[:2]
    grey = frames.mean(dim=2, keepdim=True).flatten(0, 1)
    laplacian = kornia.filters.laplacian(grey, 3, border_type="reflect")
    energy = _box_mean(laplacian.square(), window_px)
    return torch.log(energy + 1e-6).view(batch, slices, 1, *frames.shape[-2:])


def focus_position_unit(focus_distance_m: torch.Tensor) -> torch.Tensor:
    """``(B, S)``: each frame's focus distance on the output scale of the window (0 = far end,
    1 = near end, linear in inverse depth; :func:`base.unit_from_depth`)."""
    batch, slices = focus_distance_m.shape
    return unit_from_depth(focus_distance_m.view(batch, slices, 1, 1), focus_distance_m).view(
        batch, slices)


def blur_scale_px(focus_distance_m: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """``(B,)``: CoC in pixels per unit of the output scale, ``f^2 / (N p)`` times the output
    range in dioptres (thin lens, focus far beyond f)."""
    focal_length_m, f_number, pixel_pitch_m = camera.unbind(dim=1)
    low, high = depth_range_dpt(focus_distance_m)
    return focal_length_m**2 / (f_number * pixel_pitch_m) * (high - low).view(-1)


def defocus_features(frames: torch.Tensor, focus_distance_m: torch.Tensor,
                     camera: torch.Tensor) -> torch.Tensor:
    """The defocus module's input channels ``(B, DEFOCUS_CHANNELS, H, W)`` for the window's last
    frame (see the module docstring): focus position and log2 blur scale, then per sharpness
    window the focus vote, its peak contrast and the reference frame's relative sharpness."""
    batch, slices, _, height, width = frames.shape
    position = focus_position_unit(focus_distance_m)  # (B, S)
    scale = torch.log2(blur_scale_px(focus_distance_m, camera).clamp_min(1e-3)) / 4.0
    constant = torch.stack([position[:, -1], scale], dim=1)[..., None, None]
    channels = [constant.expand(batch, 2, height, width)]
    for window_px in SHARPNESS_WINDOWS_PX:
        sharp = log_sharpness(frames, window_px)[:, :, 0]  # (B, S, H, W)
        weights = torch.softmax(VOTE_SHARPNESS * sharp, dim=1)
        vote = (weights * position[..., None, None]).sum(dim=1)
        peak = sharp.amax(dim=1)
        channels += [vote[:, None], (peak - sharp.mean(dim=1))[:, None] / 4.0,
                     (sharp[:, -1] - peak)[:, None] / 4.0]
    return torch.cat(channels, dim=1)


def pose_matrix(pose: torch.Tensor) -> torch.Tensor:
    """``(B, 6)`` [axis-angle (rad), translation (m)] -> ``(B, 4, 4)`` rigid transform."""
    rotation = kornia.geometry.conversions.axis_angle_to_rotation_matrix(pose[:, :3])
    matrix = torch.eye(4, dtype=pose.dtype, device=pose.device).repeat(pose.shape[0], 1, 1)
    matrix[:, :3, :3] = rotation
    matrix[:, :3, 3] = pose[:, 3:]
    return matrix


# --- module shell -----------------------------------------------------------------------------


class ResidualDown(nn.Module):
    """Stride-2 conv-BN-ReLU, then a residual conv-BN pair (a ResNet basic block, halved)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.down = conv_bn_act(in_channels, out_channels, stride=2)
        self.body = conv_bn_act(out_channels, out_channels, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return F.relu(x + self.body(x))


class DepthEncoderDecoder(nn.Module):
    """U-Net: stem at full resolution, ``len(widths) - 1`` residual down blocks, a decoder of
    nearest up-sampling + conv + skip concatenation + conv, one logit at full resolution."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_act(in_channels, widths[0]),
                                  conv_bn_act(widths[0], widths[0]))
        self.down = nn.ModuleList(ResidualDown(a, b) for a, b in zip(widths[:-1], widths[1:]))
        rev = list(reversed(widths))
        self.up = nn.ModuleList(conv_bn_act(a, b) for a, b in zip(rev[:-1], rev[1:]))
        self.merge = nn.ModuleList(conv_bn_act(2 * b, b) for b in rev[1:])
        self.head = nn.Conv2d(widths[0], 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = merge(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


class PoseNet(nn.Module):
    """Monodepth2's separate pose network: two frames in, strided convs, 1x1 conv to 6,
    spatial mean, times :data:`POSE_SCALE`."""

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        ins = (6,) + tuple(widths[:-1])
        self.convs = nn.Sequential(*(conv_bn_act(a, b, stride=2) for a, b in zip(ins, widths)))
        self.out = nn.Conv2d(widths[-1], 6, 1)

    def forward(self, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        features = self.convs(torch.cat([previous, current], dim=1))
        return POSE_SCALE * self.out(features).mean(dim=(2, 3))


@register_model("video_depth_defocus_test", defocus=True, widths=(4, 8, 8, 16), pose_widths=(4, 8, 8))
@register_model("video_depth_test", defocus=False, widths=(4, 8, 8, 16), pose_widths=(4, 8, 8))
@register_model("video_depth_defocus", defocus=True)
@register_model("video_depth")
class VideoDepthNet(ZooModel):
    """Monodepth2-style monocular video depth (depth net on the last frame + pose net on the
    last two); ``defocus=True`` adds the defocus module (focus distance, lens blur scale and
    focus-volume features of the window as input channels). See the module docstring."""

    info = ModelInfo(consumes="stack_any", uses_focus_distance=False, uses_camera=False,
                     paper=VIDEO_DEPTH_PAPER)

    def __init__(self, defocus: bool = False, widths: Sequence[int] = (16, 32, 48, 64),
                 pose_widths: Sequence[int] = (16, 32, 64, 64), pose: bool = True):
        super().__init__()
        widths = positive_ints("widths", widths)
        self.defocus = bool(defocus)
        self.size_multiple_px = 2 ** (len(widths) - 1)
        if self.defocus:
            self.info = ModelInfo("stack_any", True, True, VIDEO_DEPTH_PAPER)
        self.depth_net = DepthEncoderDecoder(3 + (DEFOCUS_CHANNELS if self.defocus else 0), widths)
        self.pose_net = PoseNet(positive_ints("pose_widths", pose_widths)) if pose else None
        init_weights(self)

    def depth_inputs(self, frames: torch.Tensor, focus_distance_m: torch.Tensor,
                     camera: torch.Tensor) -> torch.Tensor:
        """What the depth net reads: the last frame, plus the defocus channels if enabled."""
        reference = frames[:, -1]
        if not self.defocus:
            return reference
        return torch.cat([reference, defocus_features(frames, focus_distance_m, camera)], dim=1)

    def forward(self, frames: torch.Tensor, focus_distance_m: torch.Tensor,
                camera: torch.Tensor) -> dict[str, torch.Tensor]:
        """``depth_m`` ``(B, 1, H, W)`` of the last frame; with a pose net and at least two
        frames also ``pose_t_to_prev`` ``(B, 6)`` (last frame -> the one before)."""
        self.check(frames, focus_distance_m, camera)
        logits = self.depth_net(self.depth_inputs(frames, focus_distance_m, camera))
        out = {"depth_m": self.depth_from_unit(torch.sigmoid(logits), focus_distance_m)}
        if self.pose_net is not None and frames.shape[1] >= 2:
            out["pose_t_to_prev"] = self.pose_net(frames[:, -2], frames[:, -1])
        return out

    def conventions(self) -> dict:
        conventions = super().conventions()
        conventions["frame_order"] = "capture order; depth is for the last frame"
        conventions["defocus_module"] = self.defocus
        return conventions
