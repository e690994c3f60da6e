"""Overlays render with `kubectl kustomize`: the images are the tags given (else the overlay's),
the sink token lands in the Secret and nowhere else (never in a URL), and the pieces are
wired to each other (logger → sink Service → sink pods; NetworkPolicy → predictor pods)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest

from civicsense.deploy.check import CHECK_TOKEN, rollout_objects
from civicsense.deploy.render import (
    MANIFESTS,
    TOKEN_PLACEHOLDER,
    ImageRef,
    RenderError,
    overlay_names,
    read_token,
    render,
)
from civicsense.deploy.versions import LABEL_STUDIO_IMAGE
from civicsense.monitoring.sink_auth import LOGGER_SOURCES_ENV, logger_sources


def images(objects: list[dict]) -> set[str]:
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("image"), str):
                found.add(node["image"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(objects)
    return found


def test_there_are_the_two_overlays():
    assert overlay_names() == ["gke", "local"]


@pytest.mark.parametrize("overlay", ["local", "gke"])
def test_the_images_given_replace_the_overlays_in_every_workload(overlay):
    objects = render(overlay, component_image="registry.example:5000/cs/civicsense-components:"
                     "0.1.0-abc1234", serving_image="civicsense-serving:0.1.0-abc1234")
    # Label Studio is a third-party image, pinned in versions.py: no project tag touches it.
    assert images(objects) == {"registry.example:5000/cs/civicsense-components:0.1.0-abc1234",
                               "civicsense-serving:0.1.0-abc1234", LABEL_STUDIO_IMAGE}


def test_without_images_each_overlay_uses_its_own(rendered):
    assert images(rendered["local"]) == {"civicsense-components:0.1.0-dev",
                                         "civicsense-serving:0.1.0-dev", LABEL_STUDIO_IMAGE}
    assert all(i.startswith("europe-west1-docker.pkg.dev/PROJECT/civicsense/")
               for i in images(rendered["gke"]) - {LABEL_STUDIO_IMAGE})


@pytest.mark.parametrize("ref, expected", [
    ("civicsense-serving:0.1.0-abc", ImageRef("civicsense-serving", "0.1.0-abc")),
    ("localhost:5000/civicsense-serving", ImageRef("localhost:5000/civicsense-serving")),
    ("r.io/a/b:1@sha256:" + "0" * 64, ImageRef("r.io/a/b", "1", "sha256:" + "0" * 64)),
])
def test_image_references_split_as_kustomize_wants(ref, expected):
    assert ImageRef.parse(ref) == expected


@pytest.mark.parametrize("ref", ["", "has space:1"])
def test_bad_image_references_are_refused(ref):
    with pytest.raises(RenderError, match="not an image reference"):
        ImageRef.parse(ref)


@pytest.mark.parametrize("overlay", ["local", "gke"])
def test_the_token_is_in_the_secret_only_never_in_a_url(rendered, find, overlay):
    objects = rendered[overlay]
    assert TOKEN_PLACEHOLDER not in json.dumps(objects)
    holders = {(o["kind"], o["metadata"]["name"]) for o in objects
               if CHECK_TOKEN in json.dumps(o)}
    assert holders == {("Secret", "civicsense-sink-token")}
    isvc = find(objects, "InferenceService", "civicsense-sentiment")
    steps = [isvc, *rollout_objects(isvc).values()]
    for step in steps:
        for predictor in [step["spec"]["predictor"],
                          *(c["predictor"] for c in step["spec"].get("canary") or [])]:
            assert parse_qs(urlparse(predictor["logger"]["url"]).query) == {}
    examples = " ".join(p.read_text() for p in (MANIFESTS / "examples").rglob("*.yaml"))
    assert "?token=" not in examples


def test_without_a_token_the_placeholder_stays_for_check_manifests_to_fill():
    assert TOKEN_PLACEHOLDER in json.dumps(render("local"))


def test_the_sink_reads_the_token_and_only_the_predictor_pods_reach_it(rendered, find):
    objects = rendered["local"]
    deployment = find(objects, "Deployment", "civicsense-log-sink")
    container, = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CIVICSENSE_SINK_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "civicsense-sink-token", "key": "token"}
    isvc = find(objects, "InferenceService", "civicsense-sentiment")["metadata"]
    # The sink takes the logger's token-less events from this InferenceService only.
    assert logger_sources(env[LOGGER_SOURCES_ENV]["value"]) == {
        (isvc["namespace"], isvc["name"])}
    policy = find(objects, "NetworkPolicy", "civicsense-log-sink")
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"][
        "matchLabels"]
    rule, = policy["spec"]["ingress"]
    peer, = rule["from"]
    assert peer == {"podSelector": {"matchLabels": {
        "serving.kserve.io/inferenceservice": "civicsense-sentiment"}}}
    assert rule["ports"] == [{"port": container["ports"][0]["containerPort"],
                              "protocol": "TCP"}]
    service = find(objects, "Service", "civicsense-monitor")
    url = urlparse(find(objects, "InferenceService", "civicsense-sentiment")["spec"][
        "predictor"]["logger"]["url"])
    assert url.hostname.split(".")[:2] == ["civicsense-monitor", "civicsense"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_monitor_may_start_runs_in_kfps_namespace_and_nothing_else(rendered, find):
    objects = rendered["local"]
    role = find(objects, "Role", "civicsense-monitor-start-runs")
    binding = find(objects, "RoleBinding", "civicsense-monitor-start-runs")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "kubeflow"
    creates = {r for rule in role["rules"] if "create" in rule["verbs"]
               for r in rule["resources"]}
    assert creates == {"experiments", "runs"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "civicsense-monitor",
                                    "namespace": "civicsense"}]
    cronjob = find(objects, "CronJob", "civicsense-monitor")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "civicsense-monitor"
    token, = [v for v in pod["volumes"] if v["name"] == "kfp-token"]
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == (
        "pipelines.kubeflow.org")


def test_local_talks_to_the_in_cluster_emulator_and_gke_to_real_storage(rendered, find):
    local = find(rendered["local"], "ConfigMap", "civicsense-monitoring")["data"]
    gke = find(rendered["gke"], "ConfigMap", "civicsense-monitoring")["data"]
    assert local["STORAGE_EMULATOR_HOST"].startswith("http://object-storage.civicsense.svc")
    assert "STORAGE_EMULATOR_HOST" not in gke
    isvc = find(rendered["gke"], "InferenceService", "civicsense-sentiment")
    # Knative: the current name of the mode ("Serverless" is deprecated, KServe v0.20.0
    # pkg/constants/constants.go:562-563).
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    local_isvc = find(rendered["local"], "InferenceService", "civicsense-sentiment")
    assert local_isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == (
        "Standard")


def test_bad_tokens_and_overlays_are_refused(tmp_path):
    (tmp_path / "token").write_text("short\n")
    with pytest.raises(RenderError, match="32-256 URL-safe"):
        read_token(tmp_path / "token")
    (tmp_path / "token").write_text("a" * 64 + "\n")
    assert read_token(tmp_path / "token") == "a" * 64
    with pytest.raises(RenderError, match="no overlay 'aws'"):
        render("aws")
    with pytest.raises(RenderError, match="URL-safe"):
        render("local", sink_token="x&y=" * 10)


@pytest.mark.parametrize("overlay", ["local", "gke"])
def test_label_studio_keeps_its_data_on_a_pvc_behind_a_service(rendered, find, overlay):
    objects = rendered[overlay]
    deployment = find(objects, "Deployment", "label-studio")
    pod = deployment["spec"]["template"]["spec"]
    container, = pod["containers"]
    assert container["image"] == LABEL_STUDIO_IMAGE
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LATEST_VERSION_CHECK"] == env["COLLECT_ANALYTICS"] == "false"
    assert env["SENTRY_DSN"] == env["FRONTEND_SENTRY_DSN"] == ""
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == env["LABEL_STUDIO_BASE_DATA_DIR"]
    find(objects, "PersistentVolumeClaim", claims["data"])  # the claim is in the overlay
    service = find(objects, "Service", "label-studio")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == \
        "Recreate"  # one SQLite writer
