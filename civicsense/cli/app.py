"""The `civicsense` command line: the root Typer app, which each capability's module fills."""

from __future__ import annotations

import logging
import sys

import typer

from civicsense.cli import deploy, labeling, model, monitoring, rollout, serving, status, training


def build_app() -> typer.Typer:
    """The root app with every verb attached (built on demand: nothing happens at import)."""
    app = typer.Typer(help="CivicSense: sentiment on social reforms, trained by a Kubeflow "
                      "pipeline and served by KServe.", no_args_is_help=True,
                      pretty_exceptions_enable=False)
    training.register(app)
    serving.register(app)
    rollout.register(app)
    monitoring.register(app)
    deploy.register(app)
    labeling.register(app)
    status.register(app)
    model.register(app)
    return app


app = build_app()


def main() -> None:  # pragma: no cover - console entry point
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
