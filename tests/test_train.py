"""Training harness: configs, a tiny Lightning run, checkpoints, resume, DDP on 2 CPU processes."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from focaldepth import models
from focaldepth.errors import UserError
from focaldepth.train.config import (
    apply_overrides,
    config_from_dict,
    load_config,
    read_config_mapping,
)
from focaldepth.train.module import lr_lambda

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = ROOT / "configs" / "train"

TINY_DATA_CONFIG = ROOT / "configs" / "data" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_dataset_dir(tmp_path_factory) -> Path:
    """A tiny generated dataset (4 sequences of 64x64 px, one dynamic; ~1 s to make)."""
    from focaldepth.generate.runner import run_generate

    out = tmp_path_factory.mktemp("data") / "tiny"
    run_generate(TINY_DATA_CONFIG, out, progress=False)
    return out


@pytest.fixture()
def tiny_data(tiny_dataset_dir):
    """(train folder, val folder) for a tiny run; the same folder serves both."""
    return tiny_dataset_dir, tiny_dataset_dir


def tiny_config(train_dir, val_dir, **trainer) -> dict:
    return {
        "model": {"name": "poolnet_test"},
        "data": {"train": str(train_dir), "val": str(val_dir), "crop_size": 32,
                 "val_crop_size": 32, "batch_size": 2},
        "trainer": {"max_steps": 4, "accelerator": "cpu", "devices": 1,
                    "enable_progress_bar": False, "log_every_n_steps": 1, **trainer},
        "checkpoint": {"every_n_steps": 2},
        "optimizer": {"lr": 1e-3},
    }


def read_csv_rows(run_dir: Path) -> list[dict]:
    rows = []
    for path in sorted((run_dir / "logs" / "csv").glob("version_*/metrics.csv")):
        with path.open() as handle:
            rows += [dict(r, version=path.parent.name) for r in csv.DictReader(handle)]
    return rows


# --------------------------------------------------------------------------------------------
# configs


def test_defaults_are_the_seed_protocol():
    config = config_from_dict({"model": {"name": "poolnet"}, "data": {"train": "a", "val": "b"}})
    assert config.data.num_frames == 4 and config.data.sample == "ramp"
    assert config.data.crop_size == 256 and config.data.random_crop
    assert config.loss == [{"name": "masked_mse", "weight": 1.0}]
    assert config.trainer.val_check_interval is None and config.trainer.check_val_every_n_epoch == 1
    # the resolved form round-trips
    assert config_from_dict(config.to_dict()).to_dict() == config.to_dict()


@pytest.mark.parametrize("patch, fragment", [
    ({"trainer": {"max_stepz": 3}}, "unknown key 'trainer.max_stepz'"),
    ({"optimiser": {}}, "unknown key 'optimiser'"),
    ({"data": {"train": "a", "val": "b", "num_frames": "four"}}, "'data.num_frames' must be int"),
    ({"data": {"train": "a", "val": "b", "sample": "random"}}, "'data.sample' must be"),
    ({"data": {"val": "b"}}, "missing required key 'data.train'"),
    ({"data": {"train": "a", "val_fraction": 1.5}}, "data.val_fraction must be in (0, 1)"),
    ({"loss": []}, "'loss' must be a non-empty list"),
    ({"optimizer": {"lr": -1.0}}, "optimizer.lr must be positive"),
])
def test_bad_config_is_a_user_error_naming_the_file(tmp_path, patch, fragment):
    raw = {"model": {"name": "poolnet_test"}, "data": {"train": "a", "val": "b"}}
    raw.update(patch)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError) as error:
        load_config(path)
    assert fragment in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_cli_prints_one_line_and_exits_2_on_a_bad_config(tmp_path, capsys):
    from focaldepth.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: poolnet_test}\ndata: {train: a, val: b}\ntrainer: {gpus: 2}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(path), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'trainer.gpus'" in err and str(path) in err


def test_unknown_model_and_loss_are_user_errors(tiny_data, tmp_path):
    from focaldepth.train.run import train

    train_dir, val_dir = tiny_data
    raw = tiny_config(train_dir, val_dir)
    raw["model"] = {"name": "poolnett"}
    with pytest.raises(UserError, match="did you mean 'poolnet'"):
        train(config_from_dict(raw), tmp_path / "run1")
    raw["model"] = {"name": "poolnet_test", "depth_of_field": 3}
    with pytest.raises(UserError, match="depth_of_field"):
        train(config_from_dict(raw), tmp_path / "run2")
    raw["model"] = {"name": "poolnet_test"}
    raw["loss"] = [{"name": "msee"}]
    with pytest.raises(UserError, match="unknown loss 'msee'"):
        train(config_from_dict(raw), tmp_path / "run3")


def test_extends_merges_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model: {name: poolnet, focus_channel: true}\ndata: {train: a, val: b, batch_size: 8}\n")
    (tmp_path / "budget.yaml").write_text("data: {batch_size: 2}\ntrainer: {max_steps: 7}\n")
    (tmp_path / "exp.yaml").write_text(
        "extends: [base.yaml, budget.yaml]\nmodel: {focus_channel: false}\n")
    config = load_config(tmp_path / "exp.yaml", ["trainer.max_steps=9", "optimizer.lr=1e-2"])
    assert config.model.kwargs == {"focus_channel": False}
    assert config.data.batch_size == 2 and config.data.train == "a"
    assert config.trainer.max_steps == 9 and config.optimizer.lr == pytest.approx(1e-2)
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(UserError, match="cycle"):
        read_config_mapping(tmp_path / "loop.yaml")
    with pytest.raises(UserError, match="KEY.SUB=VALUE"):
        apply_overrides({}, ["no_equals_sign"])


@pytest.mark.parametrize("path", sorted(p for p in TRAIN_CONFIGS.glob("*.yaml")
                                        if not p.name.startswith("_")), ids=lambda p: p.stem)
def test_shipped_configs_are_valid(path):
    from focaldepth.losses import build_loss

    config = load_config(path)
    build_loss(config.loss)
    # Build on the meta device: checks every model argument without allocating weights.
    with torch.device("meta"):
        model = models.create(config.model.name, **config.model.kwargs)
    if getattr(model, "image_size_px", None) is not None:  # FC layers fix the input size
        assert tuple(model.image_size_px) == (config.data.crop_size,) * 2
    if path.stem.endswith("_cpu"):  # the CPU budget is the same for every *_cpu run
        budget = read_config_mapping(TRAIN_CONFIGS / "_budget_cpu.yaml")
        assert config.trainer.max_steps == budget["trainer"]["max_steps"]
        assert config.data.crop_size == budget["data"]["crop_size"]
        assert config.data.batch_size == budget["data"]["batch_size"]


def test_learning_rate_schedules():
    from focaldepth.train.config import SchedulerConfig

    cosine = lr_lambda(SchedulerConfig("cosine", warmup_steps=10, min_lr=1e-5), 110, 1e-3)
    assert cosine(0) == pytest.approx(0.1) and cosine(9) == pytest.approx(1.0)
    assert cosine(10) == pytest.approx(1.0) and cosine(60) == pytest.approx(0.505)
    assert cosine(110) == pytest.approx(0.01) and cosine(500) == pytest.approx(0.01)
    step = lr_lambda(SchedulerConfig("step", step_size=100, gamma=0.5), 1000, 1e-3)
    assert [step(s) for s in (0, 99, 100, 250)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_lambda(SchedulerConfig("constant"), 10, 1e-3)(7) == 1.0


def test_focus_range_mask_excludes_depth_a_stack_cannot_resolve():
    from focaldepth.train.masks import mask_to_focus_range

    focus = torch.tensor([[0.5, 1.0, 2.0]])  # 2.0 .. 0.5 dioptres, width 1.5
    depth = torch.tensor([0.3, 0.45, 1.0, 2.5, 4.0, 10.0]).view(1, 1, 1, 6)
    batch = {"focus_distance_m": focus, "depth_m": depth,
             "valid": torch.ones(1, 1, 1, 6, dtype=torch.bool)}
    exact = mask_to_focus_range(batch, 0.0)["valid"].flatten().tolist()
    assert exact == [False, False, True, False, False, False]
    # margin 0.25 widens the span by 0.375 dpt each side: 0.125 .. 2.375 dpt = 8 m .. 0.42 m
    widened = mask_to_focus_range(batch, 0.25)["valid"].flatten().tolist()
    assert widened == [False, True, True, True, True, False]
    assert mask_to_focus_range(batch, None) is batch


def test_held_out_validation_sequences_are_stable_and_disjoint():
    from focaldepth.train.data import is_held_out

    first = {i for i in range(1000) if is_held_out(i, 0.1)}
    assert 70 < len(first) < 130  # about 10 %
    # generating more sequences does not move earlier ones between train and val
    assert {i for i in range(2000) if is_held_out(i, 0.1)} & set(range(1000)) == first


def test_data_module_draws_new_crops_each_epoch(tiny_dataset_dir):
    from focaldepth.train.data import FocusSweepDataModule

    data = FocusSweepDataModule(train=str(tiny_dataset_dir), val=str(tiny_dataset_dir),
                                crop_size=32, val_crop_size=32, batch_size=4)
    data.setup("fit")
    first = data.train_set[0]["frames"]
    assert torch.equal(first, data.train_set[0]["frames"])  # a function of (seed, epoch, index)
    data.set_epoch(1)
    assert not torch.equal(first, data.train_set[0]["frames"])
    val = data.val_set[0]["frames"]
    data.set_epoch(2)
    assert torch.equal(val, data.val_set[0]["frames"])  # validation stays fixed


# --------------------------------------------------------------------------------------------
# a tiny training run


def test_tiny_run_writes_checkpoints_logs_and_config(tiny_data, tmp_path):
    from focaldepth.train.checkpoint import load_trained_model
    from focaldepth.train.run import train

    train_dir, val_dir = tiny_data
    config = config_from_dict(tiny_config(train_dir, val_dir))
    run = tmp_path / "run"
    result = train(config, run)
    assert result.global_step == 4 and result.best_val_loss is not None
    for name in ("config.yaml", "summary.json", "loss_curves.png", "checkpoints/last.ckpt",
                 "checkpoints/last.pt", "checkpoints/best.ckpt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert list((run / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    # the saved config is the resolved one and rebuilds the same TrainConfig
    assert config_from_dict(yaml.safe_load((run / "config.yaml").read_text())) == config
    rows = read_csv_rows(run)
    train_steps = sorted(int(r["step"]) for r in rows if r.get("train/loss"))
    assert train_steps == [0, 1, 2, 3]
    val_losses = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    # 4 sequences / batch 2 = 2 steps per epoch: validated after steps 2 and 4
    assert len(val_losses) == 2 and min(val_losses) == pytest.approx(result.best_val_loss)
    # the Lightning checkpoint carries the config; the exported .pt loads without Lightning and
    # both give the same model
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=False)
    assert ckpt["focaldepth"]["config"] == config.to_dict()
    from_ckpt = load_trained_model(run / "checkpoints/last.ckpt").model
    from_pt = models.load(run / "checkpoints/last.pt")
    frames = torch.rand(1, 4, 3, 32, 32)
    focus, camera = torch.linspace(0.5, 1.5, 4)[None], torch.tensor([[0.025, 2.0, 1e-5]])
    assert torch.equal(from_ckpt(frames, focus, camera)["depth_m"],
                       from_pt(frames, focus, camera)["depth_m"])
    assert models.read_checkpoint(run / "checkpoints/last.pt")["extra"]["global_step"] == 4
    assert ckpt["global_step"] == 4
    # training moved the weights away from the initialisation
    fresh = models.create("poolnet_test")
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                      from_pt.state_dict().values()))


@pytest.mark.parametrize("model, loss", [
    ({"name": "ddffnet_test"}, [{"name": "masked_mse"}]),
    ({"name": "lstm_ddff_test"}, [{"name": "masked_l1"}]),
    ({"name": "recurrent_ae_test"}, [{"name": "silog"}]),
    ({"name": "poolnet_test", "coc_decoder": True},
     [{"name": "masked_mse"}, {"name": "coc", "weight": 0.05},
      {"name": "gradient", "weight": 0.5}]),
], ids=["ddffnet", "lstm_ddff", "recurrent_ae", "poolnet_coc"])
def test_every_seed_architecture_trains_through_the_harness(tiny_data, tmp_path, model, loss):
    from focaldepth.train.run import train

    train_dir, val_dir = tiny_data
    raw = {**tiny_config(train_dir, val_dir, max_steps=2), "model": model, "loss": loss}
    result = train(config_from_dict(raw), tmp_path / "run")
    assert result.global_step == 2 and math.isfinite(result.best_val_loss)
    logged = read_csv_rows(tmp_path / "run")
    for term in loss:  # every configured term is logged (unweighted) for train and val
        assert any(r.get(f"train/{term['name']}") for r in logged), term
        assert any(r.get(f"val/{term['name']}") for r in logged), term


def test_resume_continues_from_the_saved_step(tiny_data, tmp_path):
    from focaldepth.train.run import train

    train_dir, val_dir = tiny_data
    raw = tiny_config(train_dir, val_dir)
    run = tmp_path / "run"
    first = train(config_from_dict(raw), run)
    assert first.global_step == 4
    with pytest.raises(UserError, match="already holds a run"):
        train(config_from_dict(raw), run)
    changed = {**raw, "optimizer": {"lr": 5e-3}}
    with pytest.raises(UserError, match="optimizer.lr"):
        train(config_from_dict(changed), run, resume=True)
    longer = {**raw, "trainer": {**raw["trainer"], "max_steps": 7}}
    second = train(config_from_dict(longer), run, resume=True)
    assert second.resumed_from_step == 4 and second.global_step == 7
    # step 7 ends mid-epoch between two periodic saves: last.ckpt/.pt still hold step 7
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=False)["global_step"] == 7
    assert models.read_checkpoint(run / "checkpoints/last.pt")["extra"]["global_step"] == 7
    # training time accumulates over attempts (restored from the checkpoint)
    assert second.wall_time_s > first.wall_time_s > 0
    again = train(config_from_dict(longer), run, resume=True)  # already finished
    assert again.global_step == 7 and again.wall_time_s == pytest.approx(second.wall_time_s,
                                                                         abs=0.5)
    rows = read_csv_rows(run)
    resumed_steps = sorted(int(r["step"]) for r in rows
                           if r["version"] == "version_1" and r.get("train/loss"))
    assert resumed_steps == [4, 5, 6]  # continued, not restarted at 0
    from focaldepth.train.run import read_logged_metrics

    merged = [step for step, _ in read_logged_metrics(run)["train/loss"]]
    assert merged == list(range(7))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "focaldepth.cli", *args]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["PYTHONWARNINGS"] = "ignore"
    env["OMP_NUM_THREADS"] = "1"  # see one_thread()
    return env


def test_resume_after_a_kill(tiny_data, tmp_path):
    """SIGKILL a CLI run once a checkpoint exists; --resume finishes it from that step."""
    train_dir, val_dir = tiny_data
    raw = tiny_config(train_dir, val_dir, max_steps=400)
    raw["checkpoint"] = {"every_n_steps": 5}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    process = subprocess.Popen(_cli("train", "--config", str(config), "--out", str(run)),
                               env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.exists()
    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert 0 < killed_at < 400
    target = str(killed_at + 6)  # the saved config said 400: more steps may change on resume
    finished = subprocess.run(_cli("train", "--resume", "--out", str(run), "--max-steps", target),
                              env=_env(), capture_output=True, text=True, timeout=600,
                              check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert torch.load(last, weights_only=False)["global_step"] == killed_at + 6
    versions = sorted((run / "logs" / "csv").glob("version_*"))
    assert len(versions) == 2


def test_ddp_on_two_cpu_processes(tiny_data, tmp_path):
    """Lightning DDP (gloo) with 2 CPU processes through the unchanged CLI."""
    train_dir, val_dir = tiny_data
    raw = tiny_config(train_dir, val_dir, max_steps=3)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    env = _env()
    result = subprocess.run(
        _cli("train", "--config", str(config), "--out", str(run), "--strategy", "ddp",
             "--devices", "2", "--accelerator", "cpu"),
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = yaml.safe_load((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 3
    assert (run / "checkpoints" / "last.pt").is_file()
    # each of the 2 processes sees half of the 4 sequences per epoch: 4 / 2 / batch 2 = 1 step
    assert summary["steps_per_epoch"] == 1


# --- random frame counts and warm starts ------------------------------------------------------


def test_random_frame_count_keeps_the_reference_frame_and_varies_k():
    from focaldepth.train.data import RandomFrameCount

    def item(seed):
        frames = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 3, 4, 4) + 10 * seed
        return {"frames": frames, "focus_distance_m": torch.arange(1.0, 7.0), "coc_px": frames[:, :1],
                "depth_m": torch.full((1, 4, 4), float(seed))}

    collate = RandomFrameCount(min_frames=3, seed=0)
    counts = set()
    for _ in range(40):
        batch = collate([item(0), item(1)])
        count = batch["frames"].shape[1]
        counts.add(count)
        assert 3 <= count <= 6 and batch["coc_px"].shape[1] == count
        focus = batch["focus_distance_m"]
        assert (focus[:, -1] == 6.0).all()  # the reference (last) frame is always kept
        assert (focus.diff(dim=1) > 0).all()  # capture order kept
        # Frames, focus and CoC stay paired; per-item keys are untouched.
        assert torch.equal(batch["frames"][:, :, 0, 0, 0] % 10 + 1, focus)
        assert torch.equal(batch["depth_m"][:, 0, 0, 0], torch.tensor([0.0, 1.0]))
    assert counts == {3, 4, 5, 6}


def test_min_frames_is_checked(tiny_data, tmp_path):
    config = tiny_config(*tiny_data)
    config["data"]["min_frames"] = 9
    with pytest.raises(UserError, match="min_frames"):
        config_from_dict(config, tmp_path / "bad.yaml")


def test_warm_start_loads_every_tensor_and_lists_what_the_file_lacks(tmp_path):
    from focaldepth import models
    from focaldepth.train.run import warm_start

    vote_only = models.create("sweepnet_test")
    path = models.save(vote_only, tmp_path / "vote_only.pt")
    extrapolating = models.create("sweepnet_test", extrapolate=True)
    with pytest.raises(UserError, match="lacks tensors: offset_head"):
        warm_start(extrapolating, str(path), [])
    fresh = warm_start(extrapolating, str(path), ["offset_head."])
    assert fresh == ["offset_head.bias", "offset_head.weight"]
    for name, tensor in vote_only.state_dict().items():
        assert torch.equal(extrapolating.state_dict()[name], tensor)
    # The other way round, the file has a tensor the model lacks: never dropped silently.
    x_file = str(models.save(extrapolating, tmp_path / "x.pt"))
    with pytest.raises(UserError, match="has tensors the model lacks"):
        warm_start(models.create("sweepnet_test"), x_file, [])
    # ... unless the prefix is listed: dropping a head on purpose.
    dropped = models.create("sweepnet_test")
    assert warm_start(dropped, x_file, ["offset_head."]) == []
    assert torch.equal(dropped.state_dict()["focus_head.weight"], extrapolating.state_dict()["focus_head.weight"])


def test_resume_accepts_a_saved_config_written_before_new_keys_existed(tiny_data, tmp_path):
    """A run started by an older focaldepth has no init_from / min_frames in its config.yaml:
    the missing keys take their defaults instead of counting as changes."""
    from focaldepth.train.run import check_run_folder

    config = config_from_dict(tiny_config(*tiny_data), tmp_path / "c.yaml")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = config.to_dict()
    old.pop("init_from"), old.pop("init_missing_ok"), old["data"].pop("min_frames")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    assert check_run_folder(config, run_dir, resume=True, config_path=None) is None
    changed = config_from_dict({**tiny_config(*tiny_data), "seed": 5}, tmp_path / "c.yaml")
    with pytest.raises(UserError, match="seed"):
        check_run_folder(changed, run_dir, resume=True, config_path=None)
