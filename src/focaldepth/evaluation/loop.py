"""The evaluation loop: the accuracy pass (one focal stack per item, metrics in metres and on
depth normalised by each sequence's range, error by depth, sheet samples, confidence) and the
temporal pass (stability, flicker and TAE over consecutive windows), into an
:class:`EvaluationResult`."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from focaldepth.errors import UserError
from focaldepth.evaluation.data import _batched, _scalar
from focaldepth.evaluation.models import Predictor
from focaldepth.metrics import (
    ConfidenceAccumulator,
    MetricAccumulator,
    per_image_flicker,
    temporal_alignment_error,
)
from focaldepth.train.masks import mask_to_focus_range

NORMALISED_PREFIX = "norm_"
#: Metric-depth bins of the error-vs-depth plot: log-spaced over every depth a generated
#: scene can contain (0.05-10 m, with margin).
DEPTH_BINS_M = np.geomspace(0.02, 20.0, 41)
NORMALISED_BINS = np.linspace(0.0, 1.0, 21)


class ErrorByDepth:
    """Sums of errors in bins of ground-truth depth, for the error-vs-depth plot."""

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = torch.as_tensor(edges, dtype=torch.float64)
        bins = len(edges) - 1
        self.count = torch.zeros(bins, dtype=torch.float64)
        self.abs_error = torch.zeros(bins, dtype=torch.float64)
        self.sq_error = torch.zeros(bins, dtype=torch.float64)
        self.rel_error = torch.zeros(bins, dtype=torch.float64)

    def add(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> None:
        gt_v, pred_v = gt[valid].double(), pred[valid].double()
        index = torch.bucketize(gt_v, self.edges, right=True) - 1
        inside = (index >= 0) & (index < self.count.numel())
        index, gt_v, pred_v = index[inside], gt_v[inside], pred_v[inside]
        error = pred_v - gt_v
        self.count.index_add_(0, index, torch.ones_like(error))
        self.abs_error.index_add_(0, index, error.abs())
        self.sq_error.index_add_(0, index, error**2)
        self.rel_error.index_add_(0, index, error.abs() / gt_v.clamp_min(1e-6))

    def table(self) -> dict[str, list[float]]:
        """Per-bin centre, pixel count, mean |error|, RMSE and mean relative error."""
        n = self.count.clamp_min(1)
        nan = torch.full_like(self.count, math.nan)
        has = self.count > 0
        centres = (self.edges[:-1] * self.edges[1:]).sqrt() if self.edges[0] > 0 else \
            0.5 * (self.edges[:-1] + self.edges[1:])
        return {"centre": centres.tolist(), "count": self.count.tolist(),
                "mae": torch.where(has, self.abs_error / n, nan).tolist(),
                "rmse": torch.where(has, (self.sq_error / n).sqrt(), nan).tolist(),
                "absrel": torch.where(has, self.rel_error / n, nan).tolist()}


@dataclass
class SheetSample:
    """What the sheet shows for one sequence."""

    sequence_index: int
    frames: torch.Tensor  # (S, C, H, W)
    focus_distance_m: torch.Tensor  # (S,)
    pred_m: torch.Tensor  # (H, W)
    gt_m: torch.Tensor
    valid: torch.Tensor


@dataclass
class _PendingSequence:
    """Items of one sequence waiting for the sequence's depth range."""

    sequence_index: int
    is_dynamic: bool
    preds: list[torch.Tensor] = field(default_factory=list)
    gts: list[torch.Tensor] = field(default_factory=list)
    valids: list[torch.Tensor] = field(default_factory=list)


@dataclass
class EvaluationResult:
    """Everything ``write_outputs`` needs."""

    per_sequence: list[dict[str, Any]]
    overall: dict[str, float]
    by_motion: dict[str, dict[str, float]]
    error_by_depth_m: dict[str, list[float]]
    error_by_normalised_depth: dict[str, list[float]]
    sheet: list[SheetSample]
    seconds: float
    num_items: int
    #: sparsification results (:meth:`ConfidenceAccumulator.compute`) for "all", "static",
    #: "dynamic"; empty when the model gives no confidence
    confidence: dict[str, dict[str, Any]] = field(default_factory=dict)


def _sequence_range(pending: _PendingSequence) -> tuple[float, float] | None:
    """Min and max valid ground-truth depth over the sequence's evaluated items."""
    values = [gt[valid & torch.isfinite(gt) & (gt > 0)] for gt, valid in
              zip(pending.gts, pending.valids)]
    values = torch.cat([v.flatten() for v in values]) if values else torch.empty(0)
    if values.numel() == 0:
        return None
    low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else None


def evaluate_dataset(predict: Predictor, accuracy_set: Dataset,
                     temporal_set: Dataset | None = None, *, sheet_count: int = 4,
                     depth_ranges: Mapping[int, tuple[float, float]] | None = None,
                     valid_range_margin: float | None = None,
                     progress: bool = True) -> EvaluationResult:
    """Score ``predict`` on ``accuracy_set`` (and the temporal metrics on the sequences of
    ``temporal_set``, whose items must come in frame order within each sequence: stability
    on dynamic ones, flicker on static ones, TAE on both).

    Normalised metrics use ``depth_ranges[sequence_index]`` (near, far) when given, else the
    valid ground-truth range over the sequence's evaluated items; items of one sequence are
    expected to be contiguous and are held until the sequence ends. ``valid_range_margin``
    restricts every metric to pixels within the stack's focus range (see
    :func:`focaldepth.train.masks.mask_to_focus_range`); None scores every pixel with ground
    truth."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    overall, by_motion = MetricAccumulator(), {"static": MetricAccumulator(),
                                               "dynamic": MetricAccumulator()}
    sequences: dict[int, dict[str, Any]] = {}
    seq_metrics: dict[int, MetricAccumulator] = {}
    by_depth, by_norm = ErrorByDepth(DEPTH_BINS_M), ErrorByDepth(NORMALISED_BINS)
    total = len(accuracy_set)
    if total == 0:
        raise UserError("the test set has no items (num_frames larger than the sequences?)")
    # Sheet rows: the first item of a not-yet-shown sequence at or after evenly spaced indices.
    sheet_targets = sorted(set(np.linspace(0, total - 1, min(sheet_count, total)).round()
                               .astype(int).tolist())) if sheet_count > 0 else []
    sheet: list[SheetSample] = []
    pending: _PendingSequence | None = None
    confidence = {"all": ConfidenceAccumulator(), "static": ConfidenceAccumulator(),
                  "dynamic": ConfidenceAccumulator()}

    def flush(done: _PendingSequence) -> None:
        depth_range = (depth_ranges or {}).get(done.sequence_index) or _sequence_range(done)
        accumulator = seq_metrics.setdefault(done.sequence_index, MetricAccumulator())
        motion = by_motion["dynamic" if done.is_dynamic else "static"]
        for pred, gt, valid in zip(done.preds, done.gts, done.valids):
            rows = accumulator.update(pred, gt, valid)
            if depth_range is not None:
                rows = [{**r, **n} for r, n in zip(rows, accumulator.update(
                    pred, gt, valid, normalised=depth_range, prefix=NORMALISED_PREFIX))]
                low, high = depth_range
                by_norm.add((pred - low) / (high - low), (gt - low) / (high - low), valid)
            for row in rows:
                overall.add(row)
                motion.add(row)
            by_depth.add(pred, gt, valid)
        info = sequences.setdefault(done.sequence_index, {"sequence_index": done.sequence_index,
                                                          "is_dynamic": done.is_dynamic})
        info["depth_min_m"], info["depth_max_m"] = depth_range or (math.nan, math.nan)

    for index in tqdm(range(total), desc="evaluate", disable=not progress, unit="stack"):
        item = accuracy_set[index]
        batch = mask_to_focus_range(_batched(item), valid_range_margin)
        pred, pred_confidence = _split_prediction(predict(batch))
        gt, valid = batch["depth_m"].float(), batch["valid"].bool()
        if pred.shape != gt.shape:
            raise ValueError(f"model returned depth_m of shape {tuple(pred.shape)}, expected "
                             f"{tuple(gt.shape)}")
        sequence_index = int(_scalar(item["sequence_index"]))
        is_dynamic = bool(_scalar(item.get("is_dynamic", False)))
        if pred_confidence is not None:
            for group in ("all", "dynamic" if is_dynamic else "static"):
                confidence[group].update(pred, gt, valid, pred_confidence.float())
        if pending is None or pending.sequence_index != sequence_index:
            if pending is not None:
                flush(pending)
            pending = _PendingSequence(sequence_index, is_dynamic)
        pending.preds.append(pred)
        pending.gts.append(gt)
        pending.valids.append(valid)
        shown = {sample.sequence_index for sample in sheet}
        if sheet_targets and index >= sheet_targets[0] and sequence_index not in shown:
            sheet_targets.pop(0)
            sheet.append(SheetSample(sequence_index, batch["frames"][0], batch["focus_distance_m"][0],
                                     pred[0, 0], gt[0, 0], valid[0, 0]))
    if pending is not None:
        flush(pending)

    if temporal_set is not None:
        _temporal_pass(predict, temporal_set, seq_metrics, overall, by_motion,
                       valid_range_margin=valid_range_margin, progress=progress)

    per_sequence = []
    for sequence_index in sorted(set(sequences) | set(seq_metrics)):
        # (a sequence seen only in the temporal pass is a dynamic one)
        row = dict(sequences.get(sequence_index, {"sequence_index": sequence_index,
                                                  "is_dynamic": True}))
        row.update(seq_metrics[sequence_index].compute())
        per_sequence.append(row)
    return EvaluationResult(
        per_sequence=per_sequence, overall=overall.compute(),
        by_motion={k: v.compute() for k, v in by_motion.items() if v.counts},
        error_by_depth_m=by_depth.table(), error_by_normalised_depth=by_norm.table(),
        sheet=sheet, seconds=time.perf_counter() - start, num_items=total,
        confidence={k: v.compute() for k, v in confidence.items() if v.count})


def _split_prediction(output: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A predictor's output -> (depth_m, confidence or None)."""
    if isinstance(output, Mapping):
        return output["depth_m"], output.get("confidence")
    return output, None


@dataclass
class _Video:
    """The windows of one sequence seen by the temporal pass: what TAE (one value per video,
    after a per-video alignment) and the sweep-phase flicker need. Predictions and ground
    truth in float32, flow in float16 (as stored by the generator)."""

    sequence_index: int
    is_dynamic: bool
    preds: list[torch.Tensor] = field(default_factory=list)
    gts: list[torch.Tensor] = field(default_factory=list)
    valids: list[torch.Tensor] = field(default_factory=list)
    flows: list[torch.Tensor] = field(default_factory=list)
    #: static sequences: (focus distances of the window, index into preds) of recent windows
    phases: list[tuple[torch.Tensor, int]] = field(default_factory=list)


def _same_phase(focus_a: torch.Tensor, focus_b: torch.Tensor) -> bool:
    return focus_a.shape == focus_b.shape and bool(torch.allclose(focus_a, focus_b, rtol=1e-6,
                                                                  atol=0.0))


def _temporal_pass(predict: Predictor, dataset: Dataset, seq_metrics: dict[int, MetricAccumulator],
                   overall: MetricAccumulator, by_motion: Mapping[str, MetricAccumulator], *,
                   valid_range_margin: float | None, progress: bool) -> None:
    """Temporal metrics over consecutive windows of each sequence: temporal stability between
    windows of dynamic sequences, flicker on static ones, and TAE per video (both)."""
    from tqdm.auto import tqdm

    def record(sequence_index: int, is_dynamic: bool, rows: Sequence[Mapping[str, float]],
               add_to_sequence: bool = True) -> None:
        accumulator = seq_metrics.setdefault(sequence_index, MetricAccumulator())
        group = by_motion["dynamic" if is_dynamic else "static"]
        for row in rows:
            if add_to_sequence:
                accumulator.add(row)
            overall.add(row)
            group.add(row)

    def finish(video: _Video | None) -> None:
        if video is None or len(video.preds) < 2:
            return
        flows = [flow.float() for flow in video.flows]
        row = {"tae": temporal_alignment_error(video.preds, video.gts, flows, video.valids),
               "tae_metric": temporal_alignment_error(video.preds, video.gts, flows,
                                                      video.valids, align=False)}
        record(video.sequence_index, video.is_dynamic, [row])

    previous: dict[str, Any] | None = None
    video: _Video | None = None
    for index in tqdm(range(len(dataset)), desc="temporal", disable=not progress, unit="window"):
        item = dataset[index]
        if "flow" not in item:  # a data set without flow: no temporal metrics
            previous = None
            continue
        is_dynamic = bool(_scalar(item.get("is_dynamic", False)))
        batch = mask_to_focus_range(_batched(item), valid_range_margin)
        current = {"sequence_index": int(_scalar(item["sequence_index"])),
                   "frame_index": _scalar(item["frame_index"]) if "frame_index" in item else None,
                   "pred": _split_prediction(predict(batch))[0].detach().float(),
                   "gt": batch["depth_m"].float(), "valid": batch["valid"].bool(),
                   "flow": batch["flow"].float(), "focus": batch["focus_distance_m"][0].float()}
        consecutive = previous is not None and \
            previous["sequence_index"] == current["sequence_index"] and (
                current["frame_index"] is None
                or current["frame_index"] == previous["frame_index"] + 1)
        if not consecutive:
            finish(video)
            video = _Video(current["sequence_index"], is_dynamic)
        assert video is not None
        sequence = current["sequence_index"]
        if consecutive and is_dynamic:
            accumulator = seq_metrics.setdefault(sequence, MetricAccumulator())
            rows = accumulator.update_temporal(
                current["pred"], previous["pred"], current["gt"], previous["gt"], current["flow"],
                current["valid"], valid_prev=previous["valid"])
            record(sequence, True, rows, add_to_sequence=False)
        elif consecutive:
            flicker = per_image_flicker(current["pred"], previous["pred"], current["gt"],
                                        current["valid"], previous["valid"])
            record(sequence, False, [{"flicker_frame_rel": float(v)} for v in flicker])
        if not is_dynamic:
            # the latest earlier window at the same sweep phase: one sweep ago
            match = next((k for focus, k in reversed(video.phases)
                          if _same_phase(focus, current["focus"])), None)
            if match is not None:
                flicker = per_image_flicker(current["pred"], video.preds[match], current["gt"],
                                            current["valid"], video.valids[match])
                record(sequence, False, [{"flicker_sweep_rel": float(v)} for v in flicker])
                # windows before the match can never be the latest match again
                video.phases = [(f, k) for f, k in video.phases if k > match]
            video.phases.append((current["focus"], len(video.preds)))
        video.preds.append(current["pred"])
        video.gts.append(current["gt"])
        video.valids.append(current["valid"])
        video.flows.append(current["flow"].half())
        previous = current
    finish(video)
