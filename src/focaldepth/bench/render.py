"""Renderer throughput: frames (rendered focus slices) per second, and peak memory.

The workload is the issue's: 24 layers, 5 focus distances (a near-to-far ramp even in
dioptres), disk PSF, at 256x256 and 640x360, on a fixed synthetic RGB-D scene (textured
walls, floor and boxes, 0.5-4 m, so every layer is occupied and depth edges occlude) with
a camera whose largest CoC over the sweep is ~40 px. A "frame" is one rendered focus
slice, so one call renders 5 frames. Also timed: forward + backward (gradients w.r.t.
image and depth) at 256x256, the cost of using the renderer inside a training loss.

The fixed reference workload (:mod:`focaldepth.bench.reference`) is timed before and
after the renderer in the same process, and every result carries
``frame_time_over_reference`` = (seconds per frame) / (reference seconds): the figure
that compares across machines. On a shared machine, other processes' bursts of load slow
single runs down by several times: medians and minima are both kept, and the minima
("best", with the reference's minimum) are the steadier figure.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from focaldepth.bench import peak_memory, platform_info, summarise_seconds, timed_runs
from focaldepth.bench.reference import reference_workload
from focaldepth.optics import coc_m, dioptric_ramp
from focaldepth.render import layer_coc_px, layer_weights, render_focal_stack

SIZES_HW: tuple[tuple[int, int], ...] = ((256, 256), (360, 640))
NUM_LAYERS = 24
NUM_FOCUS = 5
MAX_COC_PX = 40.0
NEAR_M, FAR_M = 0.5, 4.0
FOCAL_LENGTH_M, F_NUMBER = 0.025, 2.0


def benchmark_scene(height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic RGB-D scene ``(1, 3, H, W)``, ``(1, 1, H, W)`` metres: a back wall at
    FAR_M over a floor whose inverse depth rises linearly to NEAR_M at the bottom row, and
    three boxes in front (sharp depth edges). Colours are multi-scale noise plus flat patches,
    so there is texture at every frequency the blur removes."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.zeros(1, 3, height, width)
    for cells in (4, 16, 64):  # multi-scale smooth noise
        noise = torch.rand(1, 3, cells, cells, generator=generator)
        image += F.interpolate(noise, size=(height, width), mode="bilinear", align_corners=False) / 3
    row = torch.linspace(0.0, 1.0, height).view(height, 1).expand(height, width)
    horizon = 0.45
    floor_dpt = 1 / FAR_M + (1 / NEAR_M - 1 / FAR_M) * ((row - horizon) / (1 - horizon)).clamp_min(0)
    depth = (1.0 / floor_dpt).clone()
    for top, left, size, box_depth_m in ((0.2, 0.1, 0.3, 0.7), (0.35, 0.5, 0.25, 1.2),
                                         (0.1, 0.75, 0.2, 2.0)):
        rows = slice(int(top * height), int((top + size) * height))
        cols = slice(int(left * width), int((left + size) * width))
        depth[rows, cols] = box_depth_m
        colour = torch.rand(3, 1, 1, generator=generator)
        image[0, :, rows, cols] = 0.5 * image[0, :, rows, cols] + 0.5 * colour
    return image.clamp(0, 1), depth.view(1, 1, height, width)


def benchmark_camera(max_coc_px: float = MAX_COC_PX) -> torch.Tensor:
    """``(1, 3)`` camera (25 mm f/2) whose pixel pitch makes the largest CoC of the
    NEAR_M..FAR_M sweep over a NEAR_M..FAR_M scene equal ``max_coc_px``."""
    worst_coc_m = max(coc_m(FAR_M, NEAR_M, FOCAL_LENGTH_M, F_NUMBER),
                      coc_m(NEAR_M, FAR_M, FOCAL_LENGTH_M, F_NUMBER))
    return torch.tensor([[FOCAL_LENGTH_M, F_NUMBER, float(worst_coc_m) / max_coc_px]], dtype=torch.float32)


def _render_case(height: int, width: int, *, num_layers: int, num_focus: int, max_coc_px: float,
                 psf: str, repeats: int, warmup: int, backward: bool) -> dict[str, Any]:
    image, depth = benchmark_scene(height, width)
    camera = benchmark_camera(max_coc_px)
    focus = torch.tensor(dioptric_ramp(NEAR_M, FAR_M, num_focus), dtype=torch.float32)[None]
    rendered_max_coc = float(layer_coc_px(layer_weights(depth, num_layers)[1], focus, camera).max())

    if backward:
        image.requires_grad_(True)
        depth.requires_grad_(True)

        def step() -> None:
            stack = render_focal_stack(image, depth, focus, camera, num_layers=num_layers, psf=psf)
            stack.mean().backward()
    else:

        def step() -> None:
            with torch.inference_mode():
                render_focal_stack(image, depth, focus, camera, num_layers=num_layers, psf=psf)

    with peak_memory() as memory:
        seconds = timed_runs(step, repeats=repeats, warmup=warmup)
    summary = summarise_seconds(seconds)
    return {
        "name": f"{'forward+backward' if backward else 'forward'} {width}x{height}",
        "mode": "forward+backward" if backward else "forward",
        "width": width,
        "height": height,
        "num_layers": num_layers,
        "num_focus": num_focus,
        "psf": psf,
        "max_coc_px": round(rendered_max_coc, 2),
        "seconds_per_call": summary,
        "frames_per_s": num_focus / summary["median_s"],
        "frames_per_s_best": num_focus / summary["min_s"],
        "memory": memory.to_dict(),
    }


def run(sizes_hw: Sequence[tuple[int, int]] = SIZES_HW, *, num_layers: int = NUM_LAYERS,
        num_focus: int = NUM_FOCUS, max_coc_px: float = MAX_COC_PX, psf: str = "disk",
        repeats: int = 3, warmup: int = 4, reference_runs: int = 3, reference_warmup: int = 1,
        backward: bool = True) -> dict[str, Any]:
    """Run the renderer benchmark and return its results as a JSON-ready dict.

    ``sizes_hw`` are (height, width) pairs; with ``backward`` a forward+backward case is added
    at the first size. Every case is timed ``repeats`` times after ``warmup`` untimed calls:
    the first few calls in a process were up to 3x slower in our runs (allocator and FFT
    warm-up), and the steady state is what rendering a data set sees.
    """
    platform = platform_info()
    before = reference_workload(runs=reference_runs, warmup=reference_warmup)
    cases = []
    for height, width in sizes_hw:
        cases.append(_render_case(height, width, num_layers=num_layers, num_focus=num_focus,
                                  max_coc_px=max_coc_px, psf=psf, repeats=repeats, warmup=warmup,
                                  backward=False))
    if backward and sizes_hw:
        height, width = sizes_hw[0]
        cases.append(_render_case(height, width, num_layers=num_layers, num_focus=num_focus,
                                  max_coc_px=max_coc_px, psf=psf, repeats=repeats, warmup=warmup,
                                  backward=True))
    after = reference_workload(runs=reference_runs, warmup=0)  # already warm
    platform["load_average_after"] = platform_info()["load_average_1_5_15min"]
    # The reference is timed on both sides of the renderer so that a change of load on a
    # shared machine during the run shows up (and is averaged) in the reference as well.
    reference_runs_s = before["runs_s"] + after["runs_s"]
    reference_s = statistics.median(reference_runs_s)
    reference_best_s = min(reference_runs_s)
    for case in cases:
        seconds = case["seconds_per_call"]
        case["frame_time_over_reference"] = seconds["median_s"] / case["num_focus"] / reference_s
        case["frame_time_over_reference_best"] = (seconds["min_s"] / case["num_focus"]
                                                  / reference_best_s)
    return {
        "benchmark": "render",
        "description": "render_focal_stack throughput; a frame is one rendered focus slice; "
                       "frame_time_over_reference = seconds per frame / reference seconds "
                       "(medians; *_best: minima, the steadier figure on a shared machine)",
        "platform": platform,
        "reference": {"workload": before["workload"], "seconds": reference_s,
                      "best_s": reference_best_s,
                      "before_s": before["seconds"], "after_s": after["seconds"],
                      "runs_s": reference_runs_s, "torch_threads": before["torch_threads"]},
        "results": cases,
    }


def table_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """Human-readable rows for the CLI table (compact: fits an 80-column terminal)."""
    rows = []
    for case in result["results"]:
        mode = "fwd+bwd" if case["mode"] == "forward+backward" else "fwd"
        rows.append({
            "case": f"{mode} {case['width']}x{case['height']} L{case['num_layers']} S{case['num_focus']}",
            "CoC px": f"{case['max_coc_px']:.0f}",
            "frames/s": f"{case['frames_per_s']:.2f}",
            "best f/s": f"{case['frames_per_s_best']:.2f}",
            "best frame/ref": f"{case['frame_time_over_reference_best']:.4f}",
            "RSS MiB": f"{case['memory']['peak_rss_mib']:.0f}",
        })
    return rows
