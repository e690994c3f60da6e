"""The pipeline in the component image (KFP DockerRunner), then its champion served from the
serving image the way KServe serves it: storage initializer → /mnt/models → runtime."""

from __future__ import annotations

from container_support import post_json

from civicsense.deploy.runtime_spec import (
    cpu_quantity,
    find_runtime,
    memory_quantity,
    runtime_container,
)
from civicsense.settings import PROJECT_ROOT
from civicsense.training.registry import find_version, registry_client


def test_the_docker_runner_registers_a_champion(docker_trained):
    settings, summary = docker_trained
    assert summary["alias"] == "champion"
    found = find_version(registry_client(settings), settings.model_name, "champion")
    assert found is not None and found.number == summary["version"]
    # Every step's outputs were written from inside containers onto the shared state.
    run_dirs = sorted((settings.pipeline_root).glob("civicsense-training-*"))
    steps = {path.name for path in run_dirs[-1].iterdir()}
    assert {"ingest-op", "feature-build-op", "train-op", "evaluate-op", "register-op"} <= steps


def test_the_runtime_container_is_what_the_manifest_declares(docker_client, served):
    doc, _ = find_runtime(PROJECT_ROOT / "manifests")
    spec = runtime_container(doc, "civicsense-sentiment")
    attrs = docker_client.containers.get(served.container_id).attrs
    assert attrs["Config"]["Cmd"] == spec.args and "--model_dir=/mnt/models" in spec.args
    env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
    assert all(env[key] == value for key, value in spec.env.items())
    bindings = attrs["HostConfig"]["PortBindings"][f"{spec.port}/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert attrs["HostConfig"]["NanoCpus"] == cpu_quantity(spec.limits["cpu"]) * 1e9
    assert attrs["HostConfig"]["Memory"] == memory_quantity(spec.limits["memory"])
    assert "no-new-privileges" in attrs["HostConfig"]["SecurityOpt"]
    mount = next(m for m in attrs["Mounts"] if m["Destination"] == "/mnt/models")
    assert mount["Type"] == "volume" and mount["RW"] is False
    assert served.storage_uri.startswith("gs://")


def test_v1_and_v2_answer_from_the_container(served, docker_trained):
    _, summary = docker_trained
    name = "civicsense-sentiment"
    v1 = post_json(f"{served.url}/v1/models/{name}:predict",
               {"instances": ["I love this reform", "this law is a disaster"]})
    assert [p["label"] for p in v1["predictions"]][0] in {"positive", "neutral", "negative"}
    assert v1["model_version"].startswith(f"{summary['version']}+")
    v2 = post_json(f"{served.url}/v2/models/{name}/infer", {"inputs": [
        {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["great", "awful"]}]})
    probabilities = next(o for o in v2["outputs"] if o["name"] == "probabilities")
    assert probabilities["shape"] == [2, 3]
    assert abs(sum(probabilities["data"][:3]) - 1) < 1e-4
