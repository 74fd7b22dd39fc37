"""`focaldepth models`: not written yet (see the issue that introduces it); registers nothing."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the app."""
