"""Unit tests of the evaluation metrics and the confusion-matrix plot."""

import numpy as np
import pandas as pd
import pytest

from civicsense.training.evaluate import (
    PRIMARY_METRIC,
    classification_metrics,
    confusion,
    confusion_figure,
)


def test_macro_recall_is_the_mean_of_per_class_recall():
    truth = ["negative", "negative", "neutral", "positive", "positive", "positive"]
    predicted = ["negative", "neutral", "neutral", "positive", "positive", "neutral"]
    metrics = classification_metrics(truth, predicted)
    assert metrics[PRIMARY_METRIC] == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["support_positive"] == 3


def test_confusion_rows_are_truth_in_label_order():
    matrix = confusion(["negative", "positive"], ["positive", "positive"])
    assert matrix.tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 1]]


def test_confusion_figure_draws_every_cell(tmp_path):
    figure = confusion_figure(np.array([[5, 1, 0], [2, 9, 1], [0, 3, 7]]), "t")
    assert len(figure.axes[0].texts) == 9
    figure.savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 1000


def test_reference_frame_pairs_posts_with_predictions():
    import pandas as pd

    from civicsense.training.evaluate import reference_frame

    validation = pd.DataFrame({"post_id": ["a", "b"],
                               "created_at": pd.to_datetime([0, 1], utc=True),
                               "text": ["x", "y"], "label": ["neutral", "negative"],
                               "split": ["validation"] * 2}, index=[7, 9])
    predictions = pd.DataFrame({"label": ["positive", "negative"], "p_negative": [0.1, 0.8],
                                "p_neutral": [0.2, 0.1], "p_positive": [0.7, 0.1]})
    reference = reference_frame(validation, predictions)
    assert reference["true_label"].tolist() == ["neutral", "negative"]
    assert reference["label"].tolist() == ["positive", "negative"]
    assert "split" not in reference and len(reference) == 2


def test_predictions_are_cached_per_model_run_and_texts(tmp_path):
    from civicsense.settings import Settings
    from civicsense.training.evaluate import KEPT_PREDICTIONS, cached_predictions

    settings = Settings(home=tmp_path)
    calls: list[int] = []

    def predict(frame: pd.DataFrame) -> pd.DataFrame:
        calls.append(len(frame))
        return pd.DataFrame({"label": ["positive"] * len(frame)})

    texts = ["a fine law", "a bad law"]
    first = cached_predictions(settings, "run1", texts, predict)
    again = cached_predictions(settings, "run1", texts, predict)
    assert calls == [2] and again.equals(first)
    cached_predictions(settings, "run2", texts, predict)  # another model: predicts
    cached_predictions(settings, "run1", [*texts, "more"], predict)  # other texts: predicts
    assert calls == [2, 2, 3]
    for i in range(KEPT_PREDICTIONS + 2):
        cached_predictions(settings, f"other{i}", texts, predict)
    assert len(list((tmp_path / "evaluate-predictions").glob("*.parquet"))) == KEPT_PREDICTIONS
