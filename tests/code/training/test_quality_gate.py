"""register(), the pipeline's step, end to end on a real MLflow store: it reads the quality
report logged by evaluate, refuses a challenger that regresses a large slice, and logs a model
card with every version it registers."""

import mlflow
import pandas as pd

from civicsense.training.model_card import fetch_card
from civicsense.training.quality import QUALITY_DIR, QUALITY_FILE
from civicsense.training.registry import configure_mlflow, register


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return model_input


def report(long_recall):
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
    (tmp_path / QUALITY_FILE).write_text(__import__("json").dumps(quality))
    client.log_artifact(run.info.run_id, str(tmp_path / QUALITY_FILE), QUALITY_DIR)
    client.log_metric(run.info.run_id, "val_macro_recall", 0.66)
    return info.model_uri, run.info.run_id


def test_register_refuses_a_slice_regression_and_logs_cards(civicsense_home, tmp_path):
    settings = civicsense_home
    client = configure_mlflow(settings)
    first = register(settings, *candidate(client, report(0.62), tmp_path), "sha256:1", 0.66,
                     None, "", 0.0, "p1")
    assert first["alias"] == "champion"
    refused = register(settings, *candidate(client, report(0.50), tmp_path), "sha256:2", 0.66,
                       0.64, "1", 0.0, "p2")
    assert refused["alias"] is None
    assert "refused: slice long (n=400) 0.5000 vs champion 0.6000" in refused["reason"]
    card = fetch_card(client, settings.model_name, refused["version"])
    assert "sha256:2" in card and "refused" in card and "| long | 400 | 0.500 |" in card
    assert "version 1" in fetch_card(client, settings.model_name, "champion")
