"""End to end: the pipeline with tune on runs the Optuna step after the (cached) feature build,
its trials are nested MLflow runs, train gets the best parameters, and the Kubeflow UI's HTML
report holds both plots. (Named to run after test_pipeline.py, which counts the versions.)"""

import mlflow
import pandas as pd
from mlflow import MlflowClient


def test_tuned_run_trains_with_the_best_trials_parameters(trained_home, monkeypatch):
    from civicsense.orchestration.runner import run_local
    from civicsense.settings import Settings
    from civicsense.training.params import PipelineParams
    from tests_support import MIRROR_DATA

    settings, first = trained_home
    # Small and quick: one thread, at most 150 rounds a trial (the components read these).
    monkeypatch.setenv("CIVICSENSE_TUNE_THREADS", "1")
    monkeypatch.setenv("CIVICSENSE_TUNE_MAX_ROUNDS", "150")
    # A margin no candidate beats: the session's champion keeps its alias for later tests.
    params = PipelineParams(sample_size=4000, gate_margin=1.0, tune=True, tune_trials=2)
    summary = run_local(Settings(data=str(MIRROR_DATA)), params)
    assert summary["data_version"] == first["data_version"]  # the same (cached) data

    # The registered run is train's: a new one, or the session's own when the best trial was
    # trial 0 (the defaults), since train's inputs are then unchanged and KFP's cache hits.
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    train_run = client.get_run(summary["run_id"])
    mlflow.set_tracking_uri(settings.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[settings.experiment],
                              filter_string="attributes.run_name LIKE 'tune-%'")
    assert len(runs) == 1  # the session's run had tuning off: no tune run
    tune_run = runs.iloc[0]
    trials = mlflow.search_runs(experiment_names=[settings.experiment], filter_string=(
        f"tags.mlflow.parentRunId = '{tune_run.run_id}'"))
    assert len(trials) == 2 and set(trials["tags.state"]) == {"COMPLETE"}
    best = mlflow.artifacts.load_dict(f"runs:/{tune_run.run_id}/best_params.json")
    assert {k: train_run.data.params[k] for k in best} == {k: str(v) for k, v in best.items()}
    assert int(best["n_estimators"]) <= 150 or best["n_estimators"] == 400  # trial 0: defaults
    if train_run.data.tags["pipeline_run"] != tune_run["tags.pipeline_run"]:
        assert best["n_estimators"] == 400 and summary["run_id"] == first["run_id"]

    reports = sorted(settings.pipeline_root.glob("*/tune-op/report"),
                     key=lambda p: p.stat().st_mtime)
    page = reports[-1].read_text()
    assert page.count("data:image/png;base64,") == 2 and "Tuning off" not in page
    trials_csv = pd.read_csv(mlflow.artifacts.download_artifacts(
        run_id=tune_run.run_id, artifact_path="tune/trials.csv"))
    assert trials_csv["number"].tolist() == [0, 1]
