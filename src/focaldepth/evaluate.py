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

The code lives in :mod:`focaldepth.evaluation`, one module per concern: ``models`` (resolving
the checkpoint, the predictor wrapper), ``data`` (test sets, consecutive windows, flow
alignment), ``loop`` (the accuracy and temporal passes) and ``report`` (metrics.json,
metrics.md, CSV, plots). This module is the public entry, :func:`evaluate`, and re-exports
their names, so ``from focaldepth.evaluate import ...`` keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from focaldepth.evaluation.data import (  # noqa: F401 (re-exported)
    ALIGNMENT_METHOD,
    ConsecutiveWindows,
    FlowAlignedFrames,
    _batched,
    _scalar,
    flow_align_frames,
    open_test_set,
    scene_depth_ranges,
)
from focaldepth.evaluation.loop import (  # noqa: F401 (re-exported)
    DEPTH_BINS_M,
    NORMALISED_BINS,
    NORMALISED_PREFIX,
    ErrorByDepth,
    EvaluationResult,
    SheetSample,
    _PendingSequence,
    _same_phase,
    _sequence_range,
    _split_prediction,
    _temporal_pass,
    _Video,
    evaluate_dataset,
)
from focaldepth.evaluation.models import (  # noqa: F401 (re-exported)
    CLASSICAL,
    Batch,
    ModelUnderTest,
    Predictor,
    _pad_to_multiple,
    _sha256,
    _tiled,
    load_model_under_test,
    model_predictor,
    resolve_checkpoint,
)
from focaldepth.evaluation.report import (  # noqa: F401 (re-exported)
    CONFIDENCE_COLUMNS,
    FLICKER_COLUMNS,
    TABLE_COLUMNS,
    TEMPORAL_COLUMNS,
    VIDEO_COUNTS,
    _clean,
    build_summary,
    format_value,
    markdown_table,
    plot_error_vs_depth,
    plot_sheet,
    results_markdown,
    split_metrics,
    write_outputs,
    write_per_sequence_csv,
)


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
