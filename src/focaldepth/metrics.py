"""Depth metrics on valid pixels, per image and aggregated.

Every metric function takes ``pred_m`` and ``gt_m`` ``(B, 1, H, W)`` and a boolean ``valid``
``(B, 1, H, W)`` and returns a ``(B,)`` tensor: one value per image, ``nan`` for an image with
no valid pixel. A pixel is valid only where ``valid`` is true *and* the ground truth is finite
and positive (depth 0 is the usual "no measurement" marker).

Aggregation over a batch or a data set (:func:`depth_metrics`, :class:`MetricAccumulator`) is
**per image, then the mean over images** (images without valid pixels are left out). This is
what the DDFF 12-Scene evaluation code does (``avgmetrics / len(dataloader)`` in
``soyers/ddff-pytorch``, ``python/ddff/metricseval/BaseDDFFEval.py``), and it weighs every
image equally whatever its number of valid pixels. RMSE is therefore the mean of per-image
RMSEs, not ``sqrt`` of the mean MSE.

Definitions (``p`` prediction, ``g`` ground truth, means over valid pixels):

* ``mse`` = mean (p - g)^2, ``rmse`` = sqrt(mse), ``mae`` = mean |p - g|
* ``absrel`` = mean |p - g| / g, ``sqrel`` = mean (p - g)^2 / g
* ``rmse_log`` = sqrt(mean (ln p - ln g)^2)
* ``delta1/2/3`` = fraction (in [0, 1], not percent) of pixels with max(p/g, g/p) < 1.25^k.
  The seed's "Accuracy" is ``delta1`` (in percent).
* ``bumpiness`` (Hazirbas et al., "Deep Depth From Focus", ACCV 2018, DDFF 12-Scene benchmark;
  the measure comes from the 4D light-field benchmark of Honauer et al. 2016): the Frobenius
  norm of the Hessian of the error e = p - g, clipped at 0.05 (in the depth map's units) so that
  a few depth discontinuities cannot dominate, averaged over valid pixels and multiplied by 100
  -- exactly as the benchmark's evaluation code ("Metrics calculation provided by Caner
  Hazirbas", ``BaseDDFFEval.__calmetrics``) computes it, so our figures read beside published
  ones. Derivatives are skimage's Scharr operators: [3, 10, 3]/16 smoothing times the central
  difference [1, 0, -1] (twice the per-pixel derivative), applied twice for the second
  derivatives (xx, xy, yy, yx). Unlike the reference code, we average only over valid pixels
  whose 5x5 neighbourhood (the support of two Scharr passes) is valid and inside the image,
  so invalid pixels never leak into the measure and the image border (where the reference's
  edge padding makes even a planar error look bumpy) is left out; on the interior our values
  equal the reference's.

Ratio and log metrics use ``max(p, floor)`` so a non-positive prediction gives a large but
finite error (floor 1e-6 m in metres; 1e-3 on normalised depth, see below).

Normalised depth (``normalised=(d_min_m, d_max_m)``): both maps are mapped to
``(d - d_min) / (d_max - d_min)`` before the same metrics are computed. The seed (and
DDFF-style papers trained on Blender scenes) report MSE, RMS and accuracy on depth normalised to
[0, 1]; use one range per data set (or per clip, never per frame) so numbers compare. Because
normalised depth reaches 0 at ``d_min``, ratio and log metrics floor both maps at 1e-3 there.

Temporal stability (:func:`temporal_stability`): see its docstring. Video metrics (TAE of
Video Depth Anything, :func:`temporal_alignment_error`; flicker on static scenes,
:func:`per_image_flicker`): see theirs and docs/temporal.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import kornia
import torch
import torch.nn.functional as F

# Defined in focaldepth.warp, below models (which warp along flow too); used here and kept
# importable as focaldepth.metrics.warp_to_current for existing callers.
from focaldepth.warp import warp_to_current

DELTA_THRESHOLDS = (1.25, 1.25**2, 1.25**3)
BUMPINESS_CLIP = 0.05
METRE_FLOOR = 1e-6
NORMALISED_FLOOR = 1e-3
METRIC_NAMES = (
    "mse",
    "rmse",
    "mae",
    "absrel",
    "sqrel",
    "rmse_log",
    "delta1",
    "delta2",
    "delta3",
    "bumpiness",
)
TEMPORAL_NAMES = (
    "temporal_err_m",
    "temporal_err_rel",
    "temporal_change_pred_rel",
    "temporal_change_gt_rel",
    "temporal_coverage",
    "temporal_err_rel_pixel",
)
#: Video metrics beyond frame pairs (see :func:`temporal_alignment_error`,
#: :func:`per_image_flicker`): TAE per video (aligned as Video Depth Anything, and on the
#: metric depth as predicted), flicker on static scenes between consecutive windows and
#: between consecutive sweeps at the same sweep phase.
VIDEO_NAMES = ("tae", "tae_metric", "flicker_frame_rel", "flicker_sweep_rel")

# skimage.filters.scharr_v / scharr_h (v0.26): smoothing [3, 10, 3]/16 across the derivative
# direction times the central difference [1, 0, -1] along it (correlation form).
_SCHARR_SMOOTH = torch.tensor([3.0, 10.0, 3.0]) / 16.0
_SCHARR_DIFF = torch.tensor([1.0, 0.0, -1.0])
_SCHARR_X = torch.outer(_SCHARR_SMOOTH, _SCHARR_DIFF)  # d/dx (along columns)
_SCHARR_Y = torch.outer(_SCHARR_DIFF, _SCHARR_SMOOTH)  # d/dy (along rows)


# --- validation ---------------------------------------------------------------------------


def _check_depth_pair(
    pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """Check shapes and return the effective valid mask (valid & finite & positive gt)."""
    if pred_m.ndim != 4 or pred_m.shape[1] != 1:
        raise ValueError(f"pred_m: expected (B, 1, H, W), got shape {tuple(pred_m.shape)}")
    if gt_m.shape != pred_m.shape:
        raise ValueError(
            f"gt_m: expected shape {tuple(pred_m.shape)} like pred_m, got {tuple(gt_m.shape)}"
        )
    effective = torch.isfinite(gt_m) & (gt_m > 0)
    if valid is not None:
        if valid.shape != pred_m.shape:
            raise ValueError(
                f"valid: expected shape {tuple(pred_m.shape)}, got {tuple(valid.shape)}"
            )
        effective = effective & valid.bool()
    return effective


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over the valid pixels of each image: ``(B,)``, nan where an image has none."""
    count = valid.flatten(1).sum(1)
    total = torch.where(valid, values, torch.zeros_like(values)).flatten(1).sum(1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))


# --- per-image metric functions (each returns (B,)) ---------------------------------------
# The public functions check shapes and build the effective mask, then call the private
# ``_on_mask`` forms, which per_image_metrics also uses on normalised depth.


def _mse_on_mask(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return _masked_mean((pred - gt) ** 2, valid)


def _mae_on_mask(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return _masked_mean((pred - gt).abs(), valid)


def _absrel_on_mask(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, floor: float
) -> torch.Tensor:
    gt = gt.clamp_min(floor)
    return _masked_mean((pred.clamp_min(floor) - gt).abs() / gt, valid)


def _sqrel_on_mask(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, floor: float
) -> torch.Tensor:
    gt = gt.clamp_min(floor)
    return _masked_mean((pred.clamp_min(floor) - gt) ** 2 / gt, valid)


def _rmse_log_on_mask(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, floor: float
) -> torch.Tensor:
    log_error = pred.clamp_min(floor).log() - gt.clamp_min(floor).log()
    return _masked_mean(log_error**2, valid).sqrt()


def _delta_on_mask(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, threshold: float, floor: float
) -> torch.Tensor:
    pred, gt = pred.clamp_min(floor), gt.clamp_min(floor)
    ratio = torch.maximum(pred / gt, gt / pred)
    return _masked_mean((ratio < threshold).to(pred.dtype), valid)


def _scharr(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    # 'replicate' equals scipy's 'reflect' (skimage's mode) for a 3x3 kernel.
    return kornia.filters.filter2d(image, kernel.to(image)[None], border_type="replicate")


def hessian_norm(image: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the Scharr Hessian (dxx, dxy, dyy, dyx) of a ``(B, 1, H, W)`` map,
    as in the DDFF benchmark code (see the module docstring for the scaling)."""
    dx, dy = _scharr(image, _SCHARR_X), _scharr(image, _SCHARR_Y)
    dxx, dxy = _scharr(dx, _SCHARR_X), _scharr(dx, _SCHARR_Y)
    dyy, dyx = _scharr(dy, _SCHARR_Y), _scharr(dy, _SCHARR_X)
    return (dxx**2 + dxy**2 + dyy**2 + dyx**2).sqrt()


def _bumpiness_on_mask(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, clip: float = BUMPINESS_CLIP
) -> torch.Tensor:
    error = torch.where(valid, pred - gt, torch.zeros_like(pred)).double()
    norm = hessian_norm(error).clamp_max(clip)
    # Erode the mask by the 5x5 support of two Scharr passes, counting the outside of the
    # image as invalid: pixels next to invalid ones (whose error we zeroed) or to the border
    # (where edge replication bends even a planar error) are not scored.
    outside_invalid = F.pad(valid.double(), (2, 2, 2, 2), value=0.0)
    interior = -F.max_pool2d(-outside_invalid, kernel_size=5, stride=1) > 0.5
    return (100.0 * _masked_mean(norm, interior & valid)).to(pred.dtype)


def mse(
    pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error per image (m^2)."""
    return _mse_on_mask(pred_m, gt_m, _check_depth_pair(pred_m, gt_m, valid))


def rmse(
    pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Root mean squared error per image (m)."""
    return mse(pred_m, gt_m, valid).sqrt()


def mae(
    pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error per image (m)."""
    return _mae_on_mask(pred_m, gt_m, _check_depth_pair(pred_m, gt_m, valid))


def absrel(
    pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute relative error |p - g| / g per image."""
    return _absrel_on_mask(pred_m, gt_m, _check_depth_pair(pred_m, gt_m, valid), METRE_FLOOR)


def sqrel(
    pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared relative error (p - g)^2 / g per image (m)."""
    return _sqrel_on_mask(pred_m, gt_m, _check_depth_pair(pred_m, gt_m, valid), METRE_FLOOR)


def rmse_log(
    pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """RMSE of natural-log depth per image."""
    return _rmse_log_on_mask(pred_m, gt_m, _check_depth_pair(pred_m, gt_m, valid), METRE_FLOOR)


def delta(
    pred_m: torch.Tensor,
    gt_m: torch.Tensor,
    valid: torch.Tensor | None = None,
    threshold: float = 1.25,
) -> torch.Tensor:
    """Fraction of valid pixels (in [0, 1]) with max(p/g, g/p) < ``threshold``."""
    return _delta_on_mask(
        pred_m, gt_m, _check_depth_pair(pred_m, gt_m, valid), threshold, METRE_FLOOR
    )


def bumpiness(
    pred_m: torch.Tensor,
    gt_m: torch.Tensor,
    valid: torch.Tensor | None = None,
    clip: float = BUMPINESS_CLIP,
) -> torch.Tensor:
    """DDFF bumpiness per image: 100 x mean over valid pixels (with a valid 5x5 neighbourhood)
    of min(||Hessian(p - g)||_F, clip)."""
    return _bumpiness_on_mask(pred_m, gt_m, _check_depth_pair(pred_m, gt_m, valid), clip)


# --- all metrics at once ------------------------------------------------------------------


def normalise_depth(depth_m: torch.Tensor, d_min_m: float, d_max_m: float) -> torch.Tensor:
    """Depth mapped linearly so ``d_min_m`` -> 0 and ``d_max_m`` -> 1 (not clamped)."""
    if not (math.isfinite(d_min_m) and math.isfinite(d_max_m) and d_max_m > d_min_m):
        raise ValueError(f"normalised range: need finite d_min < d_max, got ({d_min_m}, {d_max_m})")
    return (depth_m - d_min_m) / (d_max_m - d_min_m)


def per_image_metrics(
    pred_m: torch.Tensor,
    gt_m: torch.Tensor,
    valid: torch.Tensor | None = None,
    normalised: tuple[float, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Every metric of :data:`METRIC_NAMES` as a ``(B,)`` tensor (nan where no valid pixel).

    With ``normalised=(d_min_m, d_max_m)`` the metrics are computed on depth normalised to
    [0, 1] by that range; the valid mask is decided on metric depth first."""
    valid = _check_depth_pair(pred_m, gt_m, valid)
    pred, gt = pred_m.detach(), torch.where(valid, gt_m.detach(), torch.ones_like(gt_m))
    floor = METRE_FLOOR
    if normalised is not None:
        pred, gt = normalise_depth(pred, *normalised), normalise_depth(gt, *normalised)
        floor = NORMALISED_FLOOR
    out = {
        "mse": _mse_on_mask(pred, gt, valid),
        "mae": _mae_on_mask(pred, gt, valid),
        "absrel": _absrel_on_mask(pred, gt, valid, floor),
        "sqrel": _sqrel_on_mask(pred, gt, valid, floor),
        "rmse_log": _rmse_log_on_mask(pred, gt, valid, floor),
        "bumpiness": _bumpiness_on_mask(pred, gt, valid),
    }
    out["rmse"] = out["mse"].sqrt()
    for k, threshold in enumerate(DELTA_THRESHOLDS, start=1):
        out[f"delta{k}"] = _delta_on_mask(pred, gt, valid, threshold, floor)
    return {name: out[name] for name in METRIC_NAMES}


def _mean_over_images(values: torch.Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else math.nan


def depth_metrics(
    pred_m: torch.Tensor,
    gt_m: torch.Tensor,
    valid: torch.Tensor | None = None,
    normalised: tuple[float, float] | None = None,
) -> dict[str, float]:
    """All metrics of :data:`METRIC_NAMES`, computed per image and averaged over the images
    of the batch that have valid pixels (``nan`` if none has). Adds ``num_images``."""
    rows = per_image_metrics(pred_m, gt_m, valid, normalised)
    result = {name: _mean_over_images(values) for name, values in rows.items()}
    result["num_images"] = int((~torch.isnan(rows["mse"])).sum())
    return result


# --- temporal stability -------------------------------------------------------------------


def forward_backward_consistent(
    flow_t_to_prev_px: torch.Tensor,
    flow_prev_to_t_px: torch.Tensor,
    alpha: float = 0.01,
    beta_px2: float = 0.5,
) -> torch.Tensor:
    """Pixels whose flow round trip t -> prev -> t returns home (Sundaram et al., ECCV 2010):
    |f + b(x + f)|^2 < alpha (|f|^2 + |b(x + f)|^2) + beta. Occluded pixels fail it."""
    backward, _ = warp_to_current(flow_prev_to_t_px, flow_t_to_prev_px)
    round_trip = (flow_t_to_prev_px + backward).pow(2).sum(1, keepdim=True)
    magnitude = flow_t_to_prev_px.pow(2).sum(1, keepdim=True) + backward.pow(2).sum(1, keepdim=True)
    return round_trip < alpha * magnitude + beta_px2


def per_image_temporal_stability(
    pred_t: torch.Tensor,
    pred_prev: torch.Tensor,
    gt_t: torch.Tensor,
    gt_prev: torch.Tensor,
    flow_t_to_prev: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    valid_prev: torch.Tensor | None = None,
    flow_prev_to_t: torch.Tensor | None = None,
    gt_consistency_rel: float = 0.1,
) -> dict[str, torch.Tensor]:
    """:func:`temporal_stability` per image: each metric as a ``(B,)`` tensor."""
    valid = _check_depth_pair(pred_t, gt_t, valid)
    for name, tensor in (("pred_prev", pred_prev), ("gt_prev", gt_prev)):
        if tensor.shape != pred_t.shape:
            raise ValueError(
                f"{name}: expected shape {tuple(pred_t.shape)}, got {tuple(tensor.shape)}"
            )
    pred_t, pred_prev, gt_t, gt_prev = (x.detach() for x in (pred_t, pred_prev, gt_t, gt_prev))
    flow = flow_t_to_prev.detach().to(pred_t.dtype)
    warped_pred, inside = warp_to_current(pred_prev, flow)
    gt_prev_clean = torch.where(torch.isfinite(gt_prev), gt_prev, torch.zeros_like(gt_prev))
    warped_gt, _ = warp_to_current(gt_prev_clean, flow)
    usable = valid & inside & (warped_gt > 0)
    if valid_prev is not None:
        warped_valid, _ = warp_to_current(valid_prev.to(pred_t.dtype), flow, mode="nearest")
        usable = usable & (warped_valid > 0.5)
    if flow_prev_to_t is not None:
        usable = usable & forward_backward_consistent(
            flow, flow_prev_to_t.detach().to(pred_t.dtype)
        )
    else:
        usable = usable & ((warped_gt - gt_t).abs() <= gt_consistency_rel * gt_t)
    delta_pred = pred_t - warped_pred
    delta_gt = gt_t - warped_gt
    gt_safe = gt_t.clamp_min(METRE_FLOOR)
    # The same change error per pixel, without warping (what a viewer of the raw depth video
    # sees at a fixed pixel): valid in both frames only.
    same_pixel = valid & torch.isfinite(gt_prev) & (gt_prev > 0)
    if valid_prev is not None:
        same_pixel = same_pixel & valid_prev.bool()
    pixel_change_error = ((pred_t - pred_prev) - (gt_t - gt_prev_clean)).abs() / gt_safe
    rows = {
        "temporal_err_rel_pixel": _masked_mean(pixel_change_error, same_pixel),
        "temporal_err_m": _masked_mean((delta_pred - delta_gt).abs(), usable),
        "temporal_err_rel": _masked_mean((delta_pred - delta_gt).abs() / gt_safe, usable),
        "temporal_change_pred_rel": _masked_mean(delta_pred.abs() / gt_safe, usable),
        "temporal_change_gt_rel": _masked_mean(delta_gt.abs() / gt_safe, usable),
    }
    valid_count = valid.flatten(1).sum(1)
    coverage = usable.flatten(1).sum(1) / valid_count.clamp_min(1)
    rows["temporal_coverage"] = torch.where(
        valid_count > 0,
        coverage.to(pred_t.dtype),
        torch.full_like(coverage, math.nan, dtype=pred_t.dtype),
    )
    return {name: rows[name] for name in TEMPORAL_NAMES}


def temporal_stability(
    pred_t: torch.Tensor,
    pred_prev: torch.Tensor,
    gt_t: torch.Tensor,
    gt_prev: torch.Tensor,
    flow_t_to_prev: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    valid_prev: torch.Tensor | None = None,
    flow_prev_to_t: torch.Tensor | None = None,
    gt_consistency_rel: float = 0.1,
) -> dict[str, float]:
    """How well the predicted depth changes between consecutive frames match the true changes.

    The previous prediction and ground truth are warped into frame t along the ground-truth
    flow (``flow_t_to_prev`` ``(B, 2, H, W)`` in pixels, (dx, dy), from frame t to the previous
    frame). On unoccluded pixels we form Delta_pred = pred_t - warp(pred_prev) and
    Delta_gt = gt_t - warp(gt_prev): real motion in depth makes Delta_gt non-zero; flicker shows
    as Delta_pred without Delta_gt.

    Unoccluded pixels are those valid in frame t (and, if given, in ``valid_prev`` after
    warping), whose flow lands inside the previous frame, and that pass an occlusion check:
    the forward-backward flow test when ``flow_prev_to_t`` is given, otherwise a ground-truth
    test |warp(gt_prev) - gt_t| <= ``gt_consistency_rel`` * gt_t (a disoccluded pixel sees a
    different surface, hence a depth jump; this also drops pixels whose depth truly changes by
    more than that fraction in one frame).

    Returns, per image then averaged over images (nan if no pixel survives):

    * ``temporal_err_m``: mean |Delta_pred - Delta_gt| in metres (0 for a prediction that is
      exact, or wrong by the same amount in both frames, whatever the scene motion);
    * ``temporal_err_rel``: mean |Delta_pred - Delta_gt| / gt_t;
    * ``temporal_change_pred_rel`` / ``temporal_change_gt_rel``: mean |Delta_pred| / gt_t and
      mean |Delta_gt| / gt_t, the predicted versus true relative frame-to-frame change (on a
      static scene the first is pure flicker);
    * ``temporal_coverage``: fraction of frame-t valid pixels that were compared;
    * ``temporal_err_rel_pixel``: the same mean |(p_t - p_{t-1}) - (g_t - g_{t-1})| / g_t per
      pixel, *without* warping, over pixels valid in both frames (the change a viewer sees at
      a fixed pixel of the depth video; on a static scene equal to the warped one).
    """
    rows = per_image_temporal_stability(
        pred_t,
        pred_prev,
        gt_t,
        gt_prev,
        flow_t_to_prev,
        valid,
        valid_prev=valid_prev,
        flow_prev_to_t=flow_prev_to_t,
        gt_consistency_rel=gt_consistency_rel,
    )
    return {name: _mean_over_images(values) for name, values in rows.items()}


# --- video metrics: TAE and flicker ---------------------------------------------------------


def align_disparity_scale_shift(
    preds_m: Sequence[torch.Tensor],
    gts_m: Sequence[torch.Tensor],
    valids: Sequence[torch.Tensor] | None = None,
    *,
    max_depth_m: float | None = None,
) -> list[torch.Tensor]:
    """One scale and shift per video in disparity, as Video Depth Anything's evaluation
    (``benchmark/eval/eval_tae.py``) aligns before TAE: least squares s, t minimising
    sum (s / p + t - 1 / g)^2 over the valid pixels of *all* frames (g > 1e-3 and, if given,
    g < ``max_depth_m``), then p' = 1 / max(s / p + t, 1e-3) clipped to [1e-3, max_depth_m].
    (VDA's models output disparity; ours output metric depth, so 1 / p is the disparity.)"""
    disparities, targets = [], []
    for index, (pred, gt) in enumerate(zip(preds_m, gts_m)):
        keep = torch.isfinite(gt) & (gt > 1e-3)
        if max_depth_m is not None:
            keep = keep & (gt < max_depth_m)
        if valids is not None:
            keep = keep & valids[index].bool()
        disparities.append(1.0 / pred.double().clamp_min(1e-3)[keep])
        targets.append(1.0 / (gt.double()[keep] + 1e-8))
    x, y = torch.cat(disparities), torch.cat(targets)
    if x.numel() < 2:
        return [pred.clone() for pred in preds_m]
    design = torch.stack([x, torch.ones_like(x)], dim=1)
    scale, shift = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
    aligned = []
    for pred in preds_m:
        disparity = (scale / pred.double().clamp_min(1e-3) + shift).clamp_min(1e-3)
        depth = (1.0 / disparity).clamp(1e-3, max_depth_m if max_depth_m is not None else math.inf)
        aligned.append(depth.to(pred.dtype))
    return aligned


def per_image_tae_pair(
    pred_prev: torch.Tensor,
    pred_t: torch.Tensor,
    gt_prev: torch.Tensor,
    gt_t: torch.Tensor,
    flow_t_to_prev: torch.Tensor,
    valid_t: torch.Tensor | None = None,
    valid_prev: torch.Tensor | None = None,
    *,
    gt_consistency_rel: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two AbsRel terms of TAE for frames (t-1, t), per image ``(B,)`` each (nan where no
    pixel is compared): depth of t-1 reprojected into t against the prediction of t, and
    depth of t reprojected into t-1 against the prediction of t-1.

    Reprojection follows the ground-truth flow (``flow_t_to_prev``: frame t -> t-1, on t's
    grid) instead of a camera pose: the tracked point's depth changes by the true change
    Delta g = g_t - w(g_{t-1}) (w: backward warp along the flow), so

        forward  = mean |p_t - (w(p_{t-1}) + Delta g)| / p_t
        backward = mean |w(p_{t-1}) - (p_t - Delta g)| / w(p_{t-1})

    over pixels valid in t, whose flow lands inside t-1 on a valid pixel, that pass the
    occlusion test |w(g_{t-1}) - g_t| <= ``gt_consistency_rel`` g_t (as
    :func:`temporal_stability`), and whose reprojected depth is positive. This equals VDA's
    pose reprojection z' = R_3 . X + t_z when the rotation between frames is negligible (then
    z' = z + t_z, t_z = Delta g along the track) and, unlike a pose, it also covers objects
    that move independently. Both terms share the numerator because the correspondences are
    the ground truth's, not re-derived from the predicted depth as in VDA's projection."""
    valid_t = _check_depth_pair(pred_t, gt_t, valid_t)
    flow = flow_t_to_prev.detach().to(pred_t.dtype)
    pred_t, pred_prev = pred_t.detach(), pred_prev.detach()
    warped_pred, inside = warp_to_current(pred_prev, flow)
    gt_prev_clean = torch.where(torch.isfinite(gt_prev), gt_prev, torch.zeros_like(gt_prev))
    warped_gt, _ = warp_to_current(gt_prev_clean.to(pred_t.dtype), flow)
    usable = valid_t & inside & (warped_gt > 0)
    usable = usable & ((warped_gt - gt_t).abs() <= gt_consistency_rel * gt_t)
    if valid_prev is not None:
        warped_valid, _ = warp_to_current(valid_prev.to(pred_t.dtype), flow, mode="nearest")
        usable = usable & (warped_valid > 0.5)
    change = gt_t - warped_gt
    into_t = warped_pred + change
    into_prev = pred_t - change
    forward_ok = usable & (into_t > 0) & (pred_t > 0)
    backward_ok = usable & (into_prev > 0) & (warped_pred > 0)
    forward = (pred_t - into_t).abs() / pred_t.clamp_min(METRE_FLOOR)
    backward = (warped_pred - into_prev).abs() / warped_pred.clamp_min(METRE_FLOOR)
    return _masked_mean(forward, forward_ok), _masked_mean(backward, backward_ok)


def temporal_alignment_error(
    preds_m: Sequence[torch.Tensor],
    gts_m: Sequence[torch.Tensor],
    flows_t_to_prev: Sequence[torch.Tensor],
    valids: Sequence[torch.Tensor] | None = None,
    *,
    align: bool = True,
    max_depth_m: float | None = None,
    gt_consistency_rel: float = 0.1,
) -> float:
    """TAE, the temporal alignment error of Video Depth Anything (Chen et al., CVPR 2025), of
    one video: frames ``preds_m[k]``, ``gts_m[k]`` ``(1, 1, H, W)`` in order, with
    ``flows_t_to_prev[k]`` ``(1, 2, H, W)`` the backward flow of frame k (index 0 unused):

        TAE = 1 / (2 (N - 1)) sum_{k=0}^{N-2} [AbsRel(f(p_k), p_{k+1}) + AbsRel(f^-1(p_{k+1}), p_k)]

    with f the reprojection of :func:`per_image_tae_pair` and, when ``align`` (the paper's
    protocol), p the predictions after :func:`align_disparity_scale_shift` over the whole
    video. A fraction (the paper prints it times 100). Pairs with no comparable pixel are
    left out of the mean (VDA's code counts them as 0); nan if none is left."""
    count = len(preds_m)
    if count != len(gts_m) or count != len(flows_t_to_prev):
        raise ValueError("temporal_alignment_error: one ground truth and flow per prediction")
    if count < 2:
        return math.nan
    if align:
        preds_m = align_disparity_scale_shift(preds_m, gts_m, valids, max_depth_m=max_depth_m)
    terms = []
    for k in range(count - 1):
        forward, backward = per_image_tae_pair(
            preds_m[k], preds_m[k + 1], gts_m[k], gts_m[k + 1], flows_t_to_prev[k + 1],
            None if valids is None else valids[k + 1], None if valids is None else valids[k],
            gt_consistency_rel=gt_consistency_rel,
        )
        terms += [float(forward.mean()), float(backward.mean())]
    finite = [v for v in terms if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def per_image_flicker(
    pred_t: torch.Tensor,
    pred_ref: torch.Tensor,
    gt_t: torch.Tensor,
    valid: torch.Tensor | None = None,
    valid_ref: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flicker of a *static* scene, ``(B,)``: mean |p_t - p_ref| / g_t over pixels valid in
    both, with p_ref the prediction of an earlier window of the same clip (the previous
    window: frame-to-frame flicker; the window one sweep earlier at the same sweep phase:
    sweep-to-sweep flicker, which the issue's 1 % target is about). No warping: nothing
    moves, so any change is flicker."""
    valid = _check_depth_pair(pred_t, gt_t, valid)
    if pred_ref.shape != pred_t.shape:
        raise ValueError(f"pred_ref: expected shape {tuple(pred_t.shape)}, got {tuple(pred_ref.shape)}")
    if valid_ref is not None:
        valid = valid & valid_ref.bool()
    change = (pred_t.detach() - pred_ref.detach()).abs() / gt_t.clamp_min(METRE_FLOOR)
    return _masked_mean(change, valid)


# --- accumulation over a data set ---------------------------------------------------------


class MetricAccumulator:
    """Sums per-image metrics over many batches; :meth:`compute` gives the mean over images.

    Each metric keeps its own count, so images without valid pixels (nan) and metrics that
    exist only for some frames (temporal ones) average correctly. ``merge`` combines the
    accumulators of data shards or DDP ranks.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: Mapping[str, float]) -> None:
        """Add one image's metrics (nan values are skipped)."""
        for name, value in metrics.items():
            value = float(value)
            if math.isnan(value):
                continue
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def update(
        self,
        pred_m: torch.Tensor,
        gt_m: torch.Tensor,
        valid: torch.Tensor | None = None,
        normalised: tuple[float, float] | None = None,
        prefix: str = "",
    ) -> list[dict[str, float]]:
        """Add every image of a batch; returns the per-image rows (e.g. for a CSV)."""
        rows = per_image_metrics(pred_m, gt_m, valid, normalised)
        per_image = [
            {prefix + name: float(values[i]) for name, values in rows.items()}
            for i in range(pred_m.shape[0])
        ]
        for row in per_image:
            self.add(row)
        return per_image

    def update_temporal(self, *args, **kwargs) -> list[dict[str, float]]:
        """Add the temporal-stability metrics of a batch of frame pairs, one row per pair
        (arguments as :func:`temporal_stability`); returns the rows."""
        rows = per_image_temporal_stability(*args, **kwargs)
        batch = next(iter(rows.values())).shape[0]
        per_pair = [{name: float(values[i]) for name, values in rows.items()} for i in range(batch)]
        for row in per_pair:
            self.add(row)
        return per_pair

    def merge(self, other: MetricAccumulator) -> None:
        for name, total in other.sums.items():
            self.sums[name] = self.sums.get(name, 0.0) + total
            self.counts[name] = self.counts.get(name, 0) + other.counts[name]

    def compute(self) -> dict[str, float]:
        """Mean over images of every metric seen, plus ``num_images`` (images with an MSE, under
        any prefix) and ``num_pairs`` (frame pairs with temporal metrics); when present,
        ``num_static_pairs`` / ``num_sweep_pairs`` (flicker pairs) and ``num_tae_videos``
        (TAE is one value per video, so its mean is over videos)."""
        result = {name: self.sums[name] / self.counts[name] for name in sorted(self.sums)}
        result["num_images"] = max(
            (n for k, n in self.counts.items() if k == "mse" or k.endswith("_mse")), default=0
        )
        result["num_pairs"] = self.counts.get("temporal_coverage", 0)
        if "flicker_frame_rel" in self.counts or "flicker_sweep_rel" in self.counts:
            result["num_static_pairs"] = self.counts.get("flicker_frame_rel", 0)
            result["num_sweep_pairs"] = self.counts.get("flicker_sweep_rel", 0)
        if "tae" in self.counts:
            result["num_tae_videos"] = self.counts["tae"]
        return result

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()


def mean_of_rows(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean over rows of per-image metrics (nan skipped): the same rule as the accumulator."""
    accumulator = MetricAccumulator()
    for row in rows:
        accumulator.add(row)
    return accumulator.compute()


# --- confidence quality: sparsification curves --------------------------------------------
# Does error fall as confidence rises? Per image, the valid pixels are ranked by confidence
# and the least confident fraction f is removed, for f = 0, 1/steps, ..., (steps-1)/steps
# (``keep = N - floor(f N)`` pixels stay); the curve is the AbsRel (or RMSE) of what remains.
# The oracle curve removes by true error instead (the best any confidence could do). AUSE is
# the trapezoid area between the two over those fractions (0 = perfectly informative
# confidence); AURG is the area between the flat "random" curve (the all-pixel value) and the
# sparsification curve (> 0: better than random). Ties in confidence (a constant or saturated
# map) are broken in expectation: a tie group that is cut contributes its mean error, so a
# constant confidence gives an exactly flat curve. Non-finite confidence counts as least
# confident. Aggregation over a data set is per image, then the mean over images, like every
# other metric here (so ``absrel_all`` equals the data set's ``absrel``); the mean of per-image
# AUSEs is the AUSE of the mean curves.

SPARSIFICATION_STEPS = 20
CONFIDENCE_SCALARS = (
    "ause_absrel", "aurg_absrel", "ause_rmse", "aurg_rmse",
    "absrel_all", "absrel_top50", "absrel_oracle_top50",
)


def sparsification_fractions(steps: int = SPARSIFICATION_STEPS) -> torch.Tensor:
    """Fractions of the least confident pixels removed: ``k / steps``, k = 0 .. steps-1."""
    if steps < 2:
        raise ValueError(f"sparsification steps: need at least 2, got {steps}")
    return torch.arange(steps, dtype=torch.float64) / steps


def _kept_mean_curve(error: torch.Tensor, score: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``error`` over the ``keep[k]`` pixels of highest ``score`` (1-D), ties in
    ``score`` resolved in expectation (each tied pixel carries its group's mean error)."""
    order = torch.argsort(score, descending=True, stable=True)
    score_sorted, error_sorted = score[order], error[order]
    _, group, counts = torch.unique_consecutive(score_sorted, return_inverse=True,
                                                return_counts=True)
    group_sum = torch.zeros(counts.numel(), dtype=error.dtype).index_add_(0, group, error_sorted)
    error_sorted = (group_sum / counts.to(error.dtype))[group]
    cumulative = torch.cat([error.new_zeros(1), error_sorted.cumsum(0)])
    return cumulative[keep] / keep.to(error.dtype)


def _trapezoid(values: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    return torch.trapezoid(values, fractions, dim=-1)


def per_image_sparsification(
    pred_m: torch.Tensor,
    gt_m: torch.Tensor,
    valid: torch.Tensor | None,
    confidence: torch.Tensor,
    steps: int = SPARSIFICATION_STEPS,
) -> dict[str, torch.Tensor]:
    """Sparsification and oracle curves per image (module section above).

    ``confidence`` ``(B, 1, H, W)``, higher = more trusted. Returns ``(B, steps)`` curves
    ``sparsification_absrel``, ``oracle_absrel``, ``sparsification_rmse``, ``oracle_rmse`` and
    ``(B,)`` scalars :data:`CONFIDENCE_SCALARS` (``absrel_top50``: AbsRel of the most confident
    half, ``absrel_oracle_top50``: of the half with the lowest true AbsRel); nan rows for an
    image without valid pixels."""
    valid = _check_depth_pair(pred_m, gt_m, valid)
    if confidence.shape != pred_m.shape:
        raise ValueError(
            f"confidence: expected shape {tuple(pred_m.shape)}, got {tuple(confidence.shape)}"
        )
    fractions = sparsification_fractions(steps)
    batch = pred_m.shape[0]
    nan_curve = torch.full((steps,), math.nan, dtype=torch.float64)
    curves: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("sparsification_absrel", "oracle_absrel", "sparsification_rmse",
                        "oracle_rmse")}
    halves: dict[str, list[torch.Tensor]] = {"absrel_top50": [], "absrel_oracle_top50": []}
    for i in range(batch):
        mask = valid[i, 0]
        count = int(mask.sum())
        if count == 0:
            for values in curves.values():
                values.append(nan_curve)
            for values in halves.values():
                values.append(torch.tensor(math.nan, dtype=torch.float64))
            continue
        gt = gt_m[i, 0][mask].detach().double().clamp_min(METRE_FLOOR)
        pred = pred_m[i, 0][mask].detach().double().clamp_min(METRE_FLOOR)
        score = confidence[i, 0][mask].detach().double()
        score = torch.where(torch.isfinite(score), score, torch.full_like(score, -math.inf))
        rel, sq = (pred - gt).abs() / gt, (pred - gt) ** 2
        keep = count - torch.floor(fractions * count).long()
        curves["sparsification_absrel"].append(_kept_mean_curve(rel, score, keep))
        curves["oracle_absrel"].append(_kept_mean_curve(rel, -rel, keep))
        curves["sparsification_rmse"].append(_kept_mean_curve(sq, score, keep).sqrt())
        curves["oracle_rmse"].append(_kept_mean_curve(sq, -sq, keep).sqrt())
        half = torch.tensor([count - count // 2])
        halves["absrel_top50"].append(_kept_mean_curve(rel, score, half)[0])
        halves["absrel_oracle_top50"].append(_kept_mean_curve(rel, -rel, half)[0])
    out = {name: torch.stack(values) for name, values in curves.items()}
    out.update({name: torch.stack(values) for name, values in halves.items()})
    for metric in ("absrel", "rmse"):
        spars, oracle = out[f"sparsification_{metric}"], out[f"oracle_{metric}"]
        out[f"ause_{metric}"] = _trapezoid(spars - oracle, fractions)
        out[f"aurg_{metric}"] = _trapezoid(spars[:, :1] - spars, fractions)
    out["absrel_all"] = out["sparsification_absrel"][:, 0]
    return out


class ConfidenceAccumulator:
    """Per-image sparsification results summed over a data set; :meth:`compute` gives the mean
    over images (images without valid pixels left out)."""

    def __init__(self, steps: int = SPARSIFICATION_STEPS) -> None:
        self.steps = steps
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def update(self, pred_m, gt_m, valid, confidence) -> None:
        rows = per_image_sparsification(pred_m, gt_m, valid, confidence, self.steps)
        has = ~torch.isnan(rows["absrel_all"])
        for name, values in rows.items():
            total = values[has].sum(0)
            self.sums[name] = self.sums[name] + total if name in self.sums else total
        self.count += int(has.sum())

    def merge(self, other: ConfidenceAccumulator) -> None:
        if other.steps != self.steps:
            raise ValueError("ConfidenceAccumulator.merge: different numbers of steps")
        for name, total in other.sums.items():
            self.sums[name] = self.sums[name] + total if name in self.sums else total.clone()
        self.count += other.count

    def compute(self) -> dict[str, object]:
        """Mean over images: the scalars, the curves as lists and ``fraction_removed``; plus
        ``num_images``, ``steps`` and ``aggregation``. Empty (only counts) if no image."""
        result: dict[str, object] = {"num_images": self.count, "steps": self.steps,
                                     "aggregation": "per image, then mean over images"}
        if self.count == 0:
            return result
        mean = {name: total / self.count for name, total in self.sums.items()}
        result.update({name: float(mean[name]) for name in CONFIDENCE_SCALARS})
        result["fraction_removed"] = sparsification_fractions(self.steps).tolist()
        for name in ("sparsification_absrel", "oracle_absrel", "sparsification_rmse",
                     "oracle_rmse"):
            result[name] = mean[name].tolist()
        return result


def _as_depth_map(name: str, value) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if tensor.ndim == 2:
        tensor = tensor[None, None]
    elif tensor.ndim == 3:
        tensor = tensor[:, None]
    if tensor.ndim != 4 or tensor.shape[1] != 1:
        raise ValueError(f"{name}: expected (H, W), (B, H, W) or (B, 1, H, W), got "
                         f"{tuple(tensor.shape)}")
    return tensor


def confidence_report(pred_m, gt_m, valid=None, confidence=None, *,
                      steps: int = SPARSIFICATION_STEPS) -> dict[str, object]:
    """How well a confidence map ranks a depth map's errors, for numpy arrays or tensors of
    shape ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` (``valid`` boolean or None; pixels
    count only where the ground truth is also finite and positive).

    Returns ``ause_absrel``, ``aurg_absrel``, ``ause_rmse``, ``aurg_rmse``, ``absrel_all``,
    ``absrel_top50`` (most confident half), ``absrel_oracle_top50`` (half with the lowest
    true AbsRel), the curves ``sparsification_absrel`` / ``oracle_absrel`` /
    ``sparsification_rmse`` / ``oracle_rmse`` against ``fraction_removed``, ``num_images``,
    ``steps`` and ``aggregation`` (per image, then the mean over images)."""
    if confidence is None:
        raise ValueError("confidence_report: a confidence map is required")
    pred, gt = _as_depth_map("pred_m", pred_m), _as_depth_map("gt_m", gt_m)
    conf = _as_depth_map("confidence", confidence)
    mask = None if valid is None else _as_depth_map("valid", valid).bool()
    accumulator = ConfidenceAccumulator(steps)
    accumulator.update(pred.double(), gt.double(), mask, conf.double())
    return accumulator.compute()
