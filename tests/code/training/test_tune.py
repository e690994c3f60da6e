"""The tune step: a seeded Optuna search on a split carved from the training split, one nested
MLflow run per trial, the report, and its best parameters wired into train (compiled pipeline)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from civicsense.settings import Settings
from civicsense.training.params import TrainParams
from civicsense.training.train import fit_booster
from civicsense.training.tune import TUNED, carve_validation, tune
from civicsense.training.tune_report import disabled_html

TUNED_OUTPUTS = (*TUNED, "best_value")


def synthetic(n: int = 360, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Features with a learnable three-class signal (negative / neutral / positive)."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"f{i}" for i in range(4)])
    score = features["f0"] + 0.5 * features["f1"] + rng.normal(scale=0.6, size=n)
    labels = np.where(score < -0.5, "negative", np.where(score > 0.5, "positive", "neutral"))
    return features, pd.Series(labels)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """Three trials (the given parameters, then two TPE proposals), one thread, short rounds."""
    home = tmp_path_factory.mktemp("tune-home")
    settings = Settings(home=home / "state", mlflow_tracking_uri=None)
    features, labels = synthetic()
    mask = np.arange(len(features)) >= 280
    base = TrainParams(n_estimators=100, max_depth=3)
    result = tune(settings, features, labels, mask, base, n_trials=3, seed=7,
                  out_dir=home / "report", threads=1, max_rounds=150, prune_every=50,
                  tags={"pipeline_run": "unit"})
    return settings, result, (features, labels, mask, base)


def test_each_trial_is_a_nested_run_under_the_tune_run(tuned):
    settings, result, _ = tuned
    mlflow.set_tracking_uri(settings.tracking_uri)
    children = mlflow.search_runs(experiment_names=[settings.experiment], filter_string=(
        f"tags.mlflow.parentRunId = '{result.run_id}'"))
    assert len(children) == 3 == len(result.trials)
    assert set(children["tags.state"]) <= {"COMPLETE", "PRUNED"}
    assert set(children["params.max_depth"].dropna()) >= {"3"}  # trial 0: the given params
    parent = mlflow.get_run(result.run_id)
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)
    assert parent.data.params["n_trials"] == "3"
    assert parent.data.tags["pipeline_run"] == "unit"


def test_the_best_is_at_least_the_given_parameters_and_is_their_trial_value(tuned):
    _, result, (features, labels, mask, _) = tuned
    assert result.best_value >= result.default_value > 0.34  # better than chance on 3 classes
    complete = result.trials[result.trials["state"] == "COMPLETE"]
    best = complete.loc[complete["value"].idxmax()]
    assert best["value"] == pytest.approx(result.best_value)
    assert result.best_params.max_depth == best["max_depth"]
    assert result.best_params.seed == 0  # not tuned: the pipeline's seed


def test_the_best_params_flow_into_train(tuned):
    """train's booster built from TuneResult.best_params reproduces the best trial's score."""
    _, result, (features, labels, mask, _) = tuned
    from civicsense.features.featurizer import encode_labels
    from civicsense.training.tune import macro_recall_all_classes

    booster = fit_booster(features[~mask], labels[~mask], result.best_params, callbacks=[],
                          threads=1)
    assert booster.num_boosted_rounds() == result.best_params.n_estimators
    scores = booster.predict(xgb.DMatrix(features[mask].to_numpy(np.float32),
                                         feature_names=list(features.columns)))
    assert macro_recall_all_classes(encode_labels(labels[mask]), scores) == pytest.approx(
        result.best_value)


def test_the_report_shows_both_plots_and_every_trial(tuned):
    _, result, _ = tuned
    page = result.report.read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "Optimization history" in page and "Parallel coordinates" in page
    assert page.count("<tr>") >= 1 + 1 + 1 + 3  # summary, best, trials header + 3 trials


def test_the_same_seed_proposes_the_same_trials(tuned):
    settings, result, (features, labels, mask, base) = tuned
    again = tune(settings, features, labels, mask, base, n_trials=3, seed=7,
                 threads=1, max_rounds=150, prune_every=50)
    pd.testing.assert_frame_equal(again.trials.drop(columns="seconds"),
                                  result.trials.drop(columns="seconds"))


def test_the_tuning_split_is_the_latest_training_posts():
    rows = pd.DataFrame({"created_at": pd.date_range("2015-01-01", periods=10, freq="D")[::-1]})
    mask = carve_validation(rows, "time", 0.2, 0)
    assert mask.tolist() == [True, True] + [False] * 8


def test_bad_budgets_and_splits_are_refused(tmp_path):
    features, labels = synthetic(20)
    with pytest.raises(ValueError, match="n_trials"):
        tune(Settings(home=tmp_path), features, labels, np.arange(20) > 15, TrainParams(), 0)
    with pytest.raises(ValueError, match="both sides"):
        tune(Settings(home=tmp_path), features, labels, np.zeros(20, bool), TrainParams(), 1)


def test_tuning_off_shows_the_parameters_train_gets():
    page = disabled_html({"n_estimators": 400, "max_depth": 4})
    assert "Tuning off" in page and "<td>400</td>" in page


def test_the_compiled_pipeline_feeds_tunes_best_params_to_train(tmp_path):
    from civicsense.deploy.kfp_specs import parse_pipeline
    from civicsense.orchestration.runner import COMPILED_PIPELINE, compile_pipeline

    for path in (compile_pipeline(tmp_path / "p.yaml"), COMPILED_PIPELINE):
        spec, _ = parse_pipeline(Path(path))
        tasks = spec.root.dag.tasks
        assert "tune-op" in tasks["train-op"].dependent_tasks
        inputs = tasks["train-op"].inputs.parameters
        for name in TUNED:
            source = inputs[name].task_output_parameter
            assert (source.producer_task, source.output_parameter_key) == ("tune-op", name)
        tune_inputs = tasks["tune-op"].inputs
        assert tune_inputs.parameters["enabled"].component_input_parameter == "tune"
        assert tune_inputs.parameters["n_trials"].component_input_parameter == "tune_trials"
        assert "entities" in tune_inputs.artifacts
        outputs = spec.components["comp-tune-op"].output_definitions
        assert set(outputs.parameters) == set(TUNED_OUTPUTS)
        assert outputs.artifacts["report"].artifact_type.schema_title == "system.HTML"
        defaults = spec.root.input_definitions.parameters
        assert defaults["tune"].default_value.bool_value is False
