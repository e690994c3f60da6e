"""Model loading for the server: pin a registered model or an MLflow model directory to one
version, load its predictor, and score texts with it (featurizing once)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from civicsense.settings import Settings
from civicsense.training.registry import find_version, registry_client


class ModelNotRegistered(LookupError):
    """A models:/ URI names a model, alias or version the registry does not have."""


@dataclass(frozen=True)
class LoadedModel:
    predictor: Any  # civicsense.training.model.SentimentPredictor; None when only resolved
    uri: str
    version: str  # MLflow registered version, or "unregistered"
    run_id: str
    location: str = ""  # where the model directory was read from

    @property
    def version_tag(self) -> str:
        """What every response and the metadata carry: `<registered version>+<run id>`."""
        return f"{self.version}+{self.run_id}"


def resolve_model(uri: str, settings: Settings) -> LoadedModel:
    """Pin a registered model (`models:/name@alias`, `models:/name/version`) or an MLflow model
    directory to one version and location, without loading it: an alias is resolved once, so
    what is loaded is what is reported."""
    import mlflow.artifacts
    from mlflow.models import Model as MLmodel

    version = settings.model_version or "unregistered"
    location = uri
    if uri.startswith("models:/"):
        name, _, alias = uri.removeprefix("models:/").partition("@")
        name, _, number = name.partition("/")
        found = find_version(registry_client(settings), name, alias or number)
        if found is None:
            raise ModelNotRegistered(f"{uri} is not in the registry at {settings.tracking_uri}")
        version, uri, location = found.number, f"models:/{name}/{found.number}", found.storage_uri
    elif "://" not in uri:
        uri = location = str(Path(uri).expanduser().resolve())
    # The MLmodel file alone (Model.load rejects file:// directory URIs as of MLflow 3).
    mlmodel = mlflow.artifacts.download_artifacts(artifact_uri=f"{location.rstrip('/')}/MLmodel")
    return LoadedModel(None, uri, version, str(MLmodel.load(mlmodel).run_id or "none"), location)


def load_resolved(model: LoadedModel, settings: Settings) -> LoadedModel:
    """Load the pyfunc of a resolved model (its code_paths join sys.path) and its predictor."""
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(model.location)
    predictor = pyfunc.unwrap_python_model().predictor
    # One OpenMP thread per process: with several model processes on few cores, more thrash.
    predictor.booster.set_param({"nthread": settings.serve_threads})
    encoder = getattr(predictor.featurizer, "encoder", None)
    if encoder is not None:  # ONNX Runtime's intra-op threads, likewise (set before first use)
        encoder.threads = settings.serve_threads
    return dataclasses.replace(model, predictor=predictor,
                               run_id=str(pyfunc.metadata.run_id or "none"))


def load_model(uri: str, settings: Settings) -> LoadedModel:
    """Resolve and load: the model as one process serves it."""
    return load_resolved(resolve_model(uri, settings), settings)


def score(predictor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The texts' class probabilities (float32, [n, 3]) and descriptors ([n,
    len(DESCRIPTOR_NAMES)], for the payload log), featurized once (SentimentPredictor.score)."""
    probabilities, descriptors = predictor.score(texts)
    return probabilities.astype(np.float32), descriptors
