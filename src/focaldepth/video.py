"""Video clips of generated focus sweeps, running any depth model over a clip, and scoring a
model on whole held-out videos (accuracy and temporal metrics).

**Clips.** :class:`FocusSweepClips` serves ``num_frames`` *consecutive* frames of a sequence
with the ground truth of *every* frame (depth, validity, all-in-focus image, the backward flow
of each frame to the one before). A static sequence is one focus ramp of a still scene; its
clips are read from the scene under *repeated* sweeps (the ramp played again from its first
frame, as the seed's video protocol does: the lens jumps back to near), so static and dynamic
clips have the same length. Replayed frames are identical images (the noise is not redrawn).

=============== =========================== ==========================================
key             shape                       meaning
=============== =========================== ==========================================
``frames``      (N, 3, H, W) float32        the clip's frames in [0, 1]
``focus_distance_m`` (N,)                   focus distance of each frame
``camera``      (3,)                        [focal_length_m, f_number, pixel_pitch_m]
``depth_m``     (N, 1, H, W)                depth of every frame
``valid``       (N, 1, H, W) bool           finite, positive depth
``aif``         (N, 3, H, W)                all-in-focus image of every frame
``flow``        (N, 2, H, W)                backward flow (dx, dy) of frame i to frame i-1
                                            (zeros: static, or the clip's first frame
                                            of a sequence)
``intrinsics``  (3, 3)                      pinhole intrinsics of the crop in pixels
``sequence_index``, ``is_dynamic``, ``frame_index`` (the clip's last frame in the played video)
=============== =========================== ==========================================

**Running a model over a clip** (:func:`predict_clip`): a stream model (``info.consumes ==
"stream"`` with ``step``) is stepped through the clip from a fresh state; any other model gets
every window of ``window`` consecutive frames. Either way the output is the depth of frames
``window - 1 ... N - 1`` (and the pose of the video model), so training and evaluation use the
same path for every model.

**Scoring** (:func:`evaluate_video`): each held-out sequence is played in full (a static one
twice, ``repeat_static``), every frame from ``window - 1`` on gets a depth map, and we report
per frame AbsRel and delta1 (every pixel with ground truth), and between consecutive frames
the flow-aligned frame-to-frame error of :func:`focaldepth.metrics.temporal_stability`
(``temporal_err_rel`` = mean |(p_t - p_{t-1}) - (g_t - g_{t-1})| / g_t along the ground-truth
flow, occluded pixels out), the unaligned per-pixel version (no flow: what a viewer sees), on
static scenes the frame-to-frame flicker, mean |p_t - p_{t-1}| / g_t (the truth does not
change; :func:`focaldepth.metrics.per_image_flicker` against the previous window), and Video
Depth Anything's TAE (:func:`focaldepth.metrics.temporal_alignment_error`, scale-and-shift
aligned over the video) when the metrics module has it; frame and pair metrics are averaged
over the video, then over sequences, separately for static and dynamic sequences. (Sweep-to-
sweep flicker is not reported: a replayed ramp repeats identical images, so a window model
repeats its output exactly.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from focaldepth.data import FocusSweepDataset
from focaldepth.errors import UserError
from focaldepth.generate.storage import FORMAT_NAME

#: Per-frame keys of a clip (first dimension N).
CLIP_KEYS = ("frames", "focus_distance_m", "depth_m", "valid", "aif", "flow")


class FocusSweepClips(FocusSweepDataset):
    """Consecutive-frame clips with per-frame ground truth (see the module docstring). Takes
    the same arguments as :class:`FocusSweepDataset` (``sample`` must be ``"window"``: a clip is
    a window); static sequences are replayed as repeated sweeps when ``repeat_static``."""

    #: Tells the training code to use :class:`focaldepth.train.video.VideoTrainingModule`.
    serves_clips = True

    def __init__(self, root: str | Path, num_frames: int = 11, crop_size: int | None = None,
                 split: str | None = None, sample: str = "window", random_crop: bool = True,
                 seed: int = 0, repeat_static: bool = True):
        if sample != "window":
            raise UserError(f"clips are consecutive frames: sample must be 'window', got {sample!r}",
                            root)
        self.repeat_static = bool(repeat_static)
        # The parent leaves out sequences shorter than num_frames; replayed static ones are not.
        super().__init__(root, num_frames=1, crop_size=crop_size, split=split, sample="window",
                         random_crop=random_crop, seed=seed)
        self.num_frames = num_frames
        keep = [r for r in self.records if self.played_length(r) >= num_frames]
        self.num_excluded += len(self.records) - len(keep)
        if not keep:
            raise UserError(f"no sequence has {num_frames} frames", self.root)
        self.records = keep

    def played_length(self, record: Mapping[str, Any]) -> int:
        """Frames of the video a sequence plays: a static ramp twice, a dynamic one as is."""
        frames = int(record["num_frames"])
        return frames if record["is_dynamic"] or not self.repeat_static else 2 * frames

    def clip_indices(self, item: int, stop: int | None = None,
                     rng: np.random.Generator | None = None) -> list[int]:
        """Played frame positions of the clip ending before ``stop`` (random if None)."""
        length = self.played_length(self.records[item])
        if stop is None:
            assert rng is not None
            stop = int(rng.integers(self.num_frames, length + 1))
        if not self.num_frames <= stop <= length:
            raise IndexError(f"clip end {stop} outside [{self.num_frames}, {length}]")
        return list(range(stop - self.num_frames, stop))

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, item])
        return self.read_clip(item, rng=rng)

    def read_clip(self, item: int, stop: int | None = None,
                  rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """The clip of sequence ``item`` ending before played frame ``stop`` (random when None),
        cropped randomly (``random_crop``, from ``rng``) or centrally."""
        record = self.records[item]
        rng = rng if rng is not None else np.random.default_rng([self.seed, self.epoch, item])
        played = self.clip_indices(item, stop, rng)
        frames_in_file = int(record["num_frames"])
        stored = [p % frames_in_file for p in played]
        with h5py.File(self.root / record["file"], "r") as file:
            if file.attrs.get("format") != FORMAT_NAME:
                raise UserError("not a focaldepth sequence file", self.root / record["file"])
            rows, cols = self._crop(rng, int(file.attrs["height"]), int(file.attrs["width"]))
            unique = sorted(set(stored))
            position = {index: k for k, index in enumerate(unique)}
            pick = [position[i] for i in stored]
            frames = file["frames"][unique, rows, cols][pick]
            depth = file["depth_m"][unique, rows, cols][pick]
            aif = file["aif"][unique, rows, cols][pick]
            focus = file["focus_distance_m"][()][stored]
            is_dynamic = bool(file.attrs["is_dynamic"])
            if is_dynamic:
                flow = file["flow"][unique, rows, cols][pick].astype(np.float32)
                flow[[k for k, p in enumerate(played) if p == 0]] = 0.0
            else:
                flow = np.zeros(depth.shape + (2,), np.float32)
            camera = [file.attrs["focal_length_m"], file.attrs["f_number"],
                      file.attrs["pixel_pitch_m"]]
            full_height, full_width = int(file.attrs["height"]), int(file.attrs["width"])
        # Pinhole intrinsics of the crop: the generator's principal point is the full frame's
        # centre ((W - 1) / 2, (H - 1) / 2), shifted by the crop's corner.
        focal_px = float(camera[0] / camera[2])
        intrinsics = torch.tensor([[focal_px, 0.0, (full_width - 1) / 2 - cols.start],
                                   [0.0, focal_px, (full_height - 1) / 2 - rows.start],
                                   [0.0, 0.0, 1.0]], dtype=torch.float32)
        depth_t = torch.from_numpy(np.ascontiguousarray(depth, np.float32))[:, None]
        return {
            "frames": torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0,
            "focus_distance_m": torch.from_numpy(focus.astype(np.float32)),
            "camera": torch.tensor(camera, dtype=torch.float32),
            "depth_m": depth_t,
            "valid": torch.isfinite(depth_t) & (depth_t > 0),
            "aif": torch.from_numpy(np.ascontiguousarray(aif)).permute(0, 3, 1, 2).float() / 255.0,
            "flow": torch.from_numpy(np.ascontiguousarray(flow)).permute(0, 3, 1, 2).contiguous(),
            "sequence_index": torch.tensor(record["index"], dtype=torch.int64),
            "is_dynamic": torch.tensor(is_dynamic),
            "frame_index": torch.tensor(played[-1], dtype=torch.int64),
            "intrinsics": intrinsics,
        }


# --- running models over clips -----------------------------------------------------------------


def is_stream_model(model: torch.nn.Module) -> bool:
    info = getattr(model, "info", None)
    return info is not None and info.consumes == "stream" and callable(getattr(model, "step", None))


def predict_clip(model: torch.nn.Module, frames: torch.Tensor, focus_distance_m: torch.Tensor,
                 camera: torch.Tensor, window: int) -> dict[str, torch.Tensor]:
    """Depth of the clip's frames ``window - 1 ... N - 1``: ``{"depth_m": (B, T, 1, H, W)}``
    with ``T = N - window + 1`` (plus ``"pose_t_to_prev"`` ``(B, T, 6)`` if the model outputs
    a pose). A stream model is stepped through all N frames from a fresh state (its first
    ``window - 1`` outputs are its warm-up); any other model sees each window of ``window``
    consecutive frames."""
    if frames.ndim != 5 or focus_distance_m.shape != frames.shape[:2]:
        raise ValueError(f"frames (B, N, C, H, W) and focus_distance_m (B, N) expected, got "
                         f"{tuple(frames.shape)} and {tuple(focus_distance_m.shape)}")
    count = frames.shape[1]
    if not 1 <= window <= count:
        raise ValueError(f"window {window} must be in [1, {count}] (the clip length)")
    if is_stream_model(model):
        state, depths = None, []
        for s in range(count):
            out, state = model.step(frames[:, s], focus_distance_m[:, s], camera, state)
            if s >= window - 1:
                depths.append(out["depth_m"])
        return {"depth_m": torch.stack(depths, dim=1)}
    outputs = [model(frames[:, stop - window:stop], focus_distance_m[:, stop - window:stop], camera)
               for stop in range(window, count + 1)]
    result = {"depth_m": torch.stack([o["depth_m"] for o in outputs], dim=1)}
    if all("pose_t_to_prev" in o for o in outputs):
        result["pose_t_to_prev"] = torch.stack([o["pose_t_to_prev"] for o in outputs], dim=1)
    return result


def _pad_frames(frames: torch.Tensor, multiple: int) -> torch.Tensor:
    height, width = frames.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return frames
    flat = torch.nn.functional.pad(frames.flatten(0, 1), (0, pad_w, 0, pad_h), mode="replicate")
    return flat.view(*frames.shape[:2], *flat.shape[1:])


def predict_video(model: torch.nn.Module, frames: torch.Tensor, focus_distance_m: torch.Tensor,
                  camera: torch.Tensor, window: int) -> torch.Tensor:
    """:func:`predict_clip` for evaluation on whole frames: ``(T, 1, H, W)`` for one video
    ``(N, C, H, W)``. Frames are padded to the model's size multiple; a model with a fixed
    input size (LSTM-DDFF) runs on tiles through :func:`focaldepth.evaluate.model_predictor`."""
    from focaldepth.evaluate import model_predictor

    height, width = frames.shape[-2:]
    batch = {"frames": frames[None], "focus_distance_m": focus_distance_m[None], "camera": camera[None]}
    with torch.inference_mode():
        if getattr(model, "image_size_px", None) is not None and not is_stream_model(model):
            predict = model_predictor(model)
            depths = [predict({k: (v[:, stop - window:stop] if k != "camera" else v)
                               for k, v in batch.items()})
                      for stop in range(window, frames.shape[0] + 1)]
            return torch.cat(depths, dim=0)
        padded = _pad_frames(batch["frames"], int(getattr(model, "size_multiple_px", 1) or 1))
        out = predict_clip(model, padded, batch["focus_distance_m"], batch["camera"], window)
    return out["depth_m"][0, ..., :height, :width].float()


# --- scoring whole videos ----------------------------------------------------------------------

#: Columns of a video evaluation, in table order.
VIDEO_METRICS = ("absrel", "delta1", "f2f_err_rel", "f2f_err_rel_unaligned", "flicker_rel",
                 "tae")


def _frame_accuracy(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> tuple[float, float]:
    mask = valid & torch.isfinite(gt) & (gt > 0)
    if not mask.any():
        return math.nan, math.nan
    p, g = pred[mask].clamp_min(1e-3), gt[mask]
    absrel = float(((p - g).abs() / g).mean())
    ratio = torch.maximum(p / g, g / p)
    return absrel, float((ratio < 1.25).float().mean())


def _tae_function() -> Any | None:
    """``focaldepth.metrics.temporal_alignment_error`` (Video Depth Anything's TAE) when the
    installed metrics module has it, else None (the column stays empty)."""
    from focaldepth import metrics

    return getattr(metrics, "temporal_alignment_error", None)


def score_video(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, flow: torch.Tensor,
                is_dynamic: bool) -> dict[str, float]:
    """Metrics of one video: ``pred``, ``gt``, ``valid`` ``(T, 1, H, W)``, ``flow`` ``(T, 2, H,
    W)`` (frame t -> t-1). Frame metrics averaged over frames; pair metrics over pairs; TAE
    (scale-and-shift aligned over the video, the paper's protocol) over the video."""
    from focaldepth.metrics import temporal_stability

    tae_fn = _tae_function()

    accuracy = [_frame_accuracy(p, g, v) for p, g, v in zip(pred, gt, valid)]
    row = {"absrel": float(np.nanmean([a for a, _ in accuracy])),
           "delta1": float(np.nanmean([d for _, d in accuracy]))}
    aligned, unaligned, flicker = [], [], []
    for t in range(1, pred.shape[0]):
        pair = temporal_stability(pred[t:t + 1], pred[t - 1:t], gt[t:t + 1], gt[t - 1:t],
                                  flow[t:t + 1], valid[t:t + 1], valid_prev=valid[t - 1:t])
        aligned.append(pair["temporal_err_rel"])
        zero = torch.zeros_like(flow[t:t + 1])
        both = valid[t:t + 1] & valid[t - 1:t]
        plain = temporal_stability(pred[t:t + 1], pred[t - 1:t], gt[t:t + 1], gt[t - 1:t], zero,
                                   both, gt_consistency_rel=math.inf)
        unaligned.append(plain["temporal_err_rel"])
        if not is_dynamic:
            mask = both & (gt[t:t + 1] > 0)
            change = (pred[t:t + 1] - pred[t - 1:t]).abs() / gt[t:t + 1].clamp_min(1e-3)
            flicker.append(float(change[mask].mean()) if mask.any() else math.nan)
    row["f2f_err_rel"] = float(np.nanmean(aligned)) if aligned else math.nan
    row["f2f_err_rel_unaligned"] = float(np.nanmean(unaligned)) if unaligned else math.nan
    row["flicker_rel"] = float(np.nanmean(flicker)) if flicker else math.nan
    row["tae"] = math.nan
    if tae_fn is not None and pred.shape[0] > 1:
        row["tae"] = float(tae_fn(list(pred[:, None]), list(gt[:, None]), list(flow[:, None]),
                                  list(valid[:, None])))
    return row


def evaluate_video(model: torch.nn.Module, root: str | Path, window: int, *,
                   split: str | None = None, limit: int | None = None,
                   crop_size: int | None = None) -> dict[str, Any]:
    """Score ``model`` on every sequence of a generated folder played as a video (see the
    module docstring), on whole frames or their centre ``crop_size`` square. Returns
    ``{"static": {...}, "dynamic": {...}, "all": {...}, "per_sequence": [...]}``: means over
    sequences of :data:`VIDEO_METRICS`."""
    model = model.eval()
    clips = FocusSweepClips(root, num_frames=window, crop_size=crop_size, split=split,
                            random_crop=False, seed=0)
    rows = []
    for item, record in enumerate(clips.records[:limit]):
        length = clips.played_length(record)
        saved, clips.num_frames = clips.num_frames, length
        try:
            video = clips.read_clip(item, stop=length)
        finally:
            clips.num_frames = saved
        pred = predict_video(model, video["frames"], video["focus_distance_m"], video["camera"],
                             window)
        keep = slice(window - 1, length)
        row = score_video(pred, video["depth_m"][keep], video["valid"][keep], video["flow"][keep],
                          bool(record["is_dynamic"]))
        rows.append({"sequence_index": int(record["index"]),
                     "is_dynamic": bool(record["is_dynamic"]), **row})
    summary: dict[str, Any] = {"per_sequence": rows, "window": window, "root": str(root),
                               "crop_size": crop_size, "num_sequences": len(rows)}
    for group, members in (("all", rows), ("static", [r for r in rows if not r["is_dynamic"]]),
                           ("dynamic", [r for r in rows if r["is_dynamic"]])):
        summary[group] = {name: (float(np.nanmean([m[name] for m in members]))
                                 if members and not all(math.isnan(m[name]) for m in members)
                                 else math.nan)
                          for name in VIDEO_METRICS}
        summary[group]["num_sequences"] = len(members)
    return summary
