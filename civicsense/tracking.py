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
        local = settings.mlflow_tracking_uri is None
        mlflow.create_experiment(
            settings.experiment, artifact_location=settings.artifact_root if local else None
        )
    mlflow.set_experiment(settings.experiment)
    return MlflowClient()
