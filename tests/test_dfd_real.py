"""The DFD real-photo models (docs/dfd_real.md): per-frame f-number metadata, the
two-aperture model's input path, the training crops, a tiny training step, and predict on a
one-frame (d3net_dfd_indoor) and a two-frame (aperture_pair_dfd_indoor) folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import kornia
import numpy as np
import pytest
import torch
from PIL import Image

from focaldepth import models
from focaldepth.datasets.dfd_crops import DFDPairCrops, DFDWideCrops, working_size
from focaldepth.errors import UserError
from focaldepth.io.meta import validate_meta
from focaldepth.models.base import run_model, takes_frame_f_number
from focaldepth.models.d3net import BLUR_SCALE_NORM_PX_PER_DPT, blur_scale_channels

DFD_META = {"focal_length_mm": 35.0, "sensor_width_mm": 23.6}


def run_cli(*args: str) -> int:
    from focaldepth.cli import main

    try:
        main(list(args))
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def blurred(image: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    return image if radius == 0 else cv2.blur(image, (2 * radius + 1, 2 * radius + 1))


def scene_image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def write_dfd_folder(root: Path, scenes: int = 12, height: int = 70, width: int = 100) -> Path:
    """A DFD indoor folder in the shared layout: sharp f/8 texture, a blurred f/2.8 copy,
    uint16 mm depth with a hole."""
    rows = []
    for sub in ("f2.8", "f8", "depth_mm"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k in range(scenes):
        sharp = scene_image(height, width, k)
        depth_mm = np.full((height, width), 1000 + 200 * k, np.uint16)
        depth_mm[:3, :3] = 0
        Image.fromarray(sharp).save(root / "f8" / f"s{k:02d}.png")
        Image.fromarray(blurred(sharp, 1)).save(root / "f2.8" / f"s{k:02d}.png")
        Image.fromarray(depth_mm).save(root / "depth_mm" / f"s{k:02d}.png")
        rows.append({"f2.8": f"s{k:02d}.png", "f8": f"s{k:02d}.png", "depth_mm": f"s{k:02d}.png"})
    with (root / "pairs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["f2.8", "f8", "depth_mm"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def write_folder(folder: Path, frames: list[np.ndarray], meta: dict) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:06d}.png")
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


# --- metadata: a per-frame f-number ------------------------------------------------------------


def test_meta_per_frame_f_number_for_an_aperture_pair():
    meta = validate_meta({**DFD_META, "f_number": [8, 2.8], "focus_distance_m": [1.7, 1.7]})
    assert meta.f_number == [8.0, 2.8] and meta.f_numbers(2) == [8.0, 2.8]
    assert meta.camera(645, frame_index=1).f_number == 2.8
    assert meta.camera(645, frame_index=0).f_number == 8.0
    assert meta.num_frames == 2


@pytest.mark.parametrize("f_number, message", [
    ([8, 0], r"f_number\[1\] must be positive"),
    ([8, -2.8], r"f_number\[1\] must be positive"),
    ([8, "2.8"], r"f_number\[1\] must be a number"),
    ([], "f_number is an empty list"),
    ([8, 2.8, 4], "per-frame lists differ in length: focus_distance_m has 2, f_number has 3"),
])
def test_meta_bad_per_frame_f_number_is_a_user_error(f_number, message):
    with pytest.raises(UserError, match=message):
        validate_meta({**DFD_META, "f_number": f_number, "focus_distance_m": [1.7, 1.7]},
                      "meta.json")


# --- the two-aperture model ------------------------------------------------------------------


def pair_inputs(batch: int = 2, size: int = 64):
    frames = torch.rand(batch, 2, 3, size, size, generator=torch.Generator().manual_seed(0))
    focus = torch.full((batch, 2), 1.7)
    camera = torch.tensor([[0.035, 2.8, 23.6e-3 / size]] * batch)
    f_number = torch.tensor([[8.0, 2.8]] * batch)
    return frames, focus, camera, f_number


def test_aperture_pair_reads_the_per_frame_f_number():
    model = models.create("d3net_aperture_pair_test").eval()
    assert takes_frame_f_number(model) and not takes_frame_f_number(models.create("d3net_test"))
    frames, focus, camera, f_number = pair_inputs()
    with torch.no_grad():
        depth = run_model(model, frames, focus, camera, f_number=f_number)["depth_m"]
        swapped = run_model(model, frames, focus, camera, f_number=f_number.flip(1))["depth_m"]
    assert depth.shape == (2, 1, 64, 64) and torch.isfinite(depth).all() and (depth > 0).all()
    assert not torch.allclose(depth, swapped)  # the apertures are an input, not decoration
    with pytest.raises(ValueError, match=r"f_number: this model reads one f-number per frame"):
        model(frames, focus, camera)
    with pytest.raises(ValueError, match=r"f_number: expected \(B, S\) = \(2, 2\)"):
        model(frames, focus, camera, f_number=f_number[:, :1])
    with pytest.raises(ValueError, match="finite and positive"):
        model(frames, focus, camera, f_number=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="exactly 2 slices"):
        model(frames[:, :1], focus[:, :1], camera, f_number=f_number[:, :1])


def test_blur_scale_channel_is_the_thin_lens_blur_per_dioptre():
    camera = torch.tensor([[0.035, 2.8, 80e-6]])
    channel = blur_scale_channels(torch.tensor([[8.0, 2.8]]), camera, 4, 5)
    assert channel.shape == (1, 2, 1, 4, 5)
    for s, n in enumerate((8.0, 2.8)):
        expected = 0.035**2 / (n * 80e-6) / BLUR_SCALE_NORM_PX_PER_DPT
        assert float(channel[0, s, 0, 0, 0]) == pytest.approx(expected, rel=1e-6)


def test_checkpoint_round_trip_keeps_the_f_number_convention(tmp_path):
    model = models.create("d3net_aperture_pair_test").eval()
    path = models.save(model, tmp_path / "pair.pt")
    loaded = models.load(path)
    frames, focus, camera, f_number = pair_inputs()
    with torch.no_grad():
        assert torch.equal(run_model(model, frames, focus, camera, f_number)["depth_m"],
                           run_model(loaded, frames, focus, camera, f_number)["depth_m"])
    assert "f_number_input" in models.read_checkpoint(path)["conventions"]


def test_sharpness_cue_falls_with_defocus_and_ignores_frame_order():
    """The relative-sharpness channels: ~0 where the wide frame is as sharp as the narrow one,
    negative where it is blurred more; the same cue whichever frame comes first."""
    from focaldepth.models.d3net import relative_sharpness_channels
    from focaldepth.render import render_defocus  # noqa: F401  (the renderer is the reference)

    texture = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1)).repeat(1, 3, 1, 1)
    blurred = kornia.filters.gaussian_blur2d(texture, (11, 11), (1.5, 1.5), border_type="reflect")
    sharp_pair = torch.stack([texture, texture], dim=1)
    blurred_pair = torch.stack([texture, blurred], dim=1)  # [f/8 sharp, f/2.8 blurred]
    f_number = torch.tensor([[8.0, 2.8]])
    in_focus = relative_sharpness_channels(sharp_pair, f_number)
    defocused = relative_sharpness_channels(blurred_pair, f_number)
    assert in_focus.shape == (1, 4, 64, 64)
    assert in_focus[:, :3].abs().max() < 1e-4
    centre = defocused[0, :3, 8:-8, 8:-8].mean(dim=(1, 2))
    assert (defocused[:, :3, 8:-8, 8:-8] < -0.1).all() and centre[0] < -1.0
    assert centre[0] < centre[1] < centre[2]  # a 1.5 px blur shows most at the finest scale
    swapped = relative_sharpness_channels(blurred_pair.flip(1), f_number.flip(1))
    assert torch.allclose(swapped, defocused, atol=1e-6)
    brighter = relative_sharpness_channels(torch.stack([texture, 0.5 * blurred], dim=1), f_number)
    assert torch.allclose(brighter, defocused, atol=1e-3)  # exposure differences are not blur


def test_sharpness_cue_model_and_working_resolution_round_trip(tmp_path):
    from focaldepth.datasets.dfd_indoor import camera
    from focaldepth.predict import StreamingPredictor

    model = models.create("d3net_aperture_pair_test", sharpness_cue=True,
                          working_max_pixels=280_000).eval()
    frames, focus, camera_t, f_number = pair_inputs()
    loaded = models.load(models.save(model, tmp_path / "cue.pt"))
    with torch.no_grad():
        assert torch.equal(run_model(model, frames, focus, camera_t, f_number)["depth_m"],
                           run_model(loaded, frames, focus, camera_t, f_number)["depth_m"])
    assert loaded.sharpness_cue and loaded.working_max_pixels == 280_000
    # predict runs the model at the resolution it was trained at, unless told otherwise
    native = StreamingPredictor(loaded, camera(645), [1.7, 1.7], 432, 645)
    assert (native.work_h, native.work_w) == (432, 645)
    capped = StreamingPredictor(loaded, camera(645), [1.7, 1.7], 432, 645, max_pixels=57_600)
    assert (capped.work_h, capped.work_w) == (196, 293)
    with pytest.raises(UserError, match="working_max_pixels"):
        models.create("d3net_test", working_max_pixels=10)


def test_full_resolution_crops_keep_the_photos_size(tmp_path):
    from focaldepth.datasets.dfd_crops import DFDPairCropsFull

    root = write_dfd_folder(tmp_path / "dfd", scenes=4, height=300, width=400)  # > 57,600 px
    full = DFDPairCropsFull(root, split="val", crop_size=None, random_crop=False)
    shrunk = DFDPairCrops(root, split="val", crop_size=None, random_crop=False)
    assert full[0]["frames"].shape[-2:] == (300, 400)
    assert shrunk[0]["frames"].shape[-2:] == working_size(300, 400) == (208, 277)
    # the pixel pitch follows the resolution: the same lens blurs more pixels at full size
    assert float(full[0]["camera"][2]) == pytest.approx(float(shrunk[0]["camera"][2]) * 277 / 400)


# --- training crops and one training step ------------------------------------------------------


def test_working_size_is_predicts_working_resolution():
    from focaldepth.datasets.dfd_crops import WORKING_MAX_PIXELS
    from focaldepth.datasets.dfd_indoor import camera
    from focaldepth.predict import DEFAULT_MAX_PIXELS, StreamingPredictor

    assert WORKING_MAX_PIXELS == DEFAULT_MAX_PIXELS
    for height, width in ((432, 645), (70, 100), (1080, 1920)):
        predictor = StreamingPredictor(models.create("d3net_test"), camera(width), [1.7],
                                       height, width)
        assert working_size(height, width) == (predictor.work_h, predictor.work_w)
    assert working_size(432, 645) == (196, 293)


def test_pair_crops_split_and_layout(tmp_path):
    root = write_dfd_folder(tmp_path / "dfd")
    train = DFDPairCrops(root, split="train", crop_size=32, seed=3)
    assert len(train) == 8 and len(DFDPairCrops(root, split="val")) == 2  # i % 6 == 3
    item = train[0]  # scene 1: 1.2 m
    assert item["frames"].shape == (2, 3, 32, 32)
    assert item["f_number"].tolist() == pytest.approx([8.0, 2.8])
    assert item["camera"].tolist() == pytest.approx([0.035, 2.8, 23.6e-3 / 100])
    assert torch.allclose(item["depth_m"][item["valid"]], torch.tensor(1.2))
    train.set_epoch(1)
    assert not torch.equal(train[0]["frames"], item["frames"])  # fresh crops each epoch
    val = DFDWideCrops(root, split="val", crop_size=64, random_crop=False)
    assert val[0]["frames"].shape == (1, 3, 64, 64) and torch.equal(val[0]["frames"], val[0]["frames"])
    with pytest.raises(UserError, match="every item has 2 frame"):
        DFDPairCrops(root, num_frames=1)
    with pytest.raises(UserError, match="exceeds the working resolution"):
        DFDPairCrops(root, crop_size=128)[0]
    with pytest.raises(UserError, match="shared DFD layout"):
        DFDPairCrops(tmp_path)


@pytest.mark.parametrize("name, dataset", [("d3net_aperture_pair_test", DFDPairCrops),
                                           ("d3net_test", DFDWideCrops)])
def test_one_training_step_through_the_training_module(tmp_path, name, dataset):
    from torch.utils.data import default_collate

    from focaldepth.train.module import DepthTrainingModule

    root = write_dfd_folder(tmp_path / "dfd")
    frames = 2 if dataset is DFDPairCrops else 1
    config = {"model": {"name": name},
              "data": {"train": str(root), "num_frames": frames, "valid_range_margin": None,
                       "dataset": f"focaldepth.datasets.dfd_crops:{dataset.__name__}"},
              "loss": [{"name": "masked_l1"}, {"name": "silog"}]}
    module = DepthTrainingModule(config)
    data = dataset(root, split="train", crop_size=32)
    batch = default_collate([data[i] for i in range(4)])
    optimizer = torch.optim.AdamW(module.model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    loss, _ = module.loss(module(batch), batch)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = [k for k, v in module.model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.stem") for k in changed)


# --- predict: one-frame and two-frame folders with the shipped weights --------------------------


def test_predict_one_frame_folder_with_d3net_dfd_indoor(tmp_path):
    from focaldepth.predict import predict_sequence

    image = blurred(scene_image(70, 100, 0), 1)  # 70 x 100: padded to a multiple of 32 inside
    folder = write_folder(tmp_path / "one", [image],
                          {**DFD_META, "f_number": 2.8, "focus_distance_m": [1.7]})
    summary = predict_sequence(folder, tmp_path / "out", model="d3net_dfd_indoor", video=False,
                               progress=False)
    depth = np.load(tmp_path / "out" / "depth" / "000000.npy")
    assert summary["window_frames"] == 1 and summary["metric"] and depth.shape == (70, 100)
    assert np.isfinite(depth).all() and (depth > 0.3 - 1e-4).all() and (depth < 10.0 + 1e-3).all()
    confidence = np.load(tmp_path / "out" / "confidence" / "000000.npy")
    assert confidence.min() > 0  # an estimate, not predict's no-information fallback


def test_predict_two_frame_folder_with_aperture_pair(tmp_path):
    from focaldepth.predict import predict_sequence

    sharp = scene_image(70, 100, 1)
    folder = write_folder(tmp_path / "pair", [sharp, blurred(sharp, 1)],
                          {**DFD_META, "f_number": [8, 2.8], "focus_distance_m": [1.7, 1.7]})
    summary = predict_sequence(folder, tmp_path / "out", model="aperture_pair_dfd_indoor",
                               video=False, progress=False)
    assert summary["window_frames"] == 2 and summary["num_frames"] == 2
    depth = np.load(tmp_path / "out" / "depth" / "000001.npy")
    confidence = np.load(tmp_path / "out" / "confidence" / "000001.npy")
    assert depth.shape == (70, 100) and np.isfinite(depth).all() and confidence.min() > 0
    # Same focus, same f-number: nothing tells depth apart, so predict falls back (confidence 0).
    same = write_folder(tmp_path / "same", [sharp, sharp],
                        {**DFD_META, "f_number": [2.8, 2.8], "focus_distance_m": [1.7, 1.7]})
    predict_sequence(same, tmp_path / "out_same", model="aperture_pair_dfd_indoor", video=False,
                     progress=False)
    assert np.load(tmp_path / "out_same" / "confidence" / "000001.npy").max() == 0


def test_predict_bad_inputs_end_in_one_line(tmp_path, capsys):
    sharp = scene_image(40, 60, 2)
    one = write_folder(tmp_path / "one", [sharp], {**DFD_META, "f_number": 8, "focus_distance_m": [1.7]})
    assert run_cli("predict", str(one), "--out", str(tmp_path / "o1"), "--model",
                   "aperture_pair_dfd_indoor") == 2
    assert "at least 2 frames" in capsys.readouterr().err
    bad = write_folder(tmp_path / "bad", [sharp, sharp],
                       {**DFD_META, "f_number": [8, 2.8, 4], "focus_distance_m": [1.7, 1.7]})
    assert run_cli("predict", str(bad), "--out", str(tmp_path / "o2"), "--model",
                   "aperture_pair_dfd_indoor") == 2
    err = capsys.readouterr().err
    assert "per-frame lists differ in length" in err and "meta.json" in err
    assert len(err.strip().splitlines()) == 1


def test_shipped_cards_name_data_cpu_hours_and_licence():
    from focaldepth.predict import shipped_weights_path

    for name in ("d3net_dfd_indoor", "aperture_pair_dfd_indoor", "d3net_dfd_indoor_f8"):
        path = Path(str(shipped_weights_path(name)))
        assert path.stat().st_size < 2_000_000
        card = models.read_checkpoint(path)["extra"]["model_card"]
        assert card["name"] == name and card["cpu_hours"] > 0
        assert "research" in card["licence"] and "i % 6 == 3" in card["chosen_on"]
        assert "dfd_indoor_train" in json.dumps(card["training_data"])


def test_export_refuses_a_per_frame_f_number_model(tmp_path):
    pytest.importorskip("onnxscript")
    from focaldepth.export import export_onnx

    with pytest.raises(UserError, match="per-frame f-number"):
        export_onnx(models.create("d3net_aperture_pair_test"), tmp_path / "pair.onnx")


def test_evaluate_predictor_passes_the_items_per_frame_f_number():
    """focaldepth evaluate scores a two-aperture model with each item's own f-numbers (it
    raised before: the predictor called the model without them)."""
    from focaldepth.evaluation.models import model_predictor

    model = models.create("d3net_aperture_pair_test").eval()
    frames, focus, camera, f_number = pair_inputs()
    predict = model_predictor(model)
    depth = predict({"frames": frames, "focus_distance_m": focus, "camera": camera, "f_number": f_number})
    with torch.no_grad():
        expected = run_model(model, frames, focus, camera, f_number=f_number)["depth_m"]
    assert torch.allclose(depth, expected)
    swapped = predict({"frames": frames, "focus_distance_m": focus, "camera": camera,
                       "f_number": f_number.flip(1)})
    assert not torch.allclose(depth, swapped)
    with pytest.raises(ValueError, match="f_number: this model reads one f-number per frame"):
        predict({"frames": frames, "focus_distance_m": focus, "camera": camera})
