"""SweepNet-T: depth that carries information from sweep to sweep, in constant memory.

A per-window model sees the last N frames of a focus sweep; as the sweep moves on, each
window holds a different mix of focus distances, so its depth jumps with the sweep phase
(issue 11: on moving scenes the frame-to-frame change of the default's depth departs from the
truth's by 0.187 of the depth). This model keeps a small state per pixel, moves it with the
scene (optical flow) and fuses each new observation into it.

Design, and why:

* **Observation = the per-window vote.** The project's SweepNet (``observer``; the shipped
  v3 weights, frozen in training) runs on the motion-compensated window exactly as
  ``predict`` runs it, giving an inverse depth and a confidence per pixel. Its metric scale
  comes from the lens, so the temporal part only has to decide *how much to believe*, in
  camera-independent sweep units (0 = farthest focus, 1 = nearest).
* **Fusion = a learned, flow-warped confidence filter.** The state holds the fused inverse
  depth, its accumulated weight, the weight a fully confident history would have (so the
  output confidence is the time-averaged vote confidence in [0, 1]), the previous frame and
  a ConvGRU hidden state at half resolution. Each new frame warps the state onto itself along
  the backward flow (pixel x of frame t was at x + flow(x) in frame t-1), then

      alpha = sigmoid(log(c_obs) - log(keep * w_prev) + a),   keep = sigmoid(k + 2)
      u_t   = alpha * u_obs + (1 - alpha) * warp(u_prev) + 0.25 * tanh(d)
      w_t   = c_obs + keep * warp(w_prev)

  where ``(a, d, k)`` come from the ConvGRU (zero-initialised decoder): at initialisation it
  is the inverse-variance-weighted running mean of a Kalman filter with forgetting, and
  training only learns corrections (where to forget: occlusions, fast motion, flow errors).
* **Occlusions** are not detected by a hand-made rule: the gate sees the photometric residual
  between the current frame and the warped previous frame (both low-passed, so focus changes
  count less than motion), the disagreement between observation and warped state, the flow
  magnitude and whether the flow left the image (outside pixels start afresh: weight 0).
* **Sub-pixel flow does not resample the state** (as ``predict`` treats frames): bilinear
  resampling every frame would blur the state away; below 0.5 px the state stays, fading to
  the warped one by 1 px.
* **Scene cuts and the first frame**: no state, or a cut (the low-passed current and warped
  previous frames correlate below :data:`CUT_CORRELATION`), restarts from the observation
  alone; :meth:`TemporalSweepNet.initial_state` is that empty state. While the window is
  still filling up (``window_fill < 1``) the estimate is the observation too: a partial window
  only sees the focus distances swept so far, and averaging in the earlier, narrower windows
  cost accuracy for a whole sweep (validation: AbsRel 0.252 vs 0.214 at the 9th frame).
* **Cost**: O(1) per frame whatever the clip length: one observation (a fixed window), one
  warp and one ConvGRU step; the state is ``(hidden_channels / 4 + 6)`` floats per pixel.

``forward(frames, focus_distance_m, camera)`` is the common interface: one step from the empty
state (what the first usable frame of a stream gives). :meth:`TemporalSweepNet.step` carries
the state; :meth:`TemporalSweepNet.fuse` does the same from an observation computed elsewhere
(training on cached observations).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from focaldepth.filters import gaussian_blur
from focaldepth.models.base import DepthModel, ModelInfo, check_inputs
from focaldepth.models.registry import create, register_model
from focaldepth.models.sweepnet import SweepNet
from focaldepth.warp import warp_to_current

#: Flow below this many pixels leaves the state where it is (``predict.STILL_FLOW_PX``).
STILL_FLOW_PX = 0.5
#: A new frame whose low-passed grey image correlates with the warped previous one below this
#: is a scene cut: the state restarts.
CUT_CORRELATION = 0.2
#: Low-pass of the photometric checks, in pixels of the working grid (defocus differences
#: between neighbouring sweep frames are mostly finer than this).
LOWPASS_SIGMA_PX = 2.0
#: A partial window (the first frames of a stream) observes depth only between the focus
#: distances seen so far, a biased estimate: it weighs fill**FILL_POWER, so the first full
#: window outweighs the whole start-up instead of averaging with it for a sweep or two.
FILL_POWER = 6.0
KEEP_BIAS = 2.0  # initial forgetting: keep = sigmoid(2) = 0.88 of the history per frame
CORRECTION_SWEEPS = 0.25  # largest additive correction of the fused inverse depth, in sweeps
FARTHEST_FRACTION = 0.25  # inverse depth never below this fraction of the farthest focus's
EPS = 1e-3
STATE_KEYS = ("dpt", "weight", "norm", "image", "hidden", "near_dpt", "far_dpt")
INPUT_CHANNELS = 11


def still_aware_warp(image: torch.Tensor, flow_px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` ``(B, C, H, W)`` of frame t-1 moved onto frame t along the backward flow
    ``(B, 2, H, W)`` (pixels; x of frame t was at x + flow(x)), left in place where the flow is
    below :data:`STILL_FLOW_PX` and blended up to twice that. Returns the image and a
    ``(B, 1, H, W)`` mask of pixels whose source lies inside the previous frame."""
    warped, inside = warp_to_current(image, flow_px.to(image.dtype))
    motion_px = flow_length_px(flow_px)
    weight = ((motion_px - STILL_FLOW_PX) / STILL_FLOW_PX).clamp(0.0, 1.0)
    return image + weight * (warped - image), inside | (weight == 0)


def flow_length_px(flow_px: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` length of a ``(B, 2, H, W)`` flow. ``hypot`` rather than
    ``norm(dim=1)``: the channel-dim norm of a contiguous field took 10 ms at 320x180 on a
    CPU (hypot: 0.5 ms), and the filter takes three per frame."""
    return torch.hypot(flow_px[:, :1], flow_px[:, 1:2])


def resize_flow(flow_px: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A flow field resampled to ``size`` with its vectors scaled to the new pixel size."""
    height, width = flow_px.shape[-2:]
    if (height, width) == tuple(size):
        return flow_px
    resized = F.interpolate(flow_px, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / width, size[0] / height], dtype=flow_px.dtype, device=flow_px.device)
    return resized * scale.view(1, 2, 1, 1)


def lowpass_grey(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] -> low-passed grey ``(B, 1, H, W)`` (see LOWPASS_SIGMA_PX)."""
    grey = image.mean(dim=1, keepdim=True)
    size = 2 * math.ceil(2 * LOWPASS_SIGMA_PX) + 1
    return gaussian_blur(grey, size, LOWPASS_SIGMA_PX, border_type="replicate")


def scene_cut(current_lowpass: torch.Tensor, previous_lowpass: torch.Tensor,
              threshold: float = CUT_CORRELATION) -> torch.Tensor:
    """``(B,)`` bool: the two low-passed grey images (the previous one already warped) are
    from different scenes, i.e. their zero-mean correlation is below ``threshold``. Images
    without contrast (a flat grey) never count as a cut: they say nothing either way."""
    a = current_lowpass.flatten(1) - current_lowpass.flatten(1).mean(dim=1, keepdim=True)
    b = previous_lowpass.flatten(1) - previous_lowpass.flatten(1).mean(dim=1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    correlation = (a * b).sum(dim=1) / norm.clamp_min(1e-12)
    has_contrast = (a.std(dim=1) > 2e-3) & (b.std(dim=1) > 2e-3)
    return has_contrast & (correlation < threshold)


def smooth_floor(dpt: torch.Tensor, floor_dpt: torch.Tensor, sharpness: float = 8.0) -> torch.Tensor:
    """``max(dpt, floor)`` made smooth (identity from twice the floor up), as SweepNet's
    extrapolation keeps depth in front of infinity."""
    return floor_dpt + floor_dpt / sharpness * F.softplus(sharpness * (dpt / floor_dpt - 1.0))


def conv_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.ReLU(inplace=True))


class FusionCell(nn.Module):
    """The learned part: per-pixel cues -> ConvGRU (half resolution) -> (a, d, k) at full
    resolution. No BatchNorm: streams run one clip at a time."""

    def __init__(self, features: int = 16, hidden: int = 16):
        super().__init__()
        self.hidden_channels = hidden
        self.encode = nn.Sequential(conv_relu(INPUT_CHANNELS, features), conv_relu(features, features))
        self.down = conv_relu(features, features, stride=2)
        self.gates = nn.Conv2d(features + hidden, 2 * hidden, 3, padding=1)
        self.candidate = nn.Conv2d(features + hidden, hidden, 3, padding=1)
        self.decode = nn.Sequential(conv_relu(hidden + features, features), nn.Conv2d(features, 3, 3, padding=1))
        # Zero output at the start: the fusion is the plain confidence filter (module doc).
        nn.init.zeros_(self.decode[-1].weight)
        nn.init.zeros_(self.decode[-1].bias)

    def hidden_size(self, height: int, width: int) -> tuple[int, int]:
        return (height + 1) // 2, (width + 1) // 2

    def forward(self, cues: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Channels-last: CPU convs over one image with 8-16 channels run 1.5x faster in that
        # layout (25 vs 16 ms a step at 320x180); same values. The outputs are handed back
        # in the default layout.
        cues, hidden = (t.contiguous(memory_format=torch.channels_last) for t in (cues, hidden))
        out, hidden = self._step(cues, hidden)
        return out.contiguous(), hidden.contiguous()

    def _step(self, cues: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encode(cues)
        x = self.down(features)
        update, reset = torch.sigmoid(self.gates(torch.cat([x, hidden], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * hidden], dim=1)))
        hidden = (1 - update) * hidden + update * candidate
        up = F.interpolate(hidden, size=features.shape[-2:], mode="bilinear", align_corners=False)
        return self.decode(torch.cat([up, features], dim=1)), hidden


def sweep_range_dpt(focus_distance_m: torch.Tensor, state: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B,)`` nearest and farthest inverse focus seen since the state (re)started."""
    focus_dpt = 1.0 / focus_distance_m
    near, far = focus_dpt.amax(dim=1), focus_dpt.amin(dim=1)
    if state is not None:
        near, far = torch.maximum(near, state["near_dpt"]), torch.minimum(far, state["far_dpt"])
    return near, far


def fuse_observation(cell: FusionCell, state: dict[str, torch.Tensor] | None, observed_depth_m: torch.Tensor,
                     observed_confidence: torch.Tensor, image: torch.Tensor, focus_distance_m: torch.Tensor,
                     flow_to_previous_px: torch.Tensor | None = None,
                     window_fill: float | torch.Tensor = 1.0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One fusion step (see the module docstring); a pure function of its inputs.

    Args:
        state: the previous step's state, or None (first frame / after a reset).
        observed_depth_m, observed_confidence: ``(B, 1, H, W)`` the per-window vote.
        image: ``(B, 3, H, W)`` the current frame in [0, 1].
        focus_distance_m: ``(B, S)`` the window's focus distances (the last is the current).
        flow_to_previous_px: ``(B, 2, H, W)`` backward flow to the previous frame; None = still.
        window_fill: frames in the window / frames of a full window (partial windows at the
            start of a stream are trusted less), a number or ``(B,)``.
    Returns ``(outputs, new_state)``; outputs hold ``depth_m``, ``confidence`` and
    ``scene_cut`` ``(B,)`` bool."""
    batch, _, height, width = observed_depth_m.shape
    dtype, device = observed_depth_m.dtype, observed_depth_m.device
    fill = torch.as_tensor(window_fill, dtype=dtype, device=device).reshape(-1, 1, 1, 1).expand(batch, 1, 1, 1)
    obs_conf = observed_confidence.clamp(0.0, 1.0) * fill ** FILL_POWER
    obs_dpt = 1.0 / observed_depth_m.clamp_min(1e-6)
    current_low = lowpass_grey(image)
    hidden_hw = cell.hidden_size(height, width)
    cut = torch.zeros(batch, dtype=torch.bool, device=device)
    if state is None:
        prev_dpt, prev_weight, prev_norm = obs_dpt, torch.zeros_like(obs_dpt), torch.zeros_like(obs_dpt)
        hidden = torch.zeros(batch, cell.hidden_channels, *hidden_hw, dtype=dtype, device=device)
        photometric = torch.zeros_like(obs_dpt)
        motion = torch.zeros_like(obs_dpt)
    else:
        flow = torch.zeros(batch, 2, height, width, dtype=dtype, device=device) \
            if flow_to_previous_px is None else flow_to_previous_px.to(dtype)
        if flow.shape != (batch, 2, height, width):
            raise ValueError(f"flow_to_previous_px: expected (B, 2, H, W) = {(batch, 2, height, width)}, "
                             f"got {tuple(flow.shape)}")
        carried = torch.cat([state["dpt"], state["weight"], state["norm"], state["image"]], dim=1)
        warped, inside = still_aware_warp(carried, flow)
        prev_dpt, prev_weight, prev_norm, prev_image = warped[:, :1], warped[:, 1:2], warped[:, 2:3], warped[:, 3:]
        hidden, _ = still_aware_warp(state["hidden"], resize_flow(flow, hidden_hw))
        previous_low = lowpass_grey(prev_image)
        cut = scene_cut(current_low, previous_low)
        # While the window still grows (the start of a stream), each window spans more of the
        # sweep than every earlier one, whose estimates are biased towards the focus seen so
        # far: the history then only seeds the hidden state, the estimate is the observation.
        growing = fill.reshape(-1) < 1.0
        keep_state = (inside & ~(cut | growing).view(-1, 1, 1, 1)).to(dtype)
        prev_weight, prev_norm = prev_weight * keep_state, prev_norm * keep_state
        hidden = hidden * (~cut).to(dtype).view(-1, 1, 1, 1)
        prev_dpt = torch.where(keep_state > 0, prev_dpt, obs_dpt)
        photometric = (current_low - previous_low).abs() * keep_state
        motion = flow_length_px(flow)
    if state is not None and bool(cut.any()):  # the running sweep range restarts with the scene
        restarted = {key: torch.where(cut, fresh, kept) for key, fresh, kept in
                     zip(("near_dpt", "far_dpt"), sweep_range_dpt(focus_distance_m, None),
                         (state["near_dpt"], state["far_dpt"]))}
        near_dpt, far_dpt = sweep_range_dpt(focus_distance_m, restarted)
    else:
        near_dpt, far_dpt = sweep_range_dpt(focus_distance_m, state)
    far = far_dpt.view(-1, 1, 1, 1)
    span = (near_dpt - far_dpt).clamp_min(1e-6).view(-1, 1, 1, 1)
    obs_u, prev_u = (obs_dpt - far) / span, (prev_dpt - far) / span
    phase = (1.0 / focus_distance_m[:, -1]).view(-1, 1, 1, 1)
    phase = ((phase - far) / span).expand_as(obs_u)
    history = prev_weight / (1.0 + prev_weight)
    cues = torch.cat([obs_u.clamp(-1, 2), prev_u.clamp(-1, 2), (obs_u - prev_u).clamp(-1, 1), obs_conf, history,
                      (4.0 * photometric).clamp(0, 1), image.mean(dim=1, keepdim=True) - 0.5,
                      fill.expand_as(obs_u), phase, (motion / 4.0).clamp(0, 2), (history > 0).to(dtype)], dim=1)
    out, hidden = cell(cues, hidden)
    a, d, k = out[:, :1], out[:, 1:2], out[:, 2:3]
    keep = torch.sigmoid(k + KEEP_BIAS)
    alpha = torch.sigmoid(torch.log(obs_conf + EPS) - torch.log(keep * prev_weight + EPS) + a)
    unit = alpha * obs_u + (1.0 - alpha) * prev_u + CORRECTION_SWEEPS * torch.tanh(d)
    dpt = smooth_floor(far + unit * span, FARTHEST_FRACTION * far)
    weight = obs_conf + keep * prev_weight
    norm = fill ** FILL_POWER + keep * prev_norm
    # A partial window's estimate seeds nothing: the first full window starts the history
    # (so a single focal stack's last frame is exactly the per-window estimate).
    full_window = (fill >= 1.0).to(dtype)
    weight, norm = weight * full_window, norm * full_window + (1.0 - full_window) * EPS
    confidence = (weight / norm.clamp_min(EPS)).clamp(0.0, 1.0)
    new_state = {"dpt": dpt, "weight": weight, "norm": norm, "image": image, "hidden": hidden,
                 "near_dpt": near_dpt, "far_dpt": far_dpt}
    return {"depth_m": 1.0 / dpt, "confidence": confidence, "scene_cut": cut}, new_state


def detach_state(state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    """The state without its autograd history (truncated back-propagation through time)."""
    return None if state is None else {key: value.detach() for key, value in state.items()}


def state_numel(state: dict[str, torch.Tensor] | None) -> int:
    """Number of floats the state holds (constant over a clip)."""
    return 0 if state is None else sum(value.numel() for value in state.values())


@register_model("sweepnet_temporal_test", observer_widths=(4, 6, 8, 8), features=4, hidden=4)
@register_model("sweepnet_temporal")
class TemporalSweepNet(DepthModel):
    """SweepNet vote per window, fused over time by a flow-warped ConvGRU confidence filter.

    Args:
        observer_widths: channel widths of the per-window SweepNet (the shipped v3: 12, 16, 24, 32).
        features: channels of the fusion cell's per-pixel features.
        hidden: ConvGRU state channels (half resolution).
        observer: the per-window model's registry name: ``"sweepnet"`` (the vote alone, built
            from ``observer_widths``) or any model with ``depth_m`` and ``confidence`` outputs,
            e.g. ``"sweepnet_physics"`` (the vote fused with the physics plane sweep, which
            answers beyond the sweep: v6), built with ``observer_kwargs``. The cell only sees
            the observation's inverse depth and confidence in sweep units, so it carries over.
    """

    info = ModelInfo(consumes="stack_any", uses_focus_distance=True, uses_camera=True,
                     paper="focaldepth SweepNet-T (this project): flow-warped ConvGRU fusion of SweepNet votes")
    #: StreamingPredictor carries this model's state (see :meth:`step`).
    stateful = True

    def __init__(self, observer_widths: tuple[int, ...] = (12, 16, 24, 32), features: int = 8, hidden: int = 16,
                 observer: str = "sweepnet", observer_kwargs: dict | None = None):
        super().__init__()
        if observer == "sweepnet":
            self.observer = SweepNet(widths=tuple(observer_widths), **(observer_kwargs or {}))
        else:
            self.observer = create(observer, **(observer_kwargs or {}))
        self.cell = FusionCell(features=features, hidden=hidden)

    def conventions(self) -> dict:
        return {"temporal_state": "step(state, frames, focus_distance_m, camera, flow_to_previous_px, "
                "window_fill): flow (B, 2, H, W) pixels, x of frame t was at x + flow(x) in frame t-1; "
                "state None = first frame / reset"}

    @property
    def frame_order_equivariant(self) -> bool:
        """The observation's (:meth:`observe`; the filter sees only its depth and confidence)."""
        return bool(getattr(self.observer, "frame_order_equivariant", False))

    @staticmethod
    def initial_state() -> None:
        """The empty state: the next step starts from its observation alone."""
        return None

    def observe(self, frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor) -> dict:
        return self.observer(frames, focus_distance_m, camera)

    def fuse(self, state, observed_depth_m, observed_confidence, image, focus_distance_m,
             flow_to_previous_px=None, window_fill=1.0):
        """:func:`fuse_observation` with this model's cell."""
        return fuse_observation(self.cell, state, observed_depth_m, observed_confidence, image, focus_distance_m,
                                flow_to_previous_px, window_fill)

    def step(self, state: dict[str, torch.Tensor] | None, frames: torch.Tensor, focus_distance_m: torch.Tensor,
             camera: torch.Tensor, flow_to_previous_px: torch.Tensor | None = None,
             window_fill: float = 1.0) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Depth for the window's last frame given the state after the previous frame; returns
        ``(outputs, new_state)``. ``frames`` is the motion-compensated window (as predict builds it)."""
        check_inputs(frames, focus_distance_m, camera)
        observed = self.observe(frames, focus_distance_m, camera)
        return self.step_observed(state, observed, frames[:, -1], focus_distance_m, flow_to_previous_px, window_fill)

    def step_observed(self, state: dict[str, torch.Tensor] | None, observed: dict[str, torch.Tensor],
                      image: torch.Tensor, focus_distance_m: torch.Tensor,
                      flow_to_previous_px: torch.Tensor | None = None,
                      window_fill: float = 1.0) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The second half of :meth:`step`: the filter, given the window's observation
        (:meth:`observe`, which does not read the state) and its newest frame ``image``
        ``(B, 3, H, W)``. Split so a streaming caller can observe the next window while this
        one is filtered (predict.StreamingPredictor.submit)."""
        # The cell was trained on the fusion's own confidence; an observer that outputs a
        # re-ranked one (sweepnet_physics(confidence_agreement=True), v8) also returns the
        # original, so the depth stays the same and only the reported confidence changes.
        outputs, new_state = self.fuse(state, observed["depth_m"],
                                       observed.get("fusion_confidence", observed["confidence"]), image,
                                       focus_distance_m, flow_to_previous_px, window_fill)
        if "agreement" in observed:
            outputs["confidence"] = outputs["confidence"] * observed["agreement"]
        outputs["observed_depth_m"] = observed["depth_m"]
        if "focus_weights" in observed:
            outputs["focus_weights"] = observed["focus_weights"]
        return outputs, new_state

    def forward(self, frames, focus_distance_m, camera):
        outputs, _ = self.step(None, frames, focus_distance_m, camera)
        outputs.pop("scene_cut")
        return outputs
