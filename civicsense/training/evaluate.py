"""Evaluate: macro recall (primary), macro F1, accuracy, per-class scores and the confusion
matrix of the candidate, and the current champion scored on the same validation data."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
)

from civicsense import LABELS, PROBABILITY_COLUMNS
from civicsense.settings import Settings
from civicsense.training.model_card import quality_markdown
from civicsense.training.quality import analyse, log_quality
from civicsense.training.registry import CHAMPION, configure_mlflow, find_version

log = logging.getLogger(__name__)
PRIMARY_METRIC = "macro_recall"
# The validation posts with the model's predictions, saved with the run: the drift monitor's
# reference for this model version.
REFERENCE_DIR, REFERENCE_FILE = "reference", "reference.parquet"
# A model's predictions on the same texts never change: evaluate keeps them under the home,
# keyed by the model's training run and the texts, so an unchanged rerun does not featurize
# (and encode) the whole validation split again for the candidate or the champion.
PREDICTIONS_DIR, KEPT_PREDICTIONS = "evaluate-predictions", 8


@dataclass
class ChampionScore:
    """The current champion's primary metric on the candidate's validation posts."""

    version: str
    macro_recall: float
    predicted: list[str] | None = None  # its labels for the same posts (the slices compare)


@dataclass
class Evaluation:
    """What the evaluate step hands on: the candidate's scores, its confusion matrix and the
    champion's score on the same posts (None when there is no champion)."""

    scores: dict[str, float]
    matrix: np.ndarray
    champion: ChampionScore | None
    quality: dict | None = None  # slices, calibration, confusions, behaviour (training.quality)


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float]:
    """The flat metric dict logged everywhere; PRIMARY_METRIC is what gates promotion."""
    metrics = {
        PRIMARY_METRIC: recall_score(y_true, y_pred, labels=list(LABELS), average="macro",
                                     zero_division=0),
        "macro_f1": f1_score(y_true, y_pred, labels=list(LABELS), average="macro",
                             zero_division=0),
        "accuracy": accuracy_score(y_true, y_pred),
    }
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(LABELS), zero_division=0)
    for i, label in enumerate(LABELS):
        metrics |= {f"precision_{label}": precision[i], f"recall_{label}": recall[i],
                    f"f1_{label}": f1[i], f"support_{label}": float(support[i])}
    return {name: float(value) for name, value in metrics.items()}


def confusion(y_true: Sequence[str], y_pred: Sequence[str]) -> np.ndarray:
    """Rows are true labels, columns predicted, both in LABELS order."""
    return confusion_matrix(y_true, y_pred, labels=list(LABELS))


def confusion_figure(matrix: np.ndarray, title: str) -> Figure:
    """A labelled, annotated confusion-matrix heat map (a bare Figure: no pyplot, no display)."""
    figure = Figure(figsize=(4.8, 4.2), dpi=120)
    axes = figure.subplots()
    axes.imshow(matrix, cmap="Blues")
    axes.set(xticks=range(len(LABELS)), yticks=range(len(LABELS)), xticklabels=LABELS,
             yticklabels=LABELS, xlabel="predicted", ylabel="true", title=title)
    for (row, col), count in np.ndenumerate(matrix):
        shade = "white" if count > matrix.max() / 2 else "black"
        axes.text(col, row, f"{count:,}", ha="center", va="center", color=shade)
    figure.tight_layout()
    return figure


def reference_frame(validation: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Validation posts (time, text, true label) beside the model's label and probabilities."""
    reference = validation[["post_id", "created_at", "text", "label"]].reset_index(drop=True)
    reference = reference.rename(columns={"label": "true_label"})
    return reference.join(predictions.reset_index(drop=True))


def texts_key(texts: Sequence[str]) -> str:
    """A digest of texts in order (which posts a cached prediction is for)."""
    digest = int(pd.util.hash_pandas_object(pd.Series(list(texts), dtype="object").astype(str),
                                            index=False).sum()) & (2**64 - 1)
    return f"{digest:016x}-{len(texts)}"


def cached_predictions(settings: Settings, run_id: str, texts: Sequence[str],
                       predict: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """The model of training run `run_id` on `texts` (its `predict`), from the home's cache
    when that model already scored exactly these texts; the newest KEPT_PREDICTIONS kept."""
    folder = settings.home_dir / PREDICTIONS_DIR
    path = folder / f"{run_id}-{texts_key(texts)}.parquet"
    if path.is_file():
        try:
            cached = pd.read_parquet(path)
            if len(cached) == len(texts):
                log.info("predictions of run %s on these %d posts: cached", run_id, len(texts))
                return cached
        except (OSError, ValueError):
            pass  # a torn or foreign file: predict again and overwrite it
    predictions = predict(pd.DataFrame({"text": list(texts)})).reset_index(drop=True)
    folder.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".partial")
    predictions.to_parquet(staging, index=False)
    staging.replace(path)
    for old in sorted(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime)[
            :-KEPT_PREDICTIONS]:
        old.unlink(missing_ok=True)
    return predictions


def score_champion(client: MlflowClient, model_name: str, texts: Sequence[str],
                   labels: Sequence[str], candidate_run_id: str | None = None,
                   candidate_predictions: Sequence[str] | None = None,
                   settings: Settings | None = None) -> ChampionScore | None:
    """The current champion's primary metric on these texts, or None when there is none.
    When the champion is the candidate itself (a rerun), its predictions are reused; with
    `settings`, the champion's predictions go through the home's cache (cached_predictions)."""
    import mlflow.pyfunc

    champion = find_version(client, model_name, CHAMPION)
    if champion is None:
        return None
    if candidate_predictions is not None and champion.run_id == candidate_run_id:
        predicted = candidate_predictions
    else:
        def predict(frame: pd.DataFrame) -> pd.DataFrame:
            model = mlflow.pyfunc.load_model(f"models:/{model_name}/{champion.number}")
            return model.predict(frame)

        if settings is not None and champion.run_id not in ("", "none"):
            predicted = cached_predictions(settings, champion.run_id, texts, predict)["label"]
        else:
            predicted = predict(pd.DataFrame({"text": list(texts)}))["label"]
    score = classification_metrics(labels, predicted)[PRIMARY_METRIC]
    log.info("champion v%s macro recall on this validation data: %.4f", champion.number, score)
    return ChampionScore(champion.number, score, list(predicted))


def evaluate(settings: Settings, entities: pd.DataFrame, model_dir: Path,
             run_id: str) -> Evaluation:
    """The pipeline's evaluate step: score the packaged candidate on the validation split, score
    the champion on the same posts, analyse errors (slices, calibration, confusions, behaviour
    suites) and log metrics, plots, the quality report and the drift monitor's reference to the
    candidate's MLflow run."""
    import mlflow.pyfunc

    validation = entities[entities["split"] == "validation"]
    candidate = mlflow.pyfunc.load_model(str(model_dir))
    predictions = cached_predictions(settings, run_id, validation["text"].tolist(),
                                     candidate.predict)
    predicted = predictions["label"].tolist()
    scores = classification_metrics(validation["label"], predicted)
    matrix = confusion(validation["label"], predicted)

    client = configure_mlflow(settings)
    champion = score_champion(client, settings.model_name, validation["text"].tolist(),
                              validation["label"], run_id, predicted, settings)
    for name, value in scores.items():
        client.log_metric(run_id, f"val_{name}", value)
    if champion is not None:
        client.log_metric(run_id, "champion_val_macro_recall", champion.macro_recall)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REFERENCE_FILE
        reference_frame(validation, predictions).to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), REFERENCE_DIR)
    figure = confusion_figure(matrix, f"validation, macro recall {scores[PRIMARY_METRIC]:.3f}")
    client.log_figure(run_id, figure, "confusion_matrix.png")
    report = analyse(settings, validation, predictions, champion and champion.predicted,
                     lambda texts: candidate.predict(pd.DataFrame({"text": texts})))
    log_quality(client, run_id, report, quality_markdown(report),
                predictions[list(PROBABILITY_COLUMNS)].to_numpy(float), validation["label"],
                settings.calibration_bins)
    return Evaluation(scores, matrix, champion, report)
