"""Train: XGBoost on the Feast training set, packaged with its featurizer as an MLflow pyfunc."""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from sklearn.metrics import recall_score
from sklearn.utils.class_weight import compute_sample_weight
from tqdm.auto import tqdm

import civicsense
from civicsense import LABELS, PROBABILITY_COLUMNS
from civicsense.features.featurizer import FEATURE_SERVICE, Featurizer, encode_labels
from civicsense.features.store import training_frame
from civicsense.settings import PROJECT_ROOT, Settings
from civicsense.training.model import SentimentModel
from civicsense.training.params import TrainParams
from civicsense.training.registry import configure_mlflow

RUNTIME_PACKAGES = ("mlflow", "xgboost", "scikit-learn", "scipy", "numpy", "pandas", "joblib",
                    "vaderSentiment", "onnxruntime", "tokenizers")
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "text")]),
    outputs=Schema([ColSpec("string", "label"),
                    *(ColSpec("float", column) for column in PROBABILITY_COLUMNS)]),
)


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    model_dir: Path
    train_macro_recall: float


class _ProgressBar(xgb.callback.TrainingCallback):
    def __init__(self, rounds: int):
        self.bar = tqdm(total=rounds, desc="train xgboost", unit="round")

    def after_iteration(self, model, epoch, evals_log) -> bool:
        self.bar.update(1)
        return False

    def after_training(self, model):
        self.bar.close()
        return model


def booster_params(params: TrainParams) -> dict[str, object]:
    """XGBoost's parameter dict for `params` (multi-class probabilities, hist trees)."""
    return {
        "objective": "multi:softprob", "num_class": len(LABELS), "tree_method": "hist",
        "max_depth": params.max_depth, "eta": params.learning_rate,
        "subsample": params.subsample, "colsample_bytree": params.colsample_bytree,
        "min_child_weight": params.min_child_weight, "lambda": params.reg_lambda,
        "seed": params.seed, "eval_metric": "mlogloss",
    }


def fit_booster(features: pd.DataFrame, labels: pd.Series, params: TrainParams,
                callbacks: list[xgb.callback.TrainingCallback] | None = None,
                threads: int | None = None) -> xgb.Booster:
    """A multi-class booster, classes re-weighted so the minority (negative) class counts.
    Without callbacks it draws a progress bar; the tuner passes its pruning callback instead.
    threads: XGBoost's nthread (None: its default, every core)."""
    y = encode_labels(labels)
    matrix = xgb.DMatrix(features.to_numpy(np.float32), label=y,
                         weight=compute_sample_weight("balanced", y),
                         feature_names=list(features.columns))
    settings = booster_params(params) | ({"nthread": threads} if threads else {})
    return xgb.train(settings, matrix, num_boost_round=params.n_estimators,
                     callbacks=callbacks if callbacks is not None
                     else [_ProgressBar(params.n_estimators)])


def git_commit(settings: Settings) -> str:
    if settings.git_commit:
        return settings.git_commit
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, str]:
    """Interpreter, platform and the versions of everything the model needs at runtime."""
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            **{name: version(name) for name in RUNTIME_PACKAGES}}


def save_artifacts(featurizer: Featurizer, booster: xgb.Booster, folder: Path) -> dict[str, str]:
    """Write the model's two artifacts into folder; returns the pyfunc artifacts map."""
    joblib.dump(featurizer, folder / "featurizer.joblib", compress=3)
    booster.save_model(folder / "booster.ubj")
    return {"featurizer": str(folder / "featurizer.joblib"),
            "booster": str(folder / "booster.ubj")}


def log_pyfunc(artifacts: dict[str, str]):
    """Log the self-contained pyfunc model to the active run; its ModelInfo."""
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=SentimentModel(),
        artifacts=artifacts,
        # The package travels with the model so it loads without the repository on sys.path.
        code_paths=[str(Path(civicsense.__file__).parent)],
        signature=SIGNATURE,
        pip_requirements=[f"{name}=={version(name)}" for name in RUNTIME_PACKAGES],
        input_example=pd.DataFrame({"text": ["I love this new law :)", "This is awful."]}),
    )


def train(
    settings: Settings,
    entities: pd.DataFrame,
    featurizer: Featurizer,
    params: TrainParams,
    out_dir: Path,
    data_version: str,
    pipeline_run: str = "local",
) -> TrainResult:
    """The pipeline's train step: read the entities' features from Feast (point-in-time), fit on
    the training split (not the posts the encoder was fine-tuned on: split 'encoder'), package
    the pyfunc and log everything to an MLflow run."""
    features = training_frame(settings, entities)
    if list(features.columns) != featurizer.feature_names:
        raise RuntimeError("the feature store holds other features than this featurizer makes "
                           "(a build with or without the encoder): rerun without the cache")
    is_train = (entities["split"] == "train").to_numpy()
    booster = fit_booster(features[is_train], entities.loc[is_train, "label"], params)
    train_pred = booster.predict(xgb.DMatrix(features[is_train].to_numpy(np.float32),
                                             feature_names=list(features.columns)))
    train_recall = recall_score(encode_labels(entities.loc[is_train, "label"]),
                                train_pred.argmax(axis=1), average="macro")
    configure_mlflow(settings)
    with mlflow.start_run(run_name=f"train-{pipeline_run}") as run:
        mlflow.log_params({**asdict(params), "featurizer": repr(featurizer.lexical),
                           "encoder": repr(featurizer.encoder),
                           "n_features": features.shape[1]})
        mlflow.set_tags({
            "data_version": data_version, "feature_service": FEATURE_SERVICE,
            "git_commit": git_commit(settings), "pipeline_run": pipeline_run,
            "train_rows": int(is_train.sum()),
            "encoder_rows": int((entities["split"] == "encoder").sum()),
            "validation_rows": int((entities["split"] == "validation").sum()),
        })
        mlflow.log_metric("train_macro_recall", train_recall)
        mlflow.log_dict(environment(), "environment.json")
        mlflow.log_dict({"features": list(features.columns)}, "features.json")
        with tempfile.TemporaryDirectory() as staging:
            info = log_pyfunc(save_artifacts(featurizer, booster, Path(staging)))
    # The pipeline's model artifact is a copy of exactly what was logged (packaged once).
    model_dir = out_dir / "mlflow-model"
    mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(model_dir))
    return TrainResult(run.info.run_id, info.model_uri, model_dir, float(train_recall))
