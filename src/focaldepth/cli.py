"""The ``focaldepth`` command. Each sub-command lives in ``focaldepth.commands.<name>`` and
registers itself on the app; this file only wires them up and turns user errors into one
line on stderr with exit status 2 (no traceback)."""

from __future__ import annotations

import sys

import typer

from focaldepth.commands import adapt, benchmark, capture, evaluate, export, generate, models, predict, render, train
from focaldepth.errors import UserError

app = typer.Typer(
    name="focaldepth",
    help="Metric depth from focus and defocus in focal stacks and focus-sweep video.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.callback()
def _root() -> None:
    """Metric depth from focus and defocus in focal stacks and focus-sweep video."""


@app.command()
def version() -> None:
    """Print the focaldepth version."""
    from focaldepth import __version__

    print(__version__)


for command_module in (render, generate, models, train, evaluate, predict, adapt, export, benchmark, capture):
    command_module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point. Typer exits itself for usage errors (status 2); a :class:`UserError`
    becomes one line on stderr and status 2; Ctrl-C becomes status 130."""
    try:
        app(args=argv, prog_name="focaldepth")
    except UserError as error:
        print(f"focaldepth: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("focaldepth: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

