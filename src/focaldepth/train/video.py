"""Training on video clips: the LightningModule used when the data adapter serves clips
(:class:`focaldepth.video.FocusSweepClips`, ``serves_clips = True``).

A clip holds ``N = window + T - 1`` consecutive frames with per-frame ground truth; here
``T = 2`` (the last two frames ``t - 1`` and ``t``), so ``window = N - 1``. The model runs over
the clip with :func:`focaldepth.video.predict_clip` (each window of ``window`` frames, or a
stream model stepped through the clip), which gives the depth of the last ``T`` frames and,
for a model with a pose net, the pose of each frame to the one before.

Each configured loss term then sees one of two views of the clip:

* **window view** (per-image terms: ``sweep_l1``, ``masked_l1``, ``silog``, ...): ``B * T``
  items, each the window ending at one of the ``T`` frames with that frame's ground truth,
  masked to the window's focus range (``data.valid_range_margin``) exactly as single-window
  training; so the supervised loss is the same whatever the model;
* **sequence view** (:data:`SEQUENCE_TERMS`: ``temporal``, ``geometry``, ``photometric``,
  ``defocus``), the sequence convention of :mod:`focaldepth.losses`: ``outputs['depth_seq']``
  ``(B, T, 1, H, W)``, ``outputs['pose_seq']`` ``(B, T, 4, 4)`` camera-to-world chained from
  the pose net's frame-to-previous motions (frame ``t - 1`` is the world), and
  ``batch['frames']``, ``focus_distance_m``, ``depth_seq``, ``valid_seq``, ``flow_seq``,
  ``aif_seq``, ``intrinsics`` (with the crop's principal point) of the ``T`` frames.
"""

from __future__ import annotations

from typing import Any

import torch

from focaldepth.models.video_depth import pose_matrix
from focaldepth.train.masks import mask_to_focus_range
from focaldepth.train.module import DepthTrainingModule
from focaldepth.video import predict_clip

#: Loss terms that compare the frames of a clip (they get the sequence view).
SEQUENCE_TERMS = frozenset({"temporal", "geometry", "photometric", "defocus"})
#: Frames of a clip whose depth is predicted and compared.
CLIP_REFERENCES = 2


def chain_poses(pose_t_to_prev: torch.Tensor) -> torch.Tensor:
    """``(B, T, 6)`` frame-to-previous motions -> ``(B, T, 4, 4)`` camera-to-world poses with
    frame 0 as the world: P_0 = I, P_k = P_{k-1} @ T_{k -> k-1} (frame 0's own motion to the
    frame before the clip is not used)."""
    batch, count = pose_t_to_prev.shape[:2]
    poses = [torch.eye(4, dtype=pose_t_to_prev.dtype, device=pose_t_to_prev.device).repeat(batch, 1, 1)]
    for k in range(1, count):
        poses.append(poses[-1] @ pose_matrix(pose_t_to_prev[:, k]))
    return torch.stack(poses, dim=1)


def clip_views(clip_outputs: dict[str, torch.Tensor], clip: dict[str, Any],
               margin: float | None) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
    """``((window_outputs, window_batch), (sequence_outputs, sequence_batch))`` of a clip
    batch and the model's :func:`predict_clip` outputs (see the module docstring)."""
    frames, focus = clip["frames"], clip["focus_distance_m"]
    count = clip_outputs["depth_m"].shape[1]
    window = frames.shape[1] - count + 1
    per_window = []
    for k, end in enumerate(range(window, frames.shape[1] + 1)):
        view = {"frames": frames[:, end - window:end], "focus_distance_m": focus[:, end - window:end],
                "camera": clip["camera"], "depth_m": clip["depth_m"][:, end - 1],
                "valid": clip["valid"][:, end - 1], "aif": clip["aif"][:, end - 1]}
        per_window.append(mask_to_focus_range(view, margin))
    window_batch = {key: torch.cat([v[key] for v in per_window], dim=0) for key in per_window[0]}
    window_outputs = {"depth_m": clip_outputs["depth_m"].transpose(0, 1).flatten(0, 1)}
    last = slice(window - 1, frames.shape[1])
    sequence_batch = {
        "frames": frames[:, last], "focus_distance_m": focus[:, last], "camera": clip["camera"],
        "depth_seq": clip["depth_m"][:, last],
        "valid_seq": torch.stack([v["valid"] for v in per_window], dim=1),
        "flow_seq": clip["flow"][:, last], "aif_seq": clip["aif"][:, last],
        "is_dynamic": clip["is_dynamic"]}
    if "intrinsics" in clip:
        sequence_batch["intrinsics"] = clip["intrinsics"]
    sequence_outputs = {"depth_seq": clip_outputs["depth_m"]}
    if "pose_t_to_prev" in clip_outputs:
        sequence_outputs["pose_seq"] = chain_poses(clip_outputs["pose_t_to_prev"])
    return (window_outputs, window_batch), (sequence_outputs, sequence_batch)


class VideoTrainingModule(DepthTrainingModule):
    """:class:`DepthTrainingModule` on clips (see the module docstring)."""

    def _clip_loss(self, clip: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                          dict[str, Any]]:
        window = clip["frames"].shape[1] - CLIP_REFERENCES + 1
        if window < 1:
            raise ValueError(f"a training clip needs at least {CLIP_REFERENCES} frames "
                             "(data.num_frames)")
        outputs = predict_clip(self.model, clip["frames"], clip["focus_distance_m"],
                               clip["camera"], window)
        window_view, sequence_view = clip_views(outputs, clip, self.config.data.valid_range_margin)
        total, parts = None, {}
        for key, weight, term in self.loss.terms:
            view = sequence_view if term.name in SEQUENCE_TERMS else window_view
            value = term(*view)
            parts[key] = value.detach()
            total = weight * value if total is None else total + weight * value
        return total, parts, window_view

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        total, parts, _ = self._clip_loss(batch)
        return self._log_training(total, parts, self._batch_size(batch))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        total, parts, (outputs, frames) = self._clip_loss(batch)
        self._log_validation(total, parts, outputs, frames, self._batch_size(batch))


def training_module_class(dataset_class: Any) -> type[DepthTrainingModule]:
    """The LightningModule for a data adapter: clips get :class:`VideoTrainingModule`."""
    return VideoTrainingModule if getattr(dataset_class, "serves_clips", False) else DepthTrainingModule
