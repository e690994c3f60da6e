"""The quality report: built from synthetic validation posts, flattened to metrics, and judged
by the gate's refusals (its MLflow round trip: test_quality_gate.py)."""

import numpy as np
import pandas as pd
import pytest
from test_behaviour_suites import keyword_model

from civicsense.settings import Settings
from civicsense.training.quality import (
    analyse,
    metric_name,
    quality_metrics,
    quality_refusals,
)


def validation(n=60):
    rng = np.random.default_rng(0)
    labels = rng.choice(["negative", "neutral", "positive"], n)
    texts = [f"post {i} :)" if i % 3 == 0 else f"post {i} is not it" for i in range(n)]
    return pd.DataFrame({"text": texts, "label": labels,
                         "source": ["twitter-2013train-A.txt"] * n,
                         "created_at": pd.Timestamp("2013-05-01", tz="UTC")})


def predictions(frame):
    rng = np.random.default_rng(1)
    p = rng.dirichlet([1, 1, 1], len(frame))
    labels = np.array(["negative", "neutral", "positive"])[p.argmax(1)]
    return pd.DataFrame({"label": labels, "p_negative": p[:, 0], "p_neutral": p[:, 1],
                         "p_positive": p[:, 2]})


def synthetic_report() -> dict:
    """analyse() on 60 synthetic posts: random predictions, the truth as the champion."""
    settings = Settings(home="/tmp/unused", slice_gate_min_rows=10)
    frame = validation()
    return analyse(settings, frame, predictions(frame), frame["label"].tolist(), keyword_model)


@pytest.fixture(scope="module")
def report():
    return synthetic_report()


def test_analyse_reports_every_part(report):
    names = [s["name"] for s in report["slices"]]
    assert names[:2] == ["all", "short"] and "year:2013" in names and "sarcasm" in names
    assert report["slices"][0]["champion"] == 1.0  # the champion here is the truth
    assert {"ece", "methods", "kept", "temperature"} <= set(report["calibration"])
    assert len(report["behaviour"]) == 5 and report["confusions"]
    assert report["slice_gate"] == {"min_rows": 10, "margin": 0.03}


def test_metric_names_are_mlflow_keys(report):
    assert metric_name("year:2013") == "year_2013"
    metrics = quality_metrics(report)
    assert metrics["slice_all_n"] == 60 and "slice_year_2013_macro_recall" in metrics
    assert "val_ece" in metrics and "behaviour_negation_pass_rate" in metrics


def test_refusals_name_large_regressed_slices_and_failed_suites(report):
    reasons = quality_refusals(report, min_rows=10, margin=0.03)
    assert any(r.startswith("slice all (n=60)") for r in reasons)  # random vs perfect champion
    assert not any(r.startswith("slice sarcasm") for r in reasons)  # n=0
    assert quality_refusals(report, min_rows=1000, margin=0.03) == [
        r for r in reasons if r.startswith("behaviour")]
    assert quality_refusals(None, 1, 0.0) == []
