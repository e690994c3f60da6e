"""KFP component: score the candidate (and the current champion) on the validation split."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def evaluate_op(
    entities: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
) -> NamedTuple(
    "Scores", [("candidate_score", float), ("champion_score", float), ("champion_version", str)]
):
    """Metrics of the packaged candidate on validation text; champion_score is -1 with none."""
    import json
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    import mlflow
    import pandas as pd

    from civicsense import LABELS
    from civicsense.evaluate import (
        PRIMARY_METRIC,
        REFERENCE_DIR,
        REFERENCE_FILE,
        classification_metrics,
        confusion,
        confusion_figure,
        reference_frame,
        score_champion,
    )
    from civicsense.settings import Settings
    from civicsense.tracking import configure_mlflow

    settings = Settings()
    rows = pd.read_parquet(entities.path)
    validation = rows[rows["split"] == "validation"]
    candidate = mlflow.pyfunc.load_model(str(Path(model.path) / "mlflow-model"))
    predictions = candidate.predict(validation[["text"]])
    predicted = predictions["label"].tolist()
    scores = classification_metrics(validation["label"], predicted)
    matrix = confusion(validation["label"], predicted)

    client = configure_mlflow(settings)
    run_id = model.metadata["run_id"]
    champion = score_champion(client, settings.model_name, validation["text"], validation["label"],
                              run_id, predicted)
    for name, value in scores.items():
        metrics.log_metric(name, round(value, 4))
        client.log_metric(run_id, f"val_{name}", value)
    if champion is not None:
        client.log_metric(run_id, "champion_val_macro_recall", champion.macro_recall)
    reference = reference_frame(validation, predictions)
    with tempfile.TemporaryDirectory() as tmp:
        reference.to_parquet(Path(tmp) / REFERENCE_FILE, index=False)
        client.log_artifact(run_id, str(Path(tmp) / REFERENCE_FILE), REFERENCE_DIR)
    figure = confusion_figure(matrix, f"validation, macro recall {scores[PRIMARY_METRIC]:.3f}")
    client.log_figure(run_id, figure, "confusion_matrix.png")
    confusion_matrix.log_confusion_matrix(list(LABELS), matrix.tolist())
    Path(metrics.path).write_text(json.dumps(scores, indent=2))
    print(json.dumps(scores, indent=2))
    Scores = namedtuple("Scores", ["candidate_score", "champion_score", "champion_version"])
    return Scores(scores[PRIMARY_METRIC], champion.macro_recall if champion else -1.0,
                  champion.version if champion else "")
