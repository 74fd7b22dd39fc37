"""SweepNet + physics: the learned focus vote fused with the relative-blur plane sweep.

Why a fusion, and why this one:

* SweepNet's vote is robust where the physics is weak (little blur per frame, low-contrast
  texture: it has learned what surfaces look like), but it is a convex combination of the
  focus distances, so it cannot answer beyond either end of the sweep; and on real textures
  it trails the classical baseline.
* The plane sweep (:mod:`focaldepth.defocus_volume`) scores depth hypotheses on both sides of
  the swept range with the thin-lens blur model, and is accurate wherever there is texture.

Per pixel, both give an inverse depth and a confidence. The fused inverse depth is their
confidence-weighted mean, ``(w_n h_net + w_p h_phys) / (w_n + w_p)`` with ``w_n = c_net`` and
``w_p = physics_weight * c_phys ** physics_power``, except that where the physics puts the
pixel *beyond* an end of the sweep and the vote sits at that end (it has nothing else to
say), the vote's weight fades to zero: there the physics alone answers. Then the same
confidence-weighted edge-aware smoothing as the classical baseline, guided by the
all-in-focus image. The fusion's three numbers were chosen on validation data only
(``tools/tune_hybrid.py``); the SweepNet weights are the shipped v3's, unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from focaldepth.models.base import Beside, DepthModel, ModelInfo, check_inputs
from focaldepth.models.registry import register_model
from focaldepth.models.sweepnet import SweepNet


def sweep_ends_and_step(focus_dpt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(B, 1, 1, 1)`` nearest and farthest focus (dioptres) and one sweep step, the span
    over the gaps between ``S`` frames."""
    near = focus_dpt.amax(dim=1)[:, None, None, None]
    far = focus_dpt.amin(dim=1)[:, None, None, None]
    return near, far, (near - far).clamp_min(1e-6) / max(focus_dpt.shape[1] - 1, 1)


def end_of_sweep_weight(vote_dpt: Tensor, physics_dpt: Tensor, focus_dpt: Tensor) -> Tensor:
    """``(B, 1, H, W)`` in [0, 1]: how much the vote is still to be trusted, 0 where the physics
    says "beyond this end" and the vote is within one sweep step of that end."""
    near, far, step = sweep_ends_and_step(focus_dpt)
    at_far = ((far + step - vote_dpt) / step).clamp(0, 1)
    at_near = ((vote_dpt - (near - step)) / step).clamp(0, 1)
    beyond_far = physics_dpt < far
    beyond_near = physics_dpt > near
    return 1.0 - torch.where(beyond_far, at_far, torch.where(beyond_near, at_near, torch.zeros_like(at_far)))


def beyond_sweep_fraction(physics_dpt: Tensor, focus_dpt: Tensor) -> Tensor:
    """``(B, 1, H, W)`` in [0, 1]: 0 where the physics puts the pixel inside the swept range,
    rising to 1 one sweep step beyond either end (a ramp, so the fusion has no seam there)."""
    near, far, step = sweep_ends_and_step(focus_dpt)
    return torch.maximum((far - physics_dpt) / step, (physics_dpt - near) / step).clamp(0, 1)


def agreement(vote_dpt: Tensor, physics_dpt: Tensor, focus_dpt: Tensor, steps: float = 1.0) -> Tensor:
    """``(B, 1, H, W)`` in (0, 1]: ``exp(-|vote - physics| / step)``, the two estimates'
    disagreement in sweep steps (the sweep's dioptric span over its gaps). The scale is one
    step: on validation it ranked errors better than two (results/default_selection/
    confidence_candidates.txt)."""
    near, far, step = sweep_ends_and_step(focus_dpt)
    return torch.exp(-(vote_dpt - physics_dpt).abs() / (steps * step))


def fuse(vote_dpt: Tensor, vote_confidence: Tensor, physics_dpt: Tensor, physics_confidence: Tensor,
         focus_dpt: Tensor, *, physics_weight: float, physics_power: float,
         inside_weight: float = 1.0) -> tuple[Tensor, Tensor]:
    """Fused inverse depth and confidence (module docstring); all maps ``(B, 1, H, W)``.

    ``inside_weight`` scales the physics' weight where it puts the pixel inside the sweep
    (:func:`beyond_sweep_fraction` ramps it to full weight beyond the ends): inside, the vote
    has seen the focus peak and needs the physics less; beyond, only the physics can answer."""
    w_net = vote_confidence.clamp_min(1e-3) * end_of_sweep_weight(vote_dpt, physics_dpt, focus_dpt)
    w_phys = physics_weight * physics_confidence.clamp_min(0) ** physics_power
    if inside_weight != 1.0:
        beyond = beyond_sweep_fraction(physics_dpt, focus_dpt)
        w_phys = w_phys * (inside_weight + (1.0 - inside_weight) * beyond)
    total = (w_net + w_phys).clamp_min(1e-6)
    fused = (w_net * vote_dpt + w_phys * physics_dpt) / total
    confidence = ((w_net * vote_confidence + w_phys * physics_confidence) / total).clamp(0, 1)
    return fused, confidence


FUSION_INPUTS = 7


def physics_at_scale(frames: Tensor, focus_distance_m: Tensor, camera: Tensor, scale: float,
                     **options) -> dict[str, Tensor]:
    """The unsmoothed plane sweep on frames area-resized by ``scale``, its inverse depth and
    confidence upsampled (bilinear) to the frames' size. The pixel pitch grows by ``1 / scale``,
    so every hypothesis predicts the same blur in metres on the sensor; the cost volume stays
    at the small size (only ``depth_m``, ``confidence`` and ``hypotheses_dpt`` are used here)."""
    from focaldepth.defocus_volume import defocus_volume_depth  # imports classical -> models

    height, width = frames.shape[-2:]
    size = (max(round(height * scale), 8), max(round(width * scale), 8))
    if scale == 1.0 or size[0] >= height or size[1] >= width:
        return defocus_volume_depth(frames, focus_distance_m, camera, smooth=False, **options)
    small = F.interpolate(frames.flatten(0, 1), size=size, mode="area").unflatten(0, frames.shape[:2])
    camera = camera.clone()
    camera[:, 2] = camera[:, 2] * (width / size[1])  # larger pixels: the same blur in metres
    physics = defocus_volume_depth(small, focus_distance_m, camera, smooth=False, **options)
    inverse = F.interpolate(1.0 / physics["depth_m"], size=(height, width), mode="bilinear", align_corners=False)
    confidence = F.interpolate(physics["confidence"], size=(height, width), mode="bilinear", align_corners=False)
    aif = F.interpolate(physics["all_in_focus"], size=(height, width), mode="bilinear", align_corners=False)
    return {**physics, "depth_m": 1.0 / inverse, "confidence": confidence, "all_in_focus": aif}


def sweep_units(inverse_depth_dpt: Tensor, focus_dpt: Tensor) -> Tensor:
    """Inverse depth in units of the sweep: 0 at the farthest focus, 1 at the nearest."""
    near = focus_dpt.amax(dim=1)[:, None, None, None]
    far = focus_dpt.amin(dim=1)[:, None, None, None]
    return (inverse_depth_dpt - far) / (near - far).clamp_min(1e-6)


def fusion_features(vote_dpt: Tensor, vote_confidence: Tensor, physics_dpt: Tensor, physics_confidence: Tensor,
                    focus_dpt: Tensor, camera: Tensor, aif: Tensor) -> Tensor:
    """``(B, FUSION_INPUTS, H, W)``: both estimates in sweep units, both confidences, the blur of
    one sweep step (log2 px, from the camera), the frame count and the local texture
    (log of the all-in-focus image's gradient energy): camera-independent inputs."""
    from focaldepth.classical import to_grey, window_mean

    u_net, u_phys = sweep_units(vote_dpt, focus_dpt), sweep_units(physics_dpt, focus_dpt)
    focal_length_m, f_number, pixel_pitch_m = camera.unbind(dim=1)
    span = focus_dpt.amax(dim=1) - focus_dpt.amin(dim=1)
    step_px = focal_length_m**2 / (f_number * pixel_pitch_m) * span / max(focus_dpt.shape[1] - 1, 1)
    code = torch.log2(step_px + 1e-3)[:, None, None, None].expand_as(u_net)
    frames = torch.full_like(u_net, focus_dpt.shape[1] / 10.0)
    grey = to_grey(aif)
    gx, gy = grey[..., :, 1:] - grey[..., :, :-1], grey[..., 1:, :] - grey[..., :-1, :]
    energy = F.pad(gx**2, (0, 1)) + F.pad(gy**2, (0, 0, 0, 1))
    texture = torch.log10(window_mean(energy, 7) + 1e-6) / 3.0
    return torch.cat([u_net.clamp(-1, 2), u_phys.clamp(-1, 2), vote_confidence, physics_confidence, code / 4.0,
                      frames, texture], dim=1)


class FusionHead(nn.Module):
    """A small dilated CNN over :func:`fusion_features`: per pixel, the weight of the physics
    (sigmoid) and a bounded correction in sweep units. Initialised to the analytic fusion's
    spirit: weight 1/2, no correction."""

    def __init__(self, width: int = 16):
        super().__init__()
        layers, channels = [], FUSION_INPUTS
        for dilation in (1, 2, 4, 1):
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        raw = self.out(self.body(features))
        return torch.sigmoid(raw[:, :1]), 0.25 * torch.tanh(raw[:, 1:])


@register_model("sweepnet_physics_test", widths=(4, 6, 8, 8), num_hypotheses=12)
@register_model("sweepnet_physics")
class SweepNetPhysics(DepthModel):
    """SweepNet's focus vote fused with the physics plane sweep (answers beyond the sweep).

    Args:
        widths: SweepNet channel widths (the shipped v3: the default).
        num_hypotheses: planes of the physics sweep over inverse depth.
        physics_weight, physics_power: the physics' weight ``physics_weight * c ** physics_power``.
        physics_inside_weight: its multiplier where the physics puts the pixel inside the sweep
            (:func:`fuse`; 1: the same weight everywhere, as v4).
        smooth: confidence-weighted edge-aware smoothing of the fused inverse depth.
        physics_scale: the plane sweep runs on frames resized by this factor (0.5: a quarter of
            the pixels, about 4x faster; the sweep dominates the model's cost) and its inverse
            depth and confidence are upsampled back; the vote always sees the full frames.
        confidence_agreement: the output ``confidence`` is the fusion's times
            :func:`agreement` of the vote and the plane sweep (v8: two independent estimates that
            agree are more often right; chosen on validation, tools/confidence_candidates.py).
            Depth never depends on it: smoothing and the temporal filter use the fusion's own
            confidence, also returned as ``fusion_confidence``.
    """

    info = ModelInfo(consumes="stack_any", uses_focus_distance=True, uses_camera=True,
                     paper="focaldepth SweepNet vote + relative-blur plane sweep (this project)")
    #: The vote pools over frames, the plane sweep sorts them by focus (models.base.order_equivariant).
    frame_order_equivariant = True

    def __init__(self, widths: tuple[int, ...] = (12, 16, 24, 32), num_hypotheses: int = 32,
                 physics_weight: float = 2.0, physics_power: float = 1.0, smooth: bool = True,
                 window: int = 7, learned_fusion: bool = False, physics_inside_weight: float = 1.0,
                 physics_scale: float = 1.0, confidence_agreement: bool = False):
        super().__init__()
        self.confidence_agreement = confidence_agreement
        self.net = SweepNet(widths=widths)
        self.fusion = FusionHead() if learned_fusion else None
        self.num_hypotheses, self.window = num_hypotheses, window
        self.physics_weight, self.physics_power, self.smooth = physics_weight, physics_power, smooth
        self.physics_inside_weight = physics_inside_weight
        if not 0.0 < physics_scale <= 1.0:
            raise ValueError(f"physics_scale must be in (0, 1], got {physics_scale}")
        self.physics_scale = physics_scale

    def without_physics(self) -> SweepNet:
        """The vote alone, for input without a known lens or focus distances (relative depth):
        the plane sweep's blur predictions need the real camera."""
        return self.net

    def forward(self, frames: Tensor, focus_distance_m: Tensor, camera: Tensor) -> dict[str, Tensor]:
        check_inputs(frames, focus_distance_m, camera)
        # The two halves are independent: at inference on a CPU the plane sweep runs on a
        # second core while the vote runs (models.base.Beside; same result either way).
        physics = Beside(physics_at_scale, frames, focus_distance_m, camera, self.physics_scale,
                         num_hypotheses=self.num_hypotheses, window=self.window, device=frames.device)
        vote = self.net(frames, focus_distance_m, camera)
        return self.combine(frames, focus_distance_m, camera, vote, physics.result())

    def combine(self, frames, focus_distance_m, camera, vote: dict, physics: dict) -> dict[str, Tensor]:
        """The fusion given both parts' outputs (``tools/tune_hybrid.py`` caches them)."""
        from focaldepth.classical import edge_aware_smooth
        from focaldepth.defocus_volume import blur_std_px, coc_px_at, sharpness_composite

        focus_dpt = 1.0 / focus_distance_m.to(frames.dtype)
        vote_dpt, physics_dpt = 1.0 / vote["depth_m"], 1.0 / physics["depth_m"]
        fused, confidence = fuse(vote_dpt, vote["confidence"], physics_dpt, physics["confidence"], focus_dpt,
                                 physics_weight=self.physics_weight, physics_power=self.physics_power,
                                 inside_weight=self.physics_inside_weight)
        if self.fusion is not None:
            features = fusion_features(vote_dpt, vote["confidence"], physics_dpt, physics["confidence"], focus_dpt,
                                       camera.to(frames.dtype), physics["all_in_focus"])
            weight, correction = self.fusion(features)
            near = focus_dpt.amax(dim=1)[:, None, None, None]
            far = focus_dpt.amin(dim=1)[:, None, None, None]
            fused = weight * physics_dpt + (1 - weight) * vote_dpt + correction * (near - far)
        hypotheses = physics["hypotheses_dpt"]
        stds = blur_std_px(coc_px_at(fused.flatten(1), focus_distance_m.to(frames.dtype), camera.to(frames.dtype)))
        aif = sharpness_composite(frames, stds.view(*frames.shape[:2], *frames.shape[-2:]))
        if self.smooth:
            fused = edge_aware_smooth(fused, aif, confidence)
        fused = torch.minimum(torch.maximum(fused, hypotheses[:, :1, None, None]), hypotheses[:, -1:, None, None])
        outputs = {"depth_m": 1.0 / fused, "confidence": confidence, "all_in_focus": aif,
                   "focus_weights": vote["focus_weights"]}
        if self.confidence_agreement:
            outputs["agreement"] = agreement(vote_dpt, physics_dpt, focus_dpt)
            outputs["fusion_confidence"] = confidence
            outputs["confidence"] = confidence * outputs["agreement"]
        return outputs
