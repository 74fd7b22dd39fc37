"""Parameters of the procedural scene distribution (the ``scene`` part of a generate config).

Plain frozen dataclasses with defaults; a YAML file is parsed into them by
:func:`focaldepth.generate.config.load_config`, which rejects unknown keys and wrong types.
:meth:`SceneConfig.check` rejects values that are impossible (non-positive camera values,
inverted ranges, zero objects, a depth range no sampled camera can focus on ...), each with
one line naming the offending key.

Ranges are ``[low, high]`` lists; a value is drawn uniformly (counts, angles, speeds) or
log-uniformly (focal length, f-number, sensor width, CoC target, sizes, noise) between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from focaldepth.errors import UserError

Range = tuple[float, float]

# A thin lens cannot focus closer than its focal length; real lenses stop far earlier
# (an 85 mm portrait lens at ~0.85 m, a 4 mm phone lens at a few cm). The nearest scene
# depth of a sampled camera is therefore max(depth.range_m[0], 10 * focal length).
MIN_FOCUS_FOCAL_LENGTHS = 10.0
# Largest physically meaningful aperture in air (f/0.5 is the theoretical limit).
MIN_F_NUMBER = 0.5
MOTION_KINDS = ("objects", "camera", "both")
PSFS = ("disk", "gaussian")
BACKENDS = ("procedural", "blender")


@dataclass(frozen=True)
class ObjectsConfig:
    pool: str = "small"  # "small" or "small_large" (see focaldepth.scenes.pools)
    count: tuple[int, int] = (5, 15)  # number of foreground objects per scene
    max_slant_deg: float = 40.0  # tilt of an object's plane away from fronto-parallel
    card_max_slant_deg: float = 70.0  # tilt of "card" shapes (slanted planes)
    uniform_fraction: float = 0.15  # probability that a surface is textureless


@dataclass(frozen=True)
class BackgroundConfig:
    max_slant_deg: float = 45.0  # tilt of the background wall
    uniform_fraction: float = 0.05


@dataclass(frozen=True)
class CameraConfig:
    focal_length_mm: Range = (4.0, 85.0)
    f_number: Range = (1.4, 8.0)
    sensor_width_mm: Range = (5.0, 36.0)
    # Horizontal field of view; with the sensor width it gives the focal length (then clipped
    # to focal_length_mm), so phones get short lenses and full-frame cameras long ones.
    field_of_view_deg: Range = (20.0, 75.0)


@dataclass(frozen=True)
class DepthConfig:
    range_m: Range = (0.05, 10.0)  # every scene lies inside this range
    # Target for the largest CoC of a sweep (focus at one end, depth at the other), pixels
    # at the stored resolution; sets each scene's dioptric depth span (see scenes.camera).
    max_coc_px: Range = (2.0, 40.0)


@dataclass(frozen=True)
class FocusConfig:
    frames_per_ramp: int = 5  # near -> far ramp, evenly spaced in dioptres
    num_ramps: int = 5  # ramps of a dynamic sequence (seed protocol: 5 x 5)
    num_ramps_static: int = 1  # ramps of a static sequence (one focal stack)
    # Each end of the sweep moves by u * (the scene's dioptric span), u uniform in this range:
    # > 0 widens the sweep beyond the scene, < 0 leaves part of the scene outside the swept
    # range (real sweeps rarely bracket a scene exactly). (0, 0): the sweep is the scene range.
    end_shift: Range = (0.0, 0.0)


@dataclass(frozen=True)
class MotionConfig:
    dynamic_fraction: float = 0.5  # fraction of sequences with motion
    kinds: tuple[str, ...] = MOTION_KINDS  # drawn with equal probability for dynamic sequences
    object_speed_px: Range = (0.0, 6.0)  # image-plane speed of an object, pixels per frame
    object_rotation_deg: Range = (0.0, 5.0)  # rotation per frame
    camera_speed_px: Range = (0.0, 10.0)  # image speed at the middle depth, pixels per frame


@dataclass(frozen=True)
class AppearanceConfig:
    brightness: Range = (0.6, 1.2)  # global gain of the scene's radiance
    colour_cast: float = 0.15  # per-channel gain within 1 +- colour_cast (white balance)
    object_shading: Range = (0.7, 1.0)  # per-surface gain (baked lighting)
    # Probability that a textured surface shows a photograph (scenes.photos) instead of a
    # procedural texture. 0 keeps the generator's pre-photo output byte for byte.
    photo_fraction: float = 0.0
    # Per-surface softening of the texture: Gaussian sigma in texels, uniform in this range
    # (texels are 1-2.5 image pixels). (0, 0): crisp textures, the generator's older output.
    texture_softness_px: Range = (0.0, 0.0)


@dataclass(frozen=True)
class NoiseConfig:
    # Sensor noise on [0, 1] intensities: variance = shot * intensity + read_std**2.
    shot: Range = (1e-4, 3e-3)
    read_std: Range = (5e-4, 5e-3)


OCCLUSION_MODES = ("aif", "complete")


@dataclass(frozen=True)
class RenderConfig:
    backend: str = "procedural"  # or "blender": Cycles path tracing (needs bpy), see scenes.blender
    num_layers: int = 24  # procedural backend: depth layers
    psf: str = "disk"  # procedural backend: "disk" or "gaussian"
    # procedural backend: "aif" blurs the all-in-focus image and depth (render_focal_stack:
    # what an occluder hides is invented); "complete" blurs every surface whole, hidden parts
    # included (render_surfaces: defocused occluders turn see-through, as through a lens and in
    # Cycles). "aif" keeps older configs' data unchanged.
    occlusion: str = "aif"
    samples: int = 128  # blender backend: Cycles samples per pixel


@dataclass(frozen=True)
class SceneConfig:
    resolution: tuple[int, int] = (256, 256)  # stored (height, width)
    antialias: int = 2  # supersampling factor per axis for the all-in-focus colour
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    focus: FocusConfig = field(default_factory=FocusConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    render: RenderConfig = field(default_factory=RenderConfig)

    def check(self, path: object | None = None) -> None:
        """Raise a one-line :class:`UserError` for the first impossible value."""
        check_scene_config(self, path)


def to_plain(obj: Any) -> Any:
    """A dataclass tree as plain dicts/lists (for YAML/JSON), field order preserved."""
    if is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_plain(v) for v in obj]
    return obj


def _fail(key: str, message: str, path: object | None) -> None:
    raise UserError(f"{key}: {message}", path)


def _check_range(key: str, value: Range, path, *, positive: bool = True, low: float | None = None,
                 high: float | None = None, allow_equal: bool = True) -> None:
    lo, hi = value
    if not (math.isfinite(lo) and math.isfinite(hi)):
        _fail(key, f"values must be finite, got {list(value)}", path)
    if positive and lo <= 0:
        _fail(key, f"values must be positive, got {list(value)}", path)
    if lo > hi or (not allow_equal and lo == hi):
        _fail(key, f"range is inverted: low {lo} > high {hi}" if lo > hi else
              f"range is empty: low == high == {lo}", path)
    if low is not None and lo < low:
        _fail(key, f"low end {lo} is below the possible minimum {low}", path)
    if high is not None and hi > high:
        _fail(key, f"high end {hi} is above the possible maximum {high}", path)


def _check_fraction(key: str, value: float, path) -> None:
    if not (0.0 <= value <= 1.0):
        _fail(key, f"must be a fraction in [0, 1], got {value}", path)


def check_scene_config(cfg: SceneConfig, path: object | None = None) -> None:
    """See :meth:`SceneConfig.check`."""
    from focaldepth.scenes.pools import OBJECT_POOLS

    height, width = cfg.resolution
    if not (16 <= height <= 8192 and 16 <= width <= 8192):
        _fail("resolution", f"height and width must be in [16, 8192], got {list(cfg.resolution)}", path)
    if not 1 <= cfg.antialias <= 4:
        _fail("antialias", f"must be 1, 2, 3 or 4 (supersampling per axis), got {cfg.antialias}", path)

    o = cfg.objects
    if o.pool not in OBJECT_POOLS:
        _fail("objects.pool", f"unknown pool {o.pool!r}; choose one of {sorted(OBJECT_POOLS)}", path)
    if o.count[0] < 1:
        _fail("objects.count", f"a scene needs at least one object, got {list(o.count)}", path)
    _check_range("objects.count", o.count, path, high=64)
    for key, value in (("objects.max_slant_deg", o.max_slant_deg),
                       ("objects.card_max_slant_deg", o.card_max_slant_deg),
                       ("background.max_slant_deg", cfg.background.max_slant_deg)):
        if not 0.0 <= value <= 80.0:
            _fail(key, f"must be in [0, 80] degrees (a plane seen edge-on has no area), got {value}", path)
    _check_fraction("objects.uniform_fraction", o.uniform_fraction, path)
    _check_fraction("background.uniform_fraction", cfg.background.uniform_fraction, path)

    c = cfg.camera
    _check_range("camera.focal_length_mm", c.focal_length_mm, path, high=2000.0)
    _check_range("camera.f_number", c.f_number, path, low=MIN_F_NUMBER, high=64.0)
    _check_range("camera.sensor_width_mm", c.sensor_width_mm, path, high=100.0)
    _check_range("camera.field_of_view_deg", c.field_of_view_deg, path, high=150.0)

    d = cfg.depth
    _check_range("depth.range_m", d.range_m, path, allow_equal=False)
    _check_range("depth.max_coc_px", d.max_coc_px, path, high=200.0)
    nearest_possible_m = MIN_FOCUS_FOCAL_LENGTHS * c.focal_length_mm[0] * 1e-3
    if d.range_m[1] <= nearest_possible_m:
        _fail("depth.range_m", f"far end {d.range_m[1]} m is not beyond the closest focus of the "
              f"shortest lens ({nearest_possible_m:.3g} m = {MIN_FOCUS_FOCAL_LENGTHS:g} focal lengths)", path)

    f = cfg.focus
    if f.frames_per_ramp < 2 or f.num_ramps < 1 or f.num_ramps_static < 1:
        _fail("focus", "need frames_per_ramp >= 2, num_ramps >= 1 and num_ramps_static >= 1, got "
              f"{f.frames_per_ramp}, {f.num_ramps}, {f.num_ramps_static}", path)
    _check_range("focus.end_shift", f.end_shift, path, positive=False, low=-0.45, high=1.0)

    m = cfg.motion
    _check_fraction("motion.dynamic_fraction", m.dynamic_fraction, path)
    if not m.kinds or any(k not in MOTION_KINDS for k in m.kinds):
        _fail("motion.kinds", f"must be a non-empty list from {list(MOTION_KINDS)}, got {list(m.kinds)}", path)
    if m.dynamic_fraction > 0 and f.frames_per_ramp * f.num_ramps < 2:
        _fail("focus.num_ramps", "dynamic sequences need at least 2 frames", path)
    _check_range("motion.object_speed_px", m.object_speed_px, path, positive=False, low=0.0)
    _check_range("motion.object_rotation_deg", m.object_rotation_deg, path, positive=False, low=0.0, high=45.0)
    _check_range("motion.camera_speed_px", m.camera_speed_px, path, positive=False, low=0.0)

    a = cfg.appearance
    _check_range("appearance.brightness", a.brightness, path)
    _check_range("appearance.object_shading", a.object_shading, path, high=1.0)
    if not 0.0 <= a.colour_cast < 1.0:
        _fail("appearance.colour_cast", f"must be in [0, 1), got {a.colour_cast}", path)
    _check_fraction("appearance.photo_fraction", a.photo_fraction, path)
    _check_range("appearance.texture_softness_px", a.texture_softness_px, path, positive=False, low=0.0, high=8.0)

    n = cfg.noise
    _check_range("noise.shot", n.shot, path, positive=False, low=0.0, high=1.0)
    _check_range("noise.read_std", n.read_std, path, positive=False, low=0.0, high=1.0)

    r = cfg.render
    if r.backend not in BACKENDS:
        _fail("render.backend", f"must be one of {list(BACKENDS)}, got {r.backend!r}", path)
    if r.backend == "blender":
        from focaldepth.scenes.backends import blender_available

        if not blender_available():
            _fail("render.backend", "blender needs the bpy package: pip install 'focaldepth[blender]'", path)
    if r.samples < 1:
        _fail("render.samples", f"must be >= 1, got {r.samples}", path)
    if r.psf not in PSFS:
        _fail("render.psf", f"must be one of {list(PSFS)}, got {r.psf!r}", path)
    if r.occlusion not in OCCLUSION_MODES:
        _fail("render.occlusion", f"must be one of {list(OCCLUSION_MODES)}, got {r.occlusion!r}", path)
    if r.num_layers < 2:
        _fail("render.num_layers", f"must be >= 2, got {r.num_layers}", path)
