"""CLI verbs about registered models (`civicsense model card`): thin shells over
civicsense.training.model_card."""

from __future__ import annotations

from pathlib import Path

import typer

from civicsense.cli.errors import fail
from civicsense.cli.options import HomeOption
from civicsense.settings import get_settings

model_app = typer.Typer(help="Registered model versions: their model cards.",
                        no_args_is_help=True)


def card_command(
    version: str = typer.Option(None, "--version", help="A registered version number.",
                                show_default="the --alias"),
    alias: str = typer.Option("champion", "--alias", help="An alias (champion, challenger, "
                              "previous), used when no --version is given."),
    home: Path = HomeOption,
) -> None:
    """Print the Markdown model card logged with a registered version."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout: the card
    from civicsense.training.model_card import CardError, fetch_card
    from civicsense.training.registry import registry_client

    if version is not None and not version.isdigit():
        fail(f"--version must be a version number, not {version!r}")
    settings = get_settings(home=home)
    try:
        card = fetch_card(registry_client(settings), settings.model_name, version or alias)
    except CardError as error:
        fail(str(error), 1)
    typer.echo(card, nl=False)


def register(app: typer.Typer) -> None:
    """Attach `civicsense model …` to the main CLI."""
    model_app.command("card")(card_command)
    app.add_typer(model_app, name="model")
