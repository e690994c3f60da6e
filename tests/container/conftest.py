"""Container suite fixtures: a Docker engine (fail in CI, skip elsewhere), this tree's images
(reused by their inputs' digest, else `make images`), and one DockerRunner pipeline run."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from civicsense.settings import MIRROR_DATA, PROJECT_ROOT, Settings
from tests_support import require_mirror_dir

DOCKER_SAMPLE = 1500


def _no_engine(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true needs a Docker engine (.ci/docker-engine): {reason}")
    pytest.skip(f"no Docker engine: {reason}")


@pytest.fixture(scope="session")
def docker_client():
    from civicsense.orchestration.docker_runner import EngineError
    from civicsense.orchestration.docker_runner import docker_client as connect

    try:
        client = connect()
    except EngineError as error:
        _no_engine(str(error))
    yield client
    client.close()


def _make(*args: str) -> str:
    done = subprocess.run(["make", "--no-print-directory", "-s", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.fail(f"make {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture(scope="session")
def images(docker_client) -> dict[str, str]:
    """{"components"|"serving"|"storage": tag} of images built from exactly this tree: reused
    when images labelled with the inputs' digest exist (re-tagged if the commit moved), else
    built by `make images` (layer-cached)."""
    tags = dict(line.split("=", 1) for line in _make("image-names").split())
    digest = tags.pop("inputs")
    for _key, tag in tags.items():
        found = docker_client.images.list(filters={"label": f"io.civicsense.inputs={digest}",
                                                   "reference": f"{tag.split(':')[0]}:*"})
        if not found:
            _make("images")
            return tags
        repository, _, version = tag.rpartition(":")
        found[0].tag(repository, version)
    return tags


@pytest.fixture(scope="session")
def docker_trained(images, tmp_path_factory) -> Iterator[tuple[Settings, dict]]:
    """The whole pipeline on a mirror sample with KFP's DockerRunner: every step in the
    component image; the registry holds civicsense-sentiment@champion."""
    require_mirror_dir()
    from civicsense.orchestration.docker_runner import pick_runner
    from civicsense.orchestration.runner import run_local
    from civicsense.training.params import PipelineParams

    home = tmp_path_factory.mktemp("docker-home")
    saved = {k: os.environ.get(k) for k in ("CIVICSENSE_HOME", "CIVICSENSE_DATA",
                                            "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(key, None)
    os.environ["CIVICSENSE_HOME"] = str(home)
    try:
        settings = Settings(data=str(MIRROR_DATA), home=home)
        runner = pick_runner("docker", settings, images["components"])
        summary = run_local(settings, PipelineParams(sample_size=DOCKER_SAMPLE), cache=False,
                            runner=runner)
        (Path(home) / "docker-summary.json").write_text(json.dumps(summary))
    finally:  # before yielding: later tests (the e2e suite's rerun) must not see this home
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield settings, summary


@pytest.fixture(scope="session")
def served(docker_trained, images):
    """The champion served from the serving image (storage initializer → /mnt/models)."""
    from civicsense.deploy.container import serve_container, stop
    from tests_support import free_port

    settings, _ = docker_trained
    served = serve_container(settings, images["serving"], images["storage"], free_port())
    print(f"serving container ready in {served.ready_seconds:.1f} s")
    yield served
    stop(served.container_id, served.volume)


@pytest.fixture
def sink_container(docker_client, images, gcs):
    """The log sink from the component image, with the command its Deployment declares."""
    from container_support import manifest_container, wait_http

    spec = manifest_container("Deployment", "civicsense-log-sink")
    port = spec["ports"][0]["containerPort"]
    token = secrets.token_urlsafe(16)  # the civicsense-sink-token Secret on the cluster
    environment = {"CIVICSENSE_HOME": "/tmp/civicsense", "CIVICSENSE_SINK_TOKEN": token,
                   "CIVICSENSE_INFERENCE_LOG_URI": f"{gcs}/inference-log",
                   "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
                   "CIVICSENSE_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}
    # Host networking: the emulator listens on the host's 127.0.0.1 (in-cluster: GCS itself).
    container = docker_client.containers.run(images["components"], spec["command"],
                                             environment=environment, network_mode="host",
                                             detach=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", container)
        yield container, f"http://127.0.0.1:{port}", gcs, token
    finally:
        container.remove(force=True)
