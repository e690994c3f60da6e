"""MLflow connection: tracking URI from settings, one experiment, artifacts under home locally."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient

from civicsense.settings import Settings


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured tracking server and select the project's experiment."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    if mlflow.get_experiment_by_name(settings.experiment) is None:
        # A database or file store has no artifact server: keep artifacts under home, not in
        # the current directory (MLflow's ./mlruns default). A server chooses its own root.
        local_store = settings.tracking_uri.startswith(("sqlite:", "file:", "/"))
        mlflow.create_experiment(
            settings.experiment, artifact_location=settings.artifact_root if local_store else None
        )
    mlflow.set_experiment(settings.experiment)
    return MlflowClient()
