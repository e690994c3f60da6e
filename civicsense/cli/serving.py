"""CLI verbs for serving and rollout (`civicsense serve`, `civicsense rollout …`): thin shells over
civicsense.serving."""

from __future__ import annotations

import json

import typer

from civicsense.cli.errors import fail
from civicsense.cli.options import ContextOption, DryRunOption, NamespaceOption, setting_option
from civicsense.settings import get_settings

rollout_app = typer.Typer(help="Canary rollout of the challenger on the InferenceService, "
                          "promotion (cluster + MLflow alias together) and rollback.",
                          no_args_is_help=True)


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


def _run(verb: str, dry_run: bool, namespace: str | None, context: str | None, **kwargs):
    from civicsense.serving import rollout

    settings = get_settings(k8s_namespace=namespace, k8s_context=context)
    try:
        plan = getattr(rollout, verb)(settings, dry_run=dry_run, **kwargs)
    except rollout.RolloutError as error:
        fail(str(error), 1)
    typer.echo(json.dumps(plan, indent=2))


@rollout_app.command("canary")
def canary_command(
    percent: int = typer.Option(10, "--percent", min=1, max=99,
                                help="Share of traffic for the challenger."),
    dry_run: bool = DryRunOption, namespace: str = NamespaceOption, context: str = ContextOption,
) -> None:
    """Point the InferenceService at the challenger with PERCENT of the traffic."""
    _run("canary", dry_run, namespace, context, percent=percent)


@rollout_app.command("promote")
def promote_command(dry_run: bool = DryRunOption, namespace: str = NamespaceOption,
                    context: str = ContextOption) -> None:
    """All traffic to the canary, and the `champion` alias to its version (old: `previous`)."""
    _run("promote", dry_run, namespace, context)


@rollout_app.command("rollback")
def rollback_command(dry_run: bool = DryRunOption, namespace: str = NamespaceOption,
                     context: str = ContextOption) -> None:
    """All traffic back to the previous revision; `champion` stays where it is."""
    _run("rollback", dry_run, namespace, context)


def register(app: typer.Typer) -> None:
    """Attach the serving verbs to the main CLI."""
    app.command("serve")(serve_command)
    app.add_typer(rollout_app, name="rollout")
