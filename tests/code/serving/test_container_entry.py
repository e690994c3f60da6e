"""The cluster's way in: kserve/model_server.py on an MLflow model directory (what the storage
initializer puts in /mnt/models), with the version from env and two model processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlflow
import pytest
import requests

from civicsense.serving.loading import load_model
from civicsense.settings import Settings
from tests_support import MODEL_NAME, ROOT, free_port, start_server, stop_server

ENTRY = ROOT / "kserve" / "model_server.py"


@pytest.fixture(scope="module")
def model_dir(trained_home, tmp_path_factory) -> Path:
    settings, summary = trained_home
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(
        f"models:/{MODEL_NAME}/{summary['version']}",
        dst_path=str(tmp_path_factory.mktemp("mnt-models"))))


def test_a_directory_reports_the_version_it_is_given(model_dir, trained_home):
    _, summary = trained_home
    loaded = load_model(str(model_dir), Settings(model_version="7"))
    assert (loaded.version, loaded.run_id) == ("7", summary["run_id"])
    assert loaded.predictor.predict_proba(["great news", "bad news"]).shape == (2, 3)
    assert load_model(str(model_dir), Settings()).version_tag.startswith("unregistered+")


def test_container_entry_point_serves_a_directory_with_two_workers(model_dir, trained_home,
                                                                    tmp_path):
    """KServe's flags, the version from env, and the model name from Settings: with
    CIVICSENSE_MODEL_NAME set and no --model_name, the model is served under that name."""
    _, summary = trained_home
    port, renamed = free_port(), "civicsense-renamed"
    env = {**os.environ, "CIVICSENSE_MODEL_VERSION": "7", "CIVICSENSE_MODEL_NAME": renamed,
           "MLFLOW_TRACKING_URI": "sqlite:///" + str(tmp_path / "unused.db")}  # no registry
    process, url = start_server([sys.executable, str(ENTRY), f"--model_dir={model_dir}",
                                 f"--http_port={port}", "--workers=2"], port, env,
                                tmp_path / "entry.log", timeout=120, cwd=tmp_path)
    try:
        metadata = requests.get(f"{url}/v2/models/{renamed}", timeout=5).json()
        assert metadata["versions"] == [f"7+{summary['run_id']}"]
        assert requests.get(f"{url}/v2/models/{MODEL_NAME}", timeout=5).status_code == 404
        with requests.Session() as session:  # several requests: both workers answer alike
            for _ in range(6):
                bad = session.post(f"{url}/v2/models/{renamed}/infer", data=b'{"inputs": [',
                                   headers={"content-type": "application/json"}, timeout=10)
                assert bad.status_code == 400 and "error" in bad.json(), bad.text
                good = session.post(f"{url}/v1/models/{renamed}:predict",
                                    json={"instances": ["fine", "awful"]}, timeout=10)
                assert good.status_code == 200 and good.json()["model_version"] == (
                    f"7+{summary['run_id']}")
    finally:
        stop_server(process)


def test_the_model_name_setting_names_the_registered_model_too():
    settings = Settings(model_name="civicsense-renamed")
    assert settings.model_uri == "models:/civicsense-renamed@champion"
    assert Settings(model_name="x", serve_model_uri="/mnt/models").model_uri == "/mnt/models"
