"""Random cameras and the per-scene depth-range policy.

Cameras. The sensor width is drawn log-uniformly from ``camera.sensor_width_mm`` and the
horizontal field of view uniformly from ``camera.field_of_view_deg``; together they give the
focal length ``f = w / (2 tan(fov / 2))``, clipped to ``camera.focal_length_mm``. So a 5 mm
phone sensor gets a 4-14 mm lens and a 36 mm full-frame sensor a 24-85 mm lens, as real
cameras do, instead of absurd pairs (an 85 mm lens on a phone sensor). The f-number is
log-uniform in ``camera.f_number``.

Depth-range policy (why: a depth-from-focus scene is only useful if its blur is visible
but not absurd for *its* camera). Blur is linear in dioptres: a point at depth D seen with
focus at F has CoC ``c ~= k |1/F - 1/D|`` pixels with ``k = f^2 / (N p)``
(:attr:`focaldepth.optics.Camera.coc_px_per_dpt`, pixel pitch ``p`` of the *stored*
image). The focus sweep spans the scene from near to far, so the largest CoC of the sweep
is about ``k * span_dpt``. For every scene:

1. draw a target largest CoC ``c*`` log-uniformly from ``depth.max_coc_px`` (2-40 px);
2. draw cameras (as above) until one can reach it: the allowed dioptric interval is
   ``[1/far_limit, 1/near_limit]`` with ``far_limit = depth.range_m[1]`` and
   ``near_limit = max(depth.range_m[0], 10 f)`` (real lenses do not focus closer than about
   ten focal lengths; it also keeps ``F / (F - f) <= 1.11``, so the approximation above is
   within 11 %), so a camera reaches ``c_reach = k * (1/near_limit - 1/far_limit)``. After
   ``MAX_CAMERA_DRAWS`` misses the camera with the largest reach is used and the target is
   capped at its reach (only happens for a config whose cameras cannot blur that much);
3. the dioptric span is ``span = c* / k``; the far end of the scene is drawn
   log-uniformly in depth between ``far_limit`` and the farthest far end that leaves room
   for the span, and ``near = 1 / (1/far + span)``.

So the blur targets are spread log-uniformly over 2-40 px whatever the camera mix, and
cameras are conditioned on the target: a phone (k ~ 0.5 px/dpt at 256 px, reaching about
10 px over 5 cm - 10 m, i.e. macro scenes) appears with small targets, a fast 85 mm lens
(k ~ 40 px/dpt) with shallow scenes of about one dioptre. The target and the achieved
largest CoC are recorded per sequence in the manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from focaldepth.optics import Camera
from focaldepth.scenes.config import MIN_FOCUS_FOCAL_LENGTHS, CameraConfig, DepthConfig

MAX_CAMERA_DRAWS = 64


def log_uniform(rng: np.random.Generator, value_range: tuple[float, float]) -> float:
    """Log-uniform in ``[low, high]``; uniform if ``low`` is 0; the value if ``low == high``."""
    low, high = float(value_range[0]), float(value_range[1])
    if low == high:
        return low
    if low <= 0.0:
        return float(rng.uniform(low, high))
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def sample_camera(rng: np.random.Generator, cfg: CameraConfig, image_width_px: int) -> Camera:
    """A random camera imaging ``image_width_px`` pixels across its sensor (see module doc)."""
    sensor_width_mm = log_uniform(rng, cfg.sensor_width_mm)
    fov_rad = math.radians(float(rng.uniform(*cfg.field_of_view_deg)))
    focal_length_mm = sensor_width_mm / (2.0 * math.tan(fov_rad / 2.0))
    focal_length_mm = float(np.clip(focal_length_mm, *cfg.focal_length_mm))
    f_number = log_uniform(rng, cfg.f_number)
    return Camera(focal_length_mm, f_number, sensor_width_mm, image_width_px)


@dataclass(frozen=True)
class DepthRange:
    """A scene's depth range (also the focus sweep's range) and the CoC target it came from."""

    near_m: float
    far_m: float
    target_max_coc_px: float

    @property
    def span_dpt(self) -> float:
        return 1.0 / self.near_m - 1.0 / self.far_m


def nearest_depth_m(camera: Camera, cfg: DepthConfig) -> float:
    """Nearest allowed depth for ``camera``: the range's near end or ten focal lengths."""
    return max(cfg.range_m[0], MIN_FOCUS_FOCAL_LENGTHS * camera.focal_length_m)


def reachable_coc_px(camera: Camera, cfg: DepthConfig) -> float:
    """The largest sweep CoC ``camera`` can produce within the allowed depth range."""
    return camera.coc_px_per_dpt * _available_dpt(camera, cfg)


def _available_dpt(camera: Camera, cfg: DepthConfig) -> float:
    # Keep a sliver of freedom for the placement even at the largest possible span.
    return 0.999 * (1.0 / nearest_depth_m(camera, cfg) - 1.0 / cfg.range_m[1])


def sample_depth_range(rng: np.random.Generator, camera: Camera, cfg: DepthConfig,
                       target_px: float) -> DepthRange:
    """A scene depth range whose sweep's largest CoC is about ``target_px`` (capped by what
    the camera can reach), placed log-uniformly in depth (see module doc)."""
    span_dpt = min(target_px / camera.coc_px_per_dpt, _available_dpt(camera, cfg))
    max_dpt = 1.0 / nearest_depth_m(camera, cfg)
    farthest_far_m = cfg.range_m[1]
    nearest_far_m = 1.0 / (max_dpt - span_dpt)
    far_m = log_uniform(rng, (nearest_far_m, farthest_far_m))
    near_m = 1.0 / (1.0 / far_m + span_dpt)
    return DepthRange(near_m=near_m, far_m=far_m, target_max_coc_px=min(target_px, camera.coc_px_per_dpt * span_dpt))


def sample_camera_and_depth_range(rng: np.random.Generator, camera_cfg: CameraConfig, depth_cfg: DepthConfig,
                                  image_width_px: int) -> tuple[Camera, DepthRange]:
    """A blur target, a camera that can reach it, and the scene depth range (module doc)."""
    target_px = log_uniform(rng, depth_cfg.max_coc_px)
    best: Camera | None = None
    for _ in range(MAX_CAMERA_DRAWS):
        camera = sample_camera(rng, camera_cfg, image_width_px)
        if best is None or reachable_coc_px(camera, depth_cfg) > reachable_coc_px(best, depth_cfg):
            best = camera
        if reachable_coc_px(camera, depth_cfg) >= target_px:
            best = camera
            break
    assert best is not None
    return best, sample_depth_range(rng, best, depth_cfg, target_px)
