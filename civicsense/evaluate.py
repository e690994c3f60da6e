"""Evaluate: macro recall (primary), macro F1, accuracy, per-class scores and the confusion
matrix of the candidate, and the current champion scored on the same validation data."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # headless: components and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
)

from civicsense import LABELS  # noqa: E402

log = logging.getLogger(__name__)
PRIMARY_METRIC = "macro_recall"
# The validation posts with the model's predictions, saved with the run: the drift monitor's
# reference for this model version.
REFERENCE_DIR, REFERENCE_FILE = "reference", "reference.parquet"


@dataclass
class Champion:
    version: str
    macro_recall: float


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


def confusion_figure(matrix: np.ndarray, title: str):
    """A labelled, annotated confusion-matrix heat map."""
    figure, axes = plt.subplots(figsize=(4.8, 4.2), dpi=120)
    axes.imshow(matrix, cmap="Blues")
    axes.set(xticks=range(len(LABELS)), yticks=range(len(LABELS)), xticklabels=LABELS,
             yticklabels=LABELS, xlabel="predicted", ylabel="true", title=title)
    for (row, col), count in np.ndenumerate(matrix):
        shade = "white" if count > matrix.max() / 2 else "black"
        axes.text(col, row, f"{count:,}", ha="center", va="center", color=shade)
    figure.tight_layout()
    return figure


def reference_frame(validation, predictions):
    """Validation posts (time, text, true label) beside the model's label and probabilities."""
    reference = validation[["post_id", "created_at", "text", "label"]].reset_index(drop=True)
    reference = reference.rename(columns={"label": "true_label"})
    return reference.join(predictions.reset_index(drop=True))


def score_champion(client: MlflowClient, model_name: str, texts: Sequence[str],
                   labels: Sequence[str], candidate_run_id: str | None = None,
                   candidate_predictions: Sequence[str] | None = None) -> Champion | None:
    """The current champion's primary metric on these texts, or None when there is none.
    When the champion is the candidate itself (a rerun), its predictions are reused."""
    import mlflow.pyfunc
    import pandas as pd

    try:
        version = client.get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        return None
    if candidate_predictions is not None and version.run_id == candidate_run_id:
        predicted = candidate_predictions
    else:
        model = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
        predicted = model.predict(pd.DataFrame({"text": list(texts)}))["label"]
    score = classification_metrics(labels, predicted)[PRIMARY_METRIC]
    log.info("champion v%s macro recall on this validation data: %.4f", version.version, score)
    return Champion(str(version.version), score)
