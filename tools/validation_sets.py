"""Shared by tools/compare_on_validation.py and tools/ablate_extrapolation.py: the inputs of
quick model comparisons and how they are scored.

* :func:`dfd_sweeps` -- DFD indoor scenes (``../shared``) seen by the real DSLR (35 mm f/2.8),
  with cover / inner / wide 5-frame sweeps synthesised as in :mod:`focaldepth.experiments.rgbd_eval`,
  downsampled 2x (about the working resolution of ``focaldepth predict``);
* :func:`dataset_stacks` -- every ``step``-th item of a generated folder (one focus ramp);
* :func:`score` / :func:`report` -- mean AbsRel, RMSE and δ<1.25 per method.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from focaldepth.data import FocusSweepDataset
from focaldepth.experiments import rgbd_eval
from focaldepth.metrics import absrel, depth_metrics

Stack = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # frames, focus, camera, depth, valid
PROTOCOLS = ("cover", "inner", "wide")


def dfd_sweeps(every: int, offset: int = 0, num_frames: int = 5, scale: float = 0.5) -> Iterator[Stack]:
    """Scenes ``pairs[offset::every]`` of DFD indoor, each with every sweep protocol, rendered
    at full resolution and resized by ``scale`` (:func:`rgbd_eval.dfd_validation_sweeps`)."""
    for _, _, *stack in rgbd_eval.dfd_validation_sweeps(every, offset, num_frames, scale):
        yield tuple(stack)


def dataset_stacks(root: str, num_frames: int, step: int) -> Iterator[Stack]:
    dataset = FocusSweepDataset(root, num_frames=num_frames, sample="ramp", random_crop=False)
    for index in range(0, len(dataset), step):
        item = dataset[index]
        yield (item["frames"][None], item["focus_distance_m"][None], item["camera"][None], item["depth_m"][None],
               item["valid"][None])


def stacks(spec: str) -> Iterator[Stack]:
    """``dfd:EVERY:OFFSET`` or ``FOLDER:FRAMES[:STEP]`` (STEP default 3)."""
    parts = spec.split(":")
    if parts[0] == "dfd":
        return dfd_sweeps(int(parts[1]), int(parts[2]) if len(parts) > 2 else 0)
    return dataset_stacks(parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else 3)


def score(results: dict[str, list], name: str, depth_m: torch.Tensor, stack: Stack) -> None:
    """Append AbsRel, RMSE, δ<1.25 of ``depth_m`` (upsampled to the ground truth) to ``results[name]``."""
    gt, valid = stack[3], stack[4]
    if depth_m.shape[-2:] != gt.shape[-2:]:
        depth_m = F.interpolate(depth_m, size=gt.shape[-2:], mode="bilinear")
    metrics = depth_metrics(depth_m, gt, valid)
    results.setdefault(name, []).append([float(metrics[k]) for k in ("absrel", "rmse", "delta1")])


def report(title: str, results: dict[str, list]) -> None:
    print(title, flush=True)
    for name, rows in results.items():
        mean = np.mean(rows, axis=0)
        print(f"  {name[-30:]:30s} AbsRel {mean[0]:.3f} RMSE {mean[1]:.3f} d1 {mean[2]:.3f}", flush=True)


def scores_inside_beyond(pred: torch.Tensor, stack: Stack) -> list[float]:
    """[AbsRel, δ<1.25, AbsRel inside the swept focus range, AbsRel beyond it (nearer than the
    nearest focus, or up to twice the farthest; nan where under 1 % of the valid pixels are)]."""
    frames, focus, camera, gt, valid = stack
    if pred.shape[-2:] != gt.shape[-2:]:
        pred = F.interpolate(pred, size=gt.shape[-2:], mode="bilinear")
    near, far = float(focus.min()), float(focus.max())
    inside = (gt >= near) & (gt <= far)
    beyond = ((gt < near) | (gt > far)) & (gt <= 2 * far)
    metrics = depth_metrics(pred, gt, valid)
    ins = float(absrel(pred, gt, valid & inside)[0]) if (valid & inside).any() else float("nan")
    enough = (valid & beyond).sum() > 0.01 * valid.sum()
    out = float(absrel(pred, gt, valid & beyond)[0]) if enough else float("nan")
    return [float(metrics["absrel"]), float(metrics["delta1"]), ins, out]
