"""Real-image check of the defocus renderer: render f/2.8 from f/8 + depth, compare with a
real f/2.8 photo.

Data: the "DFD indoor" set of Carvalho et al., "Deep Depth from Defocus: how can defocus
blur improve 3D estimation using dense neural networks?" (3DRW, ECCV Workshops 2018), at
``../shared/data/dfd_indoor_train``: each scene shot by a Nikon D200 with a 35 mm lens at
f/8 (nearly all in focus) and at f/2.8 (defocused), focus fixed at about 1.7 m, images
downsampled 6x to 645 px (23.6 mm sensor width), depth from a registered Xtion.

Per scene the f/8 image and depth go through :func:`focaldepth.render.render_focal_stack`
and the result is compared with the real f/2.8 photo, beside the do-nothing baseline (the
f/8 image itself) and renderings with wrong focus distances. What the comparison accounts for:

* **Linear light.** Blur mixes light, not JPEG code values: the f/8 image is linearised
  (sRGB curve, an approximation of the camera's tone curve), blurred, then re-encoded.
* **The f/8 image is not a pinhole image.** Its own CoC is 2.8/8 of the f/2.8 one at every
  depth, so the renderer adds only the difference. With blur widths adding in quadrature
  (exact for Gaussians, close for disks) the extra CoC ``sqrt(c_2.8^2 - c_8^2)`` is the CoC
  of a single effective f-number (:func:`effective_f_number`, 2.99 here), for every depth
  and focus distance.
* **The two shots are not registered.** The camera moved by up to ~3 px between them: the
  real f/2.8 image is aligned to the f/8 frame by a sub-pixel translation (ECC), once, so
  every candidate is compared with the same target.
* **Exposure and vignetting differ.** f/2.8 vignettes visibly (~10 % darker corners), and
  the exposures differ by a few percent: each candidate gets its own least-squares
  per-channel gain times a radial polynomial ``(a0 + a1 r^2 + a2 r^4)`` in linear light.
* **Depth noise.** The filled Xtion depth has isolated near-range speckles (0.25-0.5 m in a
  1-4 m room) that would render as 30 px blur disks; a 5x5 median removes them.

Metrics (on the interior, a border margin left out): PSNR, SSIM (kornia), and per depth bin
the high-frequency energy ratio ``E(candidate) / E(real f/2.8)`` of the luminance
high-pass (image minus its Gaussian blur): 1 means the candidate is exactly as sharp as the
real photo at that depth, > 1 too sharp (the f/8 baseline away from focus), < 1 too blurred.
A focus sweep (1.0-3.0 m, even in dioptres) gives the focus distance that best explains the
photos (argmin of the error, refined by a parabola in dioptres).

Run ``python -m focaldepth.experiments.realcheck`` from the project root to regenerate
``results/dfd_render_check/`` (metrics.json, table.md, comparison.png).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import kornia
import numpy as np
import torch
from torch import Tensor

from focaldepth.align import translate, translation_px
from focaldepth.errors import UserError
from focaldepth.io.atomic import atomic_write_json, atomic_write_text
from focaldepth.io.depth import read_depth
from focaldepth.io.frames import read_image
from focaldepth.io.rgbd import DfdPair, clean_depth_m, list_pairs
from focaldepth.optics import Camera
from focaldepth.render import render_defocus

DEFAULT_DATA = Path("../shared/data/dfd_indoor_train")
DEFAULT_OUT = Path("results/dfd_render_check")

# The rig (Carvalho et al. 2018 and the shared README): a 35 mm lens on a 23.6 mm wide
# sensor, stored 645 px wide (6x downsample of 3872 px).
DFD_FOCAL_LENGTH_MM = 35.0
DFD_SENSOR_WIDTH_MM = 23.6
DFD_IMAGE_WIDTH_PX = 645
F_NUMBER_SHARP = 8.0
F_NUMBER_WIDE = 2.8
# The authors' parameter file says 1.7 m; it is approximate (the data suggest 1.6-1.75 m).
NOMINAL_FOCUS_M = 1.7
WRONG_FOCUS_M = (1.0, 3.0)
# Sweep evenly in dioptres from 1.0 m to 3.0 m (0.048 dpt steps, ~0.14 m near 1.7 m; the
# argmin is refined by a parabola), plus the nominal focus itself.
SWEEP_NEAR_M, SWEEP_FAR_M, SWEEP_STEPS = 1.0, 3.0, 15

# Depth bins for the sharpness statistic: around the focus plane (1.5-1.9 m, CoC < 1 px at
# f/2.8) and on both sides of it (a CoC of 2.5-4 px at 1.2 m or beyond 2.4 m).
DEPTH_BIN_EDGES_M = (0.0, 1.2, 1.5, 1.9, 2.4, 3.0, math.inf)
# Pixels at least this close to 1 (in sRGB) are clipped: left out of the exposure fit, where
# a clipped highlight would pull the gain towards it.
SATURATED = 0.98
# Border left out of every metric at 645 px (scaled with the width): the alignment warp
# reflects the border and the renderer mirror-pads it.
MARGIN_PX_AT_FULL_WIDTH = 16
# Standard deviation (px at 645 px) of the Gaussian removed from the luminance to get its
# high-pass band: structures of a few pixels, which a 2-4 px CoC suppresses.
HIGHPASS_SIGMA_PX_AT_FULL_WIDTH = 1.5
# A depth bin counts for a scene when it holds at least this fraction of the interior.
MIN_BIN_FRACTION = 0.01
# Panels of comparison.png are shown this wide (2/3 of 645 px: the PNG stays ~1 MB).
FIGURE_TILE_WIDTH_PX = 430


# --- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DfdScene:
    """One scene in memory: sRGB images ``(1, 3, H, W)`` in [0, 1], depth ``(1, 1, H, W)`` in
    metres, and the camera for this image width (at f/2.8)."""

    name: str
    sharp_srgb: Tensor  # f/8
    wide_srgb: Tensor  # f/2.8, as shot (not yet aligned)
    depth_m: Tensor
    camera: Camera


def dfd_camera(image_width_px: int = DFD_IMAGE_WIDTH_PX, f_number: float = F_NUMBER_WIDE) -> Camera:
    """The D200 + 35 mm rig imaged onto ``image_width_px`` pixels."""
    return Camera(DFD_FOCAL_LENGTH_MM, f_number, DFD_SENSOR_WIDTH_MM, image_width_px)


def load_scene(pair: DfdPair, width_px: int | None = None) -> DfdScene:
    """Read one scene; ``width_px`` (optional, at most the stored width) resizes it (area
    averaging for images, nearest for depth so that no depth between two surfaces is
    invented) and adapts the pixel pitch."""
    sharp = read_image(pair.sharp_path)
    wide = read_image(pair.wide_path)
    depth = clean_depth_m(read_depth(pair.depth_path), pair.depth_path)
    if sharp.shape != wide.shape or depth.shape != sharp.shape[:2]:
        raise UserError(f"f/8 {sharp.shape[:2]}, f/2.8 {wide.shape[:2]} and depth {depth.shape} "
                        "sizes differ", pair.sharp_path)
    height, width = depth.shape
    if width_px is not None and width_px != width:
        if not 16 <= width_px <= width:
            raise UserError(f"width_px must be between 16 and {width}, got {width_px}", pair.sharp_path)
        size = (width_px, max(2, round(height * width_px / width)))
        sharp = cv2.resize(sharp, size, interpolation=cv2.INTER_AREA)
        wide = cv2.resize(wide, size, interpolation=cv2.INTER_AREA)
        depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
    # The images span the whole 23.6 mm sensor at any width: the pixel pitch follows it.
    camera = dfd_camera(sharp.shape[1])

    def to_tensor(rgb8: np.ndarray) -> Tensor:
        return torch.from_numpy(rgb8).permute(2, 0, 1)[None].float() / 255.0

    return DfdScene(pair.name, to_tensor(sharp), to_tensor(wide),
                    torch.from_numpy(np.ascontiguousarray(depth))[None, None].float(), camera)


# --- physics ---------------------------------------------------------------------------


def effective_f_number(f_number_target: float, f_number_source: float) -> float:
    """The f-number whose CoC adds to the source's CoC (in quadrature) to give the target's.

    CoC is proportional to 1/N at every depth, so ``c_eff^2 = c_t^2 - c_s^2`` holds for all
    depths with ``1/N_eff^2 = 1/N_t^2 - 1/N_s^2``. Quadrature is exact for Gaussian blurs
    (variances add) and a close approximation for disks.
    """
    if not 0 < f_number_target < f_number_source:
        raise ValueError(f"effective_f_number: need 0 < target ({f_number_target}) < source "
                         f"({f_number_source}): the target must blur more")
    return 1.0 / math.sqrt(f_number_target**-2 - f_number_source**-2)


def focus_sweep_m(near_m: float = SWEEP_NEAR_M, far_m: float = SWEEP_FAR_M, steps: int = SWEEP_STEPS,
                  include: Sequence[float] = (NOMINAL_FOCUS_M,)) -> list[float]:
    """Focus distances evenly spaced in dioptres from ``near_m`` to ``far_m``, plus
    ``include``, sorted near to far."""
    grid = 1.0 / np.linspace(1.0 / near_m, 1.0 / far_m, steps)
    values = {round(float(v), 6) for v in grid} | {round(float(v), 6) for v in include}
    return sorted(values)


# --- alignment and exposure ------------------------------------------------------------


def _grey8(srgb: Tensor) -> np.ndarray:
    return kornia.color.rgb_to_grayscale(srgb)[0, 0].numpy().astype(np.float32)


def estimate_translation_px(fixed_srgb: Tensor, moving_srgb: Tensor) -> tuple[float, float]:
    """Sub-pixel translation ``(dx, dy)`` with ``moving(x + dx, y + dy) ~ fixed(x, y)``
    (:func:`focaldepth.align.translation_px` on luminance)."""
    return translation_px(_grey8(fixed_srgb), _grey8(moving_srgb))


def translate_srgb(srgb: Tensor, shift_px: tuple[float, float]) -> Tensor:
    """``srgb`` (1, 3, H, W) resampled at ``(x + dx, y + dy)`` (:func:`focaldepth.align.translate`)."""
    moved = translate(srgb[0].permute(1, 2, 0).numpy(), shift_px)
    return torch.from_numpy(np.clip(moved, 0.0, 1.0)).permute(2, 0, 1)[None]


def radius2_map(height: int, width: int) -> Tensor:
    """Squared distance from the image centre, 1 at the corners: ``(H, W)``."""
    y = torch.linspace(-1.0, 1.0, height)[:, None] * (height / math.hypot(height, width))
    x = torch.linspace(-1.0, 1.0, width)[None, :] * (width / math.hypot(height, width))
    return x**2 + y**2


def match_exposure(candidate_linear: Tensor, target_linear: Tensor, fit_mask: Tensor) -> Tensor:
    """Each candidate ``(N, 3, H, W)`` (linear light) times its own least-squares gain field
    ``a0 + a1 r^2 + a2 r^4`` per channel, fitted to ``target_linear`` ``(1, 3, H, W)`` over
    ``fit_mask`` ``(H, W)``: exposure and the f/2.8 vignetting, no more (9 numbers)."""
    r2 = radius2_map(*candidate_linear.shape[-2:])
    basis = torch.stack([torch.ones_like(r2), r2, r2**2])  # (3, H, W)
    mask = fit_mask.to(candidate_linear.dtype)
    # Sums over all pixels in float64: float32 accumulation leaves ~1e-4 errors that depend
    # on the reduction order (thread count, BLAS path).
    features = candidate_linear.double()[:, :, None] * basis.double()  # (N, C, 3, H, W)
    weighted = features * mask.double()
    gram = torch.einsum("ncihw,ncjhw->ncij", weighted, features)
    rhs = torch.einsum("ncihw,chw->nci", weighted, target_linear[0].double())
    # A tiny ridge keeps the 3x3 systems solvable on a nearly flat candidate.
    ridge = 1e-9 * gram.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None] * torch.eye(3, dtype=gram.dtype)
    coefficients = torch.linalg.solve(gram + ridge, rhs[..., None])[..., 0].to(candidate_linear.dtype)
    gain = torch.einsum("nci,ihw->nchw", coefficients, basis)
    return candidate_linear * gain


# --- metrics ---------------------------------------------------------------------------


def depth_bin_labels(edges_m: Sequence[float] = DEPTH_BIN_EDGES_M) -> list[str]:
    labels = []
    for low, high in itertools.pairwise(edges_m):
        labels.append(f"<{high:g} m" if low == 0 else f">{low:g} m" if math.isinf(high)
                      else f"{low:g}-{high:g} m")
    return labels


def highpass_energy_by_depth(srgb: Tensor, depth_m: Tensor, interior: Tensor, sigma_px: float,
                             edges_m: Sequence[float] = DEPTH_BIN_EDGES_M) -> Tensor:
    """``(N, bins)`` summed squared luminance high-pass (image minus its Gaussian blur of
    ``sigma_px``) of ``srgb`` ``(N, 3, H, W)`` over the interior pixels of each depth bin."""
    grey = kornia.color.rgb_to_grayscale(srgb)
    size = 2 * math.ceil(3 * sigma_px) + 1
    band = grey - kornia.filters.gaussian_blur2d(grey, (size, size), (sigma_px, sigma_px))
    energy = band[:, 0] ** 2
    sums = []
    for low, high in itertools.pairwise(edges_m):
        in_bin = interior & (depth_m[0, 0] >= low) & (depth_m[0, 0] < high)
        sums.append((energy * in_bin).sum(dim=(-2, -1)))
    return torch.stack(sums, dim=1)


def compare_to_target(candidates_srgb: Tensor, target_srgb: Tensor, depth_m: Tensor,
                      margin_px: int, highpass_sigma_px: float) -> dict[str, Tensor]:
    """Error of each candidate ``(N, 3, H, W)`` (exposure-matched, sRGB) against the target
    over the interior: ``mse``, ``psnr`` (dB), ``ssim`` ``(N,)``, and the high-frequency
    energy ratio per depth bin ``hf_ratio`` ``(N, bins)`` (NaN where a bin is too small)."""
    height, width = target_srgb.shape[-2:]
    crop = (slice(None), slice(None), slice(margin_px, height - margin_px),
            slice(margin_px, width - margin_px))
    mse, psnr, ssim = [], [], []
    for candidate in candidates_srgb.split(1):
        mse.append(torch.mean((candidate[crop] - target_srgb[crop]) ** 2))
        psnr.append(kornia.metrics.psnr(candidate[crop], target_srgb[crop], 1.0))
        ssim.append(kornia.metrics.ssim(candidate, target_srgb, 11)[crop].mean())
    interior = torch.zeros(height, width, dtype=torch.bool)
    interior[crop[2:]] = True
    energy = highpass_energy_by_depth(candidates_srgb, depth_m, interior, highpass_sigma_px)
    target_energy = highpass_energy_by_depth(target_srgb, depth_m, interior, highpass_sigma_px)
    counts = torch.stack([(interior & (depth_m[0, 0] >= lo) & (depth_m[0, 0] < hi)).sum()
                          for lo, hi in itertools.pairwise(DEPTH_BIN_EDGES_M)])
    large_enough = (counts >= MIN_BIN_FRACTION * interior.sum()) & (target_energy[0] > 0)
    ratio = torch.where(large_enough, energy / target_energy.clamp_min(1e-12), torch.nan)
    return {"mse": torch.stack(mse), "psnr": torch.stack(psnr), "ssim": torch.stack(ssim),
            "hf_ratio": ratio, "bin_fraction": counts / interior.sum()}


def refine_minimum_m(focus_m: Sequence[float], errors: Sequence[float]) -> float:
    """The focus distance of the smallest error, refined by a parabola in dioptres through
    the minimum and its two neighbours (the grid point itself at the ends of the sweep)."""
    index = int(np.argmin(errors))
    if index == 0 or index == len(errors) - 1:
        return float(focus_m[index])
    dioptres = 1.0 / np.asarray(focus_m[index - 1:index + 2], dtype=np.float64)
    a, b, _ = np.polyfit(dioptres, np.asarray(errors[index - 1:index + 2], dtype=np.float64), 2)
    if a <= 0:  # not a minimum (flat or noisy): keep the grid point
        return float(focus_m[index])
    vertex = float(np.clip(-b / (2 * a), dioptres.min(), dioptres.max()))
    return 1.0 / vertex


# --- one scene -------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneResult:
    """Metrics of one scene: ``rows`` candidate -> metric -> value (hf_ratio a list per
    depth bin), and the sweep (focus distance, MSE) with its refined minimum."""

    name: str
    shift_px: tuple[float, float]
    rows: dict[str, dict[str, object]]
    sweep_focus_m: list[float]
    sweep_mse: list[float]
    best_focus_m: float
    bin_fraction: list[float]
    images: dict[str, Tensor]  # sRGB (1, 3, H, W): f8, render, real (aligned), for figures


def evaluate_scene(scene: DfdScene, *, focus_m: float = NOMINAL_FOCUS_M,
                   wrong_focus_m: Sequence[float] = WRONG_FOCUS_M,
                   sweep_m: Sequence[float] | None = None, num_layers: int = 32,
                   variants: bool = True) -> SceneResult:
    """Render f/2.8 from f/8 + depth for one scene and compare it (and the baselines) with
    the real f/2.8 photo. ``sweep_m`` (default :func:`focus_sweep_m`) must contain
    ``focus_m`` and ``wrong_focus_m``; ``variants`` adds the ablation renderings (plain
    f/2.8 CoC, Gaussian PSF, blur in sRGB)."""
    sweep = sorted(set(focus_sweep_m() if sweep_m is None else sweep_m))

    def sweep_index(wanted_m: float) -> int:
        for i, swept_m in enumerate(sweep):
            if math.isclose(wanted_m, swept_m, rel_tol=1e-6):
                return i
        raise ValueError(f"evaluate_scene: focus {wanted_m} m is not in the sweep {sweep}")

    nominal, wrong_indices = sweep_index(focus_m), [sweep_index(f) for f in wrong_focus_m]
    width = scene.sharp_srgb.shape[-1]
    scale = width / DFD_IMAGE_WIDTH_PX
    margin = max(4, round(MARGIN_PX_AT_FULL_WIDTH * scale))
    sigma = max(0.5, HIGHPASS_SIGMA_PX_AT_FULL_WIDTH * scale)
    f_number_eff = effective_f_number(F_NUMBER_WIDE, F_NUMBER_SHARP)

    shift = estimate_translation_px(scene.sharp_srgb, scene.wide_srgb)
    target = translate_srgb(scene.wide_srgb, shift)

    render = {"camera": scene.camera, "num_layers": num_layers}
    stack = render_defocus(scene.sharp_srgb, scene.depth_m, sweep, f_number=f_number_eff, **render)
    candidates = {"f8": scene.sharp_srgb[0], "render": stack[nominal]}
    for wrong, i in zip(wrong_focus_m, wrong_indices):
        candidates[wrong_focus_name(wrong)] = stack[i]
    if variants:
        candidates["render_f2.8_coc"] = render_defocus(
            scene.sharp_srgb, scene.depth_m, [focus_m], f_number=F_NUMBER_WIDE, **render)[0]
        candidates["render_gaussian"] = render_defocus(
            scene.sharp_srgb, scene.depth_m, [focus_m], f_number=f_number_eff, psf="gaussian",
            **render)[0]
        candidates["render_srgb"] = render_defocus(
            scene.sharp_srgb, scene.depth_m, [focus_m], f_number=f_number_eff,
            linear_light=False, **render)[0]
    names = list(candidates)
    all_srgb = torch.cat([torch.stack([candidates[n] for n in names]), stack])

    # Exposure + vignetting per candidate, fitted in linear light on unclipped pixels.
    target_linear = kornia.color.rgb_to_linear_rgb(target)
    unclipped = (target[0] < SATURATED).all(0) & (scene.sharp_srgb[0] < SATURATED).all(0)
    interior = torch.zeros_like(unclipped)
    interior[margin:-margin, margin:-margin] = True
    matched_srgb = torch.cat([
        kornia.color.linear_rgb_to_rgb(match_exposure(
            kornia.color.rgb_to_linear_rgb(chunk), target_linear, unclipped & interior).clamp(0.0, 1.0))
        for chunk in all_srgb.split(4)])
    metrics = compare_to_target(matched_srgb, target, scene.depth_m, margin, sigma)

    rows: dict[str, dict[str, object]] = {}
    for i, name in enumerate(names):
        rows[name] = {"mse": float(metrics["mse"][i]), "psnr_db": float(metrics["psnr"][i]),
                      "ssim": float(metrics["ssim"][i]),
                      "hf_ratio": [None if math.isnan(v) else float(v) for v in metrics["hf_ratio"][i]]}
    sweep_mse = [float(v) for v in metrics["mse"][len(names):]]
    best = refine_minimum_m(sweep, sweep_mse)
    grid_best = int(np.argmin(sweep_mse))
    rows["render_best_focus"] = {  # fitted to this photo: an optimistic bound, not a test
        "focus_m": float(sweep[grid_best]),
        "mse": float(metrics["mse"][len(names) + grid_best]),
        "psnr_db": float(metrics["psnr"][len(names) + grid_best]),
        "ssim": float(metrics["ssim"][len(names) + grid_best]),
        "hf_ratio": [None if math.isnan(v) else float(v)
                     for v in metrics["hf_ratio"][len(names) + grid_best]]}
    images = {"f8": matched_srgb[names.index("f8")][None], "render": matched_srgb[names.index("render")][None],
              "real": target}
    return SceneResult(scene.name, shift, rows, [float(s) for s in sweep], sweep_mse, best,
                       [float(v) for v in metrics["bin_fraction"]], images)


# --- all scenes ------------------------------------------------------------------------

CANDIDATE_NOTES = {
    "f8": "f/8 photo, not blurred (do-nothing baseline)",
    "render": "rendered f/2.8 at the nominal focus (disk PSF, effective CoC, linear light)",
    "render_f2.8_coc": "same, full f/2.8 CoC (the f/8 blur not subtracted)",
    "render_gaussian": "same, Gaussian PSF (sigma = CoC/4)",
    "render_srgb": "same, blurred in sRGB code values (not linearised)",
    "render_best_focus": "rendered at each scene's own best sweep focus (fitted: optimistic)",
}


def _geometric_mean(values: Sequence[float | None]) -> tuple[float | None, int]:
    kept = [v for v in values if v is not None and v > 0]
    if not kept:
        return None, 0
    return float(np.exp(np.mean(np.log(kept)))), len(kept)


def aggregate(results: Sequence[SceneResult]) -> dict[str, object]:
    """Means over scenes per candidate (PSNR, SSIM, MSE, gain over the f/8 baseline, how many
    scenes it beats it in), geometric-mean sharpness ratios per depth bin, and the focus
    distance that best explains the photos (argmin of the mean relative sweep error,
    refined; and the median and quartiles of the per-scene estimates)."""
    candidates = list(results[0].rows)
    table: dict[str, dict[str, object]] = {}
    for name in candidates:
        psnr = np.array([r.rows[name]["psnr_db"] for r in results])
        base = np.array([r.rows["f8"]["psnr_db"] for r in results])
        hf = []
        for b in range(len(DEPTH_BIN_EDGES_M) - 1):
            mean, count = _geometric_mean([r.rows[name]["hf_ratio"][b] for r in results])
            hf.append({"geo_mean": mean, "scenes": count})
        table[name] = {
            "psnr_db": float(psnr.mean()),
            "ssim": float(np.mean([r.rows[name]["ssim"] for r in results])),
            "mse": float(np.mean([r.rows[name]["mse"] for r in results])),
            "psnr_gain_vs_f8_db": float((psnr - base).mean()),
            "beats_f8": int((psnr > base).sum()) if name != "f8" else None,
            "hf_ratio": hf,
        }
    sweep = results[0].sweep_focus_m
    relative = np.mean([np.asarray(r.sweep_mse) / r.rows["f8"]["mse"] for r in results], axis=0)
    per_scene = np.array([r.best_focus_m for r in results])
    shifts = np.array([math.hypot(*r.shift_px) for r in results])
    return {
        "scenes": len(results),
        "candidates": table,
        "focus_estimate_m": refine_minimum_m(sweep, relative.tolist()),
        "sweep_focus_m": sweep,
        "sweep_mean_relative_mse": relative.tolist(),
        "per_scene_best_focus_m": {"median": float(np.median(per_scene)),
                                   "q25": float(np.percentile(per_scene, 25)),
                                   "q75": float(np.percentile(per_scene, 75))},
        "alignment_shift_px": {"mean": float(shifts.mean()), "max": float(shifts.max())},
    }


def _fmt(value: object, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def wrong_focus_name(focus_m: float) -> str:
    """The candidate name of the rendering at a wrong focus distance."""
    return f"render_{focus_m:g}m"


def markdown_table(summary: dict[str, object], results: Sequence[SceneResult],
                   settings: dict[str, object]) -> str:
    """table.md: the aggregated table, the focus estimate and the per-scene numbers."""
    labels = depth_bin_labels()
    candidates = summary["candidates"]
    wrong = [wrong_focus_name(f) for f in settings["wrong_focus_m"]]
    intro = (
        f"{summary['scenes']} scenes, {settings['width_px']} px wide; f/2.8 rendered from the f/8 "
        f"photo + Xtion depth at focus {settings['focus_m']} m ({settings['psf']} PSF, "
        f"{settings['num_layers']} layers, effective f/{settings['effective_f_number']:.2f} = "
        "f/2.8 minus the f/8 blur in quadrature, linear light). Every candidate is compared "
        "with the real f/2.8 photo after a sub-pixel alignment of the photo and a per-candidate "
        "exposure + vignetting fit; metrics on the interior. Regenerate: "
        "`python -m focaldepth.experiments.realcheck`.")
    hf_note = (
        "HF = luminance high-pass energy of the candidate / of the real f/2.8 photo per depth "
        "bin (geometric mean over scenes; 1 = as sharp as the photo, > 1 too sharp, < 1 too "
        "blurred). At 1.7 m focus the f/2.8 CoC is < 1 px in 1.5-1.9 m and 2.5-4 px below "
        "1.2 m or beyond 2.4 m.")
    header = ("| candidate | PSNR (dB) | SSIM | gain vs f/8 (dB) | beats f/8 | "
              + " | ".join(f"HF {label}" for label in labels) + " |")
    lines = ["# Renderer vs real f/2.8 photos (DFD indoor, Carvalho et al. 2018)", "", intro, "",
             hf_note, "", header, "|---|---|---|---|---|" + "---|" * len(labels)]
    for name, row in candidates.items():
        beats = "–" if row["beats_f8"] is None else f"{row['beats_f8']}/{summary['scenes']}"
        hf = " | ".join(_fmt(cell["geo_mean"]) for cell in row["hf_ratio"])
        lines.append(f"| {name} | {row['psnr_db']:.2f} | {row['ssim']:.4f} | "
                     f"{row['psnr_gain_vs_f8_db']:+.2f} | {beats} | {hf} |")
    lines.append("")
    notes = dict(CANDIDATE_NOTES)
    notes.update({name: f"rendered with a wrong focus distance ({focus:g} m)"
                  for name, focus in zip(wrong, settings["wrong_focus_m"])})
    lines += [f"- `{name}`: {notes[name]}" for name in candidates if name in notes]

    quartiles = summary["per_scene_best_focus_m"]
    sweep = summary["sweep_focus_m"]
    focus = (
        f"**Focus distance that best explains the photos: {summary['focus_estimate_m']:.2f} m** "
        f"(argmin over a {len(sweep)}-point sweep {min(sweep):g}–{max(sweep):g} m of the mean "
        "MSE relative to the f/8 baseline, parabola-refined in dioptres); per-scene estimates: "
        f"median {quartiles['median']:.2f} m, quartiles {quartiles['q25']:.2f}–"
        f"{quartiles['q75']:.2f} m. The nominal focus (1.7 m) is approximate.")
    curve = "Mean relative MSE along the sweep: " + ", ".join(
        f"{f:.2f} m: {e:.3f}" for f, e in zip(sweep, summary["sweep_mean_relative_mse"]))
    shift = summary["alignment_shift_px"]
    lines += ["", focus, "", curve, "",
              f"Alignment shift f/2.8 → f/8: mean {shift['mean']:.2f} px, max {shift['max']:.2f} px.",
              "", "## Per scene (PSNR dB)", "",
              "| scene | shift (px) | best focus (m) | f8 | render | " + " | ".join(wrong) + " |",
              "|---|---|---|---|---|" + "---|" * len(wrong)]
    for r in results:
        cells = " | ".join(f"{r.rows[n]['psnr_db']:.2f}" for n in wrong)
        lines.append(f"| {r.name} | {r.shift_px[0]:+.2f}, {r.shift_px[1]:+.2f} | "
                     f"{r.best_focus_m:.2f} | {r.rows['f8']['psnr_db']:.2f} | "
                     f"{r.rows['render']['psnr_db']:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def scene_record(result: SceneResult) -> dict[str, object]:
    """The JSON-able part of a scene result (no images)."""
    return {"name": result.name, "shift_px": list(result.shift_px),
            "best_focus_m": result.best_focus_m, "bin_fraction": result.bin_fraction,
            "sweep_mse": result.sweep_mse, "candidates": result.rows}


# --- figure ----------------------------------------------------------------------------


def _rgb8(srgb: Tensor) -> np.ndarray:
    return (srgb[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def _error_map(candidate: Tensor, real: Tensor, full_scale: float) -> np.ndarray:
    import matplotlib

    error = (candidate - real).abs().mean(dim=1)[0].numpy() / full_scale
    colours = matplotlib.colormaps["magma"](np.clip(error, 0.0, 1.0))[..., :3]
    return (colours * 255.0 + 0.5).astype(np.uint8)


def most_defocused_window(sharp_srgb: Tensor, depth_m: Tensor, focus_m: float,
                          size_hw: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of the ``size_hw`` window (on a 5x5 grid of positions) where blur is
    most visible: the largest mean of dioptric distance from the focus plane times the
    local detail (gradient magnitude) of the sharp image; a far but blank wall scores 0."""
    defocus = (1.0 / depth_m[0, 0] - 1.0 / focus_m).abs()
    detail = kornia.filters.sobel(kornia.color.rgb_to_grayscale(sharp_srgb))[0, 0]
    score = defocus * detail
    height, width = score.shape
    best, corner = -1.0, (0, 0)
    for top in np.linspace(0, height - size_hw[0], 5).astype(int):
        for left in np.linspace(0, width - size_hw[1], 5).astype(int):
            value = float(score[top:top + size_hw[0], left:left + size_hw[1]].mean())
            if value > best:
                best, corner = value, (int(top), int(left))
    return corner


def comparison_figure(result: SceneResult, depth_m: Tensor, focus_m: float,
                      error_full_scale: float = 0.1) -> np.ndarray:
    """Two rows of five panels: f/8, our f/2.8 rendering, the real f/2.8 photo, |f/8 - real|
    and |rendering - real| (same colour scale; candidates exposure-matched). Row 1 is the
    whole frame, row 2 a 2x enlargement of the quarter where blur is most visible."""
    from focaldepth.viz import contact_sheet

    f8, render, real = (result.images[k] for k in ("f8", "render", "real"))
    panels = [_rgb8(f8), _rgb8(render), _rgb8(real),
              _error_map(f8, real, error_full_scale), _error_map(render, real, error_full_scale)]
    rows = result.rows
    labels = ["f/8 photo (input)", f"rendered f/2.8 ({rows['render']['psnr_db']:.1f} dB)",
              "real f/2.8 photo", f"|f/8 - real| ({rows['f8']['psnr_db']:.1f} dB)",
              "|render - real|"]
    height, width = panels[0].shape[:2]
    crop_hw = (height // 2, width // 2)
    top, left = most_defocused_window(f8, depth_m, focus_m, crop_hw)
    crops = [np.repeat(np.repeat(p[top:top + crop_hw[0], left:left + crop_hw[1]], 2, 0), 2, 1)
             for p in panels]
    crops = [c[:height, :width] for c in crops]
    title = (f"DFD indoor scene {result.name}: errors on a 0-{error_full_scale:g} sRGB scale; "
             f"row 2 = 2x crop at ({left}, {top})")
    return contact_sheet(panels + crops, labels + [f"{label} (2x crop)" for label in labels],
                         columns=5, tile_width_px=min(width, FIGURE_TILE_WIDTH_PX), title=title)


# --- entry point -----------------------------------------------------------------------


def run(data: Path, out: Path, *, limit: int | None = None, width_px: int | None = None,
        num_layers: int = 32, focus_m: float = NOMINAL_FOCUS_M,
        figure_scene: str | None = None) -> dict[str, object]:
    """Evaluate the scenes (the first ``limit``, all by default) and write ``out``/
    metrics.json, table.md and comparison.png (the scene named ``figure_scene``, by default
    the one with the median PSNR gain over the f/8 baseline: typical, not the best)."""
    from focaldepth.viz import write_png

    pairs = list_pairs(data)[:limit]
    sweep = focus_sweep_m(include=(focus_m, *WRONG_FOCUS_M))
    results: list[SceneResult] = []
    start = time.perf_counter()
    for i, pair in enumerate(pairs):
        scene = load_scene(pair, width_px)
        result = evaluate_scene(scene, focus_m=focus_m, sweep_m=sweep, num_layers=num_layers)
        results.append(dataclasses.replace(result, images={}))  # 81 scenes of images: too much
        print(f"[{i + 1}/{len(pairs)}] {pair.name}: f8 {result.rows['f8']['psnr_db']:.2f} dB, "
              f"render {result.rows['render']['psnr_db']:.2f} dB, best focus "
              f"{result.best_focus_m:.2f} m ({time.perf_counter() - start:.0f} s)", flush=True)
    summary = aggregate(results)
    if figure_scene is None:
        gains = [r.rows["render"]["psnr_db"] - r.rows["f8"]["psnr_db"] for r in results]
        figure_scene = results[int(np.argsort(gains)[len(gains) // 2])].name
    by_name = {p.name: p for p in pairs}
    if figure_scene not in by_name:
        raise UserError(f"figure scene {figure_scene!r} is not among the evaluated scenes", data)
    scene = load_scene(by_name[figure_scene], width_px)
    shown = evaluate_scene(scene, focus_m=focus_m, sweep_m=sweep, num_layers=num_layers,
                           variants=False)
    figure = comparison_figure(shown, scene.depth_m, focus_m)
    settings = {"data": str(data), "width_px": int(scene.sharp_srgb.shape[-1]),
                "focus_m": focus_m, "wrong_focus_m": list(WRONG_FOCUS_M), "num_layers": num_layers,
                "psf": "disk", "effective_f_number": effective_f_number(F_NUMBER_WIDE, F_NUMBER_SHARP),
                "camera": scene.camera.to_dict(), "depth_bins_m": depth_bin_labels(),
                "margin_px": max(4, round(MARGIN_PX_AT_FULL_WIDTH * scene.sharp_srgb.shape[-1]
                                          / DFD_IMAGE_WIDTH_PX)),
                "seconds": time.perf_counter() - start}

    # Everything is computed before the first file is written: a failure leaves no mix of
    # old and new outputs.
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", {
        "dataset": "DFD indoor (train split), Carvalho et al., 3DRW ECCV Workshops 2018",
        "settings": settings, "figure_scene": figure_scene, "summary": summary,
        "scenes": [scene_record(r) for r in results]})
    atomic_write_text(out / "table.md", markdown_table(summary, results, settings))
    write_png(out / "comparison.png", figure)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="DFD indoor folder (pairs.csv, f2.8/, f8/, depth_mm/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--limit", type=int, default=None, help="first N scenes only")
    parser.add_argument("--width", type=int, default=None, help="resize to this width (px)")
    parser.add_argument("--num-layers", type=int, default=32)
    parser.add_argument("--focus-m", type=float, default=NOMINAL_FOCUS_M)
    parser.add_argument("--figure-scene", default=None, help="scene name for comparison.png")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    try:
        summary = run(args.data, args.out, limit=args.limit, width_px=args.width,
                      num_layers=args.num_layers, focus_m=args.focus_m,
                      figure_scene=args.figure_scene)
    except UserError as error:  # one line, status 2, as the focaldepth CLI does
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print((args.out / "table.md").read_text().split("## Per scene")[0])
    print(f"focus estimate: {summary['focus_estimate_m']:.3f} m")


if __name__ == "__main__":
    main()
