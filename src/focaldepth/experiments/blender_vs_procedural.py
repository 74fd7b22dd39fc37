"""The Blender Cycles backend against the layered renderer, on one scene of a generate config.

    python -m focaldepth.experiments.blender_vs_procedural --config configs/data/seed_train.yaml \
        --index 3 --out results/blender_vs_procedural.json --figure results/blender_vs_procedural.png

Renders one static scene with both backends (no sensor noise) and measures how they differ:
depth, all-in-focus image, every focal-stack frame (mean absolute error and PSNR, overall and
split into pixels near depth edges and the rest), and the time per frame. Needs the optional
``bpy`` extra (:mod:`focaldepth.scenes.blender`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from focaldepth import optics
from focaldepth.generate.config import load_config
from focaldepth.scenes.blender import blender_version, render_sequence_blender
from focaldepth.scenes.pools import split_pools
from focaldepth.scenes.procedural import rasterise, sample_scene
from focaldepth.scenes.sequence import render_frames, seed_streams, to_uint8


def compare_with_procedural(config_path: str | Path, index: int = 0, *, samples: int = 128,
                            figure: str | Path | None = None) -> dict:
    """Render one static scene of a generate config with both backends (no sensor noise) and
    measure how they differ: depth, all-in-focus image, every focal-stack frame (mean
    absolute error and PSNR, overall and split into pixels near depth edges and the rest),
    and the time per frame."""
    import time

    import torch


    config = load_config(config_path)
    cfg = config.scene
    scene_rng, _ = seed_streams(config.seed, index)
    scene_rng.uniform()  # the static/dynamic draw of generate_sequence
    scene = sample_scene(scene_rng, cfg, split_pools(config.split_seed)[config.split], dynamic=False)
    focus = optics.dioptric_ramp(scene.depth_range.near_m, scene.depth_range.far_m, cfg.focus.frames_per_ramp)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        raster = rasterise(scene, np.zeros(1), cfg.antialias)
        aif = raster.aif[0].permute(1, 2, 0).numpy()
        depth = raster.depth_m[0].numpy()
        procedural = render_frames(to_uint8(aif)[None].repeat(len(focus), 0), depth[None].repeat(len(focus), 0),
                                   focus, scene.camera, static=True, num_layers=cfg.render.num_layers,
                                   psf=cfg.render.psf)
        procedural_s = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    traced = render_sequence_blender(scene, focus, np.zeros(len(focus)), samples=samples, seed=index)
    blender_s = time.perf_counter() - start

    relative_depth_error = np.abs(traced.depth_m[0] - depth) / depth
    coc = optics.coc_px(depth.astype(np.float64)[None], focus[:, None, None], scene.camera.focal_length_m,
                        scene.camera.f_number, scene.camera.pixel_pitch_m)

    import kornia
    import torch.nn.functional as F

    # Layered compositing approximates what a blurred occluder lets through near depth
    # edges: split each frame's error into pixels within one CoC radius of an edge and the rest.
    log_depth = torch.from_numpy(np.log(depth))[None, None]
    edges = kornia.filters.spatial_gradient(log_depth).abs().amax(dim=(1, 2)) > 0.01  # (1, H, W)
    frames = []
    for k, focus_m in enumerate(focus):
        difference = np.abs(procedural[k] - traced.frames[k]).mean(-1)
        radius = math.ceil(float(coc[k].max()) / 2)
        band = F.max_pool2d(edges[None].float(), 2 * radius + 1, stride=1, padding=radius)[0, 0].numpy() > 0
        mse = float(((procedural[k] - traced.frames[k]) ** 2).mean())
        frames.append({"focus_distance_m": float(focus_m), "max_coc_px": float(coc[k].max()),
                       "mean_abs_error": float(difference.mean()),
                       "psnr_db": float(10 * np.log10(1.0 / max(mse, 1e-12))),
                       "mean_abs_error_near_depth_edges": float(difference[band].mean()) if band.any() else 0.0,
                       "mean_abs_error_elsewhere": float(difference[~band].mean()) if (~band).any() else 0.0,
                       "fraction_near_depth_edges": float(band.mean())})
    result = {
        "config": str(config_path), "index": index, "height": scene.height, "width": scene.width,
        "camera": scene.camera.to_dict(), "near_m": scene.depth_range.near_m, "far_m": scene.depth_range.far_m,
        "blender_version": blender_version(), "cycles_samples": samples,
        "depth_pixels_within_0.1_percent": float(np.mean(relative_depth_error < 1e-3)),
        "aif_mean_abs_error": float(np.abs(traced.aif[0] - aif).mean()),
        "frames": frames,
        "seconds_per_frame": {"procedural": procedural_s / len(focus), "blender": blender_s / len(focus)},
    }
    if figure is not None:
        _comparison_figure(procedural, traced.frames, focus, figure)
    return result


def _comparison_figure(procedural: np.ndarray, traced: np.ndarray, focus: np.ndarray, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from focaldepth.io.atomic import atomic_path

    fig, axes = plt.subplots(3, len(focus), figsize=(2.4 * len(focus), 7.4), squeeze=False)
    for k in range(len(focus)):
        axes[0, k].imshow(np.clip(procedural[k], 0, 1))
        axes[0, k].set_title(f"F = {focus[k]:.3g} m", fontsize=8)
        axes[1, k].imshow(np.clip(traced[k], 0, 1))
        axes[2, k].imshow(np.abs(procedural[k] - traced[k]).mean(-1), cmap="magma", vmin=0, vmax=0.1)
    for row, label in enumerate(("procedural (layers)", "Blender Cycles", "|difference| (0-0.1)")):
        axes[row, 0].set_ylabel(label, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """``python -m focaldepth.experiments.blender_vs_procedural --config C --index I --out J.json
    [--figure P.png]``"""
    import argparse
    import json

    from focaldepth.io.atomic import atomic_write_json

    parser = argparse.ArgumentParser(description="Compare the Blender and procedural backends on one scene.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args(argv)
    result = compare_with_procedural(args.config, args.index, samples=args.samples, figure=args.figure)
    print(json.dumps(result, indent=1))
    if args.out is not None:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
