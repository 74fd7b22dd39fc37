"""One synthetic focus-sweep sequence: scene -> ground truth -> rendered, noisy frames.

:func:`generate_sequence` is deterministic in ``(config seed, index)``: the scene and the
sensor noise come from two independent child streams of
``numpy.random.SeedSequence([seed, index])``, so sequence ``index`` is the same whichever
shard or worker makes it, and changing the noise model never changes the scenes.

Pipeline per sequence:

1. sample a scene (:func:`focaldepth.scenes.procedural.sample_scene`), static or dynamic;
2. focus schedule: the seed protocol, ``num_ramps`` near -> far ramps of ``frames_per_ramp``
   focus distances evenly spaced in dioptres over the scene's depth range
   (:func:`focaldepth.optics.repeated_ramps`; static scenes use ``num_ramps_static``);
3. ray-cast every frame: exact depth, anti-aliased all-in-focus image (quantised to 8 bits:
   the stored image *is* the renderer's input, so frames can be re-rendered from the file),
   backward flow for dynamic scenes;
4. CoC ground truth: :func:`focaldepth.optics.coc_px` of the stored float32 depth map and
   the frame's focus distance, evaluated in float64, stored as float32;
5. defocus with :func:`focaldepth.render.render_focal_stack` (frame t: its own all-in-focus
   image, depth map and focus distance) -- or, with ``render.backend: blender``, path-trace
   frames, all-in-focus images and depth with Cycles (:mod:`focaldepth.scenes.blender`) --
   then sensor noise (Gaussian approximation of
   Poisson shot noise plus read noise: variance = shot * intensity + read_std^2) and 8-bit
   quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from focaldepth import optics
from focaldepth.optics import Camera
from focaldepth.scenes.camera import log_uniform
from focaldepth.scenes.config import MIN_FOCUS_FOCAL_LENGTHS, SceneConfig
from focaldepth.scenes.pools import Pools
from focaldepth.scenes.procedural import (
    Scene,
    backward_flow,
    describe_scene,
    rasterise,
    sample_scene,
)

# Frames rendered per renderer call for dynamic scenes: one is as fast as five (measured at
# 256x256, 24 layers) and needs ~100 MB less memory.
RENDER_FRAMES_PER_CALL = 1


@dataclass(frozen=True)
class SequenceData:
    """A generated sequence in storage layout (T frames of H x W)."""

    frames: np.ndarray  # (T, H, W, 3) uint8: rendered, noisy
    aif: np.ndarray  # (T, H, W, 3) uint8: all-in-focus
    depth_m: np.ndarray  # (T, H, W) float32
    coc_px: np.ndarray  # (T, H, W) float32
    flow: np.ndarray | None  # (T, H, W, 2) float16, (dx, dy) backward; None if static
    focus_distance_m: np.ndarray  # (T,) float64
    camera: Camera
    scene: Scene
    params: dict[str, Any]  # JSON-ready description (manifest record)

    @property
    def is_dynamic(self) -> bool:
        return self.flow is not None


def seed_streams(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(scene rng, noise rng) of sequence ``index``: a function of (seed, index) only."""
    scene_seq, noise_seq = np.random.SeedSequence([int(seed), int(index)]).spawn(2)
    return np.random.default_rng(scene_seq), np.random.default_rng(noise_seq)


def camera_tensor(camera: Camera) -> torch.Tensor:
    """``(3,)`` float32 ``[focal_length_m, f_number, pixel_pitch_m]`` (the project's layout)."""
    return torch.tensor([camera.focal_length_m, camera.f_number, camera.pixel_pitch_m], dtype=torch.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 by rounding (clipped)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def render_frames(aif_u8: np.ndarray, depth_m: np.ndarray, focus_distance_m: np.ndarray, camera: Camera,
                  *, static: bool, num_layers: int, psf: str) -> np.ndarray:
    """Defocused frames (T, H, W, 3) float32 in [0, 1]. Static scenes render each distinct
    focus distance once (one call, S = number of distinct distances); dynamic scenes render
    frame t from its own image and depth with S = 1, a few frames per call."""
    from focaldepth.render import render_focal_stack

    cam = camera_tensor(camera)
    image = torch.from_numpy(aif_u8).permute(0, 3, 1, 2).to(torch.float32) / 255.0  # (T, 3, H, W)
    depth = torch.from_numpy(depth_m)[:, None]  # (T, 1, H, W)
    focus = torch.from_numpy(focus_distance_m)
    with torch.no_grad():
        if static:
            distinct, inverse = np.unique(focus_distance_m, return_inverse=True)
            stack = render_focal_stack(image[:1], depth[:1], torch.from_numpy(distinct)[None].to(torch.float32),
                                       cam[None], num_layers=num_layers, psf=psf)[0]  # (S, 3, H, W)
            frames = stack[torch.from_numpy(inverse.reshape(-1))]
        else:
            parts = []
            for start in range(0, len(focus_distance_m), RENDER_FRAMES_PER_CALL):
                stop = min(start + RENDER_FRAMES_PER_CALL, len(focus_distance_m))
                count = stop - start
                parts.append(render_focal_stack(image[start:stop], depth[start:stop],
                                                focus[start:stop, None].to(torch.float32),
                                                cam[None].expand(count, 3), num_layers=num_layers, psf=psf)[:, 0])
            frames = torch.cat(parts)
    return frames.permute(0, 2, 3, 1).clamp(0.0, 1.0).numpy()


def render_frames_complete(scene, frame_numbers: np.ndarray, focus_distance_m: np.ndarray, *, antialias: int,
                           num_layers: int, psf: str) -> np.ndarray:
    """Defocused frames (T, H, W, 3) float32 in [0, 1] from every surface whole
    (:func:`focaldepth.scenes.procedural.cast_surfaces`, :func:`focaldepth.render.render_surfaces`):
    a static scene (one frame number) is cast once and rendered at each distinct focus
    distance; a dynamic one frame by frame, each at its own focus distance."""
    from focaldepth.render import render_surfaces
    from focaldepth.scenes.procedural import cast_surfaces

    cam = camera_tensor(scene.camera)
    if len(frame_numbers) == 1:
        layers = cast_surfaces(scene, float(frame_numbers[0]), antialias)
        distinct, inverse = np.unique(focus_distance_m, return_inverse=True)
        stack = render_surfaces(layers.colour, layers.alpha, layers.depth_m,
                                torch.from_numpy(distinct).to(torch.float32), cam, num_layers=num_layers, psf=psf)
        frames = stack[torch.from_numpy(inverse.reshape(-1))]
    else:
        frames = torch.stack([
            render_surfaces(*_layers(cast_surfaces(scene, float(frame), antialias)),
                            torch.tensor([float(focus)]), cam, num_layers=num_layers, psf=psf)[0]
            for frame, focus in zip(frame_numbers, focus_distance_m)])
    return frames.permute(0, 2, 3, 1).clamp(0.0, 1.0).numpy()


def _layers(layers):
    return layers.colour, layers.alpha, layers.depth_m


def add_sensor_noise(frames: np.ndarray, rng: np.random.Generator, shot: float, read_std: float) -> np.ndarray:
    """Shot + read noise, Gaussian approximation: std = sqrt(shot * x + read_std^2)."""
    if shot == 0.0 and read_std == 0.0:
        return frames
    std = np.sqrt(shot * np.clip(frames, 0.0, 1.0) + read_std**2).astype(np.float32)
    return frames + std * rng.standard_normal(frames.shape, dtype=np.float32)


def coc_ground_truth(depth_m: np.ndarray, focus_distance_m: np.ndarray, camera: Camera) -> np.ndarray:
    """Per-frame CoC in pixels (T, H, W) float32: the thin-lens formula on the depth maps."""
    return optics.coc_px(depth_m.astype(np.float64), focus_distance_m[:, None, None].astype(np.float64),
                         camera.focal_length_m, camera.f_number, camera.pixel_pitch_m).astype(np.float32)


def sweep_range(rng: np.random.Generator, near_m: float, far_m: float, end_shift: tuple[float, float],
                camera: Camera) -> tuple[float, float]:
    """The focus sweep's near and far ends: the scene's range with each end moved outwards by
    ``u * span`` dioptres, ``u ~ U(end_shift)`` (negative: inwards). The near end never comes
    closer than the lens can focus (10 focal lengths) and the far end stays at a positive
    dioptre (at most twice as far as the scene's far end). No draw when ``end_shift`` is (0, 0),
    so configs without it generate exactly what they did."""
    if end_shift[0] == 0.0 and end_shift[1] == 0.0:
        return near_m, far_m
    near_dpt, far_dpt = 1.0 / near_m, 1.0 / far_m
    span_dpt = near_dpt - far_dpt
    shift_near, shift_far = rng.uniform(*end_shift, size=2)
    max_near_dpt = 1.0 / (MIN_FOCUS_FOCAL_LENGTHS * camera.focal_length_m)
    sweep_near_dpt = min(near_dpt + shift_near * span_dpt, max_near_dpt)
    sweep_far_dpt = max(far_dpt - shift_far * span_dpt, 0.5 * far_dpt)
    return 1.0 / sweep_near_dpt, 1.0 / sweep_far_dpt


def generate_sequence(cfg: SceneConfig, pools: Pools, seed: int, index: int) -> SequenceData:
    """Sequence ``index`` of the dataset with config ``cfg`` and seed ``seed`` (see module doc)."""
    scene_rng, noise_rng = seed_streams(seed, index)
    dynamic = bool(scene_rng.uniform() < cfg.motion.dynamic_fraction)
    focus = cfg.focus
    num_ramps = focus.num_ramps if dynamic else focus.num_ramps_static
    scene = sample_scene(scene_rng, cfg, pools, dynamic, focus.frames_per_ramp * num_ramps)
    sweep_near_m, sweep_far_m = sweep_range(scene_rng, scene.depth_range.near_m, scene.depth_range.far_m,
                                            focus.end_shift, scene.camera)
    focus_distance_m = optics.repeated_ramps(sweep_near_m, sweep_far_m, focus.frames_per_ramp,
                                             num_ramps).astype(np.float64)
    num_frames = len(focus_distance_m)

    # A static scene looks the same in every frame: ray-cast it once.
    frame_numbers = np.arange(num_frames, dtype=np.float64) if dynamic else np.zeros(1)
    blender = cfg.render.backend == "blender"
    # The Blender backend path-traces colour and depth itself; the ray-caster then only
    # provides surface ids and hit points for the flow.
    raster = rasterise(scene, frame_numbers, 1 if blender else cfg.antialias)
    flow = None
    if dynamic:
        flow_t = backward_flow(scene, raster, frame_numbers).permute(0, 2, 3, 1).numpy()
        flow_t[0] = 0.0  # frame 0 has no previous frame
        flow = flow_t.astype(np.float16)

    if blender:
        from focaldepth.scenes.blender import render_sequence_blender

        motion_frames = np.arange(num_frames, dtype=np.float64) if dynamic else np.zeros(num_frames)
        traced = render_sequence_blender(scene, focus_distance_m, motion_frames, samples=cfg.render.samples,
                                         seed=(int(seed) * 1_000_003 + int(index)) % 2**31)
        aif, depth_m = to_uint8(traced.aif), traced.depth_m
        rendered = np.clip(traced.frames, 0.0, 1.0)
    else:
        aif = to_uint8(raster.aif.permute(0, 2, 3, 1).numpy())
        depth_m = raster.depth_m.numpy()
        if not dynamic:
            aif = np.repeat(aif, num_frames, axis=0)
            depth_m = np.repeat(depth_m, num_frames, axis=0)
        if cfg.render.occlusion == "complete":
            rendered = render_frames_complete(scene, frame_numbers, focus_distance_m, antialias=cfg.antialias,
                                              num_layers=cfg.render.num_layers, psf=cfg.render.psf)
        else:
            rendered = render_frames(aif, depth_m, focus_distance_m, scene.camera, static=not dynamic,
                                     num_layers=cfg.render.num_layers, psf=cfg.render.psf)
    shot = log_uniform(noise_rng, cfg.noise.shot)
    read_std = log_uniform(noise_rng, cfg.noise.read_std)
    frames = to_uint8(add_sensor_noise(rendered, noise_rng, shot, read_std))
    coc = coc_ground_truth(depth_m, focus_distance_m, scene.camera)

    params = describe_scene(scene)
    if blender:
        from focaldepth.scenes.blender import blender_version

        params["blender_version"] = blender_version()
    if not blender:
        params["occlusion"] = cfg.render.occlusion
    params.update({"backend": cfg.render.backend, "noise_shot": round(shot, 8), "noise_read_std": round(read_std, 8),
                   "max_coc_px": round(float(coc.max()), 4),
                   "frames_per_ramp": focus.frames_per_ramp, "num_ramps": num_ramps})
    if focus.end_shift != (0.0, 0.0):
        params.update({"sweep_near_m": round(sweep_near_m, 6), "sweep_far_m": round(sweep_far_m, 6)})
    return SequenceData(frames, aif, depth_m, coc, flow, focus_distance_m, scene.camera, scene, params)
