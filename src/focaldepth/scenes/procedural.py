"""The procedural scene model: sampling a random scene, and ray-casting it exactly.

A scene is a background wall plus N foreground objects, all textured planar patches
(fronto-parallel or slanted) moving rigidly (:mod:`focaldepth.scenes.motion`). Because
every surface is a plane, each pixel's ray is intersected analytically, which gives for
every frame, exactly and at no extra cost:

* ``depth_m``: z of the nearest hit along the pixel-centre ray (z-buffer);
* the all-in-focus image: the hit's texture colour (bilinear), averaged over
  ``antialias x antialias`` sub-pixel rays so that edges are anti-aliased like a real
  sensor's, while depth stays the exact pixel-centre value (no "flying pixels");
* backward optical flow: the pixel-centre hit is a point on a known surface; moving it
  back with its surface to frame t-1 and projecting it with the camera of frame t-1 gives
  where that pixel was in frame t-1.

Placement (``sample_scene``): the camera and the scene's depth range come from
:mod:`focaldepth.scenes.camera`. The background is a plane whose farthest visible point is
at the far end; its slant is limited so that it occupies at most the far half of the
scene's dioptric span. Objects' centres are uniform in dioptres between the background's
nearest point and the near end (blur is linear in dioptres), laterally anywhere over the
image (partly outside it too), with sizes from the object pool and slants limited so
that a slanted object stays inside the depth range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from focaldepth.optics import Camera
from focaldepth.scenes.camera import DepthRange, log_uniform, sample_camera_and_depth_range
from focaldepth.scenes.config import SceneConfig
from focaldepth.scenes.motion import RigidMotion, camera_centres, rotation_matrix, tilted_frame
from focaldepth.scenes.pools import Pools, sample_size_fraction
from focaldepth.scenes.shapes import CARD_FAMILY, SHAPE_FAMILY_OF, Shape, sample_shape
from focaldepth.scenes.textures import UNIFORM_TEXTURE, make_texture

BACKGROUND_TEXTURE_MAX_PX = 512
OBJECT_TEXTURE_MAX_PX = 384
# Random per-frame relative speed of a surface along z (depth change per frame).
MAX_DEPTH_SPEED_FRACTION = 0.01
# Random z speed of the camera, as a fraction of the near depth per frame.
MAX_CAMERA_DOLLY_FRACTION = 0.004


@dataclass(frozen=True)
class Surface:
    """A textured plane: the background (``shape is None``: unbounded) or an object."""

    name: str
    texture_name: str
    texture: np.ndarray  # (Ht, Wt, 3) float32 in [0, 1], brightness/colour already applied
    texel_m: float  # size of one texel on the surface
    motion: RigidMotion
    shape: Shape | None = None
    half_size_m: float = math.inf  # the outline's unit disc has this radius on the surface

    def describe(self) -> dict[str, Any]:
        """JSON-ready parameters for the manifest."""
        centre, rotation = self.motion.centre_m, self.motion.rotation
        tilt_deg = math.degrees(math.acos(min(1.0, abs(float(rotation[2, 2])))))
        record = {"name": self.name, "texture": self.texture_name, "depth_m": round(float(centre[2]), 6),
                  "slant_deg": round(tilt_deg, 3),
                  "speed_m_per_frame": round(float(np.linalg.norm(self.motion.velocity_m)), 8),
                  "rotation_deg_per_frame": round(math.degrees(self.motion.angular_speed_rad), 5)}
        if self.shape is not None:
            record["shape"] = self.shape.name
            record["diameter_m"] = round(2 * self.half_size_m, 6)
        return record


@dataclass(frozen=True)
class Scene:
    """Everything needed to ray-cast any frame of a sequence."""

    camera: Camera
    height: int
    width: int
    depth_range: DepthRange
    surfaces: tuple[Surface, ...]  # [0] is the background
    camera_velocity_m: np.ndarray = field(default_factory=lambda: np.zeros(3))
    motion_kind: str = "static"
    # Frame number of motion time 0, the pose the scene was composed in: the middle frame
    # of the sequence, so that motion spreads to both sides instead of drifting away.
    origin_frame: float = 0.0

    def time(self, frame: float) -> float:
        """Motion time (frames since the composed pose) of frame number ``frame``."""
        return float(frame) - self.origin_frame

    @property
    def focal_px(self) -> float:
        return self.camera.focal_length_m / self.camera.pixel_pitch_m

    @property
    def is_dynamic(self) -> bool:
        return self.motion_kind != "static"


# --- sampling ------------------------------------------------------------------------------


def _choose_texture(rng: np.random.Generator, pools: Pools, uniform_fraction: float,
                    photo_fraction: float = 0.0) -> str:
    if rng.uniform() < uniform_fraction:
        return UNIFORM_TEXTURE
    # Draw only when photos are on, so configs without them generate what they always did.
    if photo_fraction > 0.0 and pools.photos and rng.uniform() < photo_fraction:
        return str(pools.photos[int(rng.integers(len(pools.photos)))])
    return str(pools.textures[int(rng.integers(len(pools.textures)))])


def _surface_texture(rng: np.random.Generator, name: str, size_px: int, gain: np.ndarray,
                     softness_px: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    texture = make_texture(name, rng, size_px, size_px)
    # Real surfaces are not all crisp (soft print, fabric, the capture's own blur): a texture
    # softened by a Gaussian of sigma ~ U(softness_px) texels, so that "not very sharp in any
    # frame" does not mean "out of focus". No draw when off (older configs unchanged).
    if softness_px[1] > 0.0:
        sigma = float(rng.uniform(*softness_px))
        if sigma > 0.05:
            texture = cv2.GaussianBlur(texture, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(texture * gain[None, None, :], 0.0, 1.0).astype(np.float32)


def _half_fov_extent(height: int, width: int, focal_px: float, direction_rad: float) -> float:
    """max over the image corners of ``x cos(a) + y sin(a)`` in normalised ray coordinates."""
    hx, hy = (width - 1) / 2 / focal_px, (height - 1) / 2 / focal_px
    return hx * abs(math.cos(direction_rad)) + hy * abs(math.sin(direction_rad))


# A moving camera must stay clear of the wall: its distance to the wall's plane never drops
# below this fraction of the distance in the composed pose.
MIN_WALL_DISTANCE_FRACTION = 0.6


def sample_scene(rng: np.random.Generator, cfg: SceneConfig, pools: Pools, dynamic: bool,
                 num_frames: int = 1) -> Scene:
    """Draw a random scene (camera, depth range, background, objects, motion) for a
    sequence of ``num_frames`` frames (composed for its middle frame)."""
    height, width = cfg.resolution
    camera, depth_range = sample_camera_and_depth_range(rng, cfg.camera, cfg.depth, width)
    focal_px = camera.focal_length_m / camera.pixel_pitch_m
    near_m, far_m = depth_range.near_m, depth_range.far_m
    near_dpt, far_dpt = 1.0 / near_m, 1.0 / far_m

    appearance = cfg.appearance
    scene_gain = log_uniform(rng, appearance.brightness)
    colour_cast = 1.0 + rng.uniform(-appearance.colour_cast, appearance.colour_cast, 3)

    motion_kind = "static"
    if dynamic:
        motion_kind = str(cfg.motion.kinds[int(rng.integers(len(cfg.motion.kinds)))])
    objects_move = motion_kind in ("objects", "both")
    camera_moves = motion_kind in ("camera", "both")

    # Background: Z = Z0 / (1 + tan(tilt) (x cos a + y sin a)) over the image; its farthest
    # point is put at far_m, and tan(tilt) * extent <= a_max keeps its nearest point at
    # far * (1 - a_max) / (1 + a_max), i.e. inside the far half of the dioptric span.
    # The extent is enlarged by 1.3 so that a moving camera still sees only the wall.
    ratio = far_m / near_m
    a_max = min(0.5, 0.5 * (ratio - 1.0) / (ratio + 1.0))
    direction = rng.uniform(0, 2 * np.pi)
    extent = 1.3 * _half_fov_extent(height, width, focal_px, direction)
    tilt = min(math.radians(rng.uniform(0, cfg.background.max_slant_deg)), math.atan(a_max / extent))
    a = math.tan(tilt) * extent
    centre_depth_m = far_m * (1.0 - a)
    # Tilt about the axis perpendicular to `direction`, so depth changes along `direction`
    # (it grows towards +direction: normal = (-sin t cos a, -sin t sin a, cos t)).
    rotation = tilted_frame(rng.uniform(0, 2 * np.pi), tilt, direction - np.pi / 2)
    background_nearest_m = far_m * (1.0 - a) / (1.0 + a)
    bg_texel_m = centre_depth_m / focal_px * log_uniform(rng, (1.0, 2.5))
    bg_size_px = int(min(BACKGROUND_TEXTURE_MAX_PX, math.ceil(1.6 * max(height, width) * centre_depth_m
                                                              / focal_px / bg_texel_m)))
    bg_texture_name = _choose_texture(rng, pools, cfg.background.uniform_fraction, appearance.photo_fraction)
    bg_gain = scene_gain * colour_cast * rng.uniform(*appearance.object_shading)
    surfaces = [Surface("background", bg_texture_name,
                        _surface_texture(rng, bg_texture_name, max(8, bg_size_px), bg_gain,
                                         appearance.texture_softness_px), bg_texel_m,
                        RigidMotion.still(np.array([0.0, 0.0, centre_depth_m]), rotation))]

    count = int(rng.integers(cfg.objects.count[0], cfg.objects.count[1] + 1))
    object_far_dpt = 1.0 / background_nearest_m
    for index in range(count):
        shape_name = str(pools.shapes[int(rng.integers(len(pools.shapes)))])
        shape = sample_shape(shape_name, rng)
        depth_m = 1.0 / rng.uniform(object_far_dpt, near_dpt)
        x_px, y_px = rng.uniform(-0.1, 1.1) * (width - 1), rng.uniform(-0.1, 1.1) * (height - 1)
        centre = depth_m * np.array([(x_px - (width - 1) / 2) / focal_px, (y_px - (height - 1) / 2) / focal_px, 1.0])
        diameter_fraction = sample_size_fraction(cfg.objects.pool, rng)
        half_size_m = diameter_fraction * width / 2 * depth_m / focal_px
        max_slant = cfg.objects.card_max_slant_deg if SHAPE_FAMILY_OF[shape_name] == CARD_FAMILY \
            else cfg.objects.max_slant_deg
        # The depth of a plane point at distance r from the centre changes by r * sin(tilt)
        # (roughly); keep the whole object between 0.9 * near and far.
        room_m = min(depth_m - 0.9 * near_m, far_m - depth_m)
        max_tilt = min(math.radians(max_slant), math.asin(float(np.clip(room_m / half_size_m, 0.0, 1.0))))
        tilt = rng.uniform(0.0, max_tilt)
        rotation = tilted_frame(rng.uniform(0, 2 * np.pi), tilt, rng.uniform(0, 2 * np.pi))

        velocity = np.zeros(3)
        axis, angular_speed = rotation[:, 2].copy(), 0.0
        if objects_move:
            speed_px = rng.uniform(*cfg.motion.object_speed_px)
            heading = rng.uniform(0, 2 * np.pi)
            velocity = np.array([math.cos(heading) * speed_px * depth_m / focal_px,
                                 math.sin(heading) * speed_px * depth_m / focal_px,
                                 rng.uniform(-1, 1) * MAX_DEPTH_SPEED_FRACTION * depth_m])
            # Mostly a spin in the object's plane, with some tumbling: the axis is within
            # ~10 degrees of the normal, so the normal sways by at most ~20 degrees.
            axis = rotation[:, 2] + 0.15 * rng.standard_normal(3)
            axis /= np.linalg.norm(axis)
            angular_speed = math.radians(rng.uniform(*cfg.motion.object_rotation_deg)) * rng.choice([-1.0, 1.0])

        texel_m = depth_m / focal_px * log_uniform(rng, (1.0, 2.5))
        size_px = int(np.clip(math.ceil(2 * half_size_m / texel_m) + 2, 8, OBJECT_TEXTURE_MAX_PX))
        texel_m = max(texel_m, 2 * half_size_m / (size_px - 2))  # huge objects: coarser texels
        texture_name = _choose_texture(rng, pools, cfg.objects.uniform_fraction, appearance.photo_fraction)
        gain = scene_gain * colour_cast * rng.uniform(*appearance.object_shading)
        surfaces.append(Surface(f"object_{index}", texture_name,
                                _surface_texture(rng, texture_name, size_px, gain, appearance.texture_softness_px), texel_m,
                                RigidMotion(centre, rotation, velocity, axis, angular_speed),
                                shape, half_size_m))

    camera_velocity = np.zeros(3)
    if camera_moves:
        speed_px = rng.uniform(*cfg.motion.camera_speed_px)
        heading = rng.uniform(0, 2 * np.pi)
        middle_m = 2.0 / (near_dpt + far_dpt)  # dioptric middle of the scene
        camera_velocity = np.array([math.cos(heading) * speed_px * middle_m / focal_px,
                                    math.sin(heading) * speed_px * middle_m / focal_px,
                                    rng.uniform(-1, 1) * MAX_CAMERA_DOLLY_FRACTION * near_m])
        # The distance to the wall's plane changes linearly with time: at the first and last
        # frame it moves by half_span * |n . v|; slow the camera down if that gets too close.
        wall = surfaces[0].motion
        normal = wall.rotation[:, 2]
        distance_m = abs(float(normal @ wall.centre_m))
        approach_m = (num_frames - 1) / 2 * abs(float(normal @ camera_velocity))
        limit_m = (1.0 - MIN_WALL_DISTANCE_FRACTION) * distance_m
        if approach_m > limit_m:
            camera_velocity = camera_velocity * (limit_m / approach_m)
    origin_frame = (num_frames - 1) / 2 if dynamic else 0.0
    return Scene(camera, height, width, depth_range, tuple(surfaces), camera_velocity, motion_kind, origin_frame)


# --- ray casting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Raster:
    """Ray-cast ground truth of some frames (T = number of frames)."""

    aif: torch.Tensor  # (T, 3, H, W) float32 in [0, 1]
    depth_m: torch.Tensor  # (T, H, W) float32
    surface_id: torch.Tensor  # (T, H, W) int64, index into Scene.surfaces
    local_m: torch.Tensor  # (T, H, W, 2) float32: hit point in its surface's (e1, e2) frame


def _ray_axes(height: int, width: int, focal_px: float, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised ray coordinates of ``samples`` sub-pixel rays per pixel along each axis:
    x (W*samples,) and y (H*samples,), float32; ``samples=1`` gives the pixel centres."""
    offsets = (torch.arange(samples, dtype=torch.float64) + 0.5) / samples - 0.5
    cols = (torch.arange(width, dtype=torch.float64)[:, None] + offsets[None]).reshape(-1)
    rows = (torch.arange(height, dtype=torch.float64)[:, None] + offsets[None]).reshape(-1)
    return (((cols - (width - 1) / 2) / focal_px).to(torch.float32),
            ((rows - (height - 1) / 2) / focal_px).to(torch.float32))


def _intersect(centre: np.ndarray, rotation: np.ndarray, camera: np.ndarray, x: torch.Tensor,
               y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ray/plane hits on the grid x (1, w) by y (h, 1): depth (h, w) (inf where the plane is
    behind the camera or edge-on) and the hit's local coordinates u, v along e1, e2 from the
    plane's centre (metres)."""
    e1, e2, normal = (rotation[:, i] for i in range(3))
    offset = centre - camera  # plane centre relative to the camera centre
    facing = float(normal[0]) * x + float(normal[1]) * y + float(normal[2])
    depth = float(normal @ offset) / facing
    depth = torch.where((depth > 0) & torch.isfinite(depth), depth, torch.full_like(depth, math.inf))
    # hit - centre = depth * ray - offset; project it on the plane's axes.
    safe = torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth))
    u = safe * (float(e1[0]) * x + float(e1[1]) * y + float(e1[2])) - float(e1 @ offset)
    v = safe * (float(e2[0]) * x + float(e2[1]) * y + float(e2[2])) - float(e2 @ offset)
    return depth, u, v


def _sample_texture(surface: Surface, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bilinear texture colours (N, 3) at local coordinates u, v (N,) in metres; the texture is
    centred on the surface centre and mirrored beyond its edges (walls are unbounded)."""
    texture = torch.from_numpy(surface.texture).permute(2, 0, 1)[None]  # (1, 3, Ht, Wt)
    tex_h, tex_w = surface.texture.shape[:2]
    gx = u / (surface.texel_m * tex_w / 2)
    gy = v / (surface.texel_m * tex_h / 2)
    grid = torch.stack([gx, gy], -1).view(1, 1, -1, 2)
    colour = F.grid_sample(texture, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return colour[0, :, 0].T  # (N, 3)


def _pixel_box(surface: Surface, centre: np.ndarray, rotation: np.ndarray, camera: np.ndarray,
               focal_px: float, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Pixel rows/cols (r0, r1, c0, c1) that can contain ``surface`` (the projection of the
    square around its outline, plus a pixel); the whole image for the wall or a surface
    reaching behind the camera; None if it is entirely outside the image."""
    if surface.shape is None:
        return 0, height, 0, width
    h = surface.half_size_m
    corners = np.array([centre + h * (sx * rotation[:, 0] + sy * rotation[:, 1])
                        for sx in (-1, 1) for sy in (-1, 1)]) - camera
    if np.any(corners[:, 2] <= 1e-9):
        return 0, height, 0, width
    xs = focal_px * corners[:, 0] / corners[:, 2] + (width - 1) / 2
    ys = focal_px * corners[:, 1] / corners[:, 2] + (height - 1) / 2
    c0, c1 = max(0, math.floor(xs.min()) - 1), min(width, math.ceil(xs.max()) + 2)
    r0, r1 = max(0, math.floor(ys.min()) - 1), min(height, math.ceil(ys.max()) + 2)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _cast_frame(scene: Scene, frame: float, samples: int, *, colour: bool, geometry: bool = True):
    """Z-buffer all surfaces for one frame on a grid of ``samples``^2 rays per pixel; each
    surface is only intersected inside its projected bounding box. ``geometry=False``
    skips the bookkeeping of surface ids and hit coordinates (a colour-only pass)."""
    x_axis, y_axis = _ray_axes(scene.height, scene.width, scene.focal_px, samples)
    time = scene.time(frame)
    camera = camera_centres(scene.camera_velocity_m, np.array([time]))[0]
    shape = (y_axis.numel(), x_axis.numel())
    best_depth = torch.full(shape, math.inf, dtype=torch.float32)
    best_id = torch.zeros(shape, dtype=torch.int64)
    best_u = torch.zeros(shape, dtype=torch.float32)
    best_v = torch.zeros(shape, dtype=torch.float32)
    image = torch.zeros((3,) + shape, dtype=torch.float32) if colour else None
    for index, surface in enumerate(scene.surfaces):
        centre, rotation = surface.motion.pose(time)
        box = _pixel_box(surface, centre, rotation, camera, scene.focal_px, scene.height, scene.width)
        if box is None:
            continue
        rows, cols = slice(box[0] * samples, box[1] * samples), slice(box[2] * samples, box[3] * samples)
        depth, u, v = _intersect(centre, rotation, camera, x_axis[None, cols], y_axis[rows, None])
        hit = depth < best_depth[rows, cols]
        if surface.shape is not None:
            hit &= surface.shape.inside(u / surface.half_size_m, v / surface.half_size_m)
        best_depth[rows, cols] = torch.where(hit, depth, best_depth[rows, cols])
        if geometry:
            best_id[rows, cols] = torch.where(hit, index, best_id[rows, cols])
            best_u[rows, cols] = torch.where(hit, u, best_u[rows, cols])
            best_v[rows, cols] = torch.where(hit, v, best_v[rows, cols])
        if colour and bool(hit.any()):
            # Sample the texture only where this surface is (so far) in front.
            row_idx, col_idx = hit.nonzero(as_tuple=True)
            image[:, rows, cols][:, row_idx, col_idx] = _sample_texture(surface, u[hit], v[hit]).T
    return best_depth, best_id, best_u, best_v, image


@dataclass(frozen=True)
class SurfaceLayers:
    """Every surface of one frame on its own, not hidden by the others (what a lens with an
    aperture sees around a defocused occluder): ``colour`` (K, 3, H, W) premultiplied by
    ``alpha`` (K, 1, H, W), the surface's coverage of each pixel over ``antialias``^2 rays,
    and ``depth_m`` (K, 1, H, W), the surface plane's depth through each pixel centre (inf
    where the plane is not in front of the camera). Surfaces that miss the image are left out."""

    colour: torch.Tensor
    alpha: torch.Tensor
    depth_m: torch.Tensor


def cast_surfaces(scene: Scene, frame: float, antialias: int = 2) -> SurfaceLayers:
    """:class:`SurfaceLayers` of ``frame`` (see there); the background wall covers every pixel."""
    x_fine, y_fine = _ray_axes(scene.height, scene.width, scene.focal_px, antialias)
    x_centre, y_centre = _ray_axes(scene.height, scene.width, scene.focal_px, 1)
    time = scene.time(frame)
    camera = camera_centres(scene.camera_velocity_m, np.array([time]))[0]
    colours, alphas, depths = [], [], []
    shape = (scene.height, scene.width)
    for surface in scene.surfaces:
        centre, rotation = surface.motion.pose(time)
        box = _pixel_box(surface, centre, rotation, camera, scene.focal_px, scene.height, scene.width)
        if box is None:
            continue
        r0, r1, c0, c1 = box
        fine_rows, fine_cols = slice(r0 * antialias, r1 * antialias), slice(c0 * antialias, c1 * antialias)
        depth, u, v = _intersect(centre, rotation, camera, x_fine[None, fine_cols], y_fine[fine_rows, None])
        hit = torch.isfinite(depth)
        if surface.shape is not None:
            hit &= surface.shape.inside(u / surface.half_size_m, v / surface.half_size_m)
        if not bool(hit.any()):
            continue
        fine_colour = torch.zeros((3,) + hit.shape, dtype=torch.float32)
        row_idx, col_idx = hit.nonzero(as_tuple=True)
        fine_colour[:, row_idx, col_idx] = _sample_texture(surface, u[hit], v[hit]).T
        colour = torch.zeros((3,) + shape, dtype=torch.float32)
        alpha = torch.zeros((1,) + shape, dtype=torch.float32)
        colour[:, r0:r1, c0:c1] = F.avg_pool2d(fine_colour[None], antialias)[0]
        alpha[:, r0:r1, c0:c1] = F.avg_pool2d(hit[None, None].to(torch.float32), antialias)[0]
        depth_centre = torch.full((1,) + shape, math.inf, dtype=torch.float32)
        depth_centre[0, r0:r1, c0:c1] = _intersect(centre, rotation, camera, x_centre[None, c0:c1],
                                                   y_centre[r0:r1, None])[0]
        colours.append(colour)
        alphas.append(alpha)
        depths.append(depth_centre)
    return SurfaceLayers(torch.stack(colours), torch.stack(alphas), torch.stack(depths))


def rasterise(scene: Scene, frames: np.ndarray, antialias: int = 1) -> Raster:
    """Exact depth, anti-aliased all-in-focus colour, surface ids and local hit coordinates
    for ``frames`` (frame numbers, may be fractional)."""
    aif, depth_m, surface_id, local_m = [], [], [], []
    for frame in np.asarray(frames, np.float64):
        depth, ids, u, v, image = _cast_frame(scene, float(frame), 1, colour=antialias == 1)
        if not torch.isfinite(depth).all():
            raise RuntimeError("procedural scene: a ray missed the background wall")  # a sampling bug
        if antialias > 1:
            fine = _cast_frame(scene, float(frame), antialias, colour=True, geometry=False)[4]
            image = F.avg_pool2d(fine[None], antialias)[0]
        aif.append(image.clamp(0.0, 1.0))
        depth_m.append(depth)
        surface_id.append(ids)
        local_m.append(torch.stack([u, v], -1))
    return Raster(torch.stack(aif), torch.stack(depth_m), torch.stack(surface_id), torch.stack(local_m))


def backward_flow(scene: Scene, raster: Raster, frames: np.ndarray) -> torch.Tensor:
    """Backward optical flow (T, 2, H, W) float32 in pixels, channels (dx, dy): pixel (x, y)
    of frame ``frames[i]`` shows the surface point that was at (x + dx, y + dy) in frame
    ``frames[i] - 1``. Exact for the rigid motions of the scene (computed, not estimated)."""
    frames = np.asarray(frames, np.float64)
    _, height, width = raster.depth_m.shape
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                                torch.arange(width, dtype=torch.float64), indexing="ij")
    flows = []
    for i, frame in enumerate(frames):  # one frame at a time: bounded memory
        previous = scene.time(frame) - 1.0
        # Each surface's pose at the previous frame, gathered per pixel by surface id.
        poses = [surface.motion.pose(previous) for surface in scene.surfaces]
        centres = torch.from_numpy(np.stack([c for c, _ in poses]))  # (K, 3)
        axes = torch.from_numpy(np.stack([r[:, :2] for _, r in poses]))  # (K, 3, 2): e1, e2
        ids = raster.surface_id[i]
        local = raster.local_m[i].to(torch.float64)  # (H, W, 2)
        point = centres[ids] + (axes[ids] @ local[..., None])[..., 0]  # (H, W, 3), world
        camera = torch.from_numpy(camera_centres(scene.camera_velocity_m, np.array([previous]))[0])
        relative = point - camera
        x_prev = scene.focal_px * relative[..., 0] / relative[..., 2] + (width - 1) / 2
        y_prev = scene.focal_px * relative[..., 1] / relative[..., 2] + (height - 1) / 2
        flows.append(torch.stack([x_prev - cols, y_prev - rows]).to(torch.float32))
    return torch.stack(flows)


def describe_scene(scene: Scene) -> dict[str, Any]:
    """JSON-ready scene parameters for the manifest (everything but the texture pixels)."""
    return {
        "motion": scene.motion_kind,
        "near_m": round(scene.depth_range.near_m, 6),
        "far_m": round(scene.depth_range.far_m, 6),
        "target_max_coc_px": round(scene.depth_range.target_max_coc_px, 4),
        "camera_velocity_m_per_frame": [round(float(v), 8) for v in scene.camera_velocity_m],
        "origin_frame": scene.origin_frame,
        "surfaces": [surface.describe() for surface in scene.surfaces],
    }


__all__ = ["Raster", "Scene", "Surface", "SurfaceLayers", "backward_flow", "cast_surfaces", "describe_scene", "rasterise", "rotation_matrix",
           "sample_scene"]
