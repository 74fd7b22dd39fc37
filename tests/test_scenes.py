"""The procedural scene model: pools, textures, shapes, cameras and the depth-range policy,
exact flow, and the physics of generated focal stacks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from focaldepth.errors import UserError
from focaldepth.generate import load_config, parse_config
from focaldepth.scenes import SceneConfig, generate_sequence, split_pools
from focaldepth.scenes.blender import blender_available, cycles_f_number
from focaldepth.scenes.camera import (
    nearest_depth_m,
    reachable_coc_px,
    sample_camera,
    sample_camera_and_depth_range,
)
from focaldepth.scenes.config import CameraConfig, DepthConfig, MotionConfig
from focaldepth.scenes.pools import OBJECT_POOLS, sample_size_fraction
from focaldepth.scenes.procedural import backward_flow, rasterise, sample_scene
from focaldepth.scenes.sequence import seed_streams
from focaldepth.scenes.shapes import SHAPE_FAMILIES, SHAPES, sample_shape
from focaldepth.scenes.textures import TEXTURE_FAMILIES, TEXTURES, UNIFORM_TEXTURE, make_texture

TINY = Path(__file__).resolve().parents[1] / "configs" / "data" / "tiny.yaml"


# --- pools -------------------------------------------------------------------------------------


@pytest.mark.parametrize("split_seed", [0, 1, 12345])
def test_train_and_test_pools_are_disjoint_and_cover_every_family(split_seed):
    pools = split_pools(split_seed)
    train, test = pools["train"], pools["test"]
    assert not set(train.textures) & set(test.textures)
    assert not set(train.shapes) & set(test.shapes)
    assert set(train.textures) | set(test.textures) == set(TEXTURES)
    assert set(train.shapes) | set(test.shapes) == set(SHAPES)
    assert UNIFORM_TEXTURE not in TEXTURES  # textureless surfaces are in both splits on purpose
    for family in TEXTURE_FAMILIES.values():
        assert set(family) & set(test.textures) and set(family) & set(train.textures)
    for family in SHAPE_FAMILIES.values():
        assert set(family) & set(test.shapes) and set(family) & set(train.shapes)


def test_pool_split_is_seeded():
    assert split_pools(0) == split_pools(0)
    assert any(split_pools(0)["test"] != split_pools(seed)["test"] for seed in range(1, 6))


def test_generated_scenes_only_use_their_split(tmp_path):
    config = load_config(TINY)
    for split in ("train", "test"):
        pools = split_pools(config.split_seed)[split]
        for index in range(6):
            rng, _ = seed_streams(config.seed, index)
            scene = sample_scene(rng, config.scene, pools, dynamic=False)
            for surface in scene.surfaces:
                assert surface.texture_name in pools.textures or surface.texture_name == UNIFORM_TEXTURE
                if surface.shape is not None:
                    assert surface.shape.name in pools.shapes


def test_object_pools_sizes():
    rng = np.random.default_rng(0)
    small = [sample_size_fraction("small", rng) for _ in range(500)]
    mixed = [sample_size_fraction("small_large", rng) for _ in range(500)]
    assert 0.15 <= min(small) and max(small) <= 0.5
    assert 0.35 < np.mean(np.array(mixed) > 0.5) < 0.65 and max(mixed) <= 1.0
    assert set(OBJECT_POOLS) == {"small", "small_large"}


# --- textures and shapes -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEXTURES))
def test_texture_generators_are_seeded_textured_and_in_range(name):
    first = make_texture(name, np.random.default_rng(3), 48, 40)
    again = make_texture(name, np.random.default_rng(3), 48, 40)
    other = make_texture(name, np.random.default_rng(4), 48, 40)
    assert first.shape == (48, 40, 3) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.std(axis=(0, 1)).max() > 0.01  # a texture, not a flat colour


def test_uniform_texture_is_flat():
    texture = make_texture(UNIFORM_TEXTURE, np.random.default_rng(0), 16, 16)
    assert np.ptp(texture, axis=(0, 1)).max() == 0.0


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_fit_the_unit_disc_and_agree_between_numpy_and_torch(name):
    shape = sample_shape(name, np.random.default_rng(1))
    y, x = np.mgrid[-1.2:1.2:121j, -1.2:1.2:121j]
    inside = shape.inside(x, y)
    np.testing.assert_array_equal(inside, shape.inside(torch.from_numpy(x), torch.from_numpy(y)).numpy())
    assert not inside[x**2 + y**2 > 1.0001].any()
    assert 0.05 < inside.mean() / (np.pi / 1.44**2 / 4 * 4) < 1.0  # covers part of the disc


# --- cameras and the depth-range policy ----------------------------------------------------------


def test_cameras_stay_in_their_ranges():
    cfg = CameraConfig()
    rng = np.random.default_rng(0)
    cameras = [sample_camera(rng, cfg, 256) for _ in range(400)]
    focal = np.array([c.focal_length_mm for c in cameras])
    assert focal.min() >= 4.0 and focal.max() <= 85.0
    assert all(1.4 <= c.f_number <= 8.0 and 5.0 <= c.sensor_width_mm <= 36.0 for c in cameras)
    # phones (short lens, small sensor) and full-frame cameras (long lens, big sensor)
    assert any(c.sensor_width_mm < 7 and c.focal_length_mm < 8 for c in cameras)
    assert any(c.sensor_width_mm > 30 and c.focal_length_mm > 40 for c in cameras)


@pytest.mark.parametrize("width", [64, 256])
def test_depth_range_gives_the_target_blur_within_the_allowed_range(width):
    camera_cfg, depth_cfg = CameraConfig(), DepthConfig(range_m=(0.05, 10.0), max_coc_px=(2.0, 40.0))
    rng = np.random.default_rng(width)
    achieved = []
    for _ in range(300):
        camera, depth_range = sample_camera_and_depth_range(rng, camera_cfg, depth_cfg, width)
        assert nearest_depth_m(camera, depth_cfg) * (1 - 1e-9) <= depth_range.near_m < depth_range.far_m <= 10.0
        assert depth_range.near_m >= 10 * camera.focal_length_m * (1 - 1e-9)
        # the largest CoC of a near -> far sweep: focus at one end, depth at the other
        largest = max(camera.coc_px(depth_range.near_m, depth_range.far_m),
                      camera.coc_px(depth_range.far_m, depth_range.near_m))
        if reachable_coc_px(camera, depth_cfg) >= depth_range.target_max_coc_px:
            # k * span is exact up to the factor F / (F - f) <= 1 / (1 - 1/10)
            assert depth_range.target_max_coc_px <= largest <= depth_range.target_max_coc_px / 0.9 + 1e-9
        achieved.append(largest)
    achieved = np.array(achieved)
    assert achieved.min() >= 2.0 and achieved.max() <= 40.0 / 0.9
    assert np.mean(achieved > 10.0) > 0.25 and np.mean(achieved < 5.0) > 0.15  # spread over the range


# --- exact geometry and flow ---------------------------------------------------------------


def _dynamic_config(kind: str) -> SceneConfig:
    cfg = load_config(TINY).scene
    motion = MotionConfig(dynamic_fraction=1.0, kinds=(kind,), object_speed_px=(2.0, 5.0),
                          object_rotation_deg=(1.0, 4.0), camera_speed_px=(3.0, 8.0))
    return dataclasses.replace(cfg, motion=motion)


@pytest.mark.parametrize("index", range(3))
def test_camera_translation_flow_is_the_parallax_of_the_depth_map(index):
    """A static scene seen by a translating camera: the point at depth Z behind pixel p of
    frame t is X = Z * ray(p) in frame t's camera; frame t-1's camera was displaced by -v,
    so the flow is proj(X + v) - p, a function of depth alone (parallax)."""
    cfg = _dynamic_config("camera")
    rng, _ = seed_streams(11, index)
    scene = sample_scene(rng, cfg, split_pools(0)["train"], dynamic=True)
    frames = np.arange(3.0)
    raster = rasterise(scene, frames)
    flow = backward_flow(scene, raster, frames).double()
    height, width = scene.height, scene.width
    f_px = scene.focal_px
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    v = torch.from_numpy(scene.camera_velocity_m)
    for t in (1, 2):
        depth = raster.depth_m[t].double()
        point = torch.stack([depth * (xs - (width - 1) / 2) / f_px, depth * (ys - (height - 1) / 2) / f_px, depth])
        moved = point + v[:, None, None]
        expected_x = f_px * moved[0] / moved[2] + (width - 1) / 2 - xs
        expected_y = f_px * moved[1] / moved[2] + (height - 1) / 2 - ys
        np.testing.assert_allclose(flow[t, 0], expected_x, atol=2e-3)
        np.testing.assert_allclose(flow[t, 1], expected_y, atol=2e-3)
        # near things move more than far things (parallax), as the speed policy promises
        assert flow[t].norm(dim=0).max() > 1.0
    speeds = flow[1].norm(dim=0)
    near = raster.depth_m[1] < raster.depth_m[1].quantile(0.2)
    far = raster.depth_m[1] > raster.depth_m[1].quantile(0.8)
    assert speeds[near].mean() > speeds[far].mean()


@pytest.mark.parametrize("kind", ["objects", "both"])
def test_flow_warps_the_previous_all_in_focus_image_onto_the_current_one(kind):
    cfg = _dynamic_config(kind)
    rng, _ = seed_streams(5, 0)
    scene = sample_scene(rng, cfg, split_pools(0)["train"], dynamic=True)
    frames = np.arange(4.0)
    raster = rasterise(scene, frames)
    flow = backward_flow(scene, raster, frames)
    height, width = scene.height, scene.width
    base = kornia.utils.create_meshgrid(height, width, normalized_coordinates=False)
    for t in range(1, 4):
        target = base + flow[t].permute(1, 2, 0)[None]
        grid = kornia.geometry.conversions.normalize_pixel_coordinates(target, height, width)
        warped = F.grid_sample(raster.aif[t - 1:t], grid, align_corners=True)[0]
        # Unoccluded: the same surface is visible at the source position in frame t-1.
        source_id = F.grid_sample(raster.surface_id[t - 1:t, None].double(), grid.double(), mode="nearest",
                                  align_corners=True)[0, 0].long()
        inside = (target[0, ..., 0] >= 0) & (target[0, ..., 0] <= width - 1) & \
                 (target[0, ..., 1] >= 0) & (target[0, ..., 1] <= height - 1)
        visible = (source_id == raster.surface_id[t]) & inside
        assert visible.float().mean() > 0.6
        error = (warped - raster.aif[t]).abs().amax(0)[visible]
        assert error.mean() < 0.02 and torch.quantile(error, 0.95) < 0.08


def test_depth_is_the_exact_plane_depth_for_a_fronto_parallel_wall():
    cfg = dataclasses.replace(load_config(TINY).scene, background=dataclasses.replace(
        load_config(TINY).scene.background, max_slant_deg=0.0))
    rng, _ = seed_streams(0, 3)
    scene = sample_scene(rng, cfg, split_pools(0)["train"], dynamic=False)
    raster = rasterise(scene, np.zeros(1))
    wall = raster.surface_id[0] == 0
    np.testing.assert_allclose(raster.depth_m[0][wall].numpy(), scene.depth_range.far_m, rtol=1e-5)


# --- physics of the generated stacks -----------------------------------------------------------


def test_the_frame_focused_nearest_a_region_is_sharpest_there():
    """For the pixels whose depth lies firmly in one frame's depth of field (its CoC at most
    half of any other frame's), that frame has the highest Laplacian energy there."""
    base = load_config(TINY).to_dict()
    scene = base["scene"]
    scene["resolution"] = [96, 96]
    scene["objects"] = {"pool": "small_large", "count": [2, 4], "uniform_fraction": 0.0}
    scene["background"] = {"uniform_fraction": 0.0}
    scene["motion"]["dynamic_fraction"] = 0.0
    scene["noise"] = {"shot": [0, 0], "read_std": [0, 0]}
    scene["depth"]["max_coc_px"] = [6.0, 12.0]
    config = parse_config(base)
    pools = split_pools(0)["train"]
    checked = set()
    for index in range(12):
        data = generate_sequence(config.scene, pools, config.seed, index)
        frames = torch.from_numpy(data.frames).permute(0, 3, 1, 2).float().mean(1, keepdim=True) / 255
        aif = torch.from_numpy(data.aif[:1]).permute(0, 3, 1, 2).float().mean(1, keepdim=True) / 255
        depth, coc = torch.from_numpy(data.depth_m[0]), torch.from_numpy(data.coc_px)
        focus = torch.from_numpy(data.focus_distance_m)
        sharpness = kornia.filters.laplacian(frames, 3)[:, 0] ** 2
        textured = kornia.filters.box_blur(kornia.filters.laplacian(aif, 3) ** 2, 5)[0, 0] > 1e-4
        nearest = (1 / focus[:, None, None] - 1 / depth[None]).abs().argmin(0)
        others = torch.where(torch.arange(len(focus))[:, None, None] == nearest[None], torch.inf, coc).amin(0)
        firm = coc.gather(0, nearest[None])[0] <= 0.5 * others
        # Blur reaches a CoC radius across depth edges: keep away from them.
        edges = kornia.filters.spatial_gradient(depth.log()[None, None]).abs().amax(dim=(1, 2))[0] > 0.01
        radius = int(np.ceil(float(coc.max()) / 2)) + 1
        near_edge = F.max_pool2d(edges[None, None].float(), 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0
        usable = textured & firm & ~near_edge
        for s in range(len(focus)):
            region = usable & (nearest == s)
            if region.sum() < 30:
                continue
            energy = sharpness[:, region].mean(1)
            assert int(energy.argmax()) == s, (index, s, energy.tolist())
            checked.add(s)
    assert len(checked) >= 3  # near, middle and far frames were all tested


def test_fast_motion_is_centred_on_the_composed_pose_and_never_leaves_the_wall():
    """Scenes are composed for the middle frame; even an absurdly fast camera (40 px per
    frame; without the guard a third of these scenes reach the wall) keeps its distance to
    the wall's plane above 60 % of the composed one, so every ray hits the wall."""
    cfg = dataclasses.replace(load_config(TINY).scene, motion=MotionConfig(
        dynamic_fraction=1.0, kinds=("both",), object_speed_px=(6.0, 6.0), object_rotation_deg=(5.0, 5.0),
        camera_speed_px=(40.0, 40.0)))
    pools = split_pools(0)["train"]
    for index in range(20):
        rng, _ = seed_streams(21, index)
        scene = sample_scene(rng, cfg, pools, dynamic=True, num_frames=25)
        assert scene.origin_frame == 12.0
        wall = scene.surfaces[0].motion
        distance = float(wall.rotation[:, 2] @ wall.centre_m)
        for frame in (0.0, 24.0):
            camera = scene.camera_velocity_m * scene.time(frame)
            assert float(wall.rotation[:, 2] @ (wall.centre_m - camera)) >= 0.6 * distance - 1e-12
        raster = rasterise(scene, np.array([0.0, 12.0, 24.0]))  # raises if a ray missed the wall
        assert torch.isfinite(raster.depth_m).all()
        # the composed pose is the middle frame: objects were placed for it
        assert (raster.surface_id[1] > 0).any()


# --- the optional Blender Cycles backend (slow; skipped when bpy is absent) -----------------


def test_cycles_aperture_reproduces_the_thin_lens_coc():
    # Cycles' CoC on the image, in pixels: (f / p) * A' * |D - F| / (F * D) with A' = f / N'.
    f, n, p, focus, depth = 0.05, 2.0, 1e-5, 1.2, 3.0
    n_cycles = cycles_f_number(n, f, focus)
    cycles_coc = (f / p) * (f / n_cycles) * abs(depth - focus) / (focus * depth)
    from focaldepth.optics import coc_px

    assert cycles_coc == pytest.approx(coc_px(depth, focus, f, n, p), rel=1e-12)


def test_blender_backend_config_needs_bpy(monkeypatch):
    from focaldepth.scenes import backends

    # (the config check asks scenes.backends, which the Blender backend's own module re-exports)
    monkeypatch.setattr(backends, "blender_available", lambda: False)
    config = load_config(TINY).to_dict()
    config["scene"]["render"]["backend"] = "blender"
    with pytest.raises(UserError, match="render.backend: blender needs the bpy package"):
        parse_config(config)


@pytest.mark.slow
@pytest.mark.skipif(not blender_available(), reason="bpy (Blender as a Python module) is not installed")
def test_blender_and_procedural_backends_agree_on_the_same_scene(tmp_path):
    from focaldepth.experiments.blender_vs_procedural import compare_with_procedural

    result = compare_with_procedural(TINY, index=0, samples=64)
    assert result["depth_pixels_within_0.1_percent"] > 0.99  # the same geometry, ray-cast twice
    assert result["aif_mean_abs_error"] < 0.01
    for frame in result["frames"]:
        assert frame["psnr_db"] > 30.0
        # differences concentrate at depth edges (the layered approximation of occlusion)
        assert frame["mean_abs_error_elsewhere"] < 0.01


@pytest.mark.slow
@pytest.mark.skipif(not blender_available(), reason="bpy (Blender as a Python module) is not installed")
def test_generate_with_the_blender_backend_writes_the_same_format_deterministically(tmp_path):
    import h5py

    from focaldepth.generate import run_generate
    from focaldepth.optics import coc_px

    config = load_config(TINY).to_dict()
    config["scene"]["render"] = {"backend": "blender", "samples": 16}
    config["scene"]["focus"] = {"frames_per_ramp": 3, "num_ramps": 2, "num_ramps_static": 1}
    config = parse_config(config)
    for name in ("a", "b"):
        run_generate(config, tmp_path / name, num=2, progress=False)
    for index in range(2):
        first = (tmp_path / "a" / f"seq_{index:06d}.h5").read_bytes()
        assert first == (tmp_path / "b" / f"seq_{index:06d}.h5").read_bytes()
        with h5py.File(tmp_path / "a" / f"seq_{index:06d}.h5", "r") as file:
            depth = file["depth_m"][()]
            attrs = dict(file.attrs)
            assert file["frames"].dtype == np.uint8 and np.isfinite(depth).all() and depth.min() > 0
            expected = coc_px(depth.astype(np.float64), file["focus_distance_m"][()][:, None, None],
                              attrs["focal_length_m"], attrs["f_number"], attrs["pixel_pitch_m"])
            np.testing.assert_allclose(file["coc_px"][()], expected, rtol=1e-6)
            assert '"backend": "blender"' in attrs["record_json"]


# --- photographic textures and sweeps that do not bracket the scene ----------------------


def test_photo_pool_is_split_without_changing_the_procedural_split():
    from focaldepth.scenes.photos import PHOTO_TEXTURES

    pools = split_pools(0)
    # The procedural test pool of split_seed 0 as it was before photos existed: adding the
    # photo pool must not reshuffle it (committed test sets were generated with it).
    assert pools["test"].textures == ("voronoi_cells", "random_tiles", "marble", "colour_spectrum", "plaid")
    train, test = set(pools["train"].photos), set(pools["test"].photos)
    assert not train & test and train | test == set(PHOTO_TEXTURES)
    assert len(test) == int(np.ceil(0.25 * len(PHOTO_TEXTURES)))


@pytest.mark.parametrize("name", ["photo_coffee", "photo_text", "photo_gravel"])
def test_photo_textures_are_seeded_crops_in_range(name):
    first = make_texture(name, np.random.default_rng(3), 48, 80)
    again = make_texture(name, np.random.default_rng(3), 48, 80)
    other = make_texture(name, np.random.default_rng(4), 48, 80)
    assert first.shape == (48, 80, 3) and first.dtype == np.float32
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert 0.0 <= first.min() and first.max() <= 1.0 and first.std() > 0.01
    # Bigger than the source image: reflect-tiled, still textured everywhere.
    huge = make_texture(name, np.random.default_rng(5), 900, 700)
    assert huge.shape == (900, 700, 3) and huge[-100:, -100:].std() > 0.005


def test_photo_fraction_puts_photos_of_the_split_on_surfaces_and_zero_changes_nothing():
    config = load_config(TINY)
    with_photos = dataclasses.replace(config.scene, appearance=dataclasses.replace(
        config.scene.appearance, photo_fraction=1.0))
    pools = split_pools(config.split_seed)["test"]
    names = [surface.texture_name for index in range(4)
             for surface in sample_scene(seed_streams(config.seed, index)[0], with_photos, pools, False).surfaces]
    textured = [name for name in names if name != UNIFORM_TEXTURE]
    assert textured and all(name in pools.photos for name in textured)
    zero = dataclasses.replace(config.scene, appearance=dataclasses.replace(config.scene.appearance,
                                                                            photo_fraction=0.0))
    a = sample_scene(seed_streams(config.seed, 0)[0], zero, pools, False)
    b = sample_scene(seed_streams(config.seed, 0)[0], config.scene, pools, False)
    assert [s.texture_name for s in a.surfaces] == [s.texture_name for s in b.surfaces]


def test_sweep_end_shift_moves_the_sweep_ends_by_a_fraction_of_the_scene_span():
    from focaldepth.optics import Camera
    from focaldepth.scenes.sequence import sweep_range

    camera = Camera(25.0, 2.0, 23.6, 128)
    near_m, far_m = 1.0, 4.0  # 1.0 .. 0.25 dpt: span 0.75 dpt
    assert sweep_range(np.random.default_rng(0), near_m, far_m, (0.0, 0.0), camera) == (near_m, far_m)
    for seed in range(20):
        sweep_near, sweep_far = sweep_range(np.random.default_rng(seed), near_m, far_m, (-0.25, 0.25), camera)
        assert abs(1 / sweep_near - 1.0) <= 0.25 * 0.75 + 1e-12
        assert abs(1 / sweep_far - 0.25) <= 0.25 * 0.75 + 1e-12
    inward = sweep_range(np.random.default_rng(0), near_m, far_m, (-0.2, -0.2), camera)
    assert inward == pytest.approx((1 / (1.0 - 0.15), 1 / (0.25 + 0.15)))
    # Outwards, the far end stays at a positive dioptre (at most twice the scene's far end).
    outward = sweep_range(np.random.default_rng(0), 1.0, 10.0, (1.0, 1.0), camera)
    assert outward[1] == pytest.approx(20.0)


def test_end_shift_config_is_checked():
    config = load_config(TINY)
    bad = dataclasses.replace(config.scene, focus=dataclasses.replace(config.scene.focus, end_shift=(-0.6, 0.1)))
    with pytest.raises(UserError, match="focus.end_shift"):
        bad.check("x.yaml")


def test_texture_softness_lowers_gradient_energy_and_zero_changes_nothing():
    from focaldepth.scenes.procedural import _surface_texture

    gain = np.ones(3, np.float32)
    crisp = _surface_texture(np.random.default_rng(1), "photo_gravel", 64, gain)
    same = _surface_texture(np.random.default_rng(1), "photo_gravel", 64, gain, (0.0, 0.0))
    soft = _surface_texture(np.random.default_rng(1), "photo_gravel", 64, gain, (1.5, 1.5))
    assert np.array_equal(crisp, same)

    def gradient_energy(image):
        return float(np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean())

    assert gradient_energy(soft) < 0.7 * gradient_energy(crisp)
    assert abs(float(soft.mean()) - float(crisp.mean())) < 0.02  # blurred, not darkened


def test_complete_surfaces_composited_unblurred_give_the_all_in_focus_image():
    from focaldepth.scenes.procedural import cast_surfaces

    cfg = load_config(TINY).scene
    rng, _ = seed_streams(0, 5)
    scene = sample_scene(rng, cfg, split_pools(0)["train"], dynamic=False)
    layers = cast_surfaces(scene, 0.0, 2)
    aif = rasterise(scene, np.zeros(1), 2).aif[0]
    order = torch.where(layers.alpha > 0, layers.depth_m, torch.full_like(layers.depth_m, float("inf"))).argsort(0)
    colour = torch.gather(layers.colour, 0, order.expand(-1, 3, -1, -1))
    alpha = torch.gather(layers.alpha, 0, order)
    composite, open_ = torch.zeros_like(aif), torch.ones_like(aif[:1])
    for k in range(len(colour)):
        composite += open_ * colour[k]
        open_ = open_ * (1.0 - alpha[k])
    assert float(open_.max()) == 0.0  # the wall covers every pixel
    # equal but for anti-aliased outline pixels where two surfaces share sub-pixel rays
    assert float((composite - aif).abs().mean()) < 1e-3


def test_complete_occlusion_is_a_seeded_render_option_and_changes_only_the_frames():
    base = load_config(TINY).scene
    complete = dataclasses.replace(base, render=dataclasses.replace(base.render, occlusion="complete"))
    a = generate_sequence(base, split_pools(0)["train"], 0, 2)
    b = generate_sequence(complete, split_pools(0)["train"], 0, 2)
    again = generate_sequence(complete, split_pools(0)["train"], 0, 2)
    np.testing.assert_array_equal(b.frames, again.frames)
    np.testing.assert_array_equal(a.depth_m, b.depth_m)
    np.testing.assert_array_equal(a.aif, b.aif)
    assert not np.array_equal(a.frames, b.frames)
    assert b.params["occlusion"] == "complete" and a.params["occlusion"] == "aif"
    with pytest.raises(UserError, match="render.occlusion"):
        parse_config({**load_config(TINY).to_dict(), "scene": {**load_config(TINY).to_dict()["scene"],
                                                               "render": {"occlusion": "magic"}}})
