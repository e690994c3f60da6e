"""End to end: the real pipeline on the KFP local runner, Feast, MLflow (SQLite) and the
compiled IR YAML, on a sample of the mirror (the session fixture `trained_home`)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from civicsense.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def client(trained_home):
    import mlflow

    settings, _ = trained_home
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)  # both: earlier tests may have set another
    return MlflowClient(settings.tracking_uri, settings.tracking_uri)


def summary_validation_rows(trained_home) -> int:
    settings, _ = trained_home
    entities = pd.read_parquet(next(settings.pipeline_root.glob("*/feature-build-op/entities")))
    return int((entities["split"] == "validation").sum())


def test_first_run_registers_a_champion(trained_home, client):
    settings, summary = trained_home
    assert summary["alias"] == "champion" and summary["version"] == "1"
    assert 0.45 < summary["val_macro_recall"] <= 1
    version = client.get_model_version_by_alias(settings.model_name, "champion")
    assert version.tags["data_version"] == summary["data_version"].strip()
    assert version.tags["data_version"].startswith("sha256:")
    run = client.get_run(summary["run_id"])
    assert run.data.metrics["val_macro_recall"] == pytest.approx(summary["val_macro_recall"],
                                                                  abs=1e-4)
    assert {"val_macro_f1", "val_accuracy", "val_recall_negative"} <= set(run.data.metrics)
    assert run.data.params["n_estimators"] == "400"
    assert {"git_commit", "feature_service", "data_version"} <= set(run.data.tags)
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"])}
    assert {"confusion_matrix.png", "environment.json", "features.json", "reference"} <= artifacts
    reference = pd.read_parquet(client.download_artifacts(
        summary["run_id"], "reference/reference.parquet"))
    assert {"text", "true_label", "label", "p_negative", "p_neutral", "p_positive"} <= set(
        reference.columns)
    assert len(reference) == summary_validation_rows(trained_home)


def test_the_champion_reads_a_fine_tuned_encoder_logged_in_its_own_run(trained_home, client):
    import mlflow

    from civicsense.features.featurizer import ENCODER_NAMES

    settings, summary = trained_home
    entities = pd.read_parquet(next(settings.pipeline_root.glob("*/feature-build-op/entities")))
    split = entities["split"].value_counts()
    # the booster trains on the training posts the encoder did not see (30% by default)
    assert split["encoder"] == pytest.approx(0.7 * (split["encoder"] + split["train"]), abs=3)
    features = client.download_artifacts(summary["run_id"], "features.json")
    assert set(ENCODER_NAMES) <= set(json.loads(Path(features).read_text())["features"])
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    encoder = model.unwrap_python_model().predictor.featurizer.encoder
    assert encoder is not None and encoder.nbytes > 1_000_000  # carried inside the model
    runs = client.search_runs(
        [client.get_experiment_by_name(settings.experiment).experiment_id],
        filter_string="tags.step = 'encoder'", order_by=["attributes.start_time ASC"])
    run = runs[0]  # the session's first run (later tests run the pipeline again)
    assert run.data.tags["data_version"] == summary["data_version"].strip()
    assert 0.4 < run.data.metrics["val_macro_recall"] <= 1
    assert run.data.params["precision"] in {"fp32", "int8"}
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert len(losses) >= 10 and losses[-1].value < losses[0].value
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"loss_curve.png",
                                                                          "encoder"}


def test_champion_loads_in_a_fresh_process_without_the_repository(trained_home, tmp_path):
    settings, _ = trained_home
    script = textwrap.dedent(f"""
        import sys
        repo = {str(PROJECT_ROOT)!r}
        sys.path = [p for p in sys.path if p.rstrip("/") != repo and p not in ("", ".")]
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({settings.tracking_uri!r})
        mlflow.set_registry_uri({settings.tracking_uri!r})
        model = mlflow.pyfunc.load_model("models:/{settings.model_name}@champion")
        out = model.predict(pd.DataFrame({{"text": ["I love it", "I hate it"]}}))
        import civicsense
        assert not civicsense.__file__.startswith(repo + "/civicsense"), civicsense.__file__
        print(out["label"].tolist())
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['positive', 'negative']"


def test_feast_online_store_and_no_training_serving_skew(trained_home):
    import mlflow

    from civicsense.features.store import feature_store, training_frame

    settings, _ = trained_home
    store = feature_store(settings)
    features = pd.read_parquet(settings.feast_dir / "post_features.parquet")
    post_id = features["post_id"].iloc[-1]
    online = store.get_online_features(
        features=store.get_feature_service("civicsense_sentiment_online"),
        entity_rows=[{"post_id": post_id}]).to_dict()
    assert online["n_chars"][0] == pytest.approx(features["n_chars"].iloc[-1])
    assert online["lexical_positive"][0] == pytest.approx(features["lexical_positive"].iloc[-1])

    # Validation posts: what the training job read from Feast equals what serving computes.
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    featurizer = model.unwrap_python_model().predictor.featurizer
    latest = pd.read_parquet(next(settings.pipeline_root.glob("*/feature-build-op/entities")))
    validation = latest[latest["split"] == "validation"].head(200)
    from_feast = training_frame(settings, validation)
    served = featurizer.transform(validation["text"].tolist())
    pd.testing.assert_frame_equal(from_feast, served, check_exact=False, atol=1e-6)


def test_unchanged_rerun_reuses_the_cache_and_the_version(trained_home):
    from civicsense.orchestration.runner import run_local
    from civicsense.training.params import PipelineParams
    from tests_support import MIRROR_DATA

    settings, first = trained_home
    from civicsense.settings import Settings

    again = run_local(Settings(data=str(MIRROR_DATA)), PipelineParams(sample_size=4000))
    assert again["version"] == first["version"] and again["run_id"] == first["run_id"]
    assert again["reason"] == "already registered by this run"
    assert again["alias"] == "champion"
    assert again["champion_val_macro_recall"] == pytest.approx(first["val_macro_recall"], abs=1e-4)


def test_compiled_yaml_is_strict_and_runs_locally(trained_home, tmp_path):
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    from civicsense.orchestration.runner import compile_pipeline, fingerprint
    from tests_support import MIRROR_DATA

    settings, first = trained_home
    path = compile_pipeline(tmp_path / "pipeline.yaml")
    documents = list(yaml.safe_load_all(path.read_text()))
    spec = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
    assert set(spec.root.dag.tasks) == {"ingest-op", "encoder-op", "feature-build-op",
                                        "tune-op", "train-op", "evaluate-op", "register-op"}
    platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all("pvcMount" in executor for executor in platform.values())

    loaded = components.load_component_from_file(str(path))
    task = loaded(data_source=str(MIRROR_DATA), sample_size=4000,
                  source_fingerprint=fingerprint(str(MIRROR_DATA), settings))
    summary = json.loads(task.output)
    # A new training run of the same data and seed: registered, scored equal to the champion
    # on the same validation posts, so the gate gives it no alias.
    assert summary["version"] == str(int(first["version"]) + 1)
    assert summary["alias"] is None
    assert summary["reason"].startswith("does not beat champion")
    assert summary["val_macro_recall"] == pytest.approx(summary["champion_val_macro_recall"])


def test_committed_pipeline_yaml_is_current(tmp_path):
    from civicsense.orchestration.runner import COMPILED_PIPELINE, compile_pipeline

    fresh = compile_pipeline(tmp_path / "fresh.yaml").read_text()
    assert COMPILED_PIPELINE.read_text() == fresh, "run `make compile` and commit the YAML"
