"""``focaldepth evaluate``: run any model over a held-out test set and report depth metrics.

The model is called only through the common interface ``model(frames, focus_distance_m,
camera)["depth_m"]`` (a stream model gets the stack in capture order, a single-image model
picks its last frame itself), so the same code scores every zoo model, a training checkpoint
and the classical baseline.

Two passes over the test folder:

1. **Accuracy.** One focal stack per test item (``num_frames`` frames of increasing focus, as
   in training), compared with the ground truth of its last frame on valid pixels, with the
   metrics of :mod:`focaldepth.metrics` in metres *and* on depth normalised to [0, 1] by the
   sequence's depth range. The range is the minimum and maximum valid ground-truth depth over
   all evaluated items of the sequence (one range per clip, never per frame), so a
   normalised MSE of 1e-3 means an RMS error of ~3 % of that sequence's depth span: the
   seed's reporting convention for its Blender scenes.
2. **Temporal stability.** The model runs on every window of ``num_frames`` consecutive
   frames of every sequence. On dynamic sequences the depth of window t and window t-1 are
   compared along the ground-truth flow of frame t (see
   :func:`focaldepth.metrics.temporal_stability`; ``temporal_err_rel`` is the issue's
   frame-to-frame error along the flow, ``temporal_err_rel_pixel`` the same per pixel
   without warping). Every sequence, static or dynamic, gets the TAE of Video Depth Anything
   (:func:`focaldepth.metrics.temporal_alignment_error`: ``tae`` after the paper's per-video
   scale-shift alignment in disparity, ``tae_metric`` on the depth as predicted; one value per
   video). Static sequences get flicker (:func:`focaldepth.metrics.per_image_flicker`):
   ``flicker_frame_rel`` between consecutive windows and ``flicker_sweep_rel`` between
   windows one sweep apart at the same sweep phase (same focus distances). docs/temporal.md
   has the definitions.

With ``align=True`` every stack of both passes is first warped onto its last (current) frame
with the dense optical flow of ``focaldepth predict`` (:class:`focaldepth.predict.FlowAligner`,
OpenCV DIS), exactly as :class:`~focaldepth.predict.StreamingPredictor` does before the model
sees a window: the numbers then measure what users of ``predict`` get on moving scenes. The
default (no alignment) feeds the raw window, which is how the committed tables were made.

Outputs in ``OUT`` (each written atomically): ``per_sequence.csv``, ``metrics.json``
(aggregates over images: all / static / dynamic; for a model that outputs
``"confidence"`` also a ``confidence`` section: sparsification curves, AUSE and the AbsRel of
the most confident half, see :func:`focaldepth.metrics.per_image_sparsification`), ``metrics.md``, ``error_vs_depth.png``
and ``sheet.png`` (inputs / prediction / ground truth / error for a few sequences).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from focaldepth.errors import UserError
from focaldepth.io.atomic import atomic_path, atomic_write_text
from focaldepth.metrics import (
    METRIC_NAMES,
    TEMPORAL_NAMES,
    VIDEO_NAMES,
    ConfidenceAccumulator,
    MetricAccumulator,
    per_image_flicker,
    temporal_alignment_error,
)
from focaldepth.train.masks import mask_to_focus_range

Batch = dict[str, Any]
#: ``batch -> depth_m (B, 1, H, W)``, or ``-> {"depth_m": ..., "confidence": ...}`` (the
#: confidence is optional; when given, metrics.json gets a ``confidence`` section).
Predictor = Callable[[Batch], "torch.Tensor | Mapping[str, torch.Tensor]"]

NORMALISED_PREFIX = "norm_"
#: Counts of the video metrics (MetricAccumulator.compute), in metrics.json's video_counts.
VIDEO_COUNTS = ("num_static_pairs", "num_sweep_pairs", "num_tae_videos")
CLASSICAL = "classical"
#: Metric-depth bins of the error-vs-depth plot: log-spaced over every depth a generated
#: scene can contain (0.05-10 m, with margin).
DEPTH_BINS_M = np.geomspace(0.02, 20.0, 41)
NORMALISED_BINS = np.linspace(0.0, 1.0, 21)
#: Columns of the markdown tables and their formats.
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("mse", "MSE", "{:.3g}"), ("rmse", "RMSE", "{:.3g}"), ("absrel", "AbsRel", "{:.3f}"),
    ("sqrel", "SqRel", "{:.3g}"), ("rmse_log", "RMSE-log", "{:.3f}"),
    ("delta1", "δ<1.25", "{:.2%}"), ("delta2", "δ<1.25²", "{:.2%}"),
    ("delta3", "δ<1.25³", "{:.2%}"), ("bumpiness", "bump", "{:.3g}"),
)


# --------------------------------------------------------------------------------------------
# models


def model_predictor(model: torch.nn.Module, device: str | torch.device = "cpu", *,
                    with_confidence: bool = False) -> Predictor:
    """Wrap a :class:`~focaldepth.models.base.DepthModel` as ``batch -> depth_m (B,1,H,W)``
    (with ``with_confidence``: ``batch -> {"depth_m", "confidence"}``, the confidence only if
    the model outputs one).

    Models that declare ``size_multiple_px`` (encoder-decoders that halve the resolution k
    times) get frames padded by edge replication up to the next multiple, and the depth
    cropped back, so every model can be scored on the same full frames. A model with a fixed
    ``image_size_px`` (fully connected layers) runs on tiles of that size, stitched."""
    model = model.to(device).eval()
    multiple = int(getattr(model, "size_multiple_px", 1) or 1)
    fixed_size = getattr(model, "image_size_px", None)

    def run(frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            outputs = model(frames.to(device), focus_distance_m.to(device), camera.to(device))
        depth = outputs["depth_m"].float().cpu()
        if with_confidence and outputs.get("confidence") is not None:
            # depth and confidence travel as two channels (tiles are stitched once)
            return torch.cat([depth, outputs["confidence"].float().cpu()], 1)
        return depth

    def predict(batch: Batch) -> torch.Tensor | dict[str, torch.Tensor]:
        frames, focus, camera = batch["frames"], batch["focus_distance_m"], batch["camera"]
        height, width = frames.shape[-2:]
        tile_h, tile_w = tuple(fixed_size) if fixed_size is not None else (multiple, multiple)
        frames = _pad_to_multiple(frames, tile_h, tile_w)
        if fixed_size is None or frames.shape[-2:] == tuple(fixed_size):
            maps = run(frames, focus, camera)[..., :height, :width]
        else:
            maps = _tiled(run, frames, focus, camera, tile_h, tile_w)[..., :height, :width]
        if not with_confidence:
            return maps
        return {"depth_m": maps[:, :1]} | ({"confidence": maps[:, 1:2]} if maps.shape[1] > 1
                                           else {})

    return predict


def _pad_to_multiple(frames: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Pad ``(B, S, C, H, W)`` frames at the bottom/right by edge replication."""
    height, width = frames.shape[-2:]
    pad_h, pad_w = (-height) % multiple_h, (-width) % multiple_w
    if not (pad_h or pad_w):
        return frames
    flat = torch.nn.functional.pad(frames.flatten(0, 1), (0, pad_w, 0, pad_h), mode="replicate")
    return flat.unflatten(0, frames.shape[:2])


def _tiled(run: Callable[..., torch.Tensor], frames: torch.Tensor, focus_distance_m: torch.Tensor,
           camera: torch.Tensor, tile_h: int, tile_w: int) -> torch.Tensor:
    """Run a fixed-input-size model on non-overlapping tiles and stitch the depth maps (models
    with fully connected layers, e.g. LSTM-DDFF, see only ``image_size_px`` at a time)."""
    batch, slices, channels, height, width = frames.shape
    rows, cols = height // tile_h, width // tile_w
    tiles = frames.reshape(batch, slices, channels, rows, tile_h, cols, tile_w)
    tiles = tiles.permute(0, 3, 5, 1, 2, 4, 6).reshape(batch * rows * cols, slices, channels,
                                                       tile_h, tile_w)
    repeat = rows * cols
    depth = run(tiles, focus_distance_m.repeat_interleave(repeat, 0),
                camera.repeat_interleave(repeat, 0))
    maps = depth.shape[1]  # depth, and confidence when model_predictor asks for it
    depth = depth.reshape(batch, rows, cols, maps, tile_h, tile_w).permute(0, 3, 1, 4, 2, 5)
    return depth.reshape(batch, maps, height, width)


@dataclass
class ModelUnderTest:
    """A model to evaluate and how to describe it in the outputs."""

    model: torch.nn.Module
    source: str
    num_frames: int | None = None  # from the training config, if known
    description: dict[str, Any] = field(default_factory=dict)


def load_model_under_test(checkpoint: str, device: str = "cpu") -> ModelUnderTest:
    """``classical`` -> the classical DFF baseline; a ``.ckpt`` from ``focaldepth train`` or a
    ``.pt`` exported model file -> that model (no Lightning needed for either); the name of a
    model shipped in the package (``sweepnet_default``, as ``focaldepth predict --model``
    accepts) -> its file."""
    if checkpoint == CLASSICAL:
        from focaldepth.classical import ClassicalDFF

        model = ClassicalDFF()
        return ModelUnderTest(model=model, source=CLASSICAL, description={
            "name": CLASSICAL, "kwargs": {"window": model.window, "smooth": model.smooth,
                                          "measure": model.measure},
            "info": model.info.to_dict()})
    from focaldepth.train.checkpoint import load_trained_model

    path = resolve_checkpoint(checkpoint)
    loaded = load_trained_model(path, map_location=device)
    config = loaded.config or {}
    num_frames = (config.get("data") or {}).get("num_frames")
    model_section = dict(config.get("model") or {})
    info = getattr(loaded.model, "info", None)
    return ModelUnderTest(model=loaded.model, source=str(checkpoint), num_frames=num_frames,
                          description={"name": model_section.pop("name", type(loaded.model).__name__),
                                       "kwargs": model_section,
                                       "info": info.to_dict() if info is not None else None,
                                       "global_step": loaded.extra.get("global_step"),
                                       **({"file": str(path)} if str(path) != checkpoint else {}),
                                       # shipped weights get replaced: say which bytes were scored
                                       "sha256": _sha256(path)})


def _sha256(path: Path) -> str:
    import hashlib

    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def resolve_checkpoint(checkpoint: str) -> Path:
    """A checkpoint argument -> its file: an existing path as given, else the model of that name
    shipped in the package (``focaldepth/weights/NAME.pt``), else the path as given (so the
    loader reports the missing file by the name the user typed)."""
    path = Path(checkpoint)
    if path.is_file():
        return path
    from focaldepth.predict import shipped_weights_path

    shipped = Path(str(shipped_weights_path(checkpoint)))
    return shipped if shipped.is_file() else path


# --------------------------------------------------------------------------------------------
# data


def open_test_set(root: str | Path, *, num_frames: int, sample: str, split: str | None = None,
                  crop_size: int | None = None) -> Dataset:
    """A deterministic view of a generated test folder (centre crops; one focal stack per
    sequence for ``sample="ramp"``; every consecutive window of the dynamic sequences, in
    frame order, for ``sample="windows"``), or of a published dataset given as ``NAME:PATH``
    (:mod:`focaldepth.datasets`; its stacks are static, so no windows)."""
    from focaldepth.data import FocusSweepDataset
    from focaldepth.datasets import is_adapter_spec, open_adapter_test_set

    if is_adapter_spec(root):  # NAME:PATH of a published dataset (focaldepth.datasets)
        return open_adapter_test_set(root, num_frames=num_frames, sample=sample, split=split,
                                     crop_size=crop_size)
    root = Path(root)
    if not root.is_dir():
        raise UserError("test data folder does not exist", root)
    kwargs: dict[str, Any] = {"num_frames": num_frames, "crop_size": crop_size,
                              "random_crop": False, "seed": 0}
    if split is not None:
        kwargs["split"] = split
    if sample == "windows":
        return ConsecutiveWindows(FocusSweepDataset(root, sample="window", **kwargs))
    return FocusSweepDataset(root, sample=sample, **kwargs)


class ConsecutiveWindows(Dataset):
    """Every window of ``num_frames`` consecutive frames of each dynamic sequence (``motion=
    "dynamic"``; ``"static"``: each static one, ``"all"``: every one) of a
    :class:`focaldepth.data.FocusSweepDataset`, in frame order (the dataset itself serves one
    random window per sequence). Items gain ``frame_index``: the window's last frame."""

    MOTIONS = ("dynamic", "static", "all")

    def __init__(self, base: Dataset, motion: str = "dynamic") -> None:
        if not hasattr(base, "records") or not hasattr(base, "_frame_indices"):
            raise TypeError("ConsecutiveWindows needs a FocusSweepDataset (records, frame "
                            "selection)")
        if motion not in self.MOTIONS:
            raise ValueError(f"motion must be one of {self.MOTIONS}, got {motion!r}")
        self.base, self.motion = base, motion
        size = base.num_frames
        self.windows = [(item, stop) for item, record in enumerate(base.records)
                        if motion == "all" or bool(record["is_dynamic"]) == (motion == "dynamic")
                        for stop in range(size, record["num_frames"] + 1)]

    def __len__(self) -> int:
        return len(self.windows)

    def item_is_dynamic(self, index: int) -> bool:
        return bool(self.base.records[self.windows[index][0]]["is_dynamic"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item, stop = self.windows[index]
        frames = list(range(stop - self.base.num_frames, stop))
        # The dataset picks its frames in _frame_indices; pin them to this window.
        self.base._frame_indices = lambda rng, focus: frames
        try:
            out = self.base[item]
        finally:
            del self.base._frame_indices
        out["frame_index"] = stop - 1
        return out


def scene_depth_ranges(dataset: Dataset) -> dict[int, tuple[float, float]]:
    """``{sequence_index: (near_m, far_m)}`` from a generated dataset's records: the depth
    range each scene was built in (the range of its focus sweep)."""
    ranges = {}
    for record in getattr(dataset, "records", []) or []:
        params = record.get("params") or {}
        if "near_m" in params and "far_m" in params and params["far_m"] > params["near_m"]:
            ranges[int(record["index"])] = (float(params["near_m"]), float(params["far_m"]))
    return ranges


def _batched(item: Mapping[str, Any]) -> Batch:
    """One dataset item as a batch of one (tensors get a leading dim, scalars become (1,))."""
    out: Batch = {}
    for key, value in item.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.unsqueeze(0)
        elif isinstance(value, np.ndarray):
            out[key] = torch.from_numpy(value).unsqueeze(0)
        elif isinstance(value, (bool, int, float)):
            out[key] = torch.tensor([value])
        else:
            out[key] = [value]
    return out


def _scalar(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.reshape(-1)[0].item()
    return value


# --------------------------------------------------------------------------------------------
# optical-flow alignment (what ``focaldepth predict`` does to each window)

#: How ``--align`` aligns, for metrics.json.
ALIGNMENT_METHOD = ("each frame warped onto the stack's last frame with OpenCV DIS optical flow "
                    "(focaldepth.predict.FlowAligner, as StreamingPredictor does), on 8-bit frames")


def flow_align_frames(frames: torch.Tensor, aligner: Any | None = None) -> torch.Tensor:
    """A stack ``(S, C, H, W)`` in [0, 1] (C = 3 or 1) with every frame warped onto the last one.

    Mirrors :meth:`focaldepth.predict.StreamingPredictor.push` and ``_aligned_window``: the
    frames are 8-bit (the generated data are stored as uint8, so this is lossless), the flow
    runs on their OpenCV grey conversion, and the 8-bit colour frame is resampled by
    :meth:`focaldepth.predict.FlowAligner.align`; the last frame is passed through unchanged.
    ``aligner`` defaults to a fresh :class:`~focaldepth.predict.FlowAligner` (DIS is stateless
    between calls, so one aligner can serve a whole evaluation)."""
    import cv2

    from focaldepth.predict import FlowAligner

    if frames.ndim != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(f"flow_align_frames: expected frames (S, 3 or 1, H, W), got "
                         f"{tuple(frames.shape)}")
    aligner = aligner or FlowAligner()
    rgb8 = frames.mul(255.0).round().clamp(0, 255).to(torch.uint8)
    rgb8 = rgb8.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().numpy()
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in rgb8]
    aligned = [aligner.align(gray[-1], gray[k], rgb8[k]) for k in range(len(rgb8) - 1)]
    aligned.append(rgb8[-1])
    out = torch.from_numpy(np.stack(aligned)).permute(0, 3, 1, 2).float().div(255.0)
    return out[:, :frames.shape[1]].to(frames.dtype).contiguous()


class FlowAlignedFrames(Dataset):
    """A test set whose items' ``frames`` are flow-aligned onto their last frame
    (:func:`flow_align_frames`); every other key and attribute (``records``,
    ``item_is_dynamic``, ...) is the wrapped dataset's.

    Static sequences are aligned too, on purpose: ``predict`` cannot know a scene is static and
    runs the flow on every window, so whatever DIS makes of frames that differ only in focus
    (in-focus detail appearing and vanishing reads as small spurious motion: about 1/255 mean
    change on the tiny test scenes) is part of what users get."""

    def __init__(self, base: Dataset) -> None:
        from focaldepth.predict import FlowAligner

        self.base = base
        self.aligner = FlowAligner()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[index])
        item["frames"] = flow_align_frames(item["frames"], self.aligner)
        return item

    def __getattr__(self, name: str) -> Any:
        if name == "base":  # not set yet (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)


# --------------------------------------------------------------------------------------------
# accumulation


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


def _item_is_dynamic(dataset: Dataset, index: int) -> bool | None:
    lookup = getattr(dataset, "item_is_dynamic", None)
    return bool(lookup(index)) if callable(lookup) else None


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


# --------------------------------------------------------------------------------------------
# outputs


def _clean(value: Any) -> Any:
    """JSON-safe: nan/inf -> None, tensors/numpy -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (torch.Tensor, np.generic)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def split_metrics(aggregate: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Aggregated accumulator output -> ``{"metres": ..., "normalised": ..., "temporal": ...,
    "counts": ..., "video_counts": ...}``."""
    # flicker window pairs of static sequences and videos with a TAE (only when measured)
    video_counts = {name: aggregate[name] for name in VIDEO_COUNTS if name in aggregate}
    return {
        "metres": {name: aggregate[name] for name in METRIC_NAMES if name in aggregate},
        "normalised": {name: aggregate[NORMALISED_PREFIX + name] for name in METRIC_NAMES
                       if NORMALISED_PREFIX + name in aggregate},
        "temporal": {name: aggregate[name] for name in TEMPORAL_NAMES + VIDEO_NAMES
                     if name in aggregate},
        "counts": {"num_images": aggregate.get("num_images", 0),
                   "num_pairs": aggregate.get("num_pairs", 0)},
        **({"video_counts": video_counts} if video_counts else {}),
    }


def format_value(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def markdown_table(rows: Sequence[tuple[str, Mapping[str, Any]]],
                   columns: Sequence[tuple[str, str, str]] = TABLE_COLUMNS,
                   first_header: str = "") -> str:
    """A markdown table: one row per (label, metrics) and one column per (key, header, fmt)."""
    lines = ["| " + " | ".join([first_header] + [header for _, header, _ in columns]) + " |",
             "|" + "---|" * (len(columns) + 1)]
    for label, metrics in rows:
        cells = [format_value(metrics.get(key), fmt) for key, _, fmt in columns]
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines) + "\n"


TEMPORAL_COLUMNS = (("temporal_err_m", "flow-aligned Δ error (m)", "{:.3g}"),
                    ("temporal_err_rel", "rel. Δ error", "{:.3g}"),
                    ("temporal_change_pred_rel", "pred. rel. change", "{:.3g}"),
                    ("temporal_change_gt_rel", "GT rel. change", "{:.3g}"),
                    ("temporal_coverage", "coverage", "{:.0%}"),
                    ("temporal_err_rel_pixel", "rel. Δ error per pixel (no warp)", "{:.3g}"),
                    ("tae", "TAE (aligned)", "{:.3g}"),
                    ("tae_metric", "TAE (metric)", "{:.3g}"))
FLICKER_COLUMNS = (("flicker_frame_rel", "frame-to-frame", "{:.3g}"),
                   ("flicker_sweep_rel", "sweep-to-sweep, same phase", "{:.3g}"),
                   ("num_static_pairs", "window pairs", "{:d}"),
                   ("num_sweep_pairs", "sweep pairs", "{:d}"))


CONFIDENCE_COLUMNS = (("absrel_all", "AbsRel all", "{:.3f}"),
                      ("absrel_top50", "AbsRel most confident 50 %", "{:.3f}"),
                      ("absrel_oracle_top50", "AbsRel best 50 % (oracle)", "{:.3f}"),
                      ("ause_absrel", "AUSE AbsRel", "{:.3f}"),
                      ("aurg_absrel", "AURG AbsRel", "{:.3f}"),
                      ("ause_rmse", "AUSE RMSE (m)", "{:.3g}"))


def results_markdown(summary: Mapping[str, Any]) -> str:
    """The ``metrics.md`` of one evaluation."""
    groups = [("all", summary["all"])] + [(k, summary["by_motion"][k])
                                          for k in ("static", "dynamic") if k in summary["by_motion"]]
    counts = ", ".join(f"{name}: {g['counts']['num_images']} stacks" for name, g in groups)
    parts = [f"# Evaluation of `{summary['model']['source']}` on `{summary['data']['root']}`\n",
             (f"{summary['protocol']['num_frames']}-frame focal stacks; {counts}. Metrics on "
              "valid pixels, per image then averaged over images. "
              + ("Frames flow-aligned onto each stack's last frame as `focaldepth predict` does "
                 "(OpenCV DIS).\n" if summary["protocol"].get("aligned") else
                 "Raw frames (no optical-flow alignment).\n")),
             "## Depth in metres\n", markdown_table([(n, g["metres"]) for n, g in groups]),
             "\n## Depth normalised to [0, 1] by each sequence's depth range\n",
             markdown_table([(n, g["normalised"]) for n, g in groups])]
    temporal = [(n, g["temporal"]) for n, g in groups
                if any(k in g["temporal"] for k, _, _ in TEMPORAL_COLUMNS)]
    if temporal:
        heading = ("\n## Temporal stability (consecutive windows, along ground-truth flow; "
                   "TAE per video)\n")
        parts += [heading, markdown_table(temporal, TEMPORAL_COLUMNS)]
    flicker = [(n, {**g["temporal"], **g.get("video_counts", {})}) for n, g in groups
               if "flicker_frame_rel" in g["temporal"] or "flicker_sweep_rel" in g["temporal"]]
    if flicker:
        parts += ["\n## Flicker on static scenes (mean |p_t - p_ref| / g_t)\n",
                  markdown_table(flicker, FLICKER_COLUMNS)]
    if summary.get("confidence"):
        conf = summary["confidence"]
        rows = [("all", conf)] + [(k, conf["by_motion"][k]) for k in ("static", "dynamic")
                                  if k in conf.get("by_motion", {})]
        heading = (f"\n## Confidence (sparsification, {conf['steps']} steps; per image, then "
                   "mean over images)\n")
        parts += [heading, markdown_table(rows, CONFIDENCE_COLUMNS)]
    return "\n".join(parts)


def write_per_sequence_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    head = ["sequence_index", "is_dynamic", "depth_min_m", "depth_max_m", "num_images", "num_pairs"]
    metric_columns = (list(METRIC_NAMES) + [NORMALISED_PREFIX + n for n in METRIC_NAMES]
                      + list(TEMPORAL_NAMES) + list(VIDEO_NAMES))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=head + metric_columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if _clean(row.get(key)) is None else row.get(key))
                         for key in head + metric_columns})
    return atomic_write_text(path, buffer.getvalue())


def plot_error_vs_depth(path: Path, by_depth: Mapping[str, list[float]],
                        by_normalised: Mapping[str, list[float]], title: str) -> Path:
    """Two panels: RMSE and AbsRel against metric GT depth (log axis); RMSE against normalised
    depth. Bins with no pixel are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    centre, count = np.array(by_depth["centre"]), np.array(by_depth["count"])
    has = count > 0
    left.plot(centre[has], np.array(by_depth["rmse"])[has], "o-", ms=3, label="RMSE (m)")
    left.plot(centre[has], np.array(by_depth["mae"])[has], "s-", ms=3, label="mean |error| (m)")
    left.set_xscale("log")
    left.set_xlabel("ground-truth depth (m)")
    left.set_ylabel("error (m)")
    twin = left.twinx()
    twin.plot(centre[has], np.array(by_depth["absrel"])[has], "^--", ms=3, color="tab:red",
              label="AbsRel")
    twin.set_ylabel("AbsRel", color="tab:red")
    left.legend(loc="upper left", fontsize=8)
    left.grid(alpha=0.3)
    centre_n, count_n = np.array(by_normalised["centre"]), np.array(by_normalised["count"])
    has_n = count_n > 0
    right.plot(centre_n[has_n], np.array(by_normalised["rmse"])[has_n], "o-", ms=3)
    right.set_xlabel("ground-truth depth, normalised per sequence")
    right.set_ylabel("RMSE (normalised)")
    right.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path


def plot_sheet(path: Path, samples: Sequence[SheetSample], title: str) -> Path | None:
    """One row per sequence: the input frames (with focus distances), prediction, ground truth
    (same colour range: the sequence's valid GT range) and |error| (invalid pixels grey)."""
    if not samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_frames = max(s.frames.shape[0] for s in samples)
    columns = num_frames + 3
    figure, axes = plt.subplots(len(samples), columns, figsize=(1.9 * columns, 2.0 * len(samples)),
                                dpi=90, squeeze=False)
    for row, sample in zip(axes, samples):
        for axis in row:
            axis.set_axis_off()
        for s in range(sample.frames.shape[0]):
            image = sample.frames[s].permute(1, 2, 0).clamp(0, 1).numpy()
            row[s].imshow(image if image.shape[2] == 3 else image[..., 0], cmap="gray")
            row[s].set_title(f"F={float(sample.focus_distance_m[s]):.3g} m", fontsize=7)
        gt_valid = sample.gt_m[sample.valid]
        low, high = (float(gt_valid.min()), float(gt_valid.max())) if gt_valid.numel() else (0, 1)
        pred_axis, gt_axis, err_axis = row[num_frames], row[num_frames + 1], row[num_frames + 2]
        pred_axis.imshow(sample.pred_m.numpy(), cmap="turbo_r", vmin=low, vmax=high)
        pred_axis.set_title("prediction", fontsize=7)
        gt_shown = np.ma.masked_where(~sample.valid.numpy(), sample.gt_m.numpy())
        depth_image = gt_axis.imshow(gt_shown, cmap="turbo_r", vmin=low, vmax=high)
        gt_axis.set_title("ground truth (m)", fontsize=7)
        figure.colorbar(depth_image, ax=gt_axis, fraction=0.046, pad=0.02).ax.tick_params(
            labelsize=6)
        error = np.ma.masked_where(~sample.valid.numpy(), (sample.pred_m - sample.gt_m).abs().numpy())
        cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.6")
        shown = err_axis.imshow(error, cmap=cmap, vmin=0, vmax=max(1e-6, 0.25 * (high - low)))
        err_axis.set_title("|error| (m)", fontsize=7)
        figure.colorbar(shown, ax=err_axis, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        row[0].text(-0.08, 0.5, f"seq {sample.sequence_index}", transform=row[0].transAxes,
                    rotation=90, va="center", ha="right", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path


def build_summary(result: EvaluationResult, *, model: Mapping[str, Any], data: Mapping[str, Any],
                  protocol: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metrics.json`` content."""
    return _clean({
        "model": dict(model), "data": dict(data), "protocol": dict(protocol),
        "all": split_metrics(result.overall),
        "by_motion": {k: split_metrics(v) for k, v in result.by_motion.items()},
        "num_sequences": len(result.per_sequence), "num_items": result.num_items,
        "seconds": result.seconds,
        "error_by_depth_m": result.error_by_depth_m,
        "error_by_normalised_depth": result.error_by_normalised_depth,
        # only for models that output a confidence: how well it ranks the errors (metres)
        **({"confidence": {**result.confidence["all"],
                           "by_motion": {k: v for k, v in result.confidence.items()
                                         if k != "all"}}}
           if result.confidence.get("all") else {}),
    })


def write_outputs(out_dir: str | Path, result: EvaluationResult,
                  summary: Mapping[str, Any]) -> dict[str, Path]:
    """Write every output file of an evaluation (atomically) and return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{summary['model'].get('name', summary['model']['source'])} on {Path(summary['data']['root']).name}"
    paths = {
        "per_sequence": write_per_sequence_csv(out_dir / "per_sequence.csv", result.per_sequence),
        "metrics": atomic_write_text(out_dir / "metrics.json",
                                     json.dumps(summary, indent=2, allow_nan=False) + "\n"),
        "markdown": atomic_write_text(out_dir / "metrics.md", results_markdown(summary)),
        "error_vs_depth": plot_error_vs_depth(out_dir / "error_vs_depth.png",
                                              result.error_by_depth_m,
                                              result.error_by_normalised_depth, title),
    }
    sheet = plot_sheet(out_dir / "sheet.png", result.sheet, title)
    if sheet is not None:
        paths["sheet"] = sheet
    return paths


def evaluate(checkpoint: str, data: str | Path, out: str | Path, *, num_frames: int | None = None,
             device: str = "cpu", split: str | None = None, crop_size: int | None = None,
             temporal: bool = True, valid_range_margin: float | None = None,
             sheet_count: int = 4, progress: bool = True, align: bool = False) -> dict[str, Any]:
    """Evaluate a checkpoint (``.ckpt``/``.pt``, a shipped model name) or ``"classical"`` on a
    test folder and write the outputs into ``out``. ``num_frames`` defaults to the training
    config's (else 4). ``align`` warps every stack onto its last frame with predict's optical
    flow first (:class:`FlowAlignedFrames`). Returns the summary written to ``metrics.json``."""
    under_test = load_model_under_test(checkpoint, device)
    frames = num_frames or under_test.num_frames or 4
    accuracy_set = open_test_set(data, num_frames=frames, sample="ramp", split=split,
                                 crop_size=crop_size)
    temporal_set = open_test_set(data, num_frames=frames, sample="windows", split=split,
                                 crop_size=crop_size) if temporal else None
    if isinstance(temporal_set, ConsecutiveWindows):  # static clips too: flicker and TAE
        temporal_set = ConsecutiveWindows(temporal_set.base, motion="all")
    ranges = scene_depth_ranges(accuracy_set)
    if align:
        accuracy_set = FlowAlignedFrames(accuracy_set)
        temporal_set = FlowAlignedFrames(temporal_set) if temporal_set is not None else None
    result = evaluate_dataset(model_predictor(under_test.model, device, with_confidence=True),
                              accuracy_set,
                              temporal_set, sheet_count=sheet_count, depth_ranges=ranges,
                              valid_range_margin=valid_range_margin, progress=progress)
    normalisation = ("each sequence's scene depth range (near_m, far_m of the generator)"
                     if ranges else "each sequence's valid ground-truth depth range")
    summary = build_summary(
        result, model={"source": under_test.source, **under_test.description},
        data={"root": str(data), "split": split},
        protocol={"num_frames": frames, "sample": "ramp", "crop_size": crop_size,
                  "device": device, "normalisation": normalisation,
                  "valid_range_margin": valid_range_margin, "temporal": temporal,
                  "aligned": align, "alignment": ALIGNMENT_METHOD if align else None})
    write_outputs(out, result, summary)
    return summary
