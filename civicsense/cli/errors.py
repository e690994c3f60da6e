"""The CLI's one way to stop on an error: a one-line red reason on stderr and an exit code."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> None:
    """Exit with `code` (2: bad input or could not run; 1: the work itself failed)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
