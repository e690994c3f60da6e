"""Every workload follows the hardening rules (non-root, read-only root, no escalation, no
capabilities, requests and limits, probes where it serves), and each broken rule is named."""

from __future__ import annotations

import pytest

from civicsense.deploy.policy import workload_problems

WORKLOADS = ("Deployment", "CronJob", "ClusterServingRuntime", "InferenceService")


def test_every_workload_of_every_overlay_follows_the_rules(rendered):
    seen = set()
    for overlay, objects in rendered.items():
        for obj in objects:
            assert workload_problems(obj) == [], (overlay, obj["metadata"]["name"])
            seen.add(obj["kind"])
    assert set(WORKLOADS) <= seen


def container(obj: dict) -> dict:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return (spec["template"]["spec"] if "template" in spec else spec)["containers"][0]


@pytest.mark.parametrize("kind, name", [("Deployment", "civicsense-log-sink"),
                                        ("Deployment", "mlflow"),
                                        ("Deployment", "object-storage"),
                                        ("CronJob", "civicsense-monitor"),
                                        ("ClusterServingRuntime", "civicsense-mlflow")])
@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["securityContext"].pop("readOnlyRootFilesystem"),
     "securityContext.readOnlyRootFilesystem: must be true"),
    (lambda c: c["securityContext"].update(allowPrivilegeEscalation=True),
     "securityContext.allowPrivilegeEscalation: must be false"),
    (lambda c: c["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
     "securityContext.capabilities.drop: must include ALL"),
    (lambda c: c["resources"]["limits"].pop("memory"), "resources.limits.memory: Required value"),
    (lambda c: c["resources"].pop("requests"), "resources.requests.cpu: Required value"),
])
def test_each_broken_rule_is_named(rendered, find, kind, name, mutate, message):
    obj = find(rendered["local"], kind, name)
    mutate(container(obj))
    assert any(message in problem for problem in workload_problems(obj))


@pytest.mark.parametrize("kind, name", [("Deployment", "civicsense-log-sink"),
                                        ("ClusterServingRuntime", "civicsense-mlflow")])
def test_what_serves_needs_both_probes(rendered, find, kind, name):
    obj = find(rendered["local"], kind, name)
    container(obj).pop("livenessProbe")
    assert any("livenessProbe: Required value" in p for p in workload_problems(obj))


def test_a_job_serves_nothing_so_needs_no_probes_but_must_not_run_as_root(rendered, find):
    cronjob = find(rendered["local"], "CronJob", "civicsense-monitor")
    assert "readinessProbe" not in container(cronjob) and workload_problems(cronjob) == []
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["securityContext"].pop(
        "runAsNonRoot")
    assert workload_problems(cronjob) == [
        "spec.jobTemplate.spec.template.spec.containers[0]: runAsNonRoot is not true "
        "(pod or container)"]


def test_the_predictors_run_as_non_root_with_bounded_resources(rendered, find):
    isvc = find(rendered["gke"], "InferenceService", "civicsense-sentiment")
    isvc["spec"]["predictor"]["securityContext"] = {}
    isvc["spec"]["predictor"]["model"]["resources"].pop("limits")
    assert workload_problems(isvc) == [
        "spec.predictor.securityContext.runAsNonRoot: must be true",
        "spec.predictor.model.resources.limits.cpu: Required value",
        "spec.predictor.model.resources.limits.memory: Required value"]


@pytest.mark.parametrize("key", ["runAsGroup", "fsGroup"])
def test_root_group_is_refused(rendered, find, key):
    obj = find(rendered["local"], "Deployment", "label-studio")
    assert workload_problems(obj) == []
    obj["spec"]["template"]["spec"]["securityContext"][key] = 0
    assert f"securityContext.{key}: must not be 0 (root's group)" in " ".join(
        workload_problems(obj))
    container(obj)["securityContext"]["runAsGroup"] = 0
    assert any("containers[0].securityContext.runAsGroup" in p for p in workload_problems(obj))
