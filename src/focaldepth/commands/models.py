"""`focaldepth models`: list the model zoo -- name, parameters, what each model consumes,
whether it reads focus distances / the camera, and its paper."""

from __future__ import annotations

import typer


def zoo_rows(include_tests: bool = False) -> list[dict]:
    """One row per registered model (parameters counted on the meta device: no memory)."""
    import torch

    from focaldepth import models

    rows = []
    for name in models.list_models(test_variants=None if include_tests else False):
        with torch.device("meta"):
            model = models.create(name)
        info = model.info
        rows.append(
            {
                "name": name,
                "parameters": sum(p.numel() for p in model.parameters()),
                "consumes": info.consumes,
                "uses_focus_distance": info.uses_focus_distance,
                "uses_camera": info.uses_camera,
                "paper": info.paper,
                "summary": models.get_spec(name).summary,
            }
        )
    return rows


def print_zoo(include_tests: bool = False) -> None:
    """Print the zoo as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="focaldepth model zoo (random initialisation; nothing is downloaded)")
    for column, justify in (
        ("name", "left"),
        ("parameters", "right"),
        ("consumes", "left"),
        ("focus", "center"),
        ("camera", "center"),
        ("paper", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")
    for row in zoo_rows(include_tests):
        table.add_row(
            row["name"],
            f"{row['parameters']:,}",
            row["consumes"],
            "yes" if row["uses_focus_distance"] else "no",
            "yes" if row["uses_camera"] else "no",
            row["paper"],
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``focaldepth models`` to the app."""

    @app.command("models")
    def models_command(
        tests: bool = typer.Option(False, "--tests", help="Also list the tiny *_test variants."),
    ) -> None:
        """List the model zoo: parameters, input (stack_fixed / stack_any / stream / single),
        whether the model reads focus distances and the camera, and its paper. Build one with
        focaldepth.models.create(NAME, **kwargs)."""
        print_zoo(include_tests=tests)
