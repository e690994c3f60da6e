"""CLI verbs for the cluster path (`civicsense deploy check | render | up | e2e | down`): thin
shells over civicsense.deploy."""

from __future__ import annotations

from pathlib import Path

import typer

from civicsense.cli.errors import fail
from civicsense.settings import MIRROR_DATA, get_settings

deploy_app = typer.Typer(help="Render and validate the cluster manifests; bring a kind/minikube "
                         "cluster up, run the end-to-end path on it, take it down.",
                         no_args_is_help=True)

ComponentImage = typer.Option(None, "--component-image", help="The component image "
                              "(REGISTRY/civicsense-components:TAG).",
                              show_default="the overlay's")
ServingImage = typer.Option(None, "--serving-image", help="The serving image "
                            "(REGISTRY/civicsense-serving:TAG).",
                            show_default="the overlay's")


def _crd_cache() -> Path:
    """Where downloaded CRDs are kept when ../shared/k8s does not have them."""
    return get_settings().home_dir / "k8s-crds"


@deploy_app.command("check")
def check_command(
    overlay: list[str] = typer.Option(None, "--overlay", help="Only these overlays "
                                      "(repeatable).",
                                      show_default="every one under manifests/overlays"),
    component_image: str = ComponentImage, serving_image: str = ServingImage,
) -> None:
    """Render every overlay and validate every object (Kubernetes, KServe CRDs, the rollout's
    patched InferenceServices, the compiled pipeline and the recurring run). Exit 1 if any
    is invalid."""
    from civicsense.deploy.check import check_manifests
    from civicsense.deploy.crds import CrdError
    from civicsense.deploy.render import RenderError

    try:
        report = check_manifests(_crd_cache(), overlay or None, component_image, serving_image)
    except (RenderError, CrdError) as error:
        fail(str(error))
    for source, name, schema in report.checked:
        typer.echo(f"ok   {source}: {name} ({schema})")
    for problem in report.problems:
        typer.secho(f"FAIL {problem}", fg=typer.colors.RED, err=True)
    typer.echo(f"{len(report.checked)} objects valid, {len(report.problems)} problems")
    if not report.ok:
        raise typer.Exit(1)


@deploy_app.command("render")
def render_command(
    overlay: str = typer.Argument(..., help="An overlay under manifests/overlays."),
    component_image: str = ComponentImage, serving_image: str = ServingImage,
    sink_token_file: Path = typer.Option(None, "--sink-token-file", help="The sink's shared "
                                         "token (32+ URL-safe chars).",
                                         show_default="a placeholder"),
    mlflow_auth_file: Path = typer.Option(None, "--mlflow-auth-file", help="MLflow's "
                                          "credentials: username=, password= and "
                                          "flask-secret-key= lines; adds their Secrets.",
                                          show_default="no Secrets: MLflow waits for them"),
    output: Path = typer.Option(None, "-o", "--output", help="Write here.",
                                show_default="stdout"),
) -> None:
    """Render an overlay with these images (tags or digests), token and MLflow credentials, as
    `kubectl apply -f` takes it."""
    from civicsense.deploy.mlflow_auth import AuthFileError, read_auth
    from civicsense.deploy.render import RenderError, read_token, render, to_yaml

    try:
        token = read_token(sink_token_file) if sink_token_file else None
        auth = read_auth(mlflow_auth_file) if mlflow_auth_file else None
        text = to_yaml(render(overlay, component_image, serving_image, sink_token=token,
                              mlflow_auth=auth))
    except (RenderError, AuthFileError, OSError) as error:
        fail(str(error))
    if output:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)


def _plan_command(plan: str):
    def command(
        cluster: str = typer.Option("kind", "--cluster", help="kind or minikube."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print every command and "
                                     "render + validate every manifest; touch no cluster."),
        component_image: str = typer.Option(..., "--component-image", help="What `make "
                                            "images` built, e.g. civicsense-components:TAG."),
        serving_image: str = typer.Option(..., "--serving-image", help="e.g. "
                                          "civicsense-serving:TAG."),
        data: Path = typer.Option(MIRROR_DATA, "--data", help="Training data to upload."),
        drift_data: Path = typer.Option(MIRROR_DATA.parent / "tweeteval-stance",
                                        "--drift-data", help="Posts that drift (e2e)."),
    ) -> None:
        from civicsense.deploy.bringup import PLANS, ClusterConfig
        from civicsense.deploy.execute import StepFailed, run_plan

        if cluster not in ("kind", "minikube"):
            fail(f"--cluster must be kind or minikube, not {cluster!r}")
        settings = get_settings()
        cfg = ClusterConfig(component_image=component_image, serving_image=serving_image,
                            workdir=settings.home_dir / "cluster", data=data,
                            drift_data=drift_data, cluster=cluster)
        try:
            count = run_plan(PLANS[plan](cfg), _crd_cache(), dry_run=dry_run, echo=typer.echo)
        except StepFailed as error:
            fail(str(error), 1)
        typer.echo(f"{plan}: {count} steps {'printed (dry run)' if dry_run else 'done'}")

    command.__doc__ = {"up": "Create the cluster and install everything (make cluster-up).",
                       "e2e": "Pipeline → serve → canary → promote → rollback → drift → "
                              "triggered run, on the cluster (make cluster-e2e).",
                       "down": "Delete the cluster (make cluster-down)."}[plan]
    return command


for _plan in ("up", "e2e", "down"):
    deploy_app.command(_plan)(_plan_command(_plan))


def register(app: typer.Typer) -> None:
    """Attach the deploy verbs to the main CLI."""
    app.add_typer(deploy_app, name="deploy")
