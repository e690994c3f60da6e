"""One containerized drift → retrain round trip: topic-shifted traffic to the serving
container, its request/response pairs through the sink container into the payload log (GCS
emulator), the drift monitor container finds drift and its trigger retrains (in the
component image) on the state the DockerRunner pipeline left, registering a new version."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from container_support import manifest_container, post_event, post_json
from docker.types import Mount

from civicsense.settings import MIRROR_DATA, PROJECT_ROOT
from civicsense.training.registry import registry_client

STANCE = PROJECT_ROOT.parent / "shared" / "data" / "tweeteval-stance"
ROWS, RETRAIN_ROWS = 240, 1200


def _stance_texts(count: int) -> list[str]:
    from civicsense.monitoring.replay import load_posts

    return load_posts([STANCE]).sample(count, random_state=0)["text"].tolist()


def _small_copy_of_the_mirror(folder: Path, rows: int) -> Path:
    """What newly labelled data would be: a small SemEval-format file (fast retraining)."""
    lines = (MIRROR_DATA / "twitter-2016train-A.txt").read_text().splitlines()
    random.Random(0).shuffle(lines)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "twitter-2016train-A.txt").write_text("\n".join(lines[:rows]) + "\n")
    return folder


def test_drift_in_containers_triggers_one_retraining(docker_client, images, docker_trained,
                                                     served, sink_container, tmp_path):
    if not STANCE.is_dir():
        pytest.skip(f"absent: {STANCE}")
    settings, summary = docker_trained
    _, sink_url, gcs, token = sink_container
    texts = _stance_texts(ROWS)
    for start in range(0, ROWS, 40):
        request = {"instances": texts[start:start + 40]}
        response = post_json(f"{served.url}/v1/models/civicsense-sentiment:predict", request)
        assert post_event(sink_url, f"ev-{start}", "request", request, token)["accepted"]
        assert post_event(sink_url, f"ev-{start}", "response", response, token)["accepted"]

    data = _small_copy_of_the_mirror(tmp_path / "new-data", RETRAIN_ROWS)
    home = str(settings.home_dir)
    spec = manifest_container("CronJob", "civicsense-monitor")
    environment = {
        "CIVICSENSE_HOME": home, "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "CIVICSENSE_DATA": str(data), "CIVICSENSE_FEATURE_REPO": "/app/feature_repo",
        "CIVICSENSE_INFERENCE_LOG_URI": f"{gcs}/inference-log",
        "CIVICSENSE_REPORTS_URI": f"{gcs}/reports",
        "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
        "CIVICSENSE_MONITOR_MIN_ROWS": "100", "CIVICSENSE_MONITOR_MAX_ROWS": str(ROWS),
        "CIVICSENSE_RETRAIN_COOLDOWN_MINUTES": "0",
    }
    mounts = [Mount(home, home, type="bind"), Mount(str(data), str(data), type="bind",
                                                    read_only=True)]
    # The CronJob's command; --wait keeps the pod alive for the run it triggers (here the run
    # is local, in the same image; on the cluster it is a KFP run and the pod ends at once).
    container = docker_client.containers.run(
        images["components"], [*spec["command"], "--wait"], environment=environment,
        mounts=mounts, network_mode="host", user=f"{os.getuid()}:{os.getgid()}", detach=True)
    try:
        status = container.wait(timeout=900)["StatusCode"]
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status == 1, logs  # exit 1: drift (the CronJob's "failed" Job on purpose)
    decisions = [json.loads(line)["decision"] for line in
                 (settings.monitor_dir / "decisions.jsonl").read_text().splitlines()]
    assert decisions[-3:] == ["checked", "drifted", "triggered"], logs
    versions = registry_client(settings).search_model_versions(f"name='{settings.model_name}'")
    assert len(versions) == int(summary["version"]) + 1, logs
