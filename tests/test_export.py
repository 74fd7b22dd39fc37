"""`focaldepth export`: the ONNX graph run by onnxruntime gives torch's numbers (max relative
difference < 1e-3) at other batch sizes, frame counts and image sizes than it was traced at."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focaldepth import models
from focaldepth.cli import main
from focaldepth.errors import UserError

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

# (batch, frames, height, width): none is the tracing shape; 50x70 is not a multiple of 16
SHAPES = [(1, 5, 64, 96), (2, 8, 80, 128)]
MAX_RELATIVE_DIFFERENCE = 1e-3


def run_cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def sweep_inputs(batch: int, slices: int, height: int, width: int):
    """A textured scene seen through a focus sweep: each slice blurred by its own amount."""
    generator = torch.Generator().manual_seed(batch * 100 + slices)
    sharp = torch.rand(batch, 1, 3, height, width, generator=generator)
    blurred = []
    for s in range(slices):
        size = 1 + 2 * (abs(s - slices // 2))
        blurred.append(torch.nn.functional.avg_pool2d(sharp[:, 0], size, stride=1, padding=size // 2,
                                                      count_include_pad=False))
    frames = torch.stack(blurred, dim=1)
    focus = torch.linspace(0.35, 1.8, slices).repeat(batch, 1)
    camera = torch.tensor([[0.026, 1.8, 1.4e-6 * 4000 / width]]).repeat(batch, 1)
    return frames, focus, camera


def max_relative_differences(onnx_path, model, shapes) -> dict[str, float]:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["frames", "focus_distance_m", "camera"]
    names = [o.name for o in session.get_outputs()]
    worst: dict[str, float] = {}
    for shape in shapes:
        frames, focus, camera = sweep_inputs(*shape)
        with torch.inference_mode():
            expected = model(frames, focus, camera)
        got = session.run(None, {"frames": frames.numpy(), "focus_distance_m": focus.numpy(),
                                 "camera": camera.numpy()})
        for name, value in zip(names, got):
            reference = expected[name].numpy()
            assert value.shape == reference.shape, (name, shape)
            # focus weights go to ~0 far from focus: relative to the weight scale there
            floor = 1e-3 if name == "focus_weights" else 1e-6
            rel = np.abs(value - reference) / np.maximum(np.abs(reference), floor)
            worst[name] = max(worst.get(name, 0.0), float(rel.max()))
    return worst


def dynamic_axes(onnx_path) -> dict[str, list]:
    graph = onnx.load(str(onnx_path)).graph
    return {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in list(graph.input) + list(graph.output)}


def test_tiny_model_file_exports_through_the_cli(tmp_path, capsys):
    torch.manual_seed(0)
    model = models.create("sweepnet_test").eval()
    model_file = tmp_path / "tiny.pt"
    models.save(model, model_file)
    out = tmp_path / "tiny.onnx"
    assert run_cli("export", str(model_file), "--out", str(out)) == 0
    assert "wrote" in capsys.readouterr().out and out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    axes = dynamic_axes(out)
    assert axes["frames"][1:3] == [axes["focus_distance_m"][1], 3]
    assert all(isinstance(a, str) for a in (axes["frames"][0], axes["frames"][1],
                                            axes["frames"][3], axes["frames"][4]))
    assert axes["camera"][1] == 3 and axes["depth_m"][1] == 1
    worst = max_relative_differences(out, models.load(model_file).eval(), SHAPES + [(1, 3, 50, 70)])
    assert set(worst) == {"depth_m", "confidence", "focus_weights"}
    assert max(worst.values()) < MAX_RELATIVE_DIFFERENCE, worst


def test_physics_hybrids_refuse_export_and_name_the_vote(tmp_path):
    from focaldepth.export import export_onnx
    from focaldepth.predict import load_model

    with pytest.raises(UserError, match="export its vote alone"):
        export_onnx(load_model("sweepnet_default"), tmp_path / "default.onnx")
    assert not (tmp_path / "default.onnx").exists()


def test_shipped_vote_of_the_default_matches_torch(tmp_path):
    from focaldepth.export import export_onnx
    from focaldepth.predict import load_model

    model = load_model("sweepnet_real_vote").eval()  # v6's vote, what exports of the default give
    out = tmp_path / "default.onnx"
    export_onnx(model, out)
    worst = max_relative_differences(out, model, SHAPES)
    print("max relative difference onnxruntime vs torch:", worst)
    assert max(worst.values()) < MAX_RELATIVE_DIFFERENCE, worst


@pytest.mark.parametrize("model, out_name, fragment", [
    ("no_such_model", "model.onnx", "no such model file or shipped model"),
    ("sweepnet_default", "model.txt", "must end in .onnx"),
    ("sweepnet_default", "blocker/model.onnx", "not a writable folder"),
], ids=["unknown-model", "not-onnx", "unwritable"])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, model, out_name, fragment):
    (tmp_path / "blocker").write_text("a file, not a folder")
    out = tmp_path / out_name
    assert run_cli("export", model, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err
    assert not out.exists()
