"""The promotion gate, and registration on a real MLflow registry (SQLite)."""

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from civicsense.training.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    gate,
    register_candidate,
)


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return model_input


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    return MlflowClient(uri, uri)


def log_candidate():
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=[])
    return run.info.run_id, info.model_uri


@pytest.mark.parametrize("candidate,champion,margin,alias", [
    (0.60, None, 0.0, CHAMPION),
    (0.62, 0.60, 0.01, CHALLENGER),
    (0.605, 0.60, 0.01, None),
    (0.60, 0.60, 0.0, None),
    (0.59, 0.60, 0.0, None),
])
def test_gate(candidate, champion, margin, alias):
    assert gate(candidate, champion, margin)[0] == alias


def test_first_is_champion_then_challenger_then_unaliased(registry):
    first = register_candidate(registry, "m", *reversed(log_candidate()), 0.60, None, 0.0, {})
    assert (first.version, first.alias) == ("1", CHAMPION)
    run_id, uri = log_candidate()
    second = register_candidate(registry, "m", uri, run_id, 0.65, 0.60, 0.01, {"k": "v"})
    assert (second.version, second.alias) == ("2", CHALLENGER)
    assert registry.get_model_version("m", "2").tags["k"] == "v"
    third = register_candidate(registry, "m", *reversed(log_candidate()), 0.61, 0.60, 0.01, {})
    assert third.alias is None and "does not beat" in third.reason
    assert registry.get_model_version("m", third.version).aliases == []
    assert alias_version(registry, "m", CHAMPION) == "1"
    assert alias_version(registry, "m", CHALLENGER) == "2"
    assert alias_version(registry, "absent", CHAMPION) is None


def test_registering_the_same_run_twice_is_idempotent(registry):
    run_id, uri = log_candidate()
    first = register_candidate(registry, "once", uri, run_id, 0.6, None, 0.0, {})
    again = register_candidate(registry, "once", uri, run_id, 0.6, 0.6, 0.0, {})
    assert again.version == first.version and again.alias == CHAMPION
    assert len(registry.search_model_versions("name='once'")) == 1


def test_register_tags_every_data_version_it_trained_on(tmp_path):
    from civicsense.settings import Settings
    from civicsense.training.registry import configure_mlflow, register, registry_client

    settings = Settings(home=tmp_path / "home")
    configure_mlflow(settings)
    run_id, uri = log_candidate()
    summary = register(settings, uri, run_id, "sha256:merged", 0.6, None, "", 0.0, "run-1",
                       data_versions=["sha256:base", "sha256:labels"])
    tags = registry_client(settings).get_model_version(settings.model_name,
                                                       summary["version"]).tags
    assert tags["data_versions"] == "sha256:base,sha256:labels"
    assert tags["data_version"] == "sha256:merged"
    assert summary["data_versions"] == ["sha256:base", "sha256:labels"]
    run_id, uri = log_candidate()
    alone = register(settings, uri, run_id, "sha256:base", 0.6, 0.6, "1", 0.0, "run-2")
    assert registry_client(settings).get_model_version(
        settings.model_name, alone["version"]).tags["data_versions"] == "sha256:base"


def test_a_challenger_with_quality_refusals_gets_no_alias_and_the_reason_is_tagged(registry):
    first = register_candidate(registry, "q", *reversed(log_candidate()), 0.60, None, 0.0, {},
                               ["behaviour emoji_only 0.10 < 0.25"])
    assert first.alias == CHAMPION and "quality warnings: behaviour emoji_only" in first.reason
    run_id, uri = log_candidate()
    second = register_candidate(registry, "q", uri, run_id, 0.70, 0.60, 0.0, {},
                                ["slice long (n=300) 0.5000 vs champion 0.6000"])
    assert second.alias is None and "refused: slice long (n=300)" in second.reason
    tags = registry.get_model_version("q", second.version).tags
    assert tags["gate_refusals"].startswith("slice long") and "refused" in tags["gate"]
    assert alias_version(registry, "q", CHALLENGER) is None
    weaker = register_candidate(registry, "q", *reversed(log_candidate()), 0.50, 0.60, 0.0, {},
                                ["behaviour negation 0.10 < 0.60"])
    assert weaker.alias is None and weaker.reason.startswith("does not beat champion")
    assert weaker.reason.endswith("; quality: behaviour negation 0.10 < 0.60")
    third = register_candidate(registry, "q", *reversed(log_candidate()), 0.70, 0.60, 0.0, {})
    assert third.alias == CHALLENGER
    assert registry.get_model_version("q", third.version).tags["gate_refusals"] == "none"
