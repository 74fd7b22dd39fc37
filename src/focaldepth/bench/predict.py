"""Streaming ``predict`` speed and memory: per-frame latency, frames/s and peak memory of
:class:`focaldepth.predict.StreamingPredictor` at 256x256, 640x360 and 1280x720.

The clip is a focus sweep (repeated 5-frame near-to-far ramps) of the renderer benchmark's
fixed RGB-D scene, rendered once before timing. Each frame is pushed as in ``focaldepth
predict`` (resize to the working resolution, optical-flow alignment of the window, network,
upsampling); file writing is not included. Memory is read twice, after the first ramp and
at the end of the clip: streaming must not grow with the length of the video.

``command`` cases time the WHOLE ``focaldepth predict`` (``predict_sequence``) on an H.264
clip of the same sweep: decoding, prediction, upsampling, writing the outputs and encoding
the side-by-side video, with 5- and 32-frame windows, and report frames/s end to end and
where the time went (``summary.json``'s ``command_timing_s``).

``stack`` cases time the whole command on a folder holding ONE sweep of N frames of that
scene (a tripod focal stack): every frame is estimated from the whole stack, which is
observed once (``StreamingPredictor.hold_stack_still``). Loading, the automatic alignment
check and writing every frame's outputs are included.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Sequence

import numpy as np
import torch

from focaldepth.bench import _status_kib, peak_memory, platform_info
from focaldepth.bench.reference import reference_workload
from focaldepth.bench.render import FAR_M, NEAR_M, benchmark_camera, benchmark_scene
from focaldepth.optics import Camera, repeated_ramps
from focaldepth.predict import DEFAULT_MAX_PIXELS, DEFAULT_PREDICT_MODEL, StreamingPredictor, load_model
from focaldepth.render import render_focal_stack

SIZES_HW: tuple[tuple[int, int], ...] = ((256, 256), (360, 640), (720, 1280))
# The previous, larger budget measured beside the default: 640x360 on a 427x240 grid.
LARGE_MAX_PIXELS = 102_400
FRAMES_PER_RAMP = 5


def stack_frames(height: int, width: int, num_frames: int) -> tuple[np.ndarray, list[float], Camera]:
    """uint8 frames (N, H, W, 3) of ONE near-to-far sweep of N frames, its focus list and camera."""
    image, depth = benchmark_scene(height, width)
    camera_t = benchmark_camera(max_coc_px=24.0 * width / 640)
    focus = [float(f) for f in repeated_ramps(NEAR_M, FAR_M, num_frames, 1)]
    with torch.inference_mode():
        stack = render_focal_stack(image, depth, torch.tensor([focus]), camera_t)[0]
    frames = (stack.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    focal_length_m, f_number, pitch_m = camera_t[0].tolist()
    return frames, focus, Camera(focal_length_m * 1e3, f_number, pitch_m * width * 1e3, width)


def sweep_clip(height: int, width: int, num_frames: int) -> tuple[np.ndarray, list[float], Camera]:
    """uint8 frames (N, H, W, 3) of a repeated focus ramp, its focus list and camera."""
    ramp, focus, camera = stack_frames(height, width, FRAMES_PER_RAMP)
    repeats = -(-num_frames // FRAMES_PER_RAMP)
    return np.concatenate([ramp] * repeats)[:num_frames], (focus * repeats)[:num_frames], camera


def _rss_mib() -> float:
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else float("nan")


def _case(model_name: str, height: int, width: int, num_frames: int,
          max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    frames, focus, camera = sweep_clip(height, width, num_frames)
    model = load_model(model_name)
    predictor = StreamingPredictor(model, camera, focus, height, width, max_pixels=max_pixels)
    latencies_s: list[float] = []
    rss_after_first_ramp = float("nan")
    with peak_memory() as memory:
        for index, (frame, focus_m) in enumerate(zip(frames, focus)):
            start = time.perf_counter()
            predictor.push(frame, focus_m)
            latencies_s.append(time.perf_counter() - start)
            if index == 2 * FRAMES_PER_RAMP - 1:
                rss_after_first_ramp = _rss_mib()
    steady = latencies_s[FRAMES_PER_RAMP:]  # after the window has filled
    median_s = statistics.median(steady)
    budget = "" if max_pixels == DEFAULT_MAX_PIXELS else f" --max-pixels {max_pixels}"
    return {"name": f"{width}x{height}{budget}", "width": width, "max_pixels": max_pixels, "height": height, "model": model_name,
            "working_hw": [predictor.work_h, predictor.work_w], "window": predictor.window,
            "num_frames": num_frames, "latency_median_s": median_s, "latency_p90_s": float(np.percentile(steady, 90)),
            "frames_per_s": 1.0 / median_s, "memory": memory.to_dict(),
            "rss_after_two_ramps_mib": round(rss_after_first_ramp, 1), "rss_at_end_mib": round(_rss_mib(), 1)}


# Whole-command cases: (height, width, window, frames, extra predict_sequence options).
COMMAND_CASES: tuple[tuple[int, int, int, int, dict[str, Any]], ...] = (
    (360, 640, 5, 60, {}),
    (360, 640, 32, 36, {}),
    # the same long window reading as many slices as a 5-frame one: what the window costs
    # besides the extra slices that --max-slices (default 10) lets the vote read
    (360, 640, 32, 36, {"max_slices": 6}),
    (1080, 1920, 5, 40, {}),
    (1080, 1920, 5, 40, {"extra_formats": ("npz16",), "output_resolution": "working"}),
    (1080, 1920, 32, 36, {}),
)


# Tripod-stack cases: (height, width, frames of the one sweep).
STACK_CASES: tuple[tuple[int, int, int], ...] = ((720, 1280, 20),)


def _stack_case(model_name: str, height: int, width: int, num_frames: int) -> dict[str, Any]:
    """``predict_sequence`` on a folder of one sweep (a tripod stack), timed as a whole."""
    import tempfile
    from pathlib import Path

    from focaldepth.io.sequence import write_sequence
    from focaldepth.predict import predict_sequence

    frames, focus, camera = stack_frames(height, width, num_frames)
    with tempfile.TemporaryDirectory() as folder:
        write_sequence(Path(folder) / "stack", frames, focus, camera)
        del frames
        start = time.perf_counter()
        summary = predict_sequence(Path(folder) / "stack", Path(folder) / "out", model=model_name, progress=False)
        wall_s = time.perf_counter() - start
        out_bytes = sum(p.stat().st_size for p in (Path(folder) / "out").rglob("*") if p.is_file())
    split = {k: v for k, v in summary["command_timing_s"].items() if k not in ("wall", "frames_per_s")}
    return {"name": f"stack {width}x{height}, {num_frames} frames, one sweep ({summary['mode']}, "
                    f"{summary.get('observations_computed', num_frames)} observation(s))",
            "width": width, "height": height, "window": summary["window_frames"], "num_frames": num_frames,
            "working_hw": summary["working_size_hw"], "options": {}, "mode": summary["mode"],
            "stack_still": summary.get("stack_still"), "observations_computed": summary.get("observations_computed"),
            "wall_s": wall_s, "frames_per_s_end_to_end": num_frames / wall_s,
            "predict_latency_median_s": summary["timing_s"]["per_frame_median"],
            "split_s": split, "output_mib_per_frame": out_bytes / 2**20 / num_frames,
            "optical_flows_computed": summary["optical_flows_computed"], "threads": summary["threads"]}


def _command_case(model_name: str, height: int, width: int, window: int, num_frames: int,
                  options: dict[str, Any]) -> dict[str, Any]:
    """``predict_sequence`` on an mp4 of the sweep, timed as a whole."""
    import tempfile
    from pathlib import Path

    from focaldepth.io.sequence import write_sequence_video
    from focaldepth.predict import predict_sequence

    frames, focus, camera = sweep_clip(height, width, num_frames)
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        write_sequence_video(clip, frames, focus, camera, fps=30.0)
        del frames
        start = time.perf_counter()
        summary = predict_sequence(clip, Path(folder) / "out", model=model_name, window=window,
                                   progress=False, **options)
        wall_s = time.perf_counter() - start
        out_bytes = sum(p.stat().st_size for p in (Path(folder) / "out").rglob("*") if p.is_file())
    flags = " ".join(f"--format {f}" for f in options.get("extra_formats", ()))
    if options.get("output_resolution"):
        flags += f" --output-resolution {options['output_resolution']}"
    if options.get("max_slices"):
        flags += f" --max-slices {options['max_slices']}"
    flags = flags.strip()
    split = {k: v for k, v in summary["command_timing_s"].items() if k not in ("wall", "frames_per_s")}
    return {"name": f"command {width}x{height} window {window}{' ' + flags if flags else ''}",
            "width": width, "height": height, "window": summary["window_frames"], "num_frames": num_frames,
            "working_hw": summary["working_size_hw"], "options": {k: list(v) if isinstance(v, tuple) else v
                                                                 for k, v in options.items()},
            "wall_s": wall_s, "frames_per_s_end_to_end": num_frames / wall_s,
            "predict_latency_median_s": summary["timing_s"]["per_frame_median"],
            "split_s": split, "output_mib_per_frame": out_bytes / 2**20 / num_frames,
            "optical_flows_computed": summary["optical_flows_computed"], "threads": summary["threads"]}


def run(sizes_hw: Sequence[tuple[int, int]] = SIZES_HW, *, model: str = DEFAULT_PREDICT_MODEL,
        num_frames: int = 60, reference_runs: int = 3,
        command_cases: Sequence[tuple[int, int, int, int, dict[str, Any]]] = COMMAND_CASES,
        stack_cases: Sequence[tuple[int, int, int]] = STACK_CASES) -> dict[str, Any]:
    """Run the streaming-predict benchmark; JSON-ready dict with the reference beside it."""
    platform = platform_info()
    before = reference_workload(runs=reference_runs)
    # A shared VM's speed drifts within a run (session 10: the reference took 2.5 s at the
    # start and 1.6 s at the end): each case is also divided by one reference run timed right
    # after it ("frame_time_over_adjacent_reference"), beside the run-wide median.
    adjacent: list[float] = []

    def timed(case: dict[str, Any]) -> dict[str, Any]:
        adjacent.append(reference_workload(runs=1, warmup=0)["seconds"])
        case["adjacent_reference_s"] = adjacent[-1]
        return case

    cases = [timed(_case(model, height, width, num_frames)) for height, width in sizes_hw]
    if (360, 640) in sizes_hw:
        cases.append(timed(_case(model, 360, 640, num_frames, max_pixels=LARGE_MAX_PIXELS)))
    commands = [timed(_command_case(model, *case)) for case in command_cases]
    commands += [timed(_stack_case(model, *case)) for case in stack_cases]
    after = reference_workload(runs=reference_runs, warmup=0)
    reference_s = statistics.median(before["runs_s"] + after["runs_s"])
    for case in cases:
        case["frame_time_over_reference"] = case["latency_median_s"] / reference_s
        case["frame_time_over_adjacent_reference"] = case["latency_median_s"] / case["adjacent_reference_s"]
    for case in commands:
        frame_s = 1.0 / case["frames_per_s_end_to_end"]
        case["frame_time_over_reference"] = frame_s / reference_s
        case["frame_time_over_adjacent_reference"] = frame_s / case["adjacent_reference_s"]
    return {"benchmark": "predict", "model": model, "description": __doc__.split("\n\n")[0].replace("\n", " "),
            "platform": platform, "reference": {**before, "seconds": reference_s,
                                                "runs_s": before["runs_s"] + after["runs_s"]},
            "results": cases, "command_results": commands}


def _adjacent(case: dict[str, Any]) -> str:
    """The case over the reference run timed right after it ("-" in runs before session 10)."""
    value = case.get("frame_time_over_adjacent_reference")
    return "-" if value is None else f"{value:.3f}"


def table_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    stream = [{"case": case["name"], "working": "x".join(map(str, case["working_hw"][::-1])),
               "latency (ms)": f"{1e3 * case['latency_median_s']:.1f}", "frames/s": f"{case['frames_per_s']:.1f}",
               "peak RSS (MiB)": f"{case['memory']['peak_rss_mib']:.0f}",
               "RSS 10 fr / end (MiB)": f"{case['rss_after_two_ramps_mib']:.0f} / {case['rss_at_end_mib']:.0f}",
               "time split (s)": "predictor only", "output MiB/frame": "-",
               "frame / reference": f"{case['frame_time_over_reference']:.3f}",
               "frame / adjacent ref.": _adjacent(case)} for case in result["results"]]
    command = [{"case": case["name"], "working": "x".join(map(str, case["working_hw"][::-1])),
                "latency (ms)": f"{1e3 * case['predict_latency_median_s']:.1f}",
                "frames/s": f"{case['frames_per_s_end_to_end']:.1f} end to end",
                "peak RSS (MiB)": "-", "RSS 10 fr / end (MiB)": "-",
                "time split (s)": ", ".join(f"{k} {v:.1f}" for k, v in case["split_s"].items()),
                "output MiB/frame": f"{case['output_mib_per_frame']:.2f}",
                "frame / reference": f"{case['frame_time_over_reference']:.3f}",
                "frame / adjacent ref.": _adjacent(case)}
               for case in result.get("command_results", [])]
    return stream + command
