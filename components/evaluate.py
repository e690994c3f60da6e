"""KFP component `evaluate_op`: a thin shell over civicsense.training.evaluate.evaluate."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def evaluate_op(
    entities: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
    quality_report: Output[Markdown],
) -> NamedTuple(
    "Scores", [("candidate_score", float), ("champion_score", float), ("champion_version", str)]
):
    """Metrics of the packaged candidate on validation text; champion_score is -1 with none.
    quality_report: slices, calibration, behaviour suites and worst confusions (Markdown, shown
    in the Kubeflow UI's Visualization tab)."""
    import json
    from collections import namedtuple
    from pathlib import Path

    import pandas as pd

    from civicsense import LABELS
    from civicsense.settings import Settings
    from civicsense.training.evaluate import PRIMARY_METRIC, evaluate
    from civicsense.training.model_card import quality_markdown

    result = evaluate(Settings(), pd.read_parquet(entities.path),
                      Path(model.path) / "mlflow-model", model.metadata["run_id"])
    for name, value in result.scores.items():
        metrics.log_metric(name, round(value, 4))
    confusion_matrix.log_confusion_matrix(list(LABELS), result.matrix.tolist())
    # A Metrics artifact with no file never hits the local cache: write the scores there too.
    Path(metrics.path).write_text(json.dumps(result.scores, indent=2))
    Path(quality_report.path).write_text(quality_markdown(result.quality))
    champion = result.champion
    Scores = namedtuple("Scores", ["candidate_score", "champion_score", "champion_version"])
    return Scores(result.scores[PRIMARY_METRIC], champion.macro_recall if champion else -1.0,
                  champion.version if champion else "")
