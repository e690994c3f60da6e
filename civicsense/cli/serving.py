"""CLI verbs for serving (`civicsense serve`; the rollout's are in cli/rollout.py): thin shells over
civicsense.serving."""

from __future__ import annotations

import typer

from civicsense.cli.errors import fail
from civicsense.cli.options import setting_option
from civicsense.settings import get_settings


def serve_command(
    port: int = setting_option("serve_port", "--port", help="HTTP port. KServe binds 0.0.0.0 "
                               "(hard-coded)."),
    model_uri: str = setting_option("serve_model_uri", "--model-uri", help="models:/name@alias, "
                                    "models:/name/version or an MLflow model directory.",
                                    default_text="models:/<model name>@champion"),
    workers: int = setting_option("serve_workers", "--workers", help="Model processes: more "
                                  "than 1 adds a pool the HTTP process feeds request by request "
                                  "(use the core count)."),
    max_batch: int = setting_option("max_batch", "--max-batch", help="Most texts per request."),
    max_text_chars: int = setting_option("max_text_chars", "--max-text-chars",
                                         help="Longest text."),
) -> None:
    """Serve the registered model over KServe V1 and V2 on one port (no cluster needed)."""
    from mlflow.exceptions import MlflowException

    from civicsense.serving.loading import ModelNotRegistered
    from civicsense.serving.server import serve

    settings = get_settings(serve_port=port, serve_model_uri=model_uri, serve_workers=workers,
                            max_batch=max_batch, max_text_chars=max_text_chars)
    typer.echo(f"serving {settings.model_uri} on http://0.0.0.0:{settings.serve_port} "
               f"(tracking {settings.tracking_uri})", err=True)
    try:
        serve(settings)
    except (MlflowException, ModelNotRegistered) as error:
        fail(f"cannot load {settings.model_uri}: {getattr(error, 'message', error)} (register a "
             "model first: `make run`)", 1)


def register(app: typer.Typer) -> None:
    """Attach the serving verbs to the main CLI."""
    app.command("serve")(serve_command)
