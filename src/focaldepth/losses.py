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
models with a CoC decoder) and ``defocus`` (self-supervised re-rendering, DEReD).

A term whose inputs are missing (e.g. ``coc`` configured for a model without a CoC decoder)
raises :class:`focaldepth.errors.UserError`: a configured loss is never skipped silently.
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
        pred, gt = _depth_pair(outputs, batch, self.name)
        mask = _valid_mask(batch, pred, self.masked, self.name)
        focus_dpt = 1.0 / _require(batch, "focus_distance_m", "batch", self.name)
        sweep_dpt = (focus_dpt.amax(dim=1) - focus_dpt.amin(dim=1)).clamp_min(1e-3).view(-1, 1, 1, 1)
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
    ):
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

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        from focaldepth.render import render_focal_stack  # the renderer is heavy; import on use

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
