"""Blender Cycles backend (optional: ``pip install focaldepth[blender]``, i.e. ``bpy``).

The same procedural scene (:mod:`focaldepth.scenes.procedural`: a textured wall and planar
objects with their outlines, moving rigidly) is built in Blender and path-traced by Cycles
with a physical thin-lens camera: the camera's real focal length, sensor width and
f-number, and the frame's focus distance. Surfaces are emissive (their texture is their
radiance), so no lighting model separates the two backends and the comparison isolates
the *defocus*: Cycles integrates rays over the aperture disc (occlusion, partial
occlusion at depth edges and the view of the background behind a blurred foreground are
exact), the procedural backend composites blurred depth layers.

Per sequence (:func:`render_sequence_blender`): frames are path-traced with depth of
field; the all-in-focus image is path-traced without it; ground-truth depth is Cycles' Z
pass (planar depth) of single rays through the pixel centres from the pinhole centre,
counting only opaque surfaces (alpha threshold 0.5); CoC is the thin-lens formula on that
depth; flow comes from the analytic motion (the geometry is the procedural scene's).

Lens model. Cycles' thin lens puts the image plane at the focal length rather than at the
image distance, so its CoC lacks the factor ``F / (F - f)`` of the thin-lens formula
(:mod:`focaldepth.optics`). Each frame is therefore rendered with f-number
``N (F - f) / F``: the aperture that gives exactly the formula's CoC, so the CoC ground
truth holds for both backends.

Importing this module never needs ``bpy``; :func:`blender_available` tells whether it is
installed, and every function that renders raises a clear error when it is not.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from focaldepth.errors import UserError
from focaldepth.scenes.backends import blender_available  # also re-exported from here
from focaldepth.scenes.motion import camera_centres
from focaldepth.scenes.procedural import Scene, Surface

MASK_RESOLUTION_PX = 512  # outline masks: texels across the shape's unit disc
PIXEL_FILTER = "BOX"  # 1-pixel box filter: the same pixel footprint as the supersampled AIF


def blender_version() -> str:
    """Version of the installed Blender module (recorded with every sequence it renders)."""
    return str(_bpy().app.version_string)


def _bpy():
    if not blender_available():
        raise UserError("the Blender backend needs the bpy package: pip install 'focaldepth[blender]'")
    import bpy

    return bpy


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Blender's progress lines (printed by C code straight to file descriptor 1)."""
    stdout_fd = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(stdout_fd, 1)
        os.close(stdout_fd)


def cycles_f_number(f_number: float, focal_length_m: float, focus_distance_m: float) -> float:
    """The f-number that makes Cycles' CoC equal the thin-lens formula (see module doc)."""
    return f_number * (focus_distance_m - focal_length_m) / focus_distance_m


# --- scene construction --------------------------------------------------------------------


def _image(bpy, name: str, rgb: np.ndarray):
    """A float Blender image from an (H, W, 3) or (H, W) array, row 0 at V = 0 (the bottom of
    Blender's buffer), stored as non-colour data (values are radiance, not sRGB)."""
    height, width = rgb.shape[:2]
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :3] = rgb if rgb.ndim == 3 else rgb[..., None]
    image = bpy.data.images.new(name, width=width, height=height, alpha=False, float_buffer=True)
    image.colorspace_settings.name = "Non-Color"
    image.pixels.foreach_set(rgba.ravel())
    return image


def _material(bpy, surface: Surface, index: int):
    """Emission = texture colour; outlines cut by a mask (transparent outside)."""
    material = bpy.data.materials.new(f"surface_{index}")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    output = nodes.new("ShaderNodeOutputMaterial")
    emission = nodes.new("ShaderNodeEmission")
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = _image(bpy, f"texture_{index}", surface.texture)
    texture.interpolation = "Linear"  # bilinear, as the procedural backend's grid_sample
    texture.extension = "MIRROR"  # walls are unbounded: mirrored like padding_mode="reflection"
    uv_texture = nodes.new("ShaderNodeUVMap")
    uv_texture.uv_map = "texture"
    links.new(uv_texture.outputs["UV"], texture.inputs["Vector"])
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    emission.inputs["Strength"].default_value = 1.0
    if surface.shape is None:
        links.new(emission.outputs["Emission"], output.inputs["Surface"])
        return material
    grid = (np.arange(MASK_RESOLUTION_PX) + 0.5) / MASK_RESOLUTION_PX * 2.0 - 1.0
    mask = surface.shape.inside(grid[None, :], grid[:, None]).astype(np.float32)
    mask_node = nodes.new("ShaderNodeTexImage")
    mask_node.image = _image(bpy, f"mask_{index}", mask)
    mask_node.interpolation = "Closest"  # a hard outline, as in the procedural backend
    mask_node.extension = "CLIP"
    uv_mask = nodes.new("ShaderNodeUVMap")
    uv_mask.uv_map = "mask"
    links.new(uv_mask.outputs["UV"], mask_node.inputs["Vector"])
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    mix = nodes.new("ShaderNodeMixShader")
    links.new(mask_node.outputs["Color"], mix.inputs["Fac"])
    links.new(transparent.outputs["BSDF"], mix.inputs[1])
    links.new(emission.outputs["Emission"], mix.inputs[2])
    links.new(mix.outputs["Shader"], output.inputs["Surface"])
    return material


def _quad_uvs(surface: Surface, half_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Texture and mask UVs of the quad corners (local (+-half, +-half))."""
    corners = np.array([(-half_m, -half_m), (half_m, -half_m), (half_m, half_m), (-half_m, half_m)])
    tex_h, tex_w = surface.texture.shape[:2]
    # Texel column = u / texel + W/2, row = v / texel + H/2; U = column / W, V = row / H.
    texture_uv = np.stack([corners[:, 0] / (surface.texel_m * tex_w) + 0.5,
                           corners[:, 1] / (surface.texel_m * tex_h) + 0.5], 1)
    mask_uv = corners / (2.0 * surface.half_size_m) + 0.5 if surface.shape is not None else texture_uv
    return texture_uv, mask_uv


@dataclass
class _BlenderScene:
    bpy: object
    scene: object
    camera: object
    objects: list  # (surface, blender object)
    f_number: float


def _build(scene: Scene) -> _BlenderScene:
    bpy = _bpy()
    with _quiet():
        bpy.ops.wm.read_factory_settings(use_empty=True)
    blender = bpy.context.scene
    blender.render.engine = "CYCLES"
    cycles = blender.cycles
    cycles.device = "CPU"
    cycles.use_denoising = False
    cycles.use_adaptive_sampling = False
    cycles.max_bounces = 8
    cycles.transparent_max_bounces = 32  # rays pass every cut-out outline in front
    cycles.pixel_filter_type = PIXEL_FILTER
    cycles.filter_width = 1.0
    blender.render.resolution_x, blender.render.resolution_y = scene.width, scene.height
    blender.render.resolution_percentage = 100
    blender.render.threads_mode = "FIXED"
    blender.render.threads = 1  # one core per worker, as the procedural backend
    blender.view_settings.view_transform = "Standard"
    blender.view_layers[0].use_pass_z = True
    blender.view_layers[0].pass_alpha_threshold = 0.5  # depth of opaque surfaces only
    blender.render.image_settings.file_format = "OPEN_EXR_MULTILAYER"
    blender.render.image_settings.color_depth = "32"

    camera_data = bpy.data.cameras.new("camera")
    camera_data.sensor_fit = "HORIZONTAL"
    camera_data.sensor_width = scene.camera.sensor_width_mm
    camera_data.lens = scene.camera.focal_length_mm
    camera_data.clip_start = 1e-4
    camera_data.clip_end = 1e4
    camera = bpy.data.objects.new("camera", camera_data)
    blender.collection.objects.link(camera)
    blender.camera = camera
    # Blender cameras look along local -Z with +Y up; ours look along +z with y down.
    camera.rotation_euler = (math.pi, 0.0, 0.0)

    # The wall must fill the view from every camera position: make it huge (textures repeat).
    far_m = max(scene.depth_range.far_m, float(scene.surfaces[0].motion.centre_m[2]))
    wall_half_m = 20.0 * far_m * max(scene.width, scene.height) / scene.focal_px + 10.0 * far_m
    objects = []
    for index, surface in enumerate(scene.surfaces):
        half_m = wall_half_m if surface.shape is None else surface.half_size_m
        mesh = bpy.data.meshes.new(f"surface_{index}")
        corners = [(-half_m, -half_m, 0.0), (half_m, -half_m, 0.0), (half_m, half_m, 0.0), (-half_m, half_m, 0.0)]
        mesh.from_pydata(corners, [], [(0, 1, 2, 3)])
        texture_uv, mask_uv = _quad_uvs(surface, half_m)
        for name, uvs in (("texture", texture_uv), ("mask", mask_uv)):
            layer = mesh.uv_layers.new(name=name)
            layer.data.foreach_set("uv", uvs.astype(np.float32).ravel())
        mesh.materials.append(_material(bpy, surface, index))
        obj = bpy.data.objects.new(f"surface_{index}", mesh)
        blender.collection.objects.link(obj)
        objects.append((surface, obj))
    return _BlenderScene(bpy, blender, camera, objects, scene.camera.f_number)


def _pose(built: _BlenderScene, scene: Scene, frame: float) -> None:
    """Place the camera and every surface at ``frame``."""
    from mathutils import Matrix

    time = scene.time(frame)
    built.camera.location = tuple(camera_centres(scene.camera_velocity_m, np.array([time]))[0])
    for surface, obj in built.objects:
        centre, rotation = surface.motion.pose(time)
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = rotation, centre
        obj.matrix_world = Matrix(matrix.tolist())


def _render(built: _BlenderScene, *, samples: int, seed: int, focus_distance_m: float | None,
            depth_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Render the current pose: (RGB (H, W, 3) float32, Z depth (H, W) float32)."""
    import OpenEXR

    blender, camera = built.scene, built.camera.data
    blender.cycles.samples = samples
    blender.cycles.seed = seed
    if depth_only:
        # One ray per pixel through its centre (tiny filter), no lens: the pinhole's depth.
        blender.cycles.filter_width = 0.01
    camera.dof.use_dof = focus_distance_m is not None
    if focus_distance_m is not None:
        camera.dof.focus_distance = focus_distance_m
        camera.dof.aperture_fstop = cycles_f_number(built.f_number, camera.lens * 1e-3, focus_distance_m)
        camera.dof.aperture_blades = 0  # a round aperture: the disk PSF
    with tempfile.TemporaryDirectory(prefix="focaldepth-blender-") as folder:
        path = Path(folder) / "render.exr"
        blender.render.filepath = str(path)
        with _quiet():
            built.bpy.ops.render.render(write_still=True)
        channels = OpenEXR.File(str(path)).parts[0].channels
        rgb = np.asarray(channels["ViewLayer.Combined"].pixels)[..., :3].astype(np.float32)
        depth = np.asarray(channels["ViewLayer.Depth.Z"].pixels).astype(np.float32)
    blender.cycles.filter_width = 1.0
    # EXR rows run top to bottom, as ours: no flip.
    return rgb, depth


@dataclass(frozen=True)
class BlenderRender:
    frames: np.ndarray  # (T, H, W, 3) float32 linear radiance, path-traced with depth of field
    aif: np.ndarray  # (T, H, W, 3) float32, path-traced without depth of field
    depth_m: np.ndarray  # (T, H, W) float32, Z pass through the pixel centres


def render_sequence_blender(scene: Scene, focus_distance_m: np.ndarray, frame_numbers: np.ndarray, *,
                            samples: int = 128, seed: int = 0) -> BlenderRender:
    """Path-trace every frame of ``scene`` with its focus distance (see module doc).
    ``frame_numbers[i]`` is the motion frame of output frame i (all 0 for a static scene)."""
    built = _build(scene)
    frames, aifs, depths = [], [], []
    cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for i, (frame, focus) in enumerate(zip(frame_numbers, focus_distance_m)):
        _pose(built, scene, float(frame))
        if float(frame) not in cache:  # a static scene is the same in every frame
            aif, _ = _render(built, samples=samples, seed=seed, focus_distance_m=None)
            _, depth = _render(built, samples=1, seed=seed, focus_distance_m=None, depth_only=True)
            cache[float(frame)] = (aif, depth)
        aif, depth = cache[float(frame)]
        rgb, _ = _render(built, samples=samples, seed=seed + 1 + i, focus_distance_m=float(focus))
        frames.append(rgb)
        aifs.append(aif)
        depths.append(depth)
    return BlenderRender(np.stack(frames), np.stack(aifs), np.stack(depths))


# --- comparison with the procedural backend ----------------------------------------------------
