"""The quality report on a real MLflow store (SQLite): logged with a run and read back, then
register(), the pipeline's step, reading it: it refuses a challenger that regresses a large
slice, and logs a model card with every version it registers."""

import json

import mlflow
import pandas as pd
import pytest
from test_quality import predictions, synthetic_report, validation

from civicsense.settings import Settings
from civicsense.training.model_card import fetch_card, quality_markdown
from civicsense.training.quality import (
    QUALITY_DIR,
    QUALITY_FILE,
    load_quality,
    log_quality,
)
from civicsense.training.registry import configure_mlflow, register


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """One store for the module (creating a SQLite store costs seconds)."""
    home = tmp_path_factory.mktemp("quality-gate") / "home"
    return Settings(home=home, mlflow_tracking_uri=f"sqlite:///{home.parent / 'mlflow.db'}")


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return model_input


def gate_report(long_recall):
    return {"slices": [{"name": "all", "n": 1000, "candidate": 0.66, "champion": 0.64},
                       {"name": "long", "n": 400, "candidate": long_recall, "champion": 0.60}],
            "calibration": {"ece": 0.1, "macro_recall": 0.66, "kept": "none",
                            "temperature": 1.0, "methods": {}},
            "confusions": [],
            "behaviour": [{"name": "negation", "cases": 10, "passed": 9, "pass_rate": 0.9,
                           "min_pass_rate": 0.6, "ok": True, "failures": []}],
            "slice_gate": {"min_rows": 200, "margin": 0.03}}


def candidate(client, quality, tmp_path):
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=[])
    (tmp_path / QUALITY_FILE).write_text(json.dumps(quality))
    client.log_artifact(run.info.run_id, str(tmp_path / QUALITY_FILE), QUALITY_DIR)
    client.log_metric(run.info.run_id, "val_macro_recall", 0.66)
    return info.model_uri, run.info.run_id


def test_register_refuses_a_slice_regression_and_logs_cards(settings, tmp_path):
    client = configure_mlflow(settings)
    first = register(settings, *candidate(client, gate_report(0.62), tmp_path), "sha256:1", 0.66,
                     None, "", 0.0, "p1")
    assert first["alias"] == "champion"
    refused = register(settings, *candidate(client, gate_report(0.50), tmp_path), "sha256:2", 0.66,
                       0.64, "1", 0.0, "p2")
    assert refused["alias"] is None
    assert "refused: slice long (n=400) 0.5000 vs champion 0.6000" in refused["reason"]
    card = fetch_card(client, settings.model_name, refused["version"])
    assert "sha256:2" in card and "refused" in card and "| long | 400 | 0.500 |" in card
    assert "version 1" in fetch_card(client, settings.model_name, "champion")


def test_log_and_load_round_trip(settings):
    report = synthetic_report()
    client = configure_mlflow(settings)
    experiment = mlflow.get_experiment_by_name(settings.experiment).experiment_id
    run_id = client.create_run(experiment).info.run_id
    frame = validation()
    probabilities = predictions(frame)[["p_negative", "p_neutral", "p_positive"]].to_numpy()
    log_quality(client, run_id, report, quality_markdown(report), probabilities,
                frame["label"], 10)
    assert load_quality(client, run_id) == report
    run = client.get_run(run_id)
    assert run.data.metrics["slice_all_n"] == 60
    assert run.data.tags["calibration_kept"] == report["calibration"]["kept"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"reliability_diagram.png", "quality"} <= artifacts
    assert load_quality(client, client.create_run(experiment).info.run_id) is None
