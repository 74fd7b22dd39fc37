"""Training losses as composable terms chosen by name from a config.

    loss = build_loss([{"name": "masked_mse", "weight": 1.0},
                       {"name": "gradient", "weight": 0.5, "domain": "log", "scales": 4}])
    total, parts = loss(outputs, batch)

``outputs`` is a model's output dict (``"depth_m"`` ``(B, 1, H, W)``; optional ``"coc_px"``
``(B, S, 1, H, W)`` and ``"aif"`` ``(B, C, H, W)``), ``batch`` a data batch (``"frames"``
``(B, S, C, H, W)``, ``"focus_distance_m"`` ``(B, S)``, ``"camera"`` ``(B, 3)``, ``"depth_m"``,
``"valid"`` ``(B, 1, H, W)`` bool, ``"coc_px"``, ``"aif"``). ``total`` is the weighted sum (a
scalar tensor with gradient); ``parts`` maps each term's name to its *unweighted*, detached
value for logging. Every entry of a config maps one-to-one to the term's constructor
arguments (besides ``name`` and ``weight``).

Terms (see each class): ``mse``, ``l1`` (all pixels, the seed's default is MSE), ``masked_mse``,
``masked_l1`` (valid pixels only; the seed excluded the wall), ``silog`` (Eigen et al. 2014),
``gradient`` (multi-scale gradient matching, MegaDepth / MiDaS), ``coc`` (CoC supervision for
models with a CoC decoder) and ``defocus`` (self-supervised re-rendering, DEReD); for depth
*sequences*: ``temporal`` (consistency along optical flow with occlusion masks),
``geometry`` (SC-Depth geometry consistency) and ``photometric`` (Monodepth2 reprojection with
minimum reprojection and auto-masking).

Sequence convention (temporal models, clips of T frames in capture order; docs/temporal.md):

=========================== ======================= =============================================
key                         shape                   meaning
=========================== ======================= =============================================
``outputs['depth_seq']``    (B, T, 1, H, W) metres  predicted depth of every frame of the clip
``outputs['pose_seq']``     (B, T, 4, 4)            predicted camera-to-world poses (a pose
                                                    network; any common world frame, e.g. frame
                                                    0's camera); relative pose a -> b is
                                                    inv(P_b) @ P_a
``outputs['aif_seq']``      (B, T, C, H, W)         predicted all-in-focus images (optional)
``batch['frames']``         (B, T, C, H, W) [0, 1]  the clip (frame t focused at
                                                    ``focus_distance_m[:, t]``, (B, T))
``batch['depth_seq']``      (B, T, 1, H, W) metres  ground-truth depth (NaN/0 = unknown)
``batch['valid_seq']``      (B, T, 1, H, W) bool    valid ground-truth pixels
``batch['flow_seq']``       (B, T, 2, H, W) pixels  *backward* flow (dx, dy) frame t -> t-1 on
                                                    frame t's grid (the generator's ``flow``;
                                                    index 0 unused): ground truth on synthetic
                                                    data, estimated (e.g. OpenCV DIS) on real
``batch['flow_fwd_seq']``   (B, T, 2, H, W) pixels  optional *forward* flow frame t -> t+1 on
                                                    frame t's grid (last index unused), for the
                                                    forward-backward occlusion check
``batch['aif_seq']``        (B, T, C, H, W)         all-in-focus images (synthetic data)
``batch['pose_seq']``       (B, T, 4, 4)            ground-truth camera-to-world poses
``batch['intrinsics']``     (B, 3, 3) pixels        pinhole intrinsics; derived from ``camera``
                                                    (focal / pitch, centred) when absent
=========================== ======================= =============================================

When both ``outputs['depth_seq']`` and ``batch['depth_seq']`` are present, the per-image terms
(``mse``, ``l1``, ``masked_*``, ``sweep_l1``, ``silog``, ``gradient``) score every frame of the
clip (``valid_seq`` as the mask), and ``defocus`` re-renders every frame from its own depth
(``layout: auto``), so a sequence model trains with e.g.
``[masked_l1, {name: temporal, weight: 0.1}, {name: defocus, weight: 0.1}]``. Pure functions
behind the sequence terms (:func:`warp_by_flow`, :func:`flow_occlusion_mask`,
:func:`temporal_consistency_error`, :func:`reproject`, :func:`warp_from_pose`,
:func:`geometry_consistency_pose`, :func:`geometry_consistency_flow`,
:func:`photometric_error`, :func:`min_reprojection_loss`) are usable on their own, e.g. to
train a pose network.

A term whose inputs are missing (e.g. ``coc`` configured for a model without a CoC decoder,
``temporal`` without ``batch['flow_seq']``) raises :class:`focaldepth.errors.UserError`: a
configured loss is never skipped silently.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import kornia
import torch
from torch import Tensor

from focaldepth.errors import UserError

# Predicted depth is floored here before logs / inverses: a network output of 0 m must give a
# large finite loss, not inf/nan. 1 mm is far below any depth a camera can focus on.
DEPTH_FLOOR_M = 1e-3

Outputs = Mapping[str, Tensor]
Batch = Mapping[str, Any]


# --- helpers --------------------------------------------------------------------------------


def _require(mapping: Mapping[str, Any], key: str, where: str, term: str, why: str = "") -> Any:
    if key not in mapping or mapping[key] is None:
        raise UserError(
            f"loss term '{term}' needs {where}['{key}']{why}, which is missing "
            f"(remove the term from the loss config or provide it)"
        )
    return mapping[key]


def _frame_layout(outputs: Outputs, batch: Batch) -> tuple[Outputs, Batch]:
    """Sequence layout -> per-frame layout for the per-image terms: when the outputs hold
    ``depth_seq`` (B, T, 1, H, W) and the batch ``depth_seq`` (and ``valid_seq``), return
    views where ``depth_m`` / ``valid`` are those flattened to (B * T, 1, H, W), so every
    supervised term scores every frame of the clip. Anything else is returned unchanged."""
    pred, gt = outputs.get("depth_seq"), batch.get("depth_seq")
    if pred is None or gt is None:
        return outputs, batch
    if pred.ndim != 5 or pred.shape != gt.shape or pred.shape[2] != 1:
        raise ValueError(
            f"outputs['depth_seq'] {tuple(pred.shape)} and batch['depth_seq'] "
            f"{tuple(gt.shape)} must both be (B, T, 1, H, W)"
        )
    frames = dict(batch)
    frames["depth_m"] = gt.flatten(0, 1)
    valid = batch.get("valid_seq")
    frames["valid"] = None if valid is None else valid.flatten(0, 1)
    frames["_frames_per_item"] = pred.shape[1]
    return {**outputs, "depth_m": pred.flatten(0, 1)}, frames


def _depth_pair(outputs: Outputs, batch: Batch, term: str) -> tuple[Tensor, Tensor]:
    pred = _require(outputs, "depth_m", "outputs", term)
    gt = _require(batch, "depth_m", "batch", term)
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 1:
        raise ValueError(
            f"loss '{term}': outputs['depth_m'] {tuple(pred.shape)} and batch['depth_m'] "
            f"{tuple(gt.shape)} must both be (B, 1, H, W)"
        )
    return pred, gt.to(pred.dtype)


def _valid_mask(batch: Batch, like: Tensor, masked: bool, term: str) -> Tensor:
    """The loss mask: batch['valid'] (required when masked) and finite, positive gt. Unmasked
    terms still skip non-finite gt (nothing can be learned there, and one NaN would poison
    the whole batch) but keep everything else, as the seed's unmasked loss did."""
    gt = batch["depth_m"]
    mask = torch.isfinite(gt) & (gt > 0) if masked else torch.isfinite(gt)
    if masked:
        valid = _require(batch, "valid", "batch", term, " (a masked loss)")
        if valid.shape != like.shape:
            raise ValueError(
                f"loss '{term}': batch['valid'] must be {tuple(like.shape)}, "
                f"got {tuple(valid.shape)}"
            )
        mask = mask & valid.bool()
    return mask


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask`` (whole batch); 0 with gradient if the mask is empty."""
    mask = mask.expand_as(values)
    count = mask.sum()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / count.clamp_min(1)


# --- terms ----------------------------------------------------------------------------------


class LossTerm:
    """A loss term: ``term(outputs, batch) -> scalar tensor``. Subclasses set ``name`` and
    ``needs`` (batch keys they read) and implement ``__call__``."""

    name: ClassVar[str]

    def __init__(self) -> None:
        """Terms without options take no constructor arguments."""

    @property
    def needs(self) -> set[str]:
        return {"depth_m"}

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class _PixelLoss(LossTerm):
    """Per-pixel error of depth in metres, averaged over all or over valid pixels."""

    masked: ClassVar[bool] = False

    def error(self, pred: Tensor, gt: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @property
    def needs(self) -> set[str]:
        return {"depth_m", "valid"} if self.masked else {"depth_m"}

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        outputs, batch = _frame_layout(outputs, batch)
        pred, gt = _depth_pair(outputs, batch, self.name)
        mask = _valid_mask(batch, pred, self.masked, self.name)
        return masked_mean(self.error(pred, gt), mask)


class MSELoss(_PixelLoss):
    """Mean squared depth error (m^2) over all pixels: the seed's loss."""

    name = "mse"

    def error(self, pred: Tensor, gt: Tensor) -> Tensor:
        return (pred - gt) ** 2


class L1Loss(_PixelLoss):
    """Mean absolute depth error (m) over all pixels."""

    name = "l1"

    def error(self, pred: Tensor, gt: Tensor) -> Tensor:
        return (pred - gt).abs()


class MaskedMSELoss(MSELoss):
    """MSE over pixels where batch['valid'] is true (and the ground truth is positive)."""

    name = "masked_mse"
    masked = True


class MaskedL1Loss(L1Loss):
    """L1 over pixels where batch['valid'] is true (and the ground truth is positive)."""

    name = "masked_l1"
    masked = True


class SweepInverseDepthL1Loss(LossTerm):
    """L1 on inverse depth, in units of the stack's focus sweep (its dioptric width):

        L = mean |1/p - 1/g| / (1/F_near - 1/F_far)

    Blur is linear in inverse depth (thin lens), so this weighs errors by how hard they are to
    see; dividing by the sweep width makes one loss fit a phone sweeping 0.1-0.5 m and a DSLR
    sweeping 1-10 m, which is what a model meant to work across cameras is trained with."""

    name = "sweep_l1"

    def __init__(self, masked: bool = True):
        self.masked = bool(masked)

    @property
    def needs(self) -> set[str]:
        return {"depth_m", "focus_distance_m"} | ({"valid"} if self.masked else set())

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        outputs, batch = _frame_layout(outputs, batch)
        pred, gt = _depth_pair(outputs, batch, self.name)
        mask = _valid_mask(batch, pred, self.masked, self.name)
        focus_dpt = 1.0 / _require(batch, "focus_distance_m", "batch", self.name)
        sweep_dpt = (focus_dpt.amax(dim=1) - focus_dpt.amin(dim=1)).clamp_min(1e-3)
        sweep_dpt = sweep_dpt.repeat_interleave(batch.get("_frames_per_item", 1)).view(-1, 1, 1, 1)
        error = (1.0 / pred.clamp_min(DEPTH_FLOOR_M) - 1.0 / gt.clamp_min(DEPTH_FLOOR_M)).abs()
        return masked_mean(error / sweep_dpt, mask)


class ScaleInvariantLogLoss(LossTerm):
    """Scale-invariant log loss (Eigen, Puhrsch & Fergus, NIPS 2014, eq. 4):

        d = ln p - ln g,   L = mean(d^2) - lambda * mean(d)^2

    per image, then averaged over the batch. ``lambda_=1`` is exactly invariant to a global
    scale of the prediction; Eigen et al. trained with 0.5 (the default), which keeps some
    pressure on the absolute scale that a metric-depth method needs. Config key ``lambda``
    is accepted for ``lambda_``.
    """

    name = "silog"

    def __init__(self, lambda_: float = 0.5, masked: bool = True):
        if not 0.0 <= lambda_ <= 1.0:
            raise UserError(f"loss 'silog': lambda must be in [0, 1], got {lambda_}")
        self.lambda_ = float(lambda_)
        self.masked = bool(masked)

    @property
    def needs(self) -> set[str]:
        return {"depth_m", "valid"} if self.masked else {"depth_m"}

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        outputs, batch = _frame_layout(outputs, batch)
        pred, gt = _depth_pair(outputs, batch, self.name)
        mask = _valid_mask(batch, pred, self.masked, self.name)
        d = pred.clamp_min(DEPTH_FLOOR_M).log() - gt.clamp_min(DEPTH_FLOOR_M).log()
        d = torch.where(mask, d, torch.zeros_like(d))
        count = mask.flatten(1).sum(1).clamp_min(1)
        mean_sq = (d**2).flatten(1).sum(1) / count
        mean = d.flatten(1).sum(1) / count
        per_image = mean_sq - self.lambda_ * mean**2
        has_pixels = mask.flatten(1).any(1)
        return masked_mean(per_image, has_pixels)


_DOMAINS: dict[str, Callable[[Tensor], Tensor]] = {
    "log": lambda depth: depth.clamp_min(DEPTH_FLOOR_M).log(),
    "inverse": lambda depth: 1.0 / depth.clamp_min(DEPTH_FLOOR_M),
    "depth": lambda depth: depth,
}


class GradientMatchingLoss(LossTerm):
    """Multi-scale gradient matching (Li & Snavely, MegaDepth, CVPR 2018; Ranftl et al.,
    MiDaS, TPAMI 2020): with R = f(p) - f(g) in a domain f (``"log"`` depth, ``"inverse"``
    depth, or plain ``"depth"``),

        L = (1/K) sum_k mean_{valid pairs at scale k} (|d_x R_k| + |d_y R_k|)

    where R_k is R subsampled with stride 2^k (k = 0..K-1) and a finite difference counts only
    where both pixels are valid. It penalises wrong depth *edges and slopes* and is blind to a
    constant offset of f(p): a global scale of depth in the log domain, a constant shift of
    inverse depth in the inverse domain. Combine it with a term that fixes the absolute level.
    """

    name = "gradient"

    def __init__(self, domain: str = "log", scales: int = 4, masked: bool = True):
        if domain not in _DOMAINS:
            raise UserError(
                f"loss 'gradient': domain must be one of {sorted(_DOMAINS)}, got {domain!r}"
            )
        if not isinstance(scales, int) or scales < 1:
            raise UserError(f"loss 'gradient': scales must be an integer >= 1, got {scales!r}")
        self.domain, self.scales, self.masked = domain, scales, bool(masked)

    @property
    def needs(self) -> set[str]:
        return {"depth_m", "valid"} if self.masked else {"depth_m"}

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        outputs, batch = _frame_layout(outputs, batch)
        pred, gt = _depth_pair(outputs, batch, self.name)
        mask = _valid_mask(batch, pred, self.masked, self.name)
        to_domain = _DOMAINS[self.domain]
        residual = to_domain(pred) - to_domain(torch.where(mask, gt, torch.ones_like(gt)))
        residual = torch.where(mask, residual, torch.zeros_like(residual))
        per_scale = []
        for k in range(self.scales):
            step = 2**k
            r, m = residual[..., ::step, ::step], mask[..., ::step, ::step]
            if r.shape[-1] < 2 and r.shape[-2] < 2:
                break
            grad_x = (r[..., :, 1:] - r[..., :, :-1]).abs()
            grad_y = (r[..., 1:, :] - r[..., :-1, :]).abs()
            mask_x = m[..., :, 1:] & m[..., :, :-1]
            mask_y = m[..., 1:, :] & m[..., :-1, :]
            total = (grad_x * mask_x).sum() + (grad_y * mask_y).sum()
            per_scale.append(total / (mask_x.sum() + mask_y.sum()).clamp_min(1))
        if not per_scale:  # a 1x1 map has no gradients
            return residual.sum() * 0.0
        return torch.stack(per_scale).mean()


class CoCLoss(LossTerm):
    """L1 between a CoC decoder's per-frame blur ``outputs['coc_px']`` ``(B, S, 1, H, W)`` and
    the true thin-lens CoC ``batch['coc_px']`` in pixels, over valid pixels of every frame.
    Configured for a model without a CoC decoder it raises a UserError (never skipped)."""

    name = "coc"

    def __init__(self, masked: bool = True):
        self.masked = bool(masked)

    @property
    def needs(self) -> set[str]:
        return {"coc_px", "valid", "depth_m"} if self.masked else {"coc_px"}

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        pred = _require(
            outputs, "coc_px", "outputs", self.name, " (only models with a CoC decoder produce it)"
        )
        target = _require(batch, "coc_px", "batch", self.name).to(pred.dtype)
        if pred.shape != target.shape or pred.ndim != 5:
            raise ValueError(
                f"loss 'coc': outputs['coc_px'] {tuple(pred.shape)} and batch['coc_px'] "
                f"{tuple(target.shape)} must both be (B, S, 1, H, W)"
            )
        if self.masked:
            valid = _require(batch, "valid", "batch", self.name, " (a masked loss)").bool()
            mask = valid[:, None] & torch.isfinite(target)
        else:
            mask = torch.isfinite(target)
        return masked_mean((pred - torch.where(mask, target, pred.detach())).abs(), mask)


class DefocusReconstructionLoss(LossTerm):
    """Self-supervised defocus reconstruction (DEReD: Si et al., "Fully Self-Supervised Depth
    Estimation from Defocus Clue", CVPR 2023): re-render the input focal stack from the
    *predicted* depth and an all-in-focus image with the differentiable thin-lens renderer
    (:func:`focaldepth.render.render_focal_stack`) and compare it with the input frames,

        L = l1_weight * mean |render - frames| + ssim_weight * kornia ssim_loss(render, frames)

    (kornia's ssim_loss is (1 - SSIM) / 2). It needs no depth ground truth, so unlabeled real
    sweeps can train a model. The all-in-focus image comes from ``aif``: ``"output"`` (the
    model predicts it), ``"batch"`` (given, e.g. synthetic data), or ``"auto"`` (output if
    present, else batch). ``num_layers`` and ``psf`` are the renderer's settings; use the ones
    the data were made with.

    ``layout``: ``"window"`` (one depth ``outputs['depth_m']`` renders the whole stack
    ``batch['frames']`` (B, S, C, H, W): a static scene over the window), ``"sequence"`` (frame
    t of ``batch['frames']`` (B, T, C, H, W) is re-rendered from its own
    ``outputs['depth_seq'][:, t]`` and all-in-focus ``aif_seq[:, t]`` at its own focus
    distance: right for moving scenes and temporal models, and what combines with the
    temporal, geometry and photometric terms), or ``"auto"`` (sequence when the outputs hold
    ``depth_seq``).
    """

    name = "defocus"

    def __init__(
        self,
        l1_weight: float = 1.0,
        ssim_weight: float = 1.0,
        window_size: int = 7,
        aif: str = "auto",
        num_layers: int = 16,
        psf: str = "disk",
        layout: str = "auto",
    ):
        if layout not in ("auto", "window", "sequence"):
            raise UserError(
                f"loss 'defocus': layout must be 'auto', 'window' or 'sequence', got {layout!r}"
            )
        self.layout = layout
        if aif not in ("auto", "output", "batch"):
            raise UserError(f"loss 'defocus': aif must be 'auto', 'output' or 'batch', got {aif!r}")
        if not isinstance(window_size, int) or window_size < 3 or window_size % 2 == 0:
            raise UserError(
                f"loss 'defocus': window_size must be an odd integer >= 3, got {window_size!r}"
            )
        self.l1_weight, self.ssim_weight = float(l1_weight), float(ssim_weight)
        self.window_size, self.aif, self.num_layers, self.psf = window_size, aif, num_layers, psf

    @property
    def needs(self) -> set[str]:
        keys = {"frames", "focus_distance_m", "camera"}
        return keys | {"aif"} if self.aif == "batch" else keys

    def _all_in_focus(self, outputs: Outputs, batch: Batch) -> Tensor:
        if self.aif == "output" or (self.aif == "auto" and outputs.get("aif") is not None):
            return _require(outputs, "aif", "outputs", self.name, " (aif='output')")
        why = " (the model predicts no all-in-focus image)" if self.aif == "auto" else ""
        return _require(batch, "aif", "batch", self.name, why)

    def _sequence_inputs(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, ...]:
        """Sequence layout: frame t re-rendered from its own depth and all-in-focus image at
        its own focus distance (a one-slice stack per frame, B * T of them)."""
        depth = _sequence_tensor(outputs, "depth_seq", "outputs", self.name, 1)
        b, t = depth.shape[:2]
        frames = _sequence_tensor(batch, "frames", "batch", self.name)
        focus = _require(batch, "focus_distance_m", "batch", self.name)
        camera = _require(batch, "camera", "batch", self.name)
        use_output = self.aif == "output" or (self.aif == "auto" and outputs.get("aif_seq") is not None)
        aif = (_require(outputs, "aif_seq", "outputs", self.name, " (aif='output')") if use_output
               else _require(batch, "aif_seq", "batch", self.name,
                             " (the model predicts no all-in-focus sequence)"))
        if frames.shape[:2] != (b, t) or aif.shape != frames.shape or focus.shape != (b, t) \
                or frames.shape[-2:] != depth.shape[-2:]:
            raise ValueError(
                f"loss 'defocus' (sequence): depth_seq (B, T, 1, H, W) = {tuple(depth.shape)} "
                f"needs frames and aif_seq (B, T, C, H, W) and focus_distance_m (B, T), got "
                f"{tuple(frames.shape)}, {tuple(aif.shape)} and {tuple(focus.shape)}"
            )
        return (depth.flatten(0, 1), frames.flatten(0, 1)[:, None], focus.reshape(b * t, 1),
                camera.repeat_interleave(t, dim=0), aif.flatten(0, 1))

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        from focaldepth.render import render_focal_stack  # the renderer is heavy; import on use

        sequence = self.layout == "sequence" or (
            self.layout == "auto" and outputs.get("depth_seq") is not None
        )
        if sequence:
            depth, frames, focus, camera, aif = self._sequence_inputs(outputs, batch)
            return self._compare(render_focal_stack, depth, frames, focus.to(depth.dtype),
                                 camera.to(depth.dtype), aif.to(depth.dtype))
        depth = _require(outputs, "depth_m", "outputs", self.name)
        frames = _require(batch, "frames", "batch", self.name)
        focus = _require(batch, "focus_distance_m", "batch", self.name).to(depth.dtype)
        camera = _require(batch, "camera", "batch", self.name).to(depth.dtype)
        aif = self._all_in_focus(outputs, batch).to(depth.dtype)
        if frames.ndim != 5 or aif.shape != (frames.shape[0], *frames.shape[2:]):
            raise ValueError(
                f"loss 'defocus': frames must be (B, S, C, H, W) and aif (B, C, H, W) "
                f"alike, got {tuple(frames.shape)} and {tuple(aif.shape)}"
            )
        return self._compare(render_focal_stack, depth, frames, focus, camera, aif)

    def _compare(self, render_focal_stack: Callable[..., Tensor], depth: Tensor, frames: Tensor,
                 focus: Tensor, camera: Tensor, aif: Tensor) -> Tensor:
        rendered = render_focal_stack(
            aif,
            depth.clamp_min(DEPTH_FLOOR_M),
            focus,
            camera,
            num_layers=self.num_layers,
            psf=self.psf,
        )
        target = frames.to(rendered.dtype)
        loss = rendered.new_zeros(())
        if self.l1_weight:
            loss = loss + self.l1_weight * (rendered - target).abs().mean()
        if self.ssim_weight:
            flat_r, flat_t = rendered.flatten(0, 1), target.flatten(0, 1)
            loss = loss + self.ssim_weight * kornia.losses.ssim_loss(
                flat_r, flat_t, self.window_size
            )
        return loss


# --- sequences: layout, flow, pose ----------------------------------------------------------
#
# Functional core of the temporal terms below. Everything here is a pure function of tensors
# (differentiable where a loss needs it); the LossTerm classes only look keys up and check
# shapes.


def _sequence_tensor(
    mapping: Mapping[str, Any], key: str, where: str, term: str, channels: int | None = None,
    why: str = "",
) -> Tensor:
    value = _require(mapping, key, where, term, why)
    if value.ndim != 5 or value.shape[1] < 1 or (channels is not None and value.shape[2] != channels):
        shape = f"(B, T, {channels if channels is not None else 'C'}, H, W)"
        raise ValueError(f"loss '{term}': {where}['{key}'] must be {shape}, got {tuple(value.shape)}")
    return value


def _sequence_depth(outputs: Outputs, term: str) -> Tensor:
    depth = _sequence_tensor(
        outputs, "depth_seq", "outputs", term, 1,
        " (a sequence term needs a model that outputs one depth map per frame)",
    )
    if depth.shape[1] < 2:
        raise UserError(f"loss '{term}': needs at least 2 frames in outputs['depth_seq'], "
                        f"got {depth.shape[1]}")
    return depth


def _check_like(term: str, name: str, value: Tensor, shape: tuple[int, ...]) -> Tensor:
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"loss '{term}': {name} must be {tuple(shape)}, got {tuple(value.shape)}")
    return value


def _pairs(sequence: Tensor) -> tuple[Tensor, Tensor]:
    """(B, T, ...) -> (current frames 1..T-1, previous frames 0..T-2), both flattened to
    (B * (T - 1), ...), pair k of one holding frames (t, t-1)."""
    return sequence[:, 1:].flatten(0, 1), sequence[:, :-1].flatten(0, 1)


def warp_by_flow(image: Tensor, flow_px: Tensor, mode: str = "bilinear") -> tuple[Tensor, Tensor]:
    """Backward-warp ``image`` ``(B, C, H, W)`` along ``flow_px`` ``(B, 2, H, W)`` (dx, dy) in
    pixels: out(x) = image(x + flow(x)). Differentiable in ``image``. Returns the warped image
    and a ``(B, 1, H, W)`` bool mask of samples inside the image (the same warp as
    :func:`focaldepth.metrics.warp_to_current`, so losses and metrics agree)."""
    from focaldepth.metrics import warp_to_current

    return warp_to_current(image, flow_px.to(image.dtype), mode=mode)


def flow_occlusion_mask(
    flow_bwd_px: Tensor,
    flow_fwd_px: Tensor | None = None,
    depth_cur_m: Tensor | None = None,
    depth_prev_m: Tensor | None = None,
    *,
    alpha: float = 0.01,
    beta_px2: float = 0.5,
    depth_rel_tol: float = 0.1,
) -> Tensor:
    """Pixels of the current frame that are visible in the previous one, ``(B, 1, H, W)`` bool.

    ``flow_bwd_px`` is the flow current -> previous (on the current frame's grid). A pixel is
    kept when its flow lands inside the previous frame and

    * with ``flow_fwd_px`` (previous -> current, on the previous frame's grid): it passes the
      forward-backward check |b + f(x + b)|^2 < alpha (|b|^2 + |f(x + b)|^2) + beta (Sundaram
      et al. 2010; :func:`focaldepth.metrics.forward_backward_consistent`) -- what to use with
      estimated flow on real video;
    * with depth maps of both frames (ground truth on synthetic data): the depth found at the
      flow target agrees, |warp(d_prev) - d_cur| <= depth_rel_tol * d_cur (a disoccluded pixel
      sees another surface, so its depth jumps).

    Both tests apply when both are given. The mask carries no gradient.
    """
    from focaldepth.metrics import forward_backward_consistent

    flow_bwd_px = flow_bwd_px.detach()
    zero = torch.zeros_like(flow_bwd_px[:, :1])
    _, mask = warp_by_flow(zero, flow_bwd_px)
    if flow_fwd_px is not None:
        mask = mask & forward_backward_consistent(
            flow_bwd_px, flow_fwd_px.detach().to(flow_bwd_px.dtype), alpha, beta_px2
        )
    if depth_cur_m is not None and depth_prev_m is not None:
        cur = depth_cur_m.detach().to(flow_bwd_px.dtype)
        prev = depth_prev_m.detach().to(flow_bwd_px.dtype)
        prev = torch.where(torch.isfinite(prev), prev, torch.zeros_like(prev))
        warped, _ = warp_by_flow(prev, flow_bwd_px)
        mask = mask & torch.isfinite(cur) & (warped > 0) & ((warped - cur).abs() <= depth_rel_tol * cur)
    return mask


def temporal_consistency_error(
    depth_cur_m: Tensor,
    depth_prev_m: Tensor,
    flow_bwd_px: Tensor,
    gt_cur_m: Tensor | None = None,
    gt_prev_m: Tensor | None = None,
) -> Tensor:
    """Per-pixel relative temporal inconsistency along the flow, ``(B, 1, H, W)``:

        e = |(p_t - w(p_{t-1})) - (g_t - w(g_{t-1}))| / (0.5 (p_t + w(p_{t-1})))

    with w the backward warp along ``flow_bwd_px`` (current -> previous). Without ground truth
    the true change g_t - w(g_{t-1}) is taken as 0 (classic flow-warping loss: depth constant
    along a track, which penalises real motion in depth; with ground truth only the *error*
    of the change is penalised, as in the frame-to-frame metric). The normaliser is detached,
    so the loss does not shrink by inflating depth."""
    warped_prev, _ = warp_by_flow(depth_prev_m, flow_bwd_px)
    change = depth_cur_m - warped_prev
    if gt_cur_m is not None and gt_prev_m is not None:
        gt_prev = torch.where(torch.isfinite(gt_prev_m), gt_prev_m, torch.zeros_like(gt_prev_m))
        gt_change = gt_cur_m - warp_by_flow(gt_prev.to(depth_cur_m.dtype), flow_bwd_px)[0]
        gt_change = torch.where(torch.isfinite(gt_change), gt_change, torch.zeros_like(gt_change))
        change = change - gt_change.to(change.dtype)
    scale = (0.5 * (depth_cur_m + warped_prev)).detach().clamp_min(DEPTH_FLOOR_M)
    return change.abs() / scale


def intrinsics_from_camera(camera: Tensor, height: int, width: int) -> Tensor:
    """Pinhole intrinsics ``(B, 3, 3)`` in pixels from ``camera`` ``(B, 3)`` =
    [focal_length_m, f_number, pixel_pitch_m]: fx = fy = focal / pitch, principal point at the
    image centre ((W - 1) / 2, (H - 1) / 2), the convention of the generator's ray caster. Only
    right for uncropped or centre-cropped frames; pass ``batch['intrinsics']`` otherwise."""
    if camera.ndim != 2 or camera.shape[1] != 3:
        raise ValueError(f"camera must be (B, 3), got {tuple(camera.shape)}")
    focal_px = camera[:, 0] / camera[:, 2]
    K = torch.zeros(camera.shape[0], 3, 3, dtype=camera.dtype, device=camera.device)
    K[:, 0, 0] = focal_px
    K[:, 1, 1] = focal_px
    K[:, 0, 2] = (width - 1) / 2
    K[:, 1, 2] = (height - 1) / 2
    K[:, 2, 2] = 1.0
    return K


def reproject(
    depth_target_m: Tensor, target_to_source: Tensor, intrinsics: Tensor
) -> tuple[Tensor, Tensor]:
    """Where each target pixel lands in the source camera: back-project ``depth_target_m``
    ``(B, 1, H, W)`` with ``intrinsics`` ``(B, 3, 3)`` (pixels), move the points by
    ``target_to_source`` ``(B, 4, 4)`` (target camera coordinates -> source camera
    coordinates), project with the same intrinsics. Returns the source pixel coordinates
    ``(B, H, W, 2)`` (x, y) and the points' depth in the source camera ``(B, 1, H, W)`` (the
    z of SC-Depth's D_a^b). Differentiable in depth and pose."""
    batch, _, height, width = depth_target_m.shape
    if target_to_source.shape != (batch, 4, 4) or intrinsics.shape != (batch, 3, 3):
        raise ValueError(
            f"reproject: target_to_source must be (B, 4, 4) and intrinsics (B, 3, 3) with "
            f"B = {batch}, got {tuple(target_to_source.shape)} and {tuple(intrinsics.shape)}"
        )
    dtype = depth_target_m.dtype
    K = intrinsics.to(dtype)
    points = kornia.geometry.depth.depth_to_3d_v2(depth_target_m[:, 0], K)  # (B, H, W, 3)
    moved = kornia.geometry.linalg.transform_points(
        target_to_source.to(dtype), points.reshape(batch, -1, 3)
    )  # (B, HW, 3)
    z = moved[..., 2:3]
    # project_points divides by z; keep points behind the camera finite (masked later)
    safe = torch.where(z.abs() < 1e-9, torch.full_like(z, 1e-9), z)
    pixels = kornia.geometry.camera.project_points(
        torch.cat([moved[..., :2], safe], dim=-1), K[:, None]
    )
    return pixels.reshape(batch, height, width, 2), z.reshape(batch, 1, height, width)


def warp_from_pose(
    source_image: Tensor,
    depth_target_m: Tensor,
    target_to_source: Tensor,
    intrinsics: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Synthesise the target view from a source image ``(B, C, H, W)``: sample the source at
    :func:`reproject` of each target pixel (bilinear, kornia ``remap``). Returns the warped
    image, a ``(B, 1, H, W)`` bool mask of target pixels whose point is in front of the source
    camera and lands inside the source image, and the source-camera depth of each target
    point. A pose network is trained through this (Monodepth2's view synthesis)."""
    pixels, z_source = reproject(depth_target_m, target_to_source, intrinsics)
    height, width = source_image.shape[-2:]
    map_x, map_y = pixels[..., 0], pixels[..., 1]
    warped = kornia.geometry.transform.remap(
        source_image, map_x.to(source_image.dtype), map_y.to(source_image.dtype),
        mode="bilinear", padding_mode="border", align_corners=True,
    )
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    inside = inside[:, None] & (z_source > DEPTH_FLOOR_M)
    return warped, inside.detach(), z_source


def relative_pose(pose_a_to_world: Tensor, pose_b_to_world: Tensor) -> Tensor:
    """Camera a -> camera b coordinates ``(B, 4, 4)`` from two camera-to-world poses:
    T_ab = inv(P_b) @ P_a."""
    return torch.linalg.inv(pose_b_to_world) @ pose_a_to_world


def normalised_depth_difference(depth_projected_m: Tensor, depth_sampled_m: Tensor) -> Tensor:
    """SC-Depth's D_diff = |D_a^b - D_b'| / (D_a^b + D_b') in [0, 1] (Bian et al. 2019, eq. 6);
    its complement 1 - D_diff is the self-discovered mask."""
    total = (depth_projected_m + depth_sampled_m).clamp_min(DEPTH_FLOOR_M)
    return (depth_projected_m - depth_sampled_m).abs() / total


def geometry_consistency_pose(
    depth_a_m: Tensor, depth_b_m: Tensor, a_to_b: Tensor, intrinsics: Tensor
) -> tuple[Tensor, Tensor]:
    """SC-Depth geometry consistency of frame a against frame b with a pose: D_a^b is depth
    a's points moved into camera b (their z there), D_b' is depth b sampled where they
    project. Returns D_diff ``(B, 1, H, W)`` on a's grid and the mask of points that land
    inside b in front of the camera."""
    sampled_b, inside, z_ab = warp_from_pose(depth_b_m, depth_a_m, a_to_b, intrinsics)
    return normalised_depth_difference(z_ab, sampled_b), inside


def geometry_consistency_flow(
    depth_a_m: Tensor, depth_b_m: Tensor, flow_a_to_b_px: Tensor,
    depth_change_m: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """SC-Depth geometry consistency without a pose: the correspondence a -> b comes from the
    flow (on a's grid), D_b' = depth b sampled along it, and D_a^b = depth a plus the change
    of depth of the tracked point from a to b (``depth_change_m``, e.g. the ground truth's
    g_b(x + f) - g_a(x); 0 when not given: depth assumed constant along a track over one
    frame). Returns D_diff and the inside mask, like :func:`geometry_consistency_pose`."""
    sampled_b, inside = warp_by_flow(depth_b_m, flow_a_to_b_px)
    projected = depth_a_m if depth_change_m is None else depth_a_m + depth_change_m.to(depth_a_m.dtype)
    return normalised_depth_difference(projected, sampled_b), inside


def photometric_error(
    image: Tensor, target: Tensor, alpha: float = 0.85, window_size: int = 3
) -> Tensor:
    """Monodepth2's per-pixel photometric error ``(B, 1, H, W)``:
    alpha (1 - SSIM) / 2 + (1 - alpha) |image - target|, both averaged over channels (SSIM:
    kornia, ``window_size`` Gaussian window, as Monodepth2's 3x3)."""
    l1 = (image - target).abs().mean(1, keepdim=True)
    if alpha == 0:
        return l1
    ssim = kornia.metrics.ssim(image, target, window_size).mean(1, keepdim=True)
    return alpha * ((1 - ssim) / 2).clamp(0, 1) + (1 - alpha) * l1


def min_reprojection_loss(
    target: Tensor,
    warped_sources: Sequence[Tensor],
    inside_masks: Sequence[Tensor],
    sources: Sequence[Tensor] | None = None,
    *,
    alpha: float = 0.85,
    window_size: int = 3,
    weights: Sequence[Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Monodepth2 (Godard et al., ICCV 2019) per-pixel minimum reprojection with auto-masking.

    For each source s: e_s = :func:`photometric_error` (warped_s, target); the loss per pixel
    is min_s e_s over sources whose warp lands inside. With ``sources`` (the *unwarped* source
    images) a pixel is kept only where min_s e_s < min_s e(source_s, target) (auto-masking:
    pixels that look the same without any warp -- a static camera, objects moving with it,
    textureless areas -- teach nothing). ``weights`` (per source, ``(B, 1, H, W)``, e.g.
    SC-Depth's self-discovered mask 1 - D_diff) multiply e_s. Pixels that project outside
    every source are dropped (Monodepth2 keeps them with border padding; dropping them is the
    usual fix). Returns (mean over kept pixels, kept mask).

    Outside pixels of a warped source are filled with the target before SSIM so that a
    window straddling the image edge of the warp compares like with like (no false error
    next to a masked region)."""
    if not warped_sources or len(warped_sources) != len(inside_masks):
        raise ValueError("min_reprojection_loss: one inside mask per warped source is needed")
    errors = []
    for index, (warped, inside) in enumerate(zip(warped_sources, inside_masks)):
        filled = torch.where(inside, warped, target)
        error = photometric_error(filled, target, alpha, window_size)
        if weights is not None:
            error = error * weights[index]
        errors.append(torch.where(inside, error, torch.full_like(error, math.inf)))
    stacked = torch.stack(errors)
    reprojection, _ = stacked.min(0)
    keep = torch.isfinite(reprojection)
    if sources is not None:
        identity = torch.stack([photometric_error(s, target, alpha, window_size) for s in sources])
        keep = keep & (reprojection < identity.min(0)[0].detach())
    value = torch.where(keep, reprojection, torch.zeros_like(reprojection))
    return value.sum() / keep.sum().clamp_min(1), keep


def _first(outputs: Outputs, batch: Batch, key: str) -> Any:
    """A key from the outputs (predicted) if there, else from the batch (given), else None."""
    value = outputs.get(key)
    return value if value is not None else batch.get(key)


def _sequence_intrinsics(batch: Batch, term: str, batch_size: int, height: int, width: int) -> Tensor:
    if batch.get("intrinsics") is not None:
        return _check_like(term, "batch['intrinsics']", batch["intrinsics"], (batch_size, 3, 3))
    camera = _require(batch, "camera", "batch", term,
                      " (or batch['intrinsics'] (B, 3, 3)) to project with the pose")
    return intrinsics_from_camera(_check_like(term, "batch['camera']", camera, (batch_size, 3)),
                                  height, width)


def _sequence_poses(outputs: Outputs, batch: Batch, term: str, shape: tuple[int, int]) -> Tensor:
    poses = _first(outputs, batch, "pose_seq")
    if poses is None:
        raise UserError(
            f"loss '{term}': needs camera poses outputs['pose_seq'] (a pose network) or "
            f"batch['pose_seq'] (B, T, 4, 4) camera-to-world, which are missing"
        )
    return _check_like(term, "pose_seq", poses, (*shape, 4, 4))


class TemporalConsistencyLoss(LossTerm):
    """Temporal consistency of a predicted depth sequence along optical flow, with occlusion
    masks: mean over visible pixels of every consecutive pair (t-1, t) of
    :func:`temporal_consistency_error`.

    Needs ``outputs['depth_seq']`` and ``batch['flow_seq']`` (backward flow, ground truth on
    synthetic data or estimated on real video). Occlusion (``occlusion``): ``"fb"`` forward-
    backward check with ``batch['flow_fwd_seq']``, ``"depth"`` ground-truth depth test with
    ``batch['depth_seq']``, ``"both"``, ``"none"`` (inside-the-frame only), or ``"auto"``
    (forward-backward if the forward flow is there, else the depth test if ground truth is
    there, else a UserError). ``target``: ``"auto"`` (the true change along the flow when
    ``batch['depth_seq']`` is there, else zero), ``"gt_change"`` or ``"zero"``.
    ``valid_seq`` (if present) restricts both frames' pixels.
    """

    name = "temporal"

    def __init__(self, occlusion: str = "auto", target: str = "auto",
                 depth_rel_tol: float = 0.1):
        if occlusion not in ("auto", "fb", "depth", "both", "none"):
            raise UserError(f"loss 'temporal': occlusion must be auto, fb, depth, both or none, "
                            f"got {occlusion!r}")
        if target not in ("auto", "gt_change", "zero"):
            raise UserError(f"loss 'temporal': target must be auto, gt_change or zero, got {target!r}")
        self.occlusion, self.target, self.depth_rel_tol = occlusion, target, float(depth_rel_tol)

    @property
    def needs(self) -> set[str]:
        keys = {"flow_seq"}
        if self.occlusion in ("fb", "both"):
            keys.add("flow_fwd_seq")
        if self.occlusion in ("depth", "both") or self.target == "gt_change":
            keys.add("depth_seq")
        return keys

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        depth = _sequence_depth(outputs, self.name)
        b, t, _, h, w = depth.shape
        flow = _check_like(self.name, "batch['flow_seq']",
                           _require(batch, "flow_seq", "batch", self.name,
                                    " (backward flow frame t -> t-1, (B, T, 2, H, W))"),
                           (b, t, 2, h, w)).to(depth.dtype)
        gt = batch.get("depth_seq")
        if gt is not None:
            gt = _check_like(self.name, "batch['depth_seq']", gt, depth.shape).to(depth.dtype)
        fwd = batch.get("flow_fwd_seq")
        occlusion = self.occlusion
        if occlusion == "auto":
            occlusion = "fb" if fwd is not None else "depth" if gt is not None else None
            if occlusion is None:
                raise UserError(
                    "loss 'temporal': occlusion masks need batch['flow_fwd_seq'] (forward flow, "
                    "for the forward-backward check) or batch['depth_seq'] (ground truth); "
                    "provide one or set occlusion: none"
                )
        if occlusion in ("fb", "both"):
            fwd = _check_like(self.name, "batch['flow_fwd_seq']",
                              _require(batch, "flow_fwd_seq", "batch", self.name,
                                       " (occlusion: fb)"), (b, t, 2, h, w)).to(depth.dtype)
        if occlusion in ("depth", "both") or self.target == "gt_change":
            gt = _require(batch, "depth_seq", "batch", self.name, " (ground-truth depth)")
            gt = _check_like(self.name, "batch['depth_seq']", gt, depth.shape).to(depth.dtype)
        cur, prev = _pairs(depth)
        flow_cur, _ = _pairs(flow)
        mask = flow_occlusion_mask(
            flow_cur,
            _pairs(fwd)[1] if occlusion in ("fb", "both") else None,
            *(_pairs(gt) if occlusion in ("depth", "both") else (None, None)),
            depth_rel_tol=self.depth_rel_tol,
        )
        valid = batch.get("valid_seq")
        if valid is not None:
            valid = _check_like(self.name, "batch['valid_seq']", valid, depth.shape).to(depth.dtype)
            valid_cur, valid_prev = _pairs(valid)
            warped_valid, _ = warp_by_flow(valid_prev, flow_cur, mode="nearest")
            mask = mask & (valid_cur > 0.5) & (warped_valid > 0.5)
        use_gt = self.target == "gt_change" or (self.target == "auto" and gt is not None)
        gt_cur, gt_prev = _pairs(gt) if use_gt else (None, None)
        error = temporal_consistency_error(cur, prev, flow_cur, gt_cur, gt_prev)
        return masked_mean(error, mask & torch.isfinite(error))


class GeometryConsistencyLoss(LossTerm):
    """SC-Depth geometry consistency (Bian et al., "Unsupervised Scale-consistent Depth and
    Ego-motion Learning from Monocular Video", NeurIPS 2019): for every consecutive pair,
    D_diff = |D_a^b - D_b'| / (D_a^b + D_b') (:func:`normalised_depth_difference`), averaged
    over points that land inside the other frame, in both directions (t -> t-1 and t-1 -> t).

    ``warp``: ``"pose"`` (camera-to-world ``pose_seq`` (B, T, 4, 4) from the outputs -- a pose
    network -- or the batch, and ``batch['intrinsics']`` or ``batch['camera']``), ``"flow"``
    (``batch['flow_seq']`` backward flow for t -> t-1, ``batch['flow_fwd_seq']`` for the other
    direction if present; the depth change along a track is the ground truth's when
    ``batch['depth_seq']`` is there, else 0, see :func:`geometry_consistency_flow`), or
    ``"auto"`` (pose if a pose is available, else flow). The self-discovered mask 1 - D_diff is
    what :class:`PhotometricReprojectionLoss` uses with ``geometry_mask: true``.
    """

    name = "geometry"

    def __init__(self, warp: str = "auto"):
        if warp not in ("auto", "pose", "flow"):
            raise UserError(f"loss 'geometry': warp must be auto, pose or flow, got {warp!r}")
        self.warp = warp

    @property
    def needs(self) -> set[str]:
        return {"flow_seq"} if self.warp == "flow" else {"pose_seq", "camera"} if self.warp == "pose" else set()

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        depth = _sequence_depth(outputs, self.name)
        b, t, _, h, w = depth.shape
        warp = self.warp
        if warp == "auto":
            warp = "pose" if _first(outputs, batch, "pose_seq") is not None else "flow"
        cur, prev = _pairs(depth)
        if warp == "pose":
            poses = _sequence_poses(outputs, batch, self.name, (b, t)).to(depth.dtype)
            K = _sequence_intrinsics(batch, self.name, b, h, w).to(depth.dtype)
            K = K[:, None].expand(b, t - 1, 3, 3).flatten(0, 1)
            pose_cur, pose_prev = _pairs(poses)
            forward = geometry_consistency_pose(cur, prev, relative_pose(pose_cur, pose_prev), K)
            backward = geometry_consistency_pose(prev, cur, relative_pose(pose_prev, pose_cur), K)
            diffs, masks = [forward[0], backward[0]], [forward[1], backward[1]]
        else:
            flow = _require(batch, "flow_seq", "batch", self.name,
                            " (warp: flow; or give pose_seq for warp: pose)")
            flow_cur, _ = _pairs(_check_like(self.name, "batch['flow_seq']", flow,
                                             (b, t, 2, h, w)).to(depth.dtype))
            gt = batch.get("depth_seq")
            change_bwd = change_fwd = None
            if gt is not None:
                gt_cur, gt_prev = _pairs(_check_like(self.name, "batch['depth_seq']", gt,
                                                     depth.shape).to(depth.dtype))
                gt_prev = torch.where(torch.isfinite(gt_prev), gt_prev, torch.zeros_like(gt_prev))
                change_bwd = (warp_by_flow(gt_prev, flow_cur)[0] - gt_cur).detach()
            forward = geometry_consistency_flow(cur, prev, flow_cur, change_bwd)
            diffs, masks = [forward[0]], [forward[1]]
            fwd = batch.get("flow_fwd_seq")
            if fwd is not None:
                _, flow_prev = _pairs(_check_like(self.name, "batch['flow_fwd_seq']", fwd,
                                                  (b, t, 2, h, w)).to(depth.dtype))
                if gt is not None:
                    gt_cur_c = torch.where(torch.isfinite(gt_cur), gt_cur, torch.zeros_like(gt_cur))
                    change_fwd = (warp_by_flow(gt_cur_c, flow_prev)[0] - gt_prev).detach()
                backward = geometry_consistency_flow(prev, cur, flow_prev, change_fwd)
                diffs.append(backward[0])
                masks.append(backward[1])
        finite = [m & torch.isfinite(d) for d, m in zip(diffs, masks)]
        total = sum(torch.where(m, d, torch.zeros_like(d)).sum() for d, m in zip(diffs, finite))
        count = sum(m.sum() for m in finite)
        return total / count.clamp_min(1)


class PhotometricReprojectionLoss(LossTerm):
    """Self-supervised photometric reprojection (Monodepth2: Godard et al., "Digging Into
    Self-Supervised Monocular Depth Estimation", ICCV 2019): every frame t of the clip is the
    target, frames t + o for o in ``source_offsets`` (default -1, +1) the sources, warped into
    t with :func:`warp_from_pose` from the predicted ``depth_seq[:, t]``, the relative pose
    from ``pose_seq`` (outputs -- a pose network -- or batch) and the intrinsics
    (``batch['intrinsics']`` or from ``batch['camera']``); :func:`min_reprojection_loss`
    (0.85 (1 - SSIM) / 2 + 0.15 L1, minimum over sources, auto-masking if ``automask``).

    ``images``: ``"frames"`` (``batch['frames']`` (B, T, C, H, W); on a focus sweep each frame
    is focused elsewhere, so even a perfect warp leaves a defocus difference) or ``"aif"``
    (all-in-focus ``aif_seq`` (B, T, C, H, W), predicted in the outputs or given in the batch).
    ``geometry_mask: true`` weighs each source's error by SC-Depth's self-discovered mask
    1 - D_diff (needs the source's depth too).
    """

    name = "photometric"

    def __init__(self, source_offsets: Sequence[int] = (-1, 1), alpha: float = 0.85,
                 window_size: int = 3, automask: bool = True, images: str = "frames",
                 geometry_mask: bool = False):
        offsets = [int(o) for o in source_offsets]
        if not offsets or 0 in offsets:
            raise UserError(f"loss 'photometric': source_offsets must be non-zero frame offsets, "
                            f"got {source_offsets!r}")
        if images not in ("frames", "aif"):
            raise UserError(f"loss 'photometric': images must be 'frames' or 'aif', got {images!r}")
        if not 0.0 <= alpha <= 1.0:
            raise UserError(f"loss 'photometric': alpha must be in [0, 1], got {alpha}")
        if not isinstance(window_size, int) or window_size < 3 or window_size % 2 == 0:
            raise UserError(f"loss 'photometric': window_size must be an odd integer >= 3, "
                            f"got {window_size!r}")
        self.offsets, self.alpha, self.window_size = offsets, float(alpha), window_size
        self.automask, self.images, self.geometry_mask = bool(automask), images, bool(geometry_mask)

    @property
    def needs(self) -> set[str]:
        return {"frames" if self.images == "frames" else "aif_seq", "camera"}

    def _images(self, outputs: Outputs, batch: Batch, shape: tuple[int, ...]) -> Tensor:
        if self.images == "frames":
            images = _sequence_tensor(batch, "frames", "batch", self.name)
        else:
            images = _first(outputs, batch, "aif_seq")
            if images is None:
                raise UserError("loss 'photometric': images: aif needs outputs['aif_seq'] or "
                                "batch['aif_seq'] (B, T, C, H, W), which are missing")
        b, t, _, h, w = shape
        if images.ndim != 5 or images.shape[:2] != (b, t) or images.shape[-2:] != (h, w):
            raise ValueError(f"loss 'photometric': images must be (B, T, C, H, W) = "
                             f"({b}, {t}, C, {h}, {w}) like depth_seq, got {tuple(images.shape)}")
        return images

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        depth = _sequence_depth(outputs, self.name)
        b, t, _, h, w = depth.shape
        images = self._images(outputs, batch, depth.shape).to(depth.dtype)
        poses = _sequence_poses(outputs, batch, self.name, (b, t)).to(depth.dtype)
        K = _sequence_intrinsics(batch, self.name, b, h, w).to(depth.dtype)
        if all(abs(o) >= t for o in self.offsets):
            raise UserError(f"loss 'photometric': no source frame within the {t}-frame clip "
                            f"for offsets {self.offsets}")
        total, count = depth.new_zeros(()), depth.new_zeros(())
        for target in range(t):
            sources = [target + o for o in self.offsets if 0 <= target + o < t]
            if not sources:
                continue
            warped, inside, raw, weights = [], [], [], []
            for s in sources:
                to_source = relative_pose(poses[:, target], poses[:, s])
                image, mask, z_source = warp_from_pose(images[:, s], depth[:, target], to_source, K)
                warped.append(image)
                inside.append(mask)
                raw.append(images[:, s])
                if self.geometry_mask:
                    sampled, _, _ = warp_from_pose(depth[:, s], depth[:, target], to_source, K)
                    weights.append(1 - normalised_depth_difference(z_source, sampled))
            loss, keep = min_reprojection_loss(
                images[:, target], warped, inside, raw if self.automask else None,
                alpha=self.alpha, window_size=self.window_size,
                weights=weights if self.geometry_mask else None,
            )
            kept = keep.sum()
            total, count = total + loss * kept, count + kept
        return total / count.clamp_min(1)


LOSS_TERMS: dict[str, type[LossTerm]] = {
    cls.name: cls
    for cls in (
        MSELoss,
        L1Loss,
        MaskedMSELoss,
        MaskedL1Loss,
        SweepInverseDepthL1Loss,
        ScaleInvariantLogLoss,
        GradientMatchingLoss,
        CoCLoss,
        DefocusReconstructionLoss,
        TemporalConsistencyLoss,
        GeometryConsistencyLoss,
        PhotometricReprojectionLoss,
    )
}


def list_losses() -> list[str]:
    """Names usable in a loss config."""
    return sorted(LOSS_TERMS)


# --- composition ----------------------------------------------------------------------------


class CompositeLoss:
    """A weighted sum of named terms: ``loss(outputs, batch) -> (total, parts)``."""

    def __init__(self, terms: Sequence[tuple[str, float, LossTerm]]):
        if not terms:
            raise UserError("loss config: at least one loss term is needed")
        self.terms = list(terms)

    @property
    def needs(self) -> set[str]:
        """Batch keys the configured terms read (so a data module can provide them)."""
        return set().union(*(term.needs for _, _, term in self.terms))

    def __call__(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for key, weight, term in self.terms:
            value = term(outputs, batch)
            parts[key] = value.detach()
            total = weight * value if total is None else total + weight * value
        assert total is not None
        return total, parts

    def __repr__(self) -> str:
        return "CompositeLoss(" + ", ".join(f"{w:g}*{k}" for k, w, _ in self.terms) + ")"


def build_loss(
    config: Sequence[Mapping[str, Any]] | Mapping[str, Any] | str, source: object | None = None
) -> CompositeLoss:
    """Build a :class:`CompositeLoss` from config entries ``{"name": ..., "weight": ...,
    <constructor arguments>}`` (a single entry or a bare name is accepted too). ``source``
    (e.g. the config file) is named in errors."""
    if isinstance(config, str):
        config = [{"name": config}]
    elif isinstance(config, Mapping):
        config = [config]
    terms: list[tuple[str, float, LossTerm]] = []
    for index, entry in enumerate(config):
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise UserError(
                f"loss config entry {index}: expected a mapping with a 'name', got {entry!r}",
                source,
            )
        kwargs = dict(entry)
        name = kwargs.pop("name")
        weight = kwargs.pop("weight", 1.0)
        if name not in LOSS_TERMS:
            raise UserError(
                f"loss config entry {index}: unknown loss {name!r}; "
                f"known: {', '.join(list_losses())}",
                source,
            )
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise UserError(
                f"loss config entry {index} ({name}): weight must be a finite number >= 0, "
                f"got {weight!r}",
                source,
            )
        if "lambda" in kwargs:  # `lambda` is a Python keyword; configs may spell it plainly
            kwargs["lambda_"] = kwargs.pop("lambda")
        cls = LOSS_TERMS[name]
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = set(kwargs) - accepted
        if unknown:
            raise UserError(
                f"loss config entry {index} ({name}): unknown option(s) {sorted(unknown)}; "
                f"accepted: {sorted(accepted) or 'none'}",
                source,
            )
        try:
            term = cls(**kwargs)
        except UserError as error:
            raise UserError(str(error), source) from None
        key = name
        suffix = 2
        while key in {k for k, _, _ in terms}:
            key, suffix = f"{name}_{suffix}", suffix + 1
        terms.append((key, float(weight), term))
    return CompositeLoss(terms)
