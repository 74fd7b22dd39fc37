"""The test data of an evaluation: a deterministic view of a generated test folder or of a
published dataset (``NAME:PATH``), every consecutive window of its sequences for the temporal
pass, the scenes' depth ranges, items as batches of one, and the optical-flow alignment that
``focaldepth predict`` applies to each window (``--align``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from focaldepth.errors import UserError
from focaldepth.evaluation.models import Batch


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


# --- optical-flow alignment (what ``focaldepth predict`` does to each window) ---------------

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
