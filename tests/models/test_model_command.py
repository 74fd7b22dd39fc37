"""`focaldepth models` prints the zoo."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from focaldepth import models
from focaldepth.commands import models as models_command


def run(*args: str) -> str:
    app = typer.Typer()
    models_command.register(app)

    @app.command()
    def other() -> None:  # a second command, so "models" is a sub-command as in the real CLI
        """Unused."""

    result = CliRunner().invoke(app, ["models", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_lists_every_full_size_model_with_its_parameter_count():
    output = run()
    for name in models.list_models(test_variants=False):
        assert name in output
        assert f"{models.parameter_count(name):,}" in output
    assert "ddffnet_test" not in output
    assert "stack_fixed" in output and "stream" in output and "single" in output


def test_tests_flag_adds_the_tiny_variants():
    assert "poolnet_test" in run("--tests")


def test_rows_describe_each_model():
    rows = {row["name"]: row for row in models_command.zoo_rows()}
    assert rows["defocusnet"]["uses_focus_distance"] and not rows["defocusnet"]["uses_camera"]
    assert rows["recurrent_ae"]["consumes"] == "stream"
    assert rows["d3net"]["paper"].startswith("Carvalho")
