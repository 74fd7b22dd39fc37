"""The outputs of an evaluation: ``metrics.json`` (:func:`build_summary`), ``metrics.md``
(:func:`results_markdown`, markdown tables), ``per_sequence.csv``, ``error_vs_depth.png`` and
``sheet.png``, written atomically by :func:`write_outputs`."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from focaldepth.evaluation.loop import NORMALISED_PREFIX, EvaluationResult, SheetSample
from focaldepth.io.atomic import atomic_path, atomic_write_text
from focaldepth.metrics import METRIC_NAMES, TEMPORAL_NAMES, VIDEO_NAMES

#: Counts of the video metrics (MetricAccumulator.compute), in metrics.json's video_counts.
VIDEO_COUNTS = ("num_static_pairs", "num_sweep_pairs", "num_tae_videos")
#: Columns of the markdown tables and their formats.
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("mse", "MSE", "{:.3g}"), ("rmse", "RMSE", "{:.3g}"), ("absrel", "AbsRel", "{:.3f}"),
    ("sqrel", "SqRel", "{:.3g}"), ("rmse_log", "RMSE-log", "{:.3f}"),
    ("delta1", "δ<1.25", "{:.2%}"), ("delta2", "δ<1.25²", "{:.2%}"),
    ("delta3", "δ<1.25³", "{:.2%}"), ("bumpiness", "bump", "{:.3g}"),
)


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
